"""Push-forward models: distribution tests that can fail, plus the interface contract.

The 8-Gaussian mixture is the classic mode-coverage check: a model that learns only the mean
(``naive_mse``, the negative control) or drops modes fails it. Configurations are small so the
whole file runs in well under two minutes on 2 cores; budgets are set by steps, with generous
minutes, so results are deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pfcore import models, sampling
from pfcore.errors import InputError, ModelError
from pfcore.models.base import Progress

# ----------------------------------------------------------------------------- toy data
SIGMA = 0.3
RADIUS = 4.0
SCALE = 2.9  # bring the mixture to roughly unit variance, as the data layer's encoding does
CENTERS = (
    np.stack(
        [RADIUS * np.cos(np.arange(8) * np.pi / 4), RADIUS * np.sin(np.arange(8) * np.pi / 4)],
        axis=1,
    )
    / SCALE
)
NUMERIC2 = [
    {"column": "x", "kind": "numeric", "start": 0, "width": 1},
    {"column": "y", "kind": "numeric", "start": 1, "width": 1},
]

# Step-bound settings shared by the mode tests (about 2 s per 1,000 steps on one idle core).
TOY = dict(
    width=128,
    depth=3,
    batch_size=256,
    lr=5e-3,
    max_steps=2000,
    min_steps=1,
    epochs=None,
    eval_every=500,
    n_eval=1000,
    max_minutes=30.0,
    warmup_steps=50,
    threads=1,
)


def mixture(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 8, n)
    pts = CENTERS[k] * SCALE + SIGMA * rng.standard_normal((n, 2))
    return (pts / SCALE).astype(np.float32)


def mode_report(samples: np.ndarray) -> tuple[float, np.ndarray]:
    """Fraction of samples within 3 sigma of some mode, and each mode's share of all samples."""
    d = np.linalg.norm(samples[:, None, :] - CENTERS[None], axis=2)
    near = d.min(axis=1) < 3 * SIGMA / SCALE
    share = np.bincount(d.argmin(axis=1)[near], minlength=8) / len(samples)
    return float(near.mean()), share


def assert_modes_covered(samples: np.ndarray, *, min_near: float = 0.75) -> None:
    near, share = mode_report(samples)
    assert near >= min_near, f"only {near:.2f} of samples near a mode (shares {share.round(3)})"
    expected = near / 8
    assert np.all(np.abs(share - expected) < 0.35 * expected), f"uneven modes: {share.round(3)}"


def tiny_mixed(n: int = 600, seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Two numeric columns plus a 3-way and a 2-way one-hot block, encoded like the data layer."""
    rng = np.random.default_rng(seed)
    num = rng.standard_normal((n, 2)).astype(np.float32)
    a = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    b = (num[:, 0] > 0.5).astype(int)
    oh_a = -np.ones((n, 3), np.float32)
    oh_a[np.arange(n), a] = 1
    oh_b = -np.ones((n, 2), np.float32)
    oh_b[np.arange(n), b] = 1
    x = np.concatenate([num, oh_a, oh_b], axis=1)
    blocks = [
        {"column": "n1", "kind": "numeric", "start": 0, "width": 1},
        {"column": "n2", "kind": "numeric", "start": 1, "width": 1},
        {"column": "a", "kind": "onehot", "start": 2, "width": 3},
        {"column": "b", "kind": "onehot", "start": 5, "width": 2},
    ]
    return x, blocks


TINY = dict(
    max_steps=60,
    min_steps=1,
    epochs=None,
    eval_every=30,
    max_minutes=30.0,
    n_eval=256,
    checkpoint_every=20,
    log_every=10,
    threads=1,
)
TINY_FAMILY = {
    "flow": {},
    "onestep": dict(n_pairs=512, distill_max_steps=40, conditional_max_steps=30),
    "hybrid": dict(n_pairs=512, distill_max_steps=40, ar_max_steps=40),
    "energy": {},
    "naive_mse": {},
}


def fit_tiny(family: str, seed: int = 0, **extra) -> models.GenerativeModel:
    x, blocks = tiny_mixed()
    m = models.build(family, {"seed": seed, **TINY, **TINY_FAMILY[family], **extra}, preset="tiny")
    m.fit(x[:500], blocks, valid=x[500:])
    return m


# ----------------------------------------------------------------------------- mode coverage
@pytest.fixture(scope="module")
def onestep_toy() -> models.OneStepModel:
    x, v = mixture(4000, 0), mixture(1000, 1)
    cfg = dict(
        TOY,
        seed=0,
        solver_steps=8,
        student_width=128,
        student_depth=3,
        n_pairs=8192,
        distill_max_steps=2000,
        distill_lr=5e-3,
        distill_batch_size=256,
    )
    m = models.build("onestep", cfg, preset="tiny")
    m.fit(x, NUMERIC2, valid=v)
    return m  # type: ignore[return-value]


def test_flow_covers_every_mode(onestep_toy: models.OneStepModel) -> None:
    assert onestep_toy.teacher is not None
    assert_modes_covered(onestep_toy.teacher.sample(4000, seed=5))


def test_onestep_covers_every_mode(onestep_toy: models.OneStepModel) -> None:
    assert_modes_covered(onestep_toy.sample(4000, seed=5))


def test_energy_covers_every_mode() -> None:
    # Energy distance needs bigger batches than the flow to see all eight modes in one batch.
    m = models.build("energy", dict(TOY, seed=0, batch_size=512), preset="tiny")
    m.fit(mixture(4000, 0), NUMERIC2, valid=mixture(1000, 1))
    assert_modes_covered(m.sample(4000, seed=5), min_near=0.5)


def test_naive_mse_fails_the_same_check() -> None:
    """Negative control: MSE against random rows collapses to the mean, so the check must fail."""
    m = models.build("naive_mse", dict(TOY, seed=0, max_steps=500), preset="tiny")
    m.fit(mixture(4000, 0), NUMERIC2)
    samples = m.sample(4000, seed=5)
    near, _share = mode_report(samples)
    assert near < 0.05
    assert np.linalg.norm(samples.mean(axis=0)) < 0.2  # the mean of the ring is the origin
    with pytest.raises(AssertionError):
        assert_modes_covered(samples)


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("family", sorted(models.FAMILIES))
def test_push_snaps_onehot_and_is_deterministic(family: str) -> None:
    m = fit_tiny(family)
    out = m.sample(300, seed=3)
    assert out.shape == (300, 7) and out.dtype == np.float32
    for start, width in ((2, 3), (5, 2)):
        block = out[:, start : start + width]
        assert set(np.unique(block)) <= {-1.0, 1.0}
        assert np.all((block == 1.0).sum(axis=1) == 1)
    np.testing.assert_array_equal(out, m.sample(300, seed=3))
    assert not np.array_equal(out, m.sample(300, seed=4))
    # the noise of the canonical sampling path (pfcore.sampling), block by block
    (block,) = sampling.blocks(300, 3)
    np.testing.assert_array_equal(out, m.push(sampling.latent(block, m.latent_dim)).numpy())


@pytest.mark.parametrize("family", ["onestep", "energy"])
def test_same_seed_same_model(family: str) -> None:
    a, b, c = fit_tiny(family, seed=1), fit_tiny(family, seed=1), fit_tiny(family, seed=2)
    np.testing.assert_array_equal(a.sample(200, 0), b.sample(200, 0))
    assert not np.array_equal(a.sample(200, 0), c.sample(200, 0))


@pytest.mark.parametrize("family", sorted(models.FAMILIES))
def test_save_load_same_samples(family: str, tmp_path: Path) -> None:
    m = fit_tiny(family)
    m.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["family"] == family and meta["n_features"] == 7 and len(meta["blocks"]) == 4
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.safetensors"]
    loaded = models.load(tmp_path / "m", device="cpu")
    assert type(loaded) is type(m) and loaded.device == torch.device("cpu")
    np.testing.assert_array_equal(m.sample(500, seed=9), loaded.sample(500, seed=9))


def test_saved_weights_are_device_free(tmp_path: Path) -> None:
    """Whatever device trained it, the file holds CPU float32 tensors (so it loads on CPU)."""
    from safetensors import safe_open

    m = fit_tiny("onestep")
    m.save(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt", device="cpu") as f:
        keys = list(f.keys())
        # the student's weights (the teacher is not needed to sample) and the calibration offsets
        assert keys and all(k.startswith(("student.", "calibration.")) for k in keys)
        assert all(f.get_tensor(k).dtype == torch.float32 for k in keys)


def test_progress_callbacks_and_summary() -> None:
    seen: list[Progress] = []
    x, blocks = tiny_mixed()
    model = models.build("onestep", {**TINY, **TINY_FAMILY["onestep"]}, preset="tiny")
    summary = model.fit(x[:500], blocks, valid=x[500:], callbacks=[seen.append])
    phases = {p.phase for p in seen}
    assert phases == {"teacher", "distill", "conditional"}
    assert all(p.step <= p.total_steps and p.elapsed_s >= 0 for p in seen)
    assert any("proxy" in p.metrics for p in seen)
    assert summary["teacher"]["steps"] == 60 and summary["distill"]["steps"] == 40
    assert summary["conditional"]["steps"] == 30
    assert summary["device"] == "cpu" and summary["pairs"]["n"] == 512
    json.dumps(summary)  # JSON-able


def test_time_budget_stops_training() -> None:
    x, blocks = tiny_mixed()
    m = models.build("flow", {**TINY, "max_steps": 10**6, "max_minutes": 0.02}, preset="tiny")
    summary = m.fit(x, blocks)
    assert summary["flow"]["stop_reason"] == "time_budget"
    assert summary["flow"]["seconds"] < 10


def test_early_stopping_with_patience() -> None:
    x, blocks = tiny_mixed()
    m = models.build(
        "naive_mse",
        {**TINY, "max_steps": 5000, "eval_every": 10, "patience": 2, "lr": 3e-3},
        preset="tiny",
    )
    summary = m.fit(x[:500], blocks, valid=x[500:])["naive_mse"]
    assert summary["stop_reason"] == "early_stopping" and summary["steps"] < 5000


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_checkpoint_resume_matches_uninterrupted(tmp_path: Path, ema_decay: float) -> None:
    """Kill a fit mid-way (a callback raises), rerun with the same checkpoint dir: same model.

    With a weight average the checkpoint must carry the average too, or the resumed model
    differs from the uninterrupted one.
    """
    x, blocks = tiny_mixed()
    cfg = {**TINY, "max_steps": 80, "checkpoint_every": 20, "eval_every": 20}
    cfg["ema_decay"] = ema_decay

    class Interrupt(Exception):
        pass

    def stop_at_50(p: Progress) -> None:
        if p.step >= 50:
            raise Interrupt

    ref = models.build("flow", cfg, preset="tiny")
    ref.fit(x[:500], blocks, valid=x[500:])
    first = models.build("flow", cfg, preset="tiny")
    with pytest.raises(Interrupt):
        first.fit(x[:500], blocks, valid=x[500:], callbacks=[stop_at_50], checkpoint_dir=tmp_path)
    assert (tmp_path / "flow.pt").exists()
    second = models.build("flow", cfg, preset="tiny")
    summary = second.fit(x[:500], blocks, valid=x[500:], checkpoint_dir=tmp_path)
    assert summary["flow"]["resumed_from"] == 40
    np.testing.assert_array_equal(ref.sample(300, 1), second.sample(300, 1))


def test_weight_average_is_what_the_loop_keeps() -> None:
    """The loop's kept weights are the Polyak average of the raw ones, computed independently."""
    from pfcore.models.training import LoopSpec, train_loop

    torch.manual_seed(0)
    init = torch.nn.Linear(3, 1).state_dict()
    data = torch.randn(64, 3)
    target = data @ torch.tensor([[1.0], [-2.0], [0.5]])
    decay, steps = 0.8, 30

    def run(ema_decay: float) -> tuple[list[list[torch.Tensor]], list[torch.Tensor]]:
        net = torch.nn.Linear(3, 1)
        net.load_state_dict(init)
        seen: list[list[torch.Tensor]] = []  # the raw weights each step starts from

        def step_fn(step: int) -> torch.Tensor:
            seen.append([p.detach().clone() for p in net.parameters()])
            b = slice((step * 8) % 64, (step * 8) % 64 + 8)
            return ((net(data[b]) - target[b]) ** 2).mean()

        spec = LoopSpec(
            phase="toy",
            max_steps=steps,
            budget_s=60.0,
            lr=0.1,
            warmup_steps=0,
            final_lr_fraction=1.0,
            grad_clip=0.0,
            ema_decay=ema_decay,
        )
        train_loop(
            spec=spec,
            modules={"net": net},
            optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
            step_fn=step_fn,
            eval_fn=None,
            generator=torch.Generator(),
        )
        return seen, [p.detach().clone() for p in net.parameters()]

    raw_seen, raw_final = run(0.0)  # no average: the loop keeps the last raw weights
    avg_seen, kept = run(decay)
    for a, b in zip(raw_seen, avg_seen, strict=True):  # the average never leaks into training
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y)
    expected = raw_seen[0]
    for k, raw in enumerate([*raw_seen[1:], raw_final], start=1):
        w = 1.0 - min(decay, (1.0 + k) / (10.0 + k))
        expected = [e + w * (r - e) for e, r in zip(expected, raw, strict=True)]
    for e, k in zip(expected, kept, strict=True):
        torch.testing.assert_close(k, e)
    assert not all(torch.allclose(k, r) for k, r in zip(kept, raw_final, strict=True))


# ----------------------------------------------------------------------------- validation
def test_config_is_validated_at_construction() -> None:
    with pytest.raises(ModelError, match="width"):
        models.build("flow", {"width": 0})
    with pytest.raises(ModelError, match="unknown config key"):
        models.build("onestep", {"widht": 64})
    with pytest.raises(ModelError, match="solver"):
        models.build("flow", {"solver": "rk45"})
    with pytest.raises(ModelError, match="family"):
        models.build("gan")
    with pytest.raises(ModelError, match="preset"):
        models.build("flow", preset="turbo")
    with pytest.raises(ModelError, match="teacher_share"):
        models.build("onestep", {"teacher_share": 1.5})
    with pytest.raises(ModelError, match="device"):
        models.build("flow", {"device": "tpu"})
    with pytest.raises(ModelError, match="ema_decay"):
        models.build("onestep", {"ema_decay": 1.0})
    with pytest.raises(ModelError, match="distill_match_weight"):
        models.build("onestep", {"distill_match_weight": -1.0})
    with pytest.raises(ModelError, match="distill_match_ref"):
        models.build("onestep", {"distill_match_ref": "holdout"})
    with pytest.raises(ModelError, match="sampler_steps"):
        models.build("onestep", {"sampler_steps": 0})
    with pytest.raises(ModelError, match="refine_input"):
        models.build("onestep", {"refine_input": "data"})


@pytest.mark.parametrize("refine_input", ["teacher", "student"])
def test_few_step_sampler_round_trips(refine_input: str, tmp_path: Path) -> None:
    """A 2-evaluation sampler saves its refiner, reloads to the same rows, and the refiner is used.

    Zeroing the refiner's head must change the rows: the second evaluation is not a no-op.
    """
    m = fit_tiny("onestep", sampler_steps=2, refine_input=refine_input)
    assert m.fit_summary["distill"]["sampler_steps"] == 2
    rows = m.sample(300, seed=4)
    m.save(tmp_path)
    loaded = models.load(tmp_path)
    np.testing.assert_array_equal(loaded.sample(300, seed=4), rows)
    assert loaded.refiners is not None
    with torch.no_grad():
        loaded.refiners[0].head.weight.zero_()
    assert not np.array_equal(loaded.sample(300, seed=4), rows)


@pytest.mark.parametrize("ref", ["data", "teacher"])
def test_distribution_matching_term_changes_the_student(ref: str) -> None:
    """The optional energy-distance term is wired in: same seed, different student weights."""
    plain = fit_tiny("onestep")
    matched = fit_tiny("onestep", distill_match_weight=1.0, distill_match_ref=ref)
    assert matched.fit_summary["distill"]["steps"] == plain.fit_summary["distill"]["steps"]
    z = torch.randn(256, plain.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (plain._push_raw(z) - matched._push_raw(z)).abs().max().item()
    assert diff > 1e-3


def test_bad_inputs_raise_input_error() -> None:
    x, blocks = tiny_mixed()
    m = models.build("naive_mse", TINY, preset="tiny")
    with pytest.raises(ModelError, match="not fitted"):
        m.sample(3, 0)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="row 3, column 1"):
        m.fit(bad, blocks)
    with pytest.raises(InputError, match="cover"):
        m.fit(x[:, :6], blocks)
    with pytest.raises(InputError, match="contiguous"):
        m.fit(x, [blocks[1], blocks[0], *blocks[2:]])
    with pytest.raises(InputError, match="onehot block"):
        m.fit(
            x[:, :3],
            [blocks[0], blocks[1], {"column": "c", "kind": "onehot", "start": 2, "width": 1}],
        )
    with pytest.raises(InputError, match="columns"):
        m.fit(x, blocks, valid=x[:, :5])


def test_load_rejects_missing_or_newer_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model.json"):
        models.load(tmp_path)
    m = fit_tiny("naive_mse")
    m.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="upgrade"):
        models.load(tmp_path)


# ----------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_with_amp_then_load_on_cpu(tmp_path: Path) -> None:
    x, blocks = tiny_mixed(2000)
    m = models.build(
        "onestep",
        {
            **TINY,
            **TINY_FAMILY["onestep"],
            "device": "cuda",
            "amp": True,
            "max_steps": 300,
            "distill_max_steps": 200,
        },
        preset="tiny",
    )
    summary = m.fit(x[:1500], blocks, valid=x[1500:])
    assert summary["device"].startswith("cuda") and summary["teacher"]["amp"] is True
    assert m.device.type == "cuda"
    on_gpu = m.sample(1000, seed=2)
    assert np.isfinite(on_gpu).all()
    m.save(tmp_path)
    cpu = models.load(tmp_path, device="cpu")
    on_cpu = cpu.sample(1000, seed=2)
    np.testing.assert_allclose(on_cpu[:, :2], on_gpu[:, :2], atol=2e-3)
    assert (on_cpu[:, 2:] == on_gpu[:, 2:]).all(axis=1).mean() > 0.99


def test_the_gpu_preset_on_a_cpu_warns_and_names_the_cpu_preset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A gpu-pool deployment whose worker has no usable CUDA device trains on the CPU, where the
    ``gpu`` preset's networks get far fewer steps in the same minutes: the log says so."""
    import logging

    import pyarrow.parquet as pq

    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer
    from tests.conftest import TEST_DATA

    table = pq.read_table(TEST_DATA / "penguins.parquet")
    small = {
        "device": "cpu",
        **{"max_steps": 2, "min_steps": 1, "eval_every": 2, "n_eval": 64, "batch_size": 64},
        **{"width": 32, "depth": 1, "ar_width": 16, "ar_max_steps": 2},
        **{"n_pairs": 256, "pair_batch": 256, "distill_max_steps": 2, "distill_batch_size": 64},
        **{"conditional_max_steps": 1, "conditional_width": 16},
    }
    with caplog.at_level(logging.WARNING, logger="pushforward.synthesizer"):
        Synthesizer.fit(table, infer_schema(table), preset="gpu", config=small, seed=0)
    assert "preset 'gpu' on cpu" in caplog.text and "'balanced'" in caplog.text


# ----------------------------------------------------------------------------- real tables
REAL = dict(
    TOY,
    width=128,
    depth=3,
    max_steps=1500,
    eval_every=500,
    solver_steps=8,
    student_width=128,
    student_depth=2,
    n_pairs=8192,
    distill_max_steps=1500,
    distill_lr=5e-3,
    distill_batch_size=256,
)


def categorical_tvd(path: Path, columns: list[str], n_rows: int | None, tol: float) -> None:
    """Fit onestep through the real data layer; each categorical's frequencies within ``tol``.

    Frequencies include the null share, so under-produced missing values fail too.
    """
    import pyarrow.parquet as pq

    from pfcore.schema import infer_schema
    from pfcore.transforms import TableTransformer

    table = pq.read_table(path)
    if n_rows is not None and table.num_rows > n_rows:
        idx = np.sort(np.random.default_rng(0).choice(table.num_rows, n_rows, replace=False))
        table = table.take(idx)
    schema = infer_schema(table)
    tr = TableTransformer.fit(table, schema, seed=0)
    x = tr.encode(table, seed=0)
    model = models.build("onestep", dict(REAL, seed=0), preset="tiny")
    model.fit(x, tr.blocks)
    synth = tr.decode(model.sample(5000, seed=1), seed=1).to_pandas()
    real = table.to_pandas()
    for col in columns:
        rf = real[col].astype(str).value_counts(normalize=True)
        sf = synth[col].astype(str).value_counts(normalize=True)
        keys = rf.index.union(sf.index)
        tvd = 0.5 * float(
            np.abs(rf.reindex(keys, fill_value=0) - sf.reindex(keys, fill_value=0)).sum()
        )
        assert tvd < tol, (
            f"{col}: total variation {tvd:.3f}\nreal {rf.round(3).to_dict()}\n"
            f"synthetic {sf.round(3).to_dict()}"
        )


def test_categorical_frequencies_penguins() -> None:
    """344 rows with nulls in ``sex``: small data must not lose categories or the null share."""
    from tests.conftest import TEST_DATA

    categorical_tvd(TEST_DATA / "penguins.parquet", ["species", "island", "sex"], None, tol=0.08)


@pytest.mark.shared
def test_categorical_frequencies_diamonds() -> None:
    from tests.conftest import shared_dataset

    categorical_tvd(shared_dataset("diamonds"), ["cut", "color", "clarity"], 5000, tol=0.05)


# ----------------------------------------------------------------------------- losses
def test_block_loss_weighs_columns_not_dimensions() -> None:
    """A wide one-hot block must not drown a numeric column: each block weighs 1 / n_blocks."""
    from pfcore.models.base import OneHotIndex, normalize_blocks
    from pfcore.models.losses import BlockLoss

    _x, blocks = tiny_mixed()  # 2 numeric + onehot(3) + onehot(2): 4 blocks, 7 dims
    index = OneHotIndex(normalize_blocks(blocks, 7))
    target = torch.zeros(4, 7)
    err_numeric = target.clone()
    err_numeric[:, 0] = 1.0  # squared error 1 in one numeric column
    err_wide = target.clone()
    err_wide[:, 2:5] = 1.0  # squared error 1 in each dim of the 3-wide block
    cols = BlockLoss(index, 7, weighting="columns", softmax=False)
    dims = BlockLoss(index, 7, weighting="dims", softmax=False)
    assert cols(err_numeric, target).item() == pytest.approx(1 / 4)
    assert cols(err_wide, target).item() == pytest.approx(1 / 4)
    assert dims(err_numeric, target).item() == pytest.approx(1 / 7)
    assert dims(err_wide, target).item() == pytest.approx(3 / 7)
    # Softmax form: confident correct logits cost ~0, the numeric term keeps its weight.
    soft = BlockLoss(index, 7, weighting="columns", softmax=True)
    logits = torch.zeros(4, 7)
    logits[:, 2] = logits[:, 5] = 30.0
    # One class tensor per width group (widths 2 and 3), shape (rows, blocks in the group).
    classes = [torch.zeros(4, 1, dtype=torch.long), torch.zeros(4, 1, dtype=torch.long)]
    logits[:, 0] = 1.0
    assert soft(logits, target, classes).item() == pytest.approx(1 / 4, abs=1e-6)


# ----------------------------------------------------------------------------- calibration
def test_calibration_matches_category_frequencies() -> None:
    """Skewed argmax frequencies are corrected by per-slot offsets; absent classes vanish."""
    from pfcore.models.base import OneHotIndex, normalize_blocks
    from pfcore.models.calibration import fit_onehot_bias

    blocks = normalize_blocks(
        [
            {"column": "a", "kind": "onehot", "start": 0, "width": 4},
            {"column": "b", "kind": "onehot", "start": 4, "width": 4},
        ],
        8,
    )
    index = OneHotIndex(blocks)
    rng = np.random.default_rng(0)
    targets = {"a": [0.5, 0.3, 0.15, 0.05], "b": [0.6, 0.4, 0.0, 0.0]}
    x = -np.ones((20_000, 8), np.float32)
    for off, p in ((0, targets["a"]), (4, targets["b"])):
        x[np.arange(len(x)), off + rng.choice(4, len(x), p=p)] = 1.0
    skew = torch.tensor([3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0])

    def push_raw(z: torch.Tensor) -> torch.Tensor:
        return z + skew  # class 0 of "a" and classes 2-3 of "b" far too frequent

    bias, summary = fit_onehot_bias(
        push_raw,
        torch.from_numpy(x),
        index.groups,
        latent_dim=8,
        seed=0,
        device=torch.device("cpu"),
    )
    assert summary["max_tvd_before"] > 0.3 and summary["max_tvd_after"] < 0.01
    z = torch.randn(100_000, 8, generator=torch.Generator().manual_seed(1))  # fresh draws
    out = push_raw(z) + bias
    for off, p in ((0, targets["a"]), (4, targets["b"])):
        freq = np.bincount(out[:, off : off + 4].argmax(1).numpy(), minlength=4) / len(out)
        assert 0.5 * np.abs(freq - p).sum() < 0.02, (off, freq)


def test_fit_records_calibration_and_can_turn_it_off() -> None:
    on, off = fit_tiny("onestep"), fit_tiny("onestep", calibrate=False)
    assert on.fit_summary["calibration"]["blocks"] == 2
    assert "calibration" not in off.fit_summary
    assert off._onehot_bias is None and on._onehot_bias is not None
    from pfcore.models.base import snap_onehot

    z = torch.randn(500, on.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = snap_onehot(on._push_raw(z).float() + on._onehot_bias, on._index)
    assert torch.equal(on.push(z), expected)

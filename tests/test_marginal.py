"""The marginal map of the hybrid's numbers: exact quantiles, monotone, saved, per sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pfcore import models
from pfcore.models.marginal import KnotIndex, MarginalMap, column_quantiles
from tests.test_hybrid import thin_table

LEVELS = np.linspace(0.05, 0.95, 19)
#: Step budgets so small that the networks' marginals are visibly off (what the maps correct).
TINY = dict(
    max_steps=60,
    distill_max_steps=40,
    ar_max_steps=50,
    n_pairs=1024,
    min_steps=1,
    epochs=None,
    threads=1,
    eval_every=1000,
)


def test_column_quantiles_are_torch_quantiles() -> None:
    x = torch.randn(1001, 3, generator=torch.Generator().manual_seed(0))
    levels = (torch.arange(16) + 0.5) / 16
    expect = torch.quantile(x, levels, dim=0).T
    torch.testing.assert_close(column_quantiles(x, 16), expect)


def test_the_bucket_index_is_searchsorted() -> None:
    """Quantile knots of normal, skewed and nearly constant outputs, the maps' identity grid,
    and knots bunched past the step limit (the binary search then answers): the same left
    insertion points as ``torch.searchsorted`` for values between, on and beyond the knots,
    and for infinities and NaN."""
    g = torch.Generator().manual_seed(3)
    outputs = torch.stack(
        [
            torch.randn(50_000, generator=g),
            torch.exp(2 * torch.randn(50_000, generator=g)),
            torch.where(torch.rand(50_000, generator=g) < 0.6, 0.0, torch.randn(50_000)),
        ],
        dim=1,
    )
    quantile_knots = column_quantiles(outputs)
    quantile_knots = torch.cummax(quantile_knots + torch.arange(1024) * 1e-6, dim=1).values
    bunched = torch.cat([torch.zeros(1, 1000), torch.linspace(1, 2, 24)[None]], 1)
    bunched = bunched + torch.arange(1024) * 1e-6
    for knots in (quantile_knots, MarginalMap(2).source, bunched):
        index = KnotIndex(knots)
        x = torch.cat(
            [
                torch.randn(knots.shape[0], 20_000, generator=g) * 4,
                knots,
                knots[:, :-1] + knots.diff(dim=1) / 2,
                torch.tensor([[-1e9, 1e9]]).expand(knots.shape[0], -1),
            ],
            dim=1,
        )
        assert torch.equal(index.index(x), torch.searchsorted(knots, x))
        odd = x.clone()
        odd[:, :3] = torch.tensor([torch.inf, -torch.inf, torch.nan])
        assert torch.equal(index.index(odd), torch.searchsorted(knots, odd))
    assert KnotIndex(quantile_knots).fast.tolist() == [True, False, False]
    assert not KnotIndex(bunched).fast.any() and KnotIndex(MarginalMap(2).source).all_fast


def test_the_map_gives_the_data_quantiles_and_keeps_the_order() -> None:
    g = torch.Generator().manual_seed(1)
    m = MarginalMap(2)
    x = torch.randn(500, 2, generator=g) * 3
    torch.testing.assert_close(m(x), x)  # the identity until fitted

    # a squeezed, skewed output (what a regressed student gives) against N(0, 1) rows
    def model_out(n: int) -> torch.Tensor:
        z = torch.randn(n, 2, generator=g)
        return torch.stack([0.5 * z[:, 0], torch.exp(0.5 * z[:, 1]) - 1], dim=1)

    data = torch.randn(40_000, 2, generator=g)
    summary = m.fit(model_out(60_000), data)
    assert summary["max_gap"] > 0.5
    mapped = m(model_out(40_000)).numpy()
    for j in range(2):
        gap = np.abs(np.quantile(mapped[:, j], LEVELS) - np.quantile(data[:, j].numpy(), LEVELS))
        assert gap.max() < 0.05, (j, gap.max())
    ordered = torch.linspace(-8, 8, 2001).unsqueeze(1).expand(-1, 2)
    assert (m(ordered).diff(dim=0) >= 0).all()  # monotone, also beyond the outer knots
    # beyond the knots the map shifts by the outer offset
    far = torch.full((1, 2), 50.0)
    torch.testing.assert_close(m(far), far - m.source[:, -1] + m.target[:, -1])
    copy = MarginalMap(2)
    copy.load_state_dict(m.state_dict())
    torch.testing.assert_close(copy(ordered), m(ordered))


def _table(n: int = 3000) -> tuple[np.ndarray, list]:
    """Two N(0, 1) numbers (correlation 0.8, as encoded columns are) and a categorical that
    shifts them."""
    rng = np.random.default_rng(0)
    c = rng.integers(0, 2, n)
    u = rng.standard_normal(n)
    v = 0.8 * u + 0.6 * rng.standard_normal(n)
    num = np.stack([u, v], axis=1).astype(np.float32)
    cat = -np.ones((n, 2), np.float32)
    cat[np.arange(n), c] = 1
    blocks = [
        {"column": "u", "kind": "numeric", "start": 0, "width": 1},
        {"column": "v", "kind": "numeric", "start": 1, "width": 1},
        {"column": "c", "kind": "onehot", "start": 2, "width": 2},
    ]
    return np.concatenate([num, cat], axis=1), blocks


def _gap(out: np.ndarray, x: np.ndarray) -> float:
    return max(
        float(np.abs(np.quantile(out[:, j], LEVELS) - np.quantile(x[:, j], LEVELS)).max())
        for j in range(2)
    )


def test_the_hybrid_student_gets_the_data_marginals(tmp_path: Path) -> None:
    """The maps in the encoded space (at this budget the fit's choice of space is the whitened
    one, whose encoded marginals stay 0.5 off: the classifier weighs the joint errors more)."""
    x, blocks = _table()
    budget = {**TINY, "conditional_max_steps": 0, "calibrate_space": "encoded"}
    gaps = {}
    for on in (False, True):
        m = models.build("hybrid", {"seed": 0, **budget, "calibrate_numbers": on}, "tiny")
        m.fit(x, blocks)
        gaps[on] = _gap(m.sample(20_000, seed=3), x)
    assert gaps[True] < 0.05 < gaps[False] / 2, gaps
    assert isinstance(m, models.HybridModel) and m.marginal is not None
    assert m.fit_summary["marginals"]["rows"] > 0
    # the teacher's sampler gets its own map, to the same data quantiles
    m.continuous_sampler = "teacher"
    raw = _gap(m.sample(20_000, seed=3), x)
    m.calibrate_teacher()
    calibrated = _gap(m.sample(20_000, seed=3), x)
    assert calibrated < 0.05 and calibrated < raw, (raw, calibrated)
    m.continuous_sampler = "student"
    out = m.sample(500, seed=4)
    m.save(tmp_path)
    np.testing.assert_array_equal(out, models.load(tmp_path).sample(500, seed=4))


def test_numbers_drawn_beside_given_ones_get_the_data_marginals() -> None:
    """Seed rows giving u: the drawn v, over the rows, follows v's data marginal (the law a
    perfect conditional network gives), closer with the conditional map than without."""
    x, blocks = _table()
    budget = {**TINY, "conditional_max_steps": 40}
    m = models.build("hybrid", {"seed": 0, **budget}, "tiny")
    m.fit(x, blocks)
    assert isinstance(m, models.HybridModel) and m.cond_marginal is not None
    assert m.fit_summary["cond_marginals"]["rows"] > 0
    push = m.conditional_push()
    known = torch.from_numpy(x)
    mask = torch.zeros(x.shape[1], dtype=torch.bool)
    mask[0] = True  # u given, v and c drawn
    z = torch.randn(len(x), m.latent_dim, generator=torch.Generator().manual_seed(5))
    with_map = push(z, known, mask, 0).numpy()
    fitted, m.cond_marginal = m.cond_marginal, None
    without = push(z, known, mask, 0).numpy()
    m.cond_marginal = fitted
    np.testing.assert_array_equal(with_map[:, 0], x[:, 0])  # the given column is kept exactly

    def gap(out: np.ndarray) -> float:
        return float(np.abs(np.quantile(out[:, 1], LEVELS) - np.quantile(x[:, 1], LEVELS)).max())

    assert gap(with_map) < 0.1 and gap(with_map) < gap(without) / 2, (gap(with_map), gap(without))


def test_fit_maps_gives_the_data_quantiles_in_each_space() -> None:
    from pfcore.models.map_space import SPACES, fit_maps
    from pfcore.models.whiten import Whitener

    g = torch.Generator().manual_seed(2)
    mix = torch.tensor([[1.0, 0.0], [0.9, 0.3]])
    data = torch.randn(20_000, 2, generator=g) @ mix.T
    wh = Whitener(2).fit(data)
    w = 0.6 * torch.randn(30_000, 2, generator=g)  # a squeezed sampler in whitened space
    levels = torch.tensor(LEVELS, dtype=torch.float32)

    def qgap(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(
            (torch.quantile(a, levels, dim=0) - torch.quantile(b, levels, dim=0)).abs().max()
        )

    for space in SPACES:
        wmap, emap = fit_maps(space, w, wh.encode(data), data, wh.decode)
        assert (wmap is not None) == (space in ("white", "both"))
        assert (emap is not None) == (space in ("encoded", "both"))
        if wmap is not None:  # the whitened outputs get the data's whitened quantiles
            assert qgap(wmap(w), wh.encode(data)) < 0.05
        out = wh.decode(w if wmap is None else wmap(w))
        out = out if emap is None else emap(out)
        gap = qgap(out, data)
        assert gap < (0.05 if emap is not None else 0.2), (space, gap)
    assert qgap(wh.decode(w), data) > 0.3  # what the maps corrected
    with pytest.raises(ValueError, match="unknown marginal map space"):
        fit_maps("none", w, wh.encode(data), data, wh.decode)


def test_choose_keeps_the_space_a_classifier_separates_least() -> None:
    from pfcore.models.map_space import choose

    rng = np.random.default_rng(0)
    real = rng.standard_normal((4000, 3))
    good = rng.standard_normal((4000, 3))
    bad = good.copy()
    bad[:, 2] = good[:, 0] + 0.1 * good[:, 2]  # a dependence the real rows do not have
    cat = np.zeros(3, dtype=bool)
    space, aucs = choose({"encoded": (real, bad, cat), "white": (real, good, cat)}, seed=0)
    assert space == "white" and aucs["encoded"] > 0.9 and aucs["white"] < 0.55, aucs
    # a tie keeps the earlier space
    assert choose({"encoded": (real, good, cat), "both": (real, good, cat)}, seed=0)[0] == "encoded"


def test_the_hybrid_chooses_its_map_space_and_saves_it(tmp_path: Path) -> None:
    """A table with a thin relation: the fit scores each space, keeps the least detectable one,
    and keeps v - u at least as tight as the encoded map alone; the teacher's maps follow the
    chosen space; the choice is saved with the weights."""
    from pfcore.models.map_space import SPACES

    x, blocks = thin_table(3000)
    budget = {**TINY, "conditional_max_steps": 0, "max_steps": 120, "distill_max_steps": 150}
    width = {}
    fitted = {}
    for space in ("encoded", "select"):
        m = models.build("hybrid", {"seed": 0, **budget, "calibrate_space": space}, "tiny")
        m.fit(x, blocks)
        assert isinstance(m, models.HybridModel) and m.marginal is not None
        out = m.sample(4000, seed=1)
        width[space] = float(np.std(out[:, 1] - out[:, 0]))
        fitted[space] = m
    assert fitted["encoded"].white_marginal is None  # nothing built for it
    m = fitted["select"]
    summary = m.fit_summary["marginals"]
    aucs = summary["space_auc"]
    assert set(aucs) == set(SPACES) and all(0.4 < a < 1 for a in aucs.values()), aucs
    assert summary["space"] == min(aucs, key=aucs.__getitem__)
    assert m.white_marginal is not None
    assert m.white_marginal.is_identity == (summary["space"] == "encoded")
    assert m.marginal.is_identity == (summary["space"] == "white")
    assert width["select"] <= width["encoded"] * 1.05, width
    spaces = {"white": not m.white_marginal.is_identity, "encoded": not m.marginal.is_identity}
    teacher = m.calibrate_teacher()
    assert {s for s, on in spaces.items() if on} == set(teacher) - {"rows", "number_maps"}, teacher
    assert ("number_maps" in teacher) == (m.number_maps is not None)
    out = m.sample(500, seed=4)
    m.save(tmp_path)
    loaded = models.load(tmp_path)
    assert loaded.config.calibrate_space == "select"
    np.testing.assert_array_equal(out, loaded.sample(500, seed=4))


def test_a_hybrid_saved_before_the_space_choice_loads_with_encoded_maps(tmp_path: Path) -> None:
    import json

    x, blocks = thin_table(600)
    m = models.build(
        "hybrid",
        {"seed": 0, **TINY, "conditional_max_steps": 0, "calibrate_space": "encoded"},
        "tiny",
    )
    m.fit(x, blocks)
    m.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["config"].pop("calibrate_space")
    (tmp_path / "model.json").write_text(json.dumps(meta))
    loaded = models.load(tmp_path)
    assert loaded.config.calibrate_space == "encoded" and loaded.white_marginal is None
    np.testing.assert_array_equal(m.sample(300, seed=2), loaded.sample(300, seed=2))
    with pytest.raises(models.ModelError, match="calibrate_space"):
        models.build("hybrid", {"calibrate_space": "whitened"}, "tiny")


def test_the_synthesizer_scores_the_spaces_on_decoded_columns() -> None:
    """Through ``Synthesizer.fit`` the classifier sees the table's columns as the fidelity
    report's detection does (decoded, one feature per column), not the encoded dims."""
    import pyarrow.parquet as pq

    from pfcore.fidelity.detection import decoded_view
    from pfcore.models.map_space import SPACES
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    table = pq.read_table(Path(__file__).parent / "data" / "penguins.parquet")
    schema = infer_schema(table)
    config = {**TINY, "conditional_max_steps": 0}
    synth = Synthesizer.fit(table, schema, family="hybrid", preset="tiny", config=config, seed=0)
    summary = synth.info["fit_summary"]["marginals"]
    assert set(summary["space_auc"]) == set(SPACES), summary
    view = decoded_view(lambda enc: synth.transformer.decode(enc, seed=0), schema)
    enc = synth.transformer.encode(table, seed=0)
    xr, xs, cat = view(enc[:150], enc[150:300])
    assert xr.shape == (150, table.num_columns) and xs.shape == (150, table.num_columns)
    assert enc.shape[1] > table.num_columns  # the encoded rows had one-hot dims
    names = table.column_names
    strings = [j for j, f in enumerate(table.schema) if str(f.type) in ("string", "large_string")]
    assert strings and all(cat[j] for j in strings)
    num = names.index("bill_length_mm")
    raw = table.column("bill_length_mm").to_numpy(zero_copy_only=False)[:150]
    # the decoded values, the training rows' own except where extremes are protected
    assert np.isclose(xr[:, num], raw, atol=0.05, equal_nan=True).mean() > 0.9

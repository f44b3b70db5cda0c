"""Numbers per class (``ClassMaps(smooth=True)``, ``number_keys``): each number moved onto the
training rows' law within each class of the discrete column that explains it best."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from pfcore.models.class_maps import MIN_SMOOTH_ROWS, ClassMaps, number_keys
from pfcore.schema import infer_schema


def test_the_key_is_the_column_that_shifts_the_number_not_a_column_of_rare_classes() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 6000
    shifts = torch.randint(0, 3, (n,), generator=gen)  # moves the first number
    noise = torch.randint(0, 4, (n,), generator=gen)  # unrelated
    rare = torch.arange(n) % 300  # 300 classes of 20 rows: pooled, explains nothing
    data = torch.randn(n, 2, generator=gen)
    data[:, 0] += 2.0 * shifts
    slots = torch.stack([noise, rare, shifts], dim=1)
    keys = number_keys(data, slots)
    assert keys[0] == 2
    # unpooled, the 300 classes of 20 rows would explain the most of the second, pure-noise
    # number (about 5% of its variance, against about 0.1% for a 4-class column)
    assert keys[1] != 1
    assert number_keys(data, slots, skip=[0]).keys() == {1}


def test_smooth_maps_match_each_class_law_and_keep_order_and_tails() -> None:
    gen = torch.Generator().manual_seed(1)
    n = 20_000
    slots = torch.randint(0, 3, (n, 1), generator=gen)
    slots[:20, 0] = 3  # a class with too few rows: left as drawn
    own = torch.randn(n, 2, generator=gen)
    scale = torch.tensor([0.5, 1.0, 2.0, 1.0])[slots[:, 0]]
    shift = torch.tensor([-1.0, 0.0, 3.0, 0.0])[slots[:, 0]]
    data = own.clone()
    data[:, 1] = shift + scale * torch.randn(n, generator=gen)
    maps = ClassMaps([(1, [(0, 4)])], smooth=True)
    maps.fit(own, slots, data, slots)
    fresh = torch.randn(n, 2, generator=torch.Generator().manual_seed(2))
    out = maps(fresh, slots)
    assert torch.equal(out[:, 0], fresh[:, 0])  # an unmapped dim
    few = slots[:, 0] == 3
    assert torch.equal(out[few], fresh[few])
    for c in range(3):
        sel = slots[:, 0] == c
        assert abs(float(out[sel, 1].mean() - data[sel, 1].mean())) < 0.1
        assert abs(float(out[sel, 1].std() / data[sel, 1].std()) - 1) < 0.1
        order = fresh[sel, 1].argsort()
        assert bool((out[sel, 1][order].diff() >= 0).all())  # the draws keep their order
    # beyond the outer knots: shifted, not clamped (tails keep the sampler's shape)
    far = torch.tensor([[0.0, 10.0], [0.0, 11.0]])
    y = maps(far, torch.tensor([[0], [0]]))
    assert abs(float(y[1, 1] - y[0, 1]) - 1.0) < 1e-5
    saved = ClassMaps([(1, [(0, 4)])], smooth=True)
    saved.load_state_dict({k: v.float() for k, v in maps.state_dict().items()}, strict=True)
    assert torch.equal(saved(fresh, slots), out)  # what a model saved in float32 maps
    assert MIN_SMOOTH_ROWS > 20


def _table(n: int = 3000, seed: int = 0) -> pa.Table:
    """A number whose law depends on a region: bimodal in one, narrow in another."""
    rng = np.random.default_rng(seed)
    region = rng.choice(np.array(["north", "south", "west"]), n, p=[0.5, 0.3, 0.2])
    value = np.where(
        region == "north",
        rng.choice([-2.0, 2.0], n) + 0.3 * rng.standard_normal(n),
        np.where(region == "south", 5 + 0.2 * rng.standard_normal(n), rng.standard_normal(n)),
    )
    other = rng.standard_normal(n)
    return pa.table({"region": region, "value": np.round(value, 3), "other": np.round(other, 3)})


@pytest.fixture(scope="module")
def fitted():
    from pfcore.synthesizer import Synthesizer

    table = _table()
    config = {"max_steps": 150, "distill_max_steps": 100, "ar_max_steps": 100,
              "conditional_max_steps": 50, "n_pairs": 2048}  # fmt: skip
    synth = Synthesizer.fit(table, infer_schema(table), family="hybrid", preset="fast",
                            config=config)  # fmt: skip
    return table, synth


def _gap(table: pa.Table, rows: pa.Table) -> float:
    """Largest Kolmogorov-Smirnov distance between a region's real and drawn ``value``."""
    out = 0.0
    for r in ("north", "south", "west"):
        a = np.sort(table.column("value").to_numpy()[table.column("region").to_numpy() == r])
        b = np.sort(rows.column("value").to_numpy()[rows.column("region").to_numpy() == r])
        grid = np.concatenate([a, b])
        cdf_a = np.searchsorted(a, grid, side="right") / len(a)
        cdf_b = np.searchsorted(b, grid, side="right") / len(b)
        out = max(out, float(np.abs(cdf_a - cdf_b).max()))
    return out


def test_a_briefly_trained_hybrid_draws_each_region_law(fitted, tmp_path) -> None:
    """The maps are kept (the classifier prefers them), keyed by the region, and bring each
    region's quantiles of the number close to the data's where the student alone is off."""
    from pfcore.synthesizer import Synthesizer

    table, synth = fitted
    summary = synth.model.fit_summary["marginals"]["number_maps"]
    assert summary["kept"] and synth.model.config.number_keys["value"] == "region"
    rows = synth.sample(20_000, seed=3)
    maps, synth.model.number_maps = synth.model.number_maps, None
    try:
        without = synth.sample(20_000, seed=3)
    finally:
        synth.model.number_maps = maps
    gaps = _gap(table, rows), _gap(table, without)  # measured 0.023 and 0.343
    assert gaps[0] < 0.05 < gaps[1], gaps
    loaded = Synthesizer.load(synth.save(tmp_path / "s"))
    assert loaded.sample(5000, seed=4).equals(synth.sample(5000, seed=4))


def test_given_numbers_stay_and_saved_before_models_load_without_maps(fitted) -> None:
    from pfcore.conditions import Conditions
    from pfcore.models.hybrid import HybridConfig

    table, synth = fitted
    rows = synth.sample(2000, seed=5, conditions=Conditions.make(where={"value": (4.8, 5.2)}))
    v = rows.column("value").to_numpy()
    assert ((v >= 4.8) & (v <= 5.2)).all()
    assert HybridConfig.SAVED_BEFORE["class_numbers"] is False

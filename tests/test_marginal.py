"""The marginal map of the hybrid's numbers: exact quantiles, monotone, saved, per sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pfcore import models
from pfcore.models.marginal import MarginalMap, column_quantiles

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
    x, blocks = _table()
    budget = {**TINY, "conditional_max_steps": 0}
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

"""The latent move onto given numbers (pfcore.models.latent_project)."""

from __future__ import annotations

import numpy as np
import torch

from pfcore.models.latent_project import project_latent


def test_a_linear_map_gives_the_exact_gaussian_conditional() -> None:
    """For x = A z, z ~ N(0, I), the moved points given x_0 = t are the Gaussian's conditional
    law: x_1's mean and variance are the regression's (Cov[x1, x0] / Var[x0] * t and
    Var[x1] - Cov^2 / Var[x0]), not x_1's marginal."""
    a = torch.tensor([[1.0, 0.5, 0.0], [0.8, -0.3, 0.6], [0.0, 0.2, 1.0]])
    n = 40_000
    z = torch.randn(n, 3, generator=torch.Generator().manual_seed(0))
    known = torch.zeros(n, 3)
    known[:, 0] = 1.5
    mask = torch.zeros(n, 3, dtype=torch.bool)
    mask[:, 0] = True
    moved, x = project_latent(lambda q: q @ a.T, z, known, mask)
    torch.testing.assert_close(x[:, 0], known[:, 0], rtol=0, atol=1e-4)
    cov = a @ a.T
    mean = float(cov[1, 0] / cov[0, 0] * 1.5)
    var = float(cov[1, 1] - cov[1, 0] ** 2 / cov[0, 0])
    assert abs(float(x[:, 1].mean()) - mean) < 0.02
    assert abs(float(x[:, 1].var()) - var) < 0.03
    # the move is the least one: along the constraint's normal (A's first row) for every row
    step = moved - z
    rank = torch.linalg.matrix_rank(torch.cat([step[:50], a[:1]], dim=0))
    assert int(rank) == 1


def test_a_nonlinear_map_reaches_the_given_values_per_row_masks() -> None:
    """A curved map, rows that give different columns (none, one, two): each row's given
    outputs are reached, rows that give nothing keep their own point, and the result is the
    same whether the rows run together or apart."""
    w = torch.tensor([[1.0, 0.3, -0.2], [0.1, 1.0, 0.4], [-0.3, 0.2, 1.0]])

    def f(q: torch.Tensor) -> torch.Tensor:
        h = q @ w.T
        return h + 0.3 * torch.tanh(2 * h[:, [1, 2, 0]]) + 0.1 * h**2

    gen = torch.Generator().manual_seed(1)
    n = 3000
    z = torch.randn(n, 3, generator=gen)
    target = f(torch.randn(n, 3, generator=gen))  # values the map does take
    mask = torch.zeros(n, 3, dtype=torch.bool)
    mask[1000:2000, 0] = True
    mask[2000:, 1:] = True
    moved, x = project_latent(f, z, target, mask)
    gap = (x - target).abs()[mask]
    assert float(gap.median()) < 1e-4 and float((gap < 0.01).float().mean()) > 0.99
    assert torch.equal(moved[:1000], z[:1000])
    halves = (slice(0, 1500), slice(1500, n))
    apart = torch.cat([project_latent(f, z[s], target[s], mask[s])[0] for s in halves])
    np.testing.assert_allclose(apart.numpy(), moved.numpy(), rtol=0, atol=1e-5)

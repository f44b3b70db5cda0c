"""The mover's linear step (``pfcore.models.latent_move``): one Gauss-Newton step under a
least-squares line through the student."""

from __future__ import annotations

import torch

from pfcore.models.latent_move import MAX_STEP, LinearMove


def _linear_student(n: int = 4000, seed: int = 0):
    """Rows of an exactly linear map ``x = c0 + z Cz + d Cd`` with two one-hot blocks, and the
    map's parts."""
    g = torch.Generator().manual_seed(seed)
    n_num, widths = 4, (3, 2)
    cz = torch.randn(n_num, n_num, generator=g)
    cd = torch.randn(sum(widths), n_num, generator=g)
    c0 = torch.randn(n_num, generator=g)
    z = torch.randn(n, n_num, generator=g)
    first = torch.randint(0, widths[0], (n,), generator=g)
    second = widths[0] + torch.randint(0, widths[1], (n,), generator=g)
    dims = torch.stack([first, second], dim=1)
    d = torch.full((n, sum(widths)), -1.0).scatter_(1, dims, 1.0)
    x = c0 + z @ cz + d @ cd
    return z, d, dims, x, (c0, cz, cd)


def test_the_step_reaches_given_numbers_of_a_linear_map_by_the_shortest_move() -> None:
    z, d, dims, x, (c0, cz, cd) = _linear_student()
    move = LinearMove(4, 5)
    fit = move.fit(z, d, x)
    assert fit["r2_min"] > 0.9999, fit
    f = lambda q: c0 + q @ cz + d[:256] @ cd  # noqa: E731
    q = torch.randn(256, 4, generator=torch.Generator().manual_seed(1)) * 0.3
    known = f(q) + 0.2  # near enough that no step is clipped
    mask = torch.tensor([True, False, True, False])
    step = move(q, None, dims[:256], mask, known)
    assert float(step.norm(dim=1).max()) < MAX_STEP
    reached = f(q + step)
    assert torch.allclose(reached[:, mask], known[:, mask], atol=1e-2)
    # the shortest such move lies in the row space of the given numbers' Jacobian
    jac = cz.T[mask]  # (given, latent)
    coeffs = torch.linalg.lstsq(jac.T, step.T).solution
    assert torch.allclose(jac.T @ coeffs, step.T, atol=1e-4)
    # the one-hots as ±1 columns give the same step as their hot dims
    assert torch.allclose(move(q, d[:256], None, mask, known), step, atol=1e-5)


def test_per_row_masks_match_one_mask_and_nothing_given_does_not_move() -> None:
    """Rows of a block that give different numbers each move as if asked alone."""
    z, d, dims, x, _ = _linear_student()
    move = LinearMove(4, 5)
    move.fit(z, d, x)
    q, known = z[:64], x[:64] + 0.5
    one = torch.tensor([False, True, True, False])
    rows = one.expand(64, -1).clone()
    rows[::2] = torch.tensor([True, False, False, False])
    both = move(q, None, dims[:64], rows, known)
    assert torch.allclose(both[1::2], move(q, None, dims[:64], one, known)[1::2], atol=1e-5)
    alone = torch.tensor([True, False, False, False])
    assert torch.allclose(both[::2], move(q, None, dims[:64], alone, known)[::2], atol=1e-5)
    assert torch.equal(move(q, None, dims[:64], torch.zeros(4, dtype=torch.bool), known), 0 * q)


def test_a_far_given_value_moves_the_point_at_most_the_largest_step() -> None:
    z, d, dims, x, _ = _linear_student()
    move = LinearMove(4, 5)
    move.fit(z, d, x)
    known = torch.full((32, 4), 1e4)
    step = move(z[:32], None, dims[:32], torch.tensor([True, True, False, False]), known)
    assert torch.allclose(step.norm(dim=1), torch.full((32,), MAX_STEP), atol=1e-4)

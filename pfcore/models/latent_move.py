"""A linear first guess of where a row's latent point must move so that the student gives its
given numbers: one Gauss-Newton step under a straight-line fit of the student.

Why: the numbers-given network (the mover) learns its move in the seconds a fit leaves it
(12 s, about 500 steps, on a 4-minute california_housing fit) and starts from no move at all,
while the Gauss-Newton projection of the row's own point (``latent_project.py``) reaches the
given numbers from the nearest point and keeps the other numbers on the relations the student
learnt, but needs a backward pass per given column and iteration. This module takes one such
step with the Jacobian and the student's output replaced by a least-squares fit of the
student's encoded numbers on its inputs ``[1, z, d]`` (``d`` the ±1 one-hots of the row's
classes, latent cells included), made once at fit time: a batched solve of a
``numbers x numbers`` system per mask and no extra network pass. The mover then learns only
what the straight line misses.

Measured on one saved 4-minute fit per table, only the mover refitted for the seconds the fit
gave it, without and with this step (``benchmarks/numbers_given_refit.py``, then the
conditional benchmark on each copy; detection AUC): seed rows california_housing 0.684 ->
0.644, credit_default 0.780 -> 0.770, diamonds 0.576 -> 0.572, nyc_flights 0.754 -> 0.746;
numeric ranges of california_housing, diamonds and nyc_flights 0.646 -> 0.641, 0.679 -> 0.676
and 0.670 -> 0.670. The least-squares line explains 85-99.7% of the variance of
california_housing's encoded numbers and 35-61% of credit_default's; on california_housing the
step alone, with the mover untrained, scored 0.665 against the trained mover's 0.693. Sampling
seed rows costs 3-6% more time per 100k rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LinearMove"]

#: Ridge on the least-squares fit (its inputs include one-hot blocks, whose ±1 columns sum to
#: a constant per block, so the plain normal equations are singular).
FIT_RIDGE = 1e-3
#: Damping of the step's normal equations (a given number the fit barely moves with ``z``).
STEP_DAMPING = 1e-3
#: Largest step in latent units, as ``latent_project.MAX_STEP``: a given value the straight
#: line can hardly reach must not throw the row far out of the Gaussian.
MAX_STEP = 2.0
#: Pairs the fit reads at most: the coefficients are a few hundred numbers.
FIT_ROWS = 60_000
#: Up to this many distinct masks in a block are solved one mask at a time (seed rows: one per
#: pattern of given nulls); more (training's random masks) in one batched solve per row. A
#: batched solve of 4,096 systems of 9 numbers takes 4.4 ms on one CPU thread.
MAX_MASK_GROUPS = 32


class LinearMove(nn.Module):
    """``forward(z, d or dims, mask, known)``: the latent step of one linearised Gauss-Newton
    iteration towards the given encoded numbers ``known`` where ``mask``; zero where nothing is
    given. ``coef`` ``(1 + n_num + n_onehot, n_num)`` is a buffer (saved with the model)."""

    def __init__(self, n_num: int, n_onehot: int) -> None:
        super().__init__()
        self.n_num, self.n_onehot = int(n_num), int(n_onehot)
        self.register_buffer("coef", torch.zeros(1 + self.n_num + self.n_onehot, self.n_num))

    @torch.no_grad()
    def fit(self, z: torch.Tensor, d: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
        """Least squares of the student's encoded numbers ``x`` on ``[1, z, d]`` (float64, on
        the CPU: the result does not depend on a device's float32 kernels); returns the
        smallest and largest R^2 over the numbers."""
        n = min(len(z), FIT_ROWS)
        f = torch.cat([torch.ones(n, 1), z[:n].cpu(), d[:n].cpu()], dim=1).double()
        y = x[:n].detach().to("cpu", torch.float64)
        gram = f.T @ f + FIT_RIDGE * torch.eye(f.shape[1], dtype=f.dtype)
        coef = torch.linalg.solve(gram, f.T @ y)
        res = y - f @ coef
        r2 = 1 - res.var(dim=0) / y.var(dim=0).clamp_min(1e-12)
        self.coef.copy_(coef.to(self.coef.device, torch.float32))
        return {"r2_min": round(float(r2.min()), 4), "r2_max": round(float(r2.max()), 4)}

    def forward(
        self,
        z: torch.Tensor,
        d: torch.Tensor | None,
        dims: torch.Tensor | None,
        mask: torch.Tensor,
        known: torch.Tensor,
    ) -> torch.Tensor:
        """``z`` ``(n, n_num)``; the row's classes as ±1 one-hots ``d`` ``(n, n_onehot)`` or as
        their hot dims ``dims`` ``(n, K)`` (the hybrid's lookup form); ``mask`` / ``known``
        ``(n, n_num)`` or ``(n_num,)``."""
        with torch.autocast(z.device.type, enabled=False):
            return self._step(z.float(), d, dims, mask, known)

    def _step(
        self,
        z: torch.Tensor,
        d: torch.Tensor | None,
        dims: torch.Tensor | None,
        mask: torch.Tensor,
        known: torch.Tensor,
    ) -> torch.Tensor:
        n, n_num = z.shape[0], self.n_num
        m = mask.to(torch.bool)
        m = m.unsqueeze(0).expand(n, -1) if m.ndim == 1 else m
        if not bool(m.any()):
            return torch.zeros_like(z)
        c0, cz, cd = self.coef[0], self.coef[1 : 1 + n_num], self.coef[1 + n_num :]
        xhat = z @ cz + c0
        if self.n_onehot:
            if dims is not None:  # ±1 one-hots: -1 everywhere, +1 at the hot dims
                hot = F.embedding_bag(dims, cd, mode="sum")  # 9x faster than cd[dims].sum(1)
                xhat = xhat - cd.sum(dim=0) + 2.0 * hot
            else:
                assert d is not None
                xhat = xhat + d.float() @ cd
        mf = m.to(z.dtype)
        kn = known.float()
        kn = kn.unsqueeze(0).expand(n, -1) if kn.ndim == 1 else kn
        miss = torch.where(m, kn - xhat, torch.zeros_like(xhat))
        jac = cz.T  # (numbers, latent): d xhat / d z
        gram = jac @ jac.T + STEP_DAMPING * torch.eye(n_num, device=z.device)
        if bool((m == m[:1]).all()):  # one mask for every row (compiled conditions)
            y = _solve_one(gram, mf[0], miss)
        else:
            first, group = _mask_groups(m)
            if len(first) <= MAX_MASK_GROUPS:
                y = torch.zeros_like(miss)
                for g, row in enumerate(first.tolist()):
                    rows = (group == g).nonzero().flatten()
                    y[rows] = _solve_one(gram, mf[row], miss[rows])
            else:
                a = gram * (mf[:, :, None] * mf[:, None, :]) + torch.diag_embed(1 - mf)
                y = torch.linalg.solve(a, miss.unsqueeze(2)).squeeze(2)
        step = (y * mf) @ jac
        norm = step.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return step * (MAX_STEP / norm).clamp(max=1.0)


def _solve_one(gram: torch.Tensor, mask: torch.Tensor, miss: torch.Tensor) -> torch.Tensor:
    """``(n, numbers)``: the given block of ``gram`` (``mask``, 0/1 ``(numbers,)``) solved
    against each row's miss; the identity on the other numbers, whose miss is zero."""
    a = gram * (mask[:, None] * mask[None, :]) + torch.diag(1 - mask)
    return torch.linalg.solve(a, miss.T).T


def _mask_groups(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(one row index per distinct mask, each row's group ``(n,)``). Masks of up to 62
    numbers are packed into one integer each: ``torch.unique(dim=0)`` on the boolean rows
    took 20 ms per 8,192 rows of nine numbers on one CPU thread, the packed integers 0.25 ms."""
    if m.shape[1] <= 62:
        bits = 2 ** torch.arange(m.shape[1], device=m.device)
        _, group = torch.unique(m.long() @ bits, return_inverse=True)
    else:
        _, group = torch.unique(m, dim=0, return_inverse=True)
    n_groups = int(group.max()) + 1
    rows = torch.arange(len(group), device=m.device)
    first = torch.full((n_groups,), len(group), device=m.device).scatter_reduce(
        0, group, rows, reduce="amin"
    )
    return first, group

"""A least-squares line through the student, and the Newton step along it that moves a row's
latent point towards its given numbers: how the hybrid draws the numbers beside given ones.

Why: the student maps ``z`` to the numbers; rows that give some numbers need the point where
the student gives them, nearest their own ``z`` (for a linear map that is exactly the Gaussian
latent's conditional). The Gauss-Newton projection (``latent_project.py``) finds it with the
student's exact slope, a backward pass per given column and step: on california_housing's seed
rows (a saved 4-minute fit) 0.586 detection AUC at 6% of the unconditional rows/s. A small
network trained to output the move (the mover) runs at the student's speed but learns it in
the seconds a fit leaves it (12 s, about 500 steps): 0.652 there. This module replaces the
slope by that of a line fitted once at fit time (the student's encoded numbers on its inputs
``[1, z, d]``, ``d`` the ±1 one-hots of the row's classes, latent cells included), so a step is
a solve of one ``numbers x numbers`` system per mask and no backward pass:
``HybridModel.newton_point`` takes one step from the line's own numbers at ``z`` and one from
the student's at the first point (one student pass), 0.597 there at 57% of the rows/s.

Measured on three saved 4-minute fits per table (``benchmarks/results/conditional_newton.json``,
the same fits with the mover in ``conditional.json``; mean detection AUC, mover -> Newton):
seed rows california_housing 0.654 -> 0.604, nyc_flights 0.751 -> 0.742, credit_default 0.759
-> 0.757, diamonds 0.582 -> 0.583; numeric ranges 0.649 -> 0.645, 0.675 -> 0.665 and 0.674 ->
0.675. The line explains 74-99.7% of the variance of each encoded number on these tables (R^2
per number, 60k of the student's own rows).
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
#: line can hardly reach must not throw the row far out of the Gaussian. It binds on 88% of
#: california_housing's seed rows' first steps (five numbers given), yet looser clips scored
#: worse there and on credit_default's (3 / none: 0.588 / 0.595 and 0.722 / 0.726 against 0.584
#: and 0.713), tighter ones too (1.5: 0.588 / 0.715).
MAX_STEP = 2.0
#: Pairs the fit reads at most: the coefficients are a few hundred numbers.
FIT_ROWS = 60_000


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
        at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``z`` ``(n, n_num)``; the row's classes as ±1 one-hots ``d`` ``(n, n_onehot)`` or as
        their hot dims ``dims`` ``(n, K)`` (the hybrid's lookup form); ``mask`` / ``known``
        ``(n, n_num)`` or ``(n_num,)``. ``at``: the student's own encoded numbers at ``z``,
        when known: the step then corrects the student's miss (a Newton step with the line's
        slope) instead of the line's."""
        with torch.autocast(z.device.type, enabled=False):
            return self._step(z.float(), d, dims, mask, known, at)

    def line(
        self, z: torch.Tensor, d: torch.Tensor | None, dims: torch.Tensor | None
    ) -> torch.Tensor:
        """The line's encoded numbers at ``z`` for the rows' classes (``forward``'s forms)."""
        n_num = self.n_num
        c0, cz, cd = self.coef[0], self.coef[1 : 1 + n_num], self.coef[1 + n_num :]
        xhat = z @ cz + c0
        if self.n_onehot:
            if dims is not None:  # ±1 one-hots: -1 everywhere, +1 at the hot dims
                hot = F.embedding_bag(dims, cd, mode="sum")  # 9x faster than cd[dims].sum(1)
                xhat = xhat - cd.sum(dim=0) + 2.0 * hot
            else:
                assert d is not None
                xhat = xhat + d.float() @ cd
        return xhat

    def _step(
        self,
        z: torch.Tensor,
        d: torch.Tensor | None,
        dims: torch.Tensor | None,
        mask: torch.Tensor,
        known: torch.Tensor,
        at: torch.Tensor | None,
    ) -> torch.Tensor:
        n, n_num = z.shape[0], self.n_num
        m = mask.to(torch.bool)
        m = m.unsqueeze(0).expand(n, -1) if m.ndim == 1 else m
        if not bool(m.any()):
            return torch.zeros_like(z)
        cz = self.coef[1 : 1 + n_num]
        xhat = self.line(z, d, dims) if at is None else at.float()
        mf = m.to(z.dtype)
        kn = known.float()
        kn = kn.unsqueeze(0).expand(n, -1) if kn.ndim == 1 else kn
        miss = torch.where(m, kn - xhat, torch.zeros_like(xhat))
        jac = cz.T  # (numbers, latent): d xhat / d z
        gram = jac @ jac.T + STEP_DAMPING * torch.eye(n_num, device=z.device)
        # one inverse per distinct mask (seed rows: one per pattern of given nulls), applied to
        # each row by a product and a sum of its own: a row's step never depends on which other
        # rows share its block (a batched solve of one system per row took 4.4 ms per 4,096
        # rows of nine numbers on one CPU thread)
        first, group = _mask_groups(m)
        mg = mf[first]
        a = gram * (mg[:, :, None] * mg[:, None, :]) + torch.diag_embed(1 - mg)
        y = (torch.linalg.inv(a)[group] * miss[:, None, :]).sum(dim=2)
        step = (y * mf) @ jac
        norm = step.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return step * (MAX_STEP / norm).clamp(max=1.0)


def _mask_groups(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(one row index per distinct mask, each row's group ``(n,)``). Masks of up to 62
    numbers are packed into one integer each: ``torch.unique(dim=0)`` on the boolean rows
    took 20 ms per 8,192 rows of nine numbers on one CPU thread, the packed integers 0.25 ms."""
    if m.shape[1] <= 62:
        bits = 2 ** torch.arange(m.shape[1], device=m.device)
        # a sum of products, not ``@``: CUDA has no integer matrix product
        _, group = torch.unique((m.long() * bits).sum(dim=1), return_inverse=True)
    else:
        _, group = torch.unique(m, dim=0, return_inverse=True)
    n_groups = int(group.max()) + 1
    rows = torch.arange(len(group), device=m.device)
    first = torch.full((n_groups,), len(group), device=m.device).scatter_reduce(
        0, group, rows, reduce="amin"
    )
    return first, group

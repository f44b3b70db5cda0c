"""Networks: a plain SiLU MLP and a time-conditioned velocity field built on it.

Kept deliberately plain: on 2 CPU cores the sampler's cost is its matrix work (about
2 x params FLOP per row: a 4x512 one-step sampler ran at 34-48k rows/s on 2 cores), so width
and depth are the only knobs that matter for throughput, and they are config fields.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["MLP", "VelocityNet", "count_parameters"]


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` with SiLU, then a linear head.

    Shapes: ``(n, in_dim) -> (n, out_dim)``. The head starts at small weights so an untrained
    generator outputs near zero (near the data mean after encoding) instead of large values.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.SiLU()]
            d = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, out_dim)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class VelocityNet(nn.Module):
    """``v(x_t, t[, c])``: the MLP sees ``x_t`` concatenated with Fourier features of ``t``.

    Fourier features (fixed, log-spaced frequencies) let a small MLP change its field sharply near
    ``t = 1`` where the data's fine structure appears. Shapes: ``x (n, d)``, ``t (n, 1)``.
    With ``cond_dim > 0`` the field is conditional: a fixed ``c (n, cond_dim)`` (the hybrid
    family's discrete columns) is appended to the input; ``cond_dim = 0`` is the plain field
    with the same parameters as before.
    """

    def __init__(
        self, dim: int, width: int, depth: int, n_freqs: int = 8, cond_dim: int = 0
    ) -> None:
        super().__init__()
        freqs = math.pi * (2.0 ** torch.arange(n_freqs, dtype=torch.float32))
        self.register_buffer("freqs", freqs, persistent=False)
        self.dim = dim
        self.cond_dim = int(cond_dim)
        self.net = MLP(dim + 2 * n_freqs + 1 + self.cond_dim, dim, width, depth)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        ang = t * self.freqs.to(t.dtype)
        parts = [x, t, torch.sin(ang), torch.cos(ang)]
        if self.cond_dim:
            if cond is None or cond.shape[-1] != self.cond_dim:
                raise ValueError(f"this velocity net needs a condition of width {self.cond_dim}")
            parts.append(cond.to(x.dtype))
        return self.net(torch.cat(parts, dim=1))


def count_parameters(module: nn.Module) -> int:
    """Trainable and frozen parameters of ``module`` (sampling cost is about twice this per row)."""
    return sum(p.numel() for p in module.parameters())

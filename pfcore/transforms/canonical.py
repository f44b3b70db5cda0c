"""The float arithmetic both decode paths share, written once for NumPy arrays and torch tensors.

Why one formula: a batch must not depend on the hardware that decoded it. The NumPy decode (CPU)
and the torch decode (CPU or GPU) therefore compute every decoded float with these functions:
float64 throughout, each step a separate elementwise operation, so every step is one correctly
rounded IEEE operation on every backend (no fused multiply-add: NumPy never fuses, and each
torch call here is its own kernel). Division, multiplication, addition, min/max and
round-half-to-even are exact-rounding operations in IEEE 754, so the bits agree on any device
(division by a tensor, not a Python number: ``_div``).
Segment search (which knot interval a value falls in) is a comparison, also exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["clip", "interpolate", "rint", "snap", "snap_beyond", "where"]


def _is_numpy(a: Any) -> bool:
    return isinstance(a, (np.ndarray, np.generic))


def rint(a: Any) -> Any:
    """Round half to even (``np.rint``; ``torch.round`` rounds the same way)."""
    return np.rint(a) if _is_numpy(a) else a.round()


def where(cond: Any, a: Any, b: Any) -> Any:
    """Elementwise choice (``np.where`` / ``torch.where``)."""
    if _is_numpy(cond):
        return np.where(cond, a, b)
    import torch

    return torch.where(cond, a, b)


def clip(v: Any, lo: float | None, hi: float | None) -> Any:
    """Clip to optional bounds (either may be None)."""
    if lo is None and hi is None:
        return v
    if _is_numpy(v):
        return np.clip(v, -np.inf if lo is None else lo, np.inf if hi is None else hi)
    return v.clamp(min=lo, max=hi)


def interpolate(zc: Any, j: Any, z_pts: Any, v_pts: Any) -> Any:
    """Piecewise-linear value at ``zc`` on segment ``j`` (``z_pts[j] <= zc <= z_pts[j + 1]``).

    ``v = y0 + w * (y1 - y0)`` with ``w = (zc - z0) / (z1 - z0)``, ``w = 0`` on a flat segment.
    """
    x0, x1 = z_pts[j], z_pts[j + 1]
    y0, y1 = v_pts[j], v_pts[j + 1]
    dz = x1 - x0
    flat = dz <= 0
    dz = where(flat, _ones_like(dz), dz)
    w = (zc - x0) / dz
    w = where(flat, _zeros_like(w), w)
    step = y1 - y0
    step = w * step
    return y0 + step


def snap(v: Any, grid: int | None, decimals: int | None) -> Any:
    """Round decoded values to the column's grid (integers, datetimes) or observed decimals.

    Decimals: ``rint(v * 10**d) / 10**d`` (``rint(v / 10**-d) * 10**-d`` for d < 0), which is
    what ``np.round`` computes, spelled out so torch performs the same two roundings.
    """
    if grid is not None:
        return rint(_div(v, grid)) * grid if grid != 1 else rint(v)
    if decimals is not None:
        d = int(decimals)
        f = float(10.0 ** abs(d))
        return _div(rint(v * f), f) if d >= 0 else rint(_div(v, f)) * f
    return v


def snap_beyond(v: Any, bound: Any, decimals: int, direction: int) -> Any:
    """``v`` (on the rule's side of ``bound``: above it for ``direction`` > 0) rounded to
    ``decimals`` (>= 0), and rounded away from ``bound`` instead where plain rounding would
    cross it: ``ceil(v * 10**d) / 10**d`` above, ``floor`` below (exact on every backend)."""
    f = float(10.0 ** int(decimals))
    snapped = snap(v, None, decimals)
    scaled = v * f
    if _is_numpy(v):
        away = _div(np.ceil(scaled) if direction > 0 else np.floor(scaled), f)
    else:
        away = _div(scaled.ceil() if direction > 0 else scaled.floor(), f)
    cross = snapped < bound if direction > 0 else snapped > bound
    return where(cross, away, snapped)


def _div(a: Any, b: float | int) -> Any:
    """``a / b``, correctly rounded on every backend.

    Why not ``tensor / b``: CUDA torch divides by a Python number (a CPU scalar) as a
    multiplication by its rounded reciprocal, so ``414 / 10`` came out 41.400000000000006 on an
    H200 where NumPy and torch on a CPU give 41.4. Dividing by a tensor on the same device
    takes the true division kernel there too."""
    if _is_numpy(a):
        return a / b
    import torch

    return a / torch.tensor(float(b), dtype=torch.float64, device=a.device)


def _ones_like(a: Any) -> Any:
    return np.ones_like(a) if _is_numpy(a) else a.new_ones(a.shape)


def _zeros_like(a: Any) -> Any:
    return np.zeros_like(a) if _is_numpy(a) else a.new_zeros(a.shape)

"""A fixed monotone map per numeric dim that gives a student's numbers the data's marginals.

Why: every numeric column is encoded to an N(0, 1) marginal (``transforms/numeric.py``), and
neither the flow nor the student regressed onto it gets that marginal exactly: after the
5-minute fit on california_housing their quantiles are off by 0.016 (student) and 0.014 (flow)
on average and by up to 0.23 in the tails. Small as that is, a classifier uses it: a monotone
map per column that moves every output to the data's quantile of the sampler's own quantile
lowered the detection AUC of the same student from 0.696 to 0.646 on california_housing, 0.774
to 0.757 on credit_default and 0.701 to 0.699 on diamonds (``benchmarks/student_lab.py``, one
fitted teacher per table). Each column's marginal then matches the training rows' while the
order of the rows within each column, and so the dependence the network learned, is kept.

The map is per encoded column, so columns tied by an exact relation are moved by separate
maps: on nyc_flights (clock arithmetic between its times) it did not help (0.948 against
0.948), and the same map in the whitened coordinates (``whiten.py``) did (0.939) while losing
most of the gain elsewhere (california_housing 0.685). Neither space wins everywhere; each fit
of the hybrid chooses (``map_space.py``).

Fitted once after distillation on the model's own samples (the same inputs as sampling) against
the training rows (encoded or whitened), stored with the weights, applied in every sampler of
the student.
Piecewise linear between ``KNOTS`` quantiles; outside them the map shifts by the outer knot's
offset, so tails keep the student's own shape.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["KNOTS", "KnotIndex", "MarginalMap", "column_quantiles"]

#: Quantile levels ``(i + 0.5) / KNOTS``: the outer ones (0.05% and 99.95%) are still estimated
#: from 10 rows of a 20k-row training set.
KNOTS = 1024


def column_quantiles(x: torch.Tensor, knots: int = KNOTS) -> torch.Tensor:
    """``(dims, knots)`` quantiles of each column of ``x`` ``(n, dims)`` at ``(i + 0.5) / knots``.

    By sorting, not ``torch.quantile``, which refuses inputs over 2^24 elements (1M rows of 17
    numeric dims).
    """
    xs = x.detach().float().sort(dim=0).values
    n = xs.shape[0]
    pos = (torch.arange(knots, dtype=torch.float64, device=xs.device) + 0.5) / knots * (n - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = (pos - lo).to(xs.dtype).unsqueeze(1)
    return (xs[lo] + frac * (xs[hi] - xs[lo])).T.contiguous()


class KnotIndex:
    """``torch.searchsorted(knots, x)`` (left insertion points, row by row) by a uniform grid
    of buckets over each row's knot range and a few vectorised steps from the bucket's start.

    Why: the maps' binary search over 1,024 knots cost 67 ns per number on one CPU thread, 14%
    of credit_default's sampling (two maps over 14 numbers). A bucket of the grid holds a
    knot or two of quantile knots, so a few compare-and-step passes over the whole block find
    the same index. A row of knots bunched so tightly (a point mass, a long tail) that some
    bucket's neighbourhood holds more than ``MAX_STEPS`` of them uses the binary search; the
    answer is the same either way.
    """

    BUCKETS_PER_KNOT = 4
    MAX_STEPS = 6

    def __init__(self, knots: torch.Tensor) -> None:
        self.knots = knots
        dims, k = knots.shape
        g = self.BUCKETS_PER_KNOT * k
        self.lo = knots[:, :1]
        width = (knots[:, -1:] - self.lo) / g
        self.scale = torch.where(width > 0, 1.0 / width, torch.zeros_like(width))
        edges = self.lo + width * torch.arange(-1, g + 2, device=knots.device, dtype=knots.dtype)
        # A value in bucket b lies in [edge b-1, edge b+2) despite rounding in computing b: its
        # index lies between the knots below edge b-1 and those below edge b+2.
        below = torch.searchsorted(knots, edges.contiguous())  # (dims, g + 3)
        self.start = below[:, :g].contiguous()  # knots below edge b-1, for b = 0 .. g-1
        reach = below[:, 3:].clone()  # knots below edge b+2
        reach[:, -2:] = k  # the last buckets also take every value above the knots
        per_dim = (reach - self.start).amax(dim=1)
        #: rows of knots the buckets serve (the others: binary search), and the steps they need
        self.fast = per_dim <= self.MAX_STEPS
        self.steps = int(per_dim[self.fast].max()) if bool(self.fast.any()) else 0
        self.all_fast = bool(self.fast.all())
        self.g = g

    def index(self, x: torch.Tensor) -> torch.Tensor:
        """Left insertion points of ``x`` ``(dims, n)`` among the knots ``(dims, K)`` (a step
        function: no gradient)."""
        x = x.detach()
        if not bool(self.fast.any()) or not bool(torch.isfinite(x).all()):
            return torch.searchsorted(self.knots, x)
        if self.all_fast:
            return self._bucketed(x, self.knots, self.lo, self.scale, self.start)
        f = self.fast
        idx = torch.searchsorted(self.knots, x)  # every row, then the fast ones replaced
        idx[f] = self._bucketed(x[f], self.knots[f], self.lo[f], self.scale[f], self.start[f])
        return idx

    def _bucketed(
        self,
        x: torch.Tensor,
        knots: torch.Tensor,
        lo: torch.Tensor,
        scale: torch.Tensor,
        start: torch.Tensor,
    ) -> torch.Tensor:
        k = knots.shape[1]
        b = ((x - lo) * scale).floor().clamp(0, self.g - 1).long()
        idx = start.gather(1, b)
        for _ in range(self.steps):
            ahead = knots.gather(1, idx.clamp(max=k - 1)) < x
            idx = idx + (ahead & (idx < k)).long()
        return idx


class MarginalMap(nn.Module):
    """``forward(x)``: each column of ``x`` ``(n, dims)`` mapped from ``source`` knots to
    ``target`` knots (both ``(dims, KNOTS)`` buffers, saved with the state dict); the identity
    until :meth:`fit`."""

    def __init__(self, dim: int, knots: int = KNOTS) -> None:
        super().__init__()
        self.register_buffer("source", torch.empty(dim, knots))
        self.register_buffer("target", torch.empty(dim, knots))
        self._bucket_cache: tuple[tuple[int, int, str], KnotIndex] | None = None
        self.copy_from(None)

    def _buckets(self) -> KnotIndex:
        """The lookup of the current source knots, rebuilt whenever they change (fit, load,
        a move to another device)."""
        src = self.source
        key = (src.data_ptr(), src._version, str(src.device))
        if self._bucket_cache is None or self._bucket_cache[0] != key:
            # plain tensors even when first asked under inference mode (sampling): a later
            # caller that differentiates through the map (the "project" sampler) reads them too
            with torch.inference_mode(False), torch.no_grad():
                self._bucket_cache = (key, KnotIndex(src))
        return self._bucket_cache[1]

    @torch.no_grad()
    def fit(
        self,
        model_out: torch.Tensor,
        data: torch.Tensor | None = None,
        *,
        target: torch.Tensor | None = None,
        use: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """Knots from the model's outputs ``(n, dims)`` and either the data rows (``(n', dims)``)
        or another map's ``target`` knots. With ``use`` (``(n, dims)`` booleans, rows paired
        with ``data``) column ``j`` is fitted on the rows where ``use[:, j]`` only, and a
        column with under 2 such rows keeps the identity. Returns the mean and largest absolute
        gap between the two sets of quantiles (in encoded units: what the map moves)."""
        knots = self.source.shape[1]
        src, tgt = self.source.clone(), self.target.clone()
        if use is None:
            src = column_quantiles(model_out, knots)
            if target is None:
                if data is None:
                    raise ValueError("MarginalMap.fit needs data rows or target knots")
                target = column_quantiles(data, knots)
            tgt = target.to(src.device, torch.float32)
        else:
            if data is None:
                raise ValueError("MarginalMap.fit with use= needs the paired data rows")
            for j in range(model_out.shape[1]):
                rows = use[:, j]
                if int(rows.sum()) >= 2:
                    src[j] = column_quantiles(model_out[rows, j : j + 1], knots)[0]
                    tgt[j] = column_quantiles(data[rows, j : j + 1], knots)[0]
        # strictly increasing, so every segment has a slope (a flat run of equal outputs maps
        # to the start of its target range)
        src = torch.cummax(src + torch.arange(knots, device=src.device) * 1e-6, dim=1).values
        self.source.copy_(src.to(self.source.device))
        self.target.copy_(tgt.to(self.target.device))
        gap = (src - tgt).abs()
        return {"mean_gap": round(float(gap.mean()), 5), "max_gap": round(float(gap.max()), 5)}

    @property
    def is_identity(self) -> bool:
        """True until fitted (and after :meth:`copy_from` an identity map)."""
        return bool(torch.equal(self.source, self.target))

    @torch.no_grad()
    def copy_from(self, other: MarginalMap | None) -> None:
        """Take ``other``'s knots, or become the identity (both knot sets one grid over
        [-4, 4]) when it is None."""
        if other is None:
            grid = torch.linspace(-4.0, 4.0, self.source.shape[1], device=self.source.device)
            self.source.copy_(grid.expand_as(self.source))
            self.target.copy_(grid.expand_as(self.target))
        else:
            self.source.copy_(other.source)
            self.target.copy_(other.target)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xt = x.float().T.contiguous()  # (dims, n): one row of knots per dim
        src, tgt = self.source, self.target
        idx = self._buckets().index(xt).clamp(1, src.shape[1] - 1)
        x0, x1 = src.gather(1, idx - 1), src.gather(1, idx)
        f0, f1 = tgt.gather(1, idx - 1), tgt.gather(1, idx)
        t = ((xt - x0) / (x1 - x0)).clamp(0.0, 1.0)
        y = f0 + t * (f1 - f0)
        y = torch.where(xt < src[:, :1], tgt[:, :1] + (xt - src[:, :1]), y)
        y = torch.where(xt > src[:, -1:], tgt[:, -1:] + (xt - src[:, -1:]), y)
        return y.T

"""Numbers that are labels of a class, mapped onto the values that class holds.

Why: an integer column can be a label of a category (a flight number of an airline and route,
found by ``pfcore.labels``). The hybrid's student draws it as a smooth number given the row's
classes, so it lands on labels the class never holds. Here each such numeric dim gets a fixed
map per class of its key: the student's own draws of that class (after the column's marginal
map) are sent, quantile for quantile, onto the training rows' values of that class. It is a
step map (the training value at the draw's quantile, no interpolation between two of them), so
every mapped number decodes to a value the class holds, at that value's frequency in the class,
and the draws keep their order within the class, so the number's relation to the row's other
numbers is what the student learnt. Measured first on a 5-minute nyc_flights fit by doing the
same to its decoded rows: detection AUC 0.819 -> 0.763 with the key (carrier, origin, dest),
0.786 with the carrier alone; snapping each draw to the nearest value its class holds (no
frequencies) gave 0.793. As built, paired on the same fits (``benchmarks/label_maps.py``):
0.818 -> 0.766 and 0.813 -> 0.763, at 2% of the sampling rate.

A class with too few rows (training or drawn) to place quantiles is mapped by the key's
shorter prefix (the first column alone, then the first two, ...), and left as drawn when none
holds enough; a prefix whose classes hold under 1% of the rows is dropped (its search ran on
every row for almost none).

Numbers per class (``smooth``): the same maps, piecewise linear between the knots instead of
steps, move every other numeric dim onto the training rows' law *within* each class of the
one discrete column that explains it best (:func:`number_keys`). The global marginal maps
(``marginal.py``) give each number the data's marginal; a one-step student still draws the
number's law within a class off (california_housing's longitude by ``ocean_proximity``: pair
detection AUC 0.578 for the student; its flow teacher's worst pairs did not include it). In the
5-minute fits of ``benchmarks/fidelity.py`` (three seeds against the default before): detection
AUC california_housing 0.627 -> 0.586, credit_default 0.682 -> 0.645, diamonds 0.685 -> 0.669,
nyc_flights 0.696 -> 0.683; sampling california_housing at 0.81 of the rate without them
(96 ms per 100k rows for 9 dims, mostly the float64 search). Outside a class's outer
knots the map shifts by the outer offset (tails keep the student's shape); a class needs
``MIN_SMOOTH_ROWS`` rows on both sides.

Fitted once after the marginal maps on the model's own rows and stored with the weights; the
classes are found at fit, so the buffers take their shapes from the saved file.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "ClassMaps",
    "CLASS_KNOTS",
    "MIN_CLASS_ROWS",
    "MIN_SMOOTH_ROWS",
    "class_shares",
    "number_keys",
]

#: Quantile levels per class.
CLASS_KNOTS = 128
#: Rows a class needs, among the training rows and among the drawn ones, to be mapped.
MIN_CLASS_ROWS = 10
#: The same for a smooth map (a number's law within a class): its 128 quantiles interpolate
#: between rows, so a class of a few rows would be mapped onto those rows' values.
MIN_SMOOTH_ROWS = 50
#: A level whose fitted classes hold under this share of the training rows is dropped.
MIN_COVER = 0.01
#: Spacing between classes on the line where one search finds every row's knot.
_SPAN = 1024.0
#: Up to this many key classes (the product of its columns' class counts) a row finds its
#: class by a lookup table, beyond it by a search.
LOOKUP_MAX = 1 << 20


def _prefixes(columns: list[int]) -> list[list[int]]:
    """The key's prefixes, shortest first: the levels a dim is mapped by."""
    return [columns[: p + 1] for p in range(len(columns))]


class _Level(nn.Module):
    """One key prefix of one numeric dim: knots for each class (its slots' mixed-radix number)
    that the training rows and the drawn rows both hold often enough. The classes are found
    at fit, so the buffers take the saved shapes when loaded."""

    def __init__(self, widths: Sequence[int], knots: int, smooth: bool = False) -> None:
        super().__init__()
        self.widths = [int(w) for w in widths]
        self.knots = int(knots)
        self.smooth = bool(smooth)
        self.min_rows = MIN_SMOOTH_ROWS if smooth else MIN_CLASS_ROWS
        self.register_buffer("codes", torch.zeros(0, dtype=torch.long))
        self.register_buffer("source", torch.zeros(0, knots, dtype=torch.float64))
        self.register_buffer("target", torch.zeros(0, knots))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        for name in ("codes", "source", "target"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, dtype=getattr(self, name).dtype))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _line(self) -> torch.Tensor:
        """The source knots of class ``i`` shifted by ``i * _SPAN`` (encoded numbers stay far
        inside one span), flattened: sorted, so one search places every row within its class.
        Rebuilt when the knots change."""
        src = self.source
        key = (src.data_ptr(), src._version, str(src.device))
        cached = getattr(self, "_line_cache", None)
        if cached is None or cached[0] != key:
            shift = torch.arange(len(src), device=src.device, dtype=torch.float64)[:, None]
            cached = (key, (src + shift * _SPAN).flatten())
            self._line_cache = cached
        return cached[1]

    def _rows(self, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(each row's class position among ``codes``, whether its class is fitted): by a
        lookup table over every class number when there are at most ``LOOKUP_MAX`` (a binary
        search of 100k rows among ~700 classes cost 5 ms on one CPU thread), else by search."""
        n_cls = len(self.codes)
        total = 1
        for w in self.widths:
            total *= w
        if total <= LOOKUP_MAX:
            key = (self.codes.data_ptr(), self.codes._version, str(self.codes.device), n_cls)
            cached = getattr(self, "_lookup", None)
            if cached is None or cached[0] != key:
                table = torch.full((total,), -1, dtype=torch.long, device=self.codes.device)
                table[self.codes] = torch.arange(n_cls, device=self.codes.device)
                cached = (key, table)
                self._lookup = cached
            row = cached[1][cls]
            return row.clamp(min=0), row >= 0
        row = torch.searchsorted(self.codes, cls).clamp(max=n_cls - 1)
        return row, self.codes[row] == cls

    def classes(self, slots: torch.Tensor) -> torch.Tensor:
        """Class number of each row from its slots ``(n, len(widths))``."""
        cls = torch.zeros(len(slots), dtype=torch.long, device=slots.device)
        for j, w in enumerate(self.widths):
            cls = cls * w + slots[:, j]
        return cls

    def _levels(self, device: torch.device) -> torch.Tensor:
        return (torch.arange(self.knots, dtype=torch.float64, device=device) + 0.5) / self.knots

    def _quantiles(
        self, values: torch.Tensor, cls: torch.Tensor, floor: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(classes, their row counts, ``(classes, knots)`` quantiles) of ``values`` grouped by
        ``cls``, all classes at once: sorted by value, then (stably) by class. ``floor``: the
        order statistic at ``floor(level * n)`` (a target: always a value some row holds);
        else the nearest one to ``level * (n - 1)`` (a source)."""
        order = values.double().sort(stable=True).indices
        order = order[cls[order].sort(stable=True).indices]
        v, c = values.double()[order], cls[order]
        codes, counts = torch.unique_consecutive(c, return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        lv = self._levels(values.device)
        n = counts.double()[:, None]
        pos = (lv * n).floor().clamp(max=n - 1) if floor else (lv * (n - 1)).round()
        return codes, counts, v[starts[:, None] + pos.long()]

    def _drawn_knots(
        self, own: torch.Tensor, own_slots: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(classes drawn at least ``min_rows`` times, their quantiles of ``own``)."""
        codes, n, q = self._quantiles(own, self.classes(own_slots), floor=False)
        return codes[n >= self.min_rows], q[n >= self.min_rows]

    @staticmethod
    def _increasing(src: torch.Tensor) -> torch.Tensor:
        """Increasing rows (a run of equal draws splits evenly over its targets) at float32
        precision: the model is saved in float32, and a loaded model must map as the fitted
        one did."""
        step = torch.arange(src.shape[1], device=src.device, dtype=torch.float64) * 1e-9
        return torch.cummax(src + step, dim=1).values.float().double()

    @torch.no_grad()
    def fit(
        self,
        own: torch.Tensor,
        own_slots: torch.Tensor,
        data: torch.Tensor,
        data_slots: torch.Tensor,
    ) -> int:
        """Knots of every class with enough rows; returns how many classes were fitted."""
        o_codes, o_q = self._drawn_knots(own, own_slots)
        floor = not self.smooth  # a step map's targets are values some row holds
        d_codes, d_n, d_q = self._quantiles(data, self.classes(data_slots), floor=floor)
        enough = d_n >= self.min_rows
        d_codes, d_q = d_codes[enough], d_q[enough]
        both = torch.isin(d_codes, o_codes)
        if float(d_n[enough][both].sum()) < MIN_COVER * len(data):
            both[:] = False  # too few rows to pay the level's search on every sampled row
        self.codes = d_codes[both].contiguous()
        self.target = d_q[both].float().contiguous()
        self.source = self._increasing(o_q[torch.isin(o_codes, self.codes)]).contiguous()
        return len(self.codes)

    @torch.no_grad()
    def fit_sources(self, own: torch.Tensor, own_slots: torch.Tensor) -> int:
        """Keep the targets, take the source knots from another sampler's draws ``own`` (a
        class it draws too rarely is dropped); returns the fitted classes."""
        o_codes, o_q = self._drawn_knots(own, own_slots)
        keep = torch.isin(self.codes, o_codes)
        self.codes, self.target = self.codes[keep], self.target[keep]
        self.source = self._increasing(o_q[torch.isin(o_codes, self.codes)]).contiguous()
        return len(self.codes)

    def forward(self, x: torch.Tensor, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mapped ``x`` ``(n,)``, whether the row's class is fitted)."""
        n_cls = len(self.codes)
        if not n_cls:
            return x, torch.zeros(len(x), dtype=torch.bool, device=x.device)
        row, ok = self._rows(self.classes(slots))
        k = self.knots
        # every class's knots on one sorted line, class i shifted by i spans: one search
        xd = x.double().clamp(-_SPAN / 4, _SPAN / 4)
        idx = torch.searchsorted(self._line(), xd + row.double() * _SPAN)
        base = row * k
        idx = torch.minimum(torch.maximum(idx, base + 1), base + k - 1)
        src = self.source.flatten()
        tgt = self.target.flatten()
        if self.smooth:  # linear between the knots, shifted by the outer offset beyond them
            x0, x1 = src[idx - 1], src[idx]
            gap = x1 - x0  # 0 where float32 rounding joined two knots
            t = torch.where(gap > 0, (xd - x0) / gap.clamp_min(1e-300), 0.0).clamp(0.0, 1.0)
            y = tgt[idx - 1].double() + t * (tgt[idx] - tgt[idx - 1]).double()
            lo, hi = base, base + k - 1
            y = torch.where(xd < src[lo], xd + (tgt[lo].double() - src[lo]), y)
            y = torch.where(xd > src[hi], xd + (tgt[hi].double() - src[hi]), y)
            return y.to(x.dtype), ok
        nearer_upper = (xd - src[idx - 1]) > (src[idx] - xd)
        y = tgt[torch.where(nearer_upper, idx, idx - 1)]
        return y.to(x.dtype), ok


class ClassMaps(nn.Module):
    """Per numeric dim a step map (``smooth``: a piecewise linear one) per class of its key
    (module doc). ``specs``: one ``(numeric dim, [(discrete column index, its width), ...])``
    per mapped dim, the key's columns in the order the key was chosen."""

    def __init__(
        self,
        specs: Sequence[tuple[int, Sequence[tuple[int, int]]]],
        knots: int = CLASS_KNOTS,
        smooth: bool = False,
    ) -> None:
        super().__init__()
        self.dims = [int(d) for d, _ in specs]
        self.columns = [[int(c) for c, _ in key] for _, key in specs]
        self.levels = nn.ModuleList(
            nn.ModuleList(
                _Level([w for _, w in key[: p + 1]], knots, smooth) for p in range(len(key))
            )
            for _, key in specs
        )

    @torch.no_grad()
    def fit(
        self,
        own: torch.Tensor,
        own_slots: torch.Tensor,
        data: torch.Tensor,
        data_slots: torch.Tensor,
    ) -> dict[str, list[int]]:
        """From the model's numbers ``own`` ``(n, n_num)`` (after its marginal maps) with the
        slot of every discrete column ``own_slots`` ``(n, K)``, and the training rows' encoded
        numbers and slots. Returns the fitted classes per dim and key prefix."""
        out: dict[str, list[int]] = {}
        for dim, cols, levels in zip(self.dims, self.columns, self.levels, strict=True):
            out[str(dim)] = [
                lv.fit(own[:, dim], own_slots[:, key], data[:, dim], data_slots[:, key])
                for key, lv in zip(_prefixes(cols), levels, strict=True)
            ]
        return out

    @torch.no_grad()
    def fit_sources(self, own: torch.Tensor, own_slots: torch.Tensor) -> dict[str, list[int]]:
        """The same targets for another sampler of the same model (the flow teacher), source
        knots from its own draws ``own`` ``(n, n_num)``."""
        return {
            str(dim): [
                lv.fit_sources(own[:, dim], own_slots[:, key])
                for key, lv in zip(_prefixes(cols), levels, strict=True)
            ]
            for dim, cols, levels in zip(self.dims, self.columns, self.levels, strict=True)
        }

    def forward(self, x: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """``x`` ``(n, n_num)`` with each mapped dim moved by the finest fitted level of its
        row's class; ``slots`` ``(n, K)``: every discrete column's slot."""
        if not self.dims:
            return x
        x = x.clone()
        for dim, cols, levels in zip(self.dims, self.columns, self.levels, strict=True):
            # finest level first; a coarser one only for the rows no finer one maps
            todo: torch.Tensor | None = None  # None: every row
            keys = _prefixes(cols)
            for key, lv in zip(reversed(keys), reversed(levels), strict=True):
                if not len(lv.codes):
                    continue
                if todo is None:
                    y, ok = lv(x[:, dim], slots[:, key])
                    x[:, dim] = torch.where(ok, y, x[:, dim])
                    todo = (~ok).nonzero().flatten()
                    continue
                if not len(todo):
                    break
                y, ok = lv(x[todo, dim], slots[:, key].index_select(0, todo))
                x[todo[ok], dim] = y[ok]
                todo = todo[~ok]
        return x


def class_shares(data: torch.Tensor, data_slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each column of ``data`` ``(n, m)``: the largest share of its variance that the
    classes of one discrete column of ``data_slots`` ``(n, K)`` explain (the between-class
    share), and that column's index (-1 where none explains any). Classes of fewer than
    ``MIN_SMOOTH_ROWS`` rows are pooled into one: a column of thousands of rare classes, a
    tail number, would otherwise explain everything by fitting each row."""
    v = data.double()
    best = torch.zeros(v.shape[1], dtype=torch.float64, device=v.device)
    which = torch.full((v.shape[1],), -1, dtype=torch.long, device=v.device)
    if not data_slots.shape[1] or not len(v):
        return best, which
    mean = v.mean(dim=0)
    total = ((v - mean) ** 2).sum(dim=0)
    for k in range(data_slots.shape[1]):
        s = data_slots[:, k]
        counts = torch.bincount(s)
        s = torch.where(counts[s] >= MIN_SMOOTH_ROWS, s, torch.full_like(s, len(counts)))
        n = torch.bincount(s).double()
        sums = torch.zeros(len(n), v.shape[1], dtype=torch.float64, device=v.device)
        sums.index_add_(0, s, v)
        keep = n > 0
        means = sums[keep] / n[keep, None]
        between = (n[keep, None] * (means - mean) ** 2).sum(dim=0)
        share = between / total.clamp_min(1e-12)
        better = share > best
        best, which = torch.where(better, share, best), torch.where(better, k, which)
    return best, which


def number_keys(
    data: torch.Tensor, data_slots: torch.Tensor, skip: Sequence[int] = ()
) -> dict[int, int]:
    """For each numeric dim of the training rows' encoded numbers ``data`` ``(n, n_num)`` (not
    in ``skip``), the discrete column (index into ``data_slots`` ``(n, K)``) whose classes
    explain most of its variance (:func:`class_shares`). Dims no column explains (every share
    0) get none."""
    _best, which = class_shares(data, data_slots)
    return {j: int(which[j]) for j in range(data.shape[1]) if j not in skip and which[j] >= 0}

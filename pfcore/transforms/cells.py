"""Latent cells: a k-means cell of a group of related numbers, one more class for the model.

Why: a model that draws numbers from noise through smooth networks blurs structure finer than
it can resolve in its training time. california_housing's house values change from one
neighbourhood to the next: a boosted regressor trained on the real rows' longitude and
latitude alone predicts the holdout's values with R^2 0.731, trained on the default model's
rows 0.481 (its flow teacher's 0.508), so TSTR stayed at 0.780 against 0.833. Diamonds'
carat, length, width and depth lie on a thin curve that the model widens (the real
``log(y / x)`` lies within +-0.02 on 98% of the rows, the model's +-0.03; carat against the
volume +-0.05, the model's +-0.14).

A cell turns that fine structure into a class: the encoded numbers of a group of columns that
move together are cut into ``k`` k-means cells, and the cell of each training row is added to
the encoded matrix as one more one-hot block (``Cells``; nothing decodes it: the transformer
drops it). The discrete part of the model then draws a row's cell before its numbers, the
numbers are drawn given it, and the per-class number maps (``models.class_maps``) give each
number the training rows' law within its cell. Groups are the columns whose encoded values
correlate by at least ``MIN_GROUP_CORRELATION`` (average linkage), so one cell follows one
relation. In 5-minute fits (three seeds, detection AUC of the default before -> with cells):
california_housing 0.586 -> 0.555 (cells of the coordinates and of rooms, population and
households; TSTR 0.780 -> 0.788), diamonds 0.669 -> 0.572 (carat, price, length, width),
credit_default 0.645 -> 0.614 (two groups of bills); nyc_flights has none (its correlated
group, distance and air time, is 89% explained by the destination: ``MAX_EXPLAINED``), and a
cell of it cost 0.02 there. In a prototype (the cell as a hidden column of the table, single
fits), one cell over all nine numbers of
california_housing scored 0.606, the coordinates' cell alone 0.542; at a correlation of 0.6 a
third, weaker group (bedrooms with income) took Quality from 0.980 to 0.974.

Why at most 32 cells: the one-step student has to learn the numbers' map given each cell, and
the more cells the further it falls behind its flow teacher in the same seconds (kc_house's
distillation loss 0.139 with 64 cells against 0.112 without, after as many steps). Single fits
with 128 cells (seed 0): the student scored california_housing 0.572, diamonds 0.615,
credit_default 0.646 (its teacher 0.535, 0.587, 0.614); three fits with 32 against 64:
california_housing 0.556 against 0.555, diamonds 0.574 against 0.572, credit_default 0.609
against 0.614, and kc_house (house sales, never tuned on; its one cell of lot sizes made the
student worse than no cell, 0.611) 0.620 against 0.637, its gap to the teacher 0.031 against
0.053; fewer cells to draw also sample faster (california_housing 127k against 113k rows/s).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Cells", "CELL_PREFIX", "MAX_EXPLAINED", "MIN_GROUP_CORRELATION", "find_cells"]

#: Block label prefix of a cell (never a column name: those are checked at fit).
CELL_PREFIX = "__cell__."
#: Columns whose encoded values correlate at least this much (absolute Pearson on the encoded,
#: near-normal values; average linkage) share a cell.
MIN_GROUP_CORRELATION = 0.8
#: A group whose numbers a discrete column of the table already explains (the mean over its
#: numbers of the largest between-class variance share, ``models.class_maps.class_shares``)
#: at least this much gets no cell: the cell would repeat that column.
MAX_EXPLAINED = 0.75
#: Cells per group, and training rows per cell at least (fewer cells on a small table).
MAX_CELLS = 32
ROWS_PER_CELL = 200
#: Groups per table at most (the most correlated first): each is one more discrete column.
MAX_GROUPS = 4
#: Rows the cells are found on (the transformer encodes a seeded sample of this many).
FIT_ROWS = 20_000
#: Rows assigned per chunk (distances to every centre held at once).
CHUNK_ROWS = 65_536
#: Quantile levels (0 to 1) of each number within each cell, kept for conditional requests.
LAW_LEVELS = 65
_LEVELS = np.linspace(0.0, 1.0, LAW_LEVELS)
#: A given number's evidence for a cell (``Cells.log_evidence``) is the share of the cell's
#: training rows within this much of it (encoded units, near-normal scores): a point has no
#: share of a quantile law. On credit_default's seed rows (one saved fit, the cell drawn from
#: this evidence alone) half widths 0.05 and 0.15 scored within 0.001 detection AUC of each
#: other, 0.3 0.018 worse.
EVIDENCE_HALF_WIDTH = 0.1
#: Added to each share before its log: a value outside a cell's training range makes that
#: cell unlikely, not impossible (the laws hold 65 quantiles of a few hundred rows).
EVIDENCE_FLOOR = 1e-6
#: Values per number at which the window shares are tabled (``Cells._window_table``): a step of
#: a few thousandths of a unit on near-normal scores; on a test table's cells the table read
#: within 0.008 of the laws' own shares (1,024 values: within 0.012).
EVIDENCE_GRID = 4096
#: A number outside a group whose variance the group's cells explain at least this much (the
#: share of its variance between the cells' means) is a related number: each cell keeps its
#: law too, so a request that gives it weighs the cell by it (``Cells.log_evidence``). On
#: credit_default (three saved fits, two sampling seeds each) the seed rows, which give two
#: bills and some payments, scored 0.700 -> 0.688 detection AUC with the payments and the other
#: group's bills as evidence (shares 0.40-0.78 there); with the bills alone (numbers correlated
#: 0.8 with the group) 0.696, with every number correlated 0.4 or more (shares from 0.24) 0.699
#: against 0.689 on the first fit: each given number counts as independent of the others
#: within a cell, so weakly related ones add more noise than evidence.
EVIDENCE_MIN_SHARE = 0.4


@dataclass
class Cells:
    """One group's cells: ``dims`` are the encoded feature indices of its numbers (``columns``
    their names), ``centers`` ``(k, len(dims))`` the k-means centres; ``name`` labels the
    one-hot block. ``shares`` ``(k,)`` and ``quantiles`` ``(k, len(dims), LAW_LEVELS)``: each
    cell's share of the fit rows and its numbers' quantiles there (None when saved before they
    were kept), so a request for a range of one of its numbers draws the cell and the number
    together from the training rows' law (:meth:`range_weights`, :meth:`draw_within`).
    ``related`` are the feature indices of numbers outside the group that the cells explain
    (``EVIDENCE_MIN_SHARE``) and ``related_quantiles`` ``(k, len(related), LAW_LEVELS)`` their
    quantiles per cell: evidence only, never drawn from or assigned by."""

    name: str
    columns: list[str]
    dims: list[int]
    centers: np.ndarray
    shares: np.ndarray | None = None
    quantiles: np.ndarray | None = None
    related: list[int] = field(default_factory=list)
    related_quantiles: np.ndarray | None = None
    #: per dim, :meth:`log_evidence`'s grid of values and each cell's window share on it
    _windows: dict[int, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def width(self) -> int:
        return int(self.centers.shape[0])

    @property
    def law_dims(self) -> list[int]:
        """The feature indices whose law per cell this keeps: its own numbers, then the
        related ones (none without the laws)."""
        if self.quantiles is None:
            return []
        return [*self.dims, *(self.related if self.related_quantiles is not None else [])]

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Each row's nearest centre (int64) from the encoded rows ``x`` ``(n, n_features)``."""
        c = self.centers.astype(np.float64)
        c2 = (c * c).sum(1)
        out = np.empty(len(x), dtype=np.int64)
        for a in range(0, len(x), CHUNK_ROWS):
            v = x[a : a + CHUNK_ROWS, self.dims].astype(np.float64)
            d = c2[None, :] - 2.0 * v @ c.T  # |v|^2 is the same for every centre
            out[a : a + CHUNK_ROWS] = d.argmin(1)
        return out

    def range_weights(self, bounds: dict[int, tuple[float, float]]) -> np.ndarray | None:
        """Each cell's probability ``(k,)`` of holding a fit row whose encoded numbers lie in
        ``bounds`` (feature index -> encoded ``(low, high)``, for some of this cell's dims):
        the cell's share times, per bounded number, the share of its rows inside (numbers
        taken as independent within a cell, which is small). None without the laws or when no
        cell holds any such row."""
        inside = self.range_inside(bounds)
        if inside is None or self.shares is None:
            return None
        w = self.shares.astype(np.float64) * inside
        total = w.sum()
        return None if total <= 0 else w / total

    def range_inside(self, bounds: dict[int, tuple[float, float]]) -> np.ndarray | None:
        """Each cell's share ``(k,)`` of its fit rows inside ``bounds`` (as
        :meth:`range_weights`: numbers taken as independent within a cell). None without the
        laws."""
        if self.shares is None or self.quantiles is None:
            return None
        inside = np.ones(self.width)
        for dim, (lo, hi) in bounds.items():
            inside *= _shares_between(self._law(dim), lo, hi)
        return inside

    def log_evidence(self, known: np.ndarray, given: list[int]) -> np.ndarray | None:
        """Per row, the log-probability ``(n, k)`` (float32) under each cell's law of the
        encoded numbers ``known[:, dim]`` for ``dim`` in ``given`` (some of :attr:`law_dims`):
        the cell's training rows' share within ``EVIDENCE_HALF_WIDTH`` of the value, numbers
        taken as independent within a cell. None without the laws.

        Why: seed rows that give some of a cell's numbers leave the cell to the conditional
        sampler, whose any-order network reads a given number as one raw input among many and,
        after the seconds a fit gives it, guesses the cell loosely; credit_default's seed rows
        (two of four bills given) then drew bills beside them whose ratio to the given ones had
        quartiles 0.57-1.10, the real rows' 0.79-1.03. Added to that network's logits this
        evidence pins the cell to where the given numbers lie (``AnyOrderDiscrete.sample``).
        Related numbers count the same way: a cell none of whose own numbers a request gives is
        still weighed by the related ones it gives."""
        if self.quantiles is None or not given:
            return None
        out = np.zeros((len(known), self.width), dtype=np.float32)
        for dim in given:
            grid, table = self._window_table(dim)
            step = grid[1] - grid[0]
            pos = np.clip((known[:, dim].astype(np.float64) - grid[0]) / step, 0, len(grid) - 1)
            i = np.minimum(pos.astype(np.int64), len(grid) - 2)
            f = (pos - i).astype(np.float32)[:, None]
            out += np.log(table[i] + f * (table[i + 1] - table[i]) + EVIDENCE_FLOOR)
        return out

    def _window_table(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(grid ``(EVIDENCE_GRID,)``, shares ``(EVIDENCE_GRID, k)`` float32): each cell's
        share of training rows within ``EVIDENCE_HALF_WIDTH`` of each grid value, the grid
        reaching that far past every cell's range (zero shares at both ends). Read by linear
        interpolation: on 100k credit_default seed rows (two bills given, 32 cells) a
        ``np.interp`` per cell took 0.20 s of a 2.5 s conditional sample."""
        if dim not in self._windows:
            q = self._law(dim)
            h = EVIDENCE_HALF_WIDTH
            grid = np.linspace(q.min() - 2 * h, q.max() + 2 * h, EVIDENCE_GRID)
            table = _shares_between(q, grid - h, grid + h).T
            self._windows[dim] = (grid, table.astype(np.float32))
        return self._windows[dim]

    def draw_within(
        self, cells: np.ndarray, dim: int, lo: float, hi: float, u: np.ndarray
    ) -> np.ndarray:
        """The encoded number ``dim`` of rows in ``cells`` ``(n,)``, drawn from its law in each
        row's cell cut to ``[lo, hi]`` by inverse CDF from uniforms ``u`` ``(n,)``."""
        q = self._law(dim)
        out = np.empty(len(cells), dtype=np.float64)
        for c in np.unique(cells):
            rows = np.flatnonzero(cells == c)
            a, b = np.interp(lo, q[c], _LEVELS), np.interp(hi, q[c], _LEVELS)
            out[rows] = np.interp(a + u[rows] * (b - a), _LEVELS, q[c])
        return np.clip(out, lo, hi)

    def _law(self, dim: int) -> np.ndarray:
        """The quantiles ``(k, LAW_LEVELS)`` of feature ``dim`` (one of :attr:`law_dims`) per
        cell."""
        assert self.quantiles is not None
        if dim in self.dims:
            return self.quantiles[:, self.dims.index(dim)].astype(np.float64)
        assert self.related_quantiles is not None
        return self.related_quantiles[:, self.related.index(dim)].astype(np.float64)

    def to_dict(self) -> dict:
        out = {"name": self.name, "columns": list(self.columns), "dims": list(self.dims)}
        if self.related and self.related_quantiles is not None:
            out["related"] = list(self.related)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """The tensors saved beside ``to_dict``."""
        out = {"centers": np.ascontiguousarray(self.centers)}
        if self.shares is not None and self.quantiles is not None:
            out["shares"] = np.ascontiguousarray(self.shares)
            out["quantiles"] = np.ascontiguousarray(self.quantiles)
            if self.related and self.related_quantiles is not None:
                out["related_quantiles"] = np.ascontiguousarray(self.related_quantiles)
        return out

    @classmethod
    def from_dict(cls, d: dict, arrays: dict[str, np.ndarray]) -> Cells:
        shares, quantiles = arrays.get("shares"), arrays.get("quantiles")
        related_q = arrays.get("related_quantiles")  # saved before related numbers: none
        return cls(
            str(d["name"]),
            [str(c) for c in d["columns"]],
            [int(i) for i in d["dims"]],
            np.asarray(arrays["centers"], dtype=np.float32),
            None if shares is None else np.asarray(shares, dtype=np.float32),
            None if quantiles is None else np.asarray(quantiles, dtype=np.float32),
            [int(i) for i in d.get("related", [])] if related_q is not None else [],
            None if related_q is None else np.asarray(related_q, dtype=np.float32),
        )


def _shares_between(q: np.ndarray, lo: float | np.ndarray, hi: float | np.ndarray) -> np.ndarray:
    """Each cell's share of its fit rows whose value lies between ``lo`` and ``hi`` (scalars
    or arrays of one shape), from the cells' quantiles ``q`` ``(k, LAW_LEVELS)`` of that
    number: ``(k,)`` or ``(k, *lo.shape)``."""
    return np.stack([np.interp(hi, qc, _LEVELS) - np.interp(lo, qc, _LEVELS) for qc in q])


def _groups(v: np.ndarray) -> list[list[int]]:
    """Indices of columns of ``v`` ``(n, m)`` grouped by correlation (groups of two or more,
    the most correlated first)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    sd = v.std(0)
    live = np.flatnonzero(sd > 1e-9)
    if len(live) < 2:
        return []
    r = np.abs(np.corrcoef(v[:, live].T))
    r = np.nan_to_num(r, nan=0.0)
    dist = 1.0 - r
    np.fill_diagonal(dist, 0.0)
    labels = fcluster(
        linkage(squareform(dist, checks=False), method="average"),
        1.0 - MIN_GROUP_CORRELATION,
        criterion="distance",
    )
    groups = []
    for g in np.unique(labels):
        members = np.flatnonzero(labels == g)
        if len(members) >= 2:
            sub = r[np.ix_(members, members)]
            strength = (sub.sum() - len(members)) / (len(members) * (len(members) - 1))
            groups.append((strength, [int(live[i]) for i in members]))
    groups.sort(key=lambda t: -t[0])
    return [g for _, g in groups[:MAX_GROUPS]]


def find_cells(
    x: np.ndarray,
    numeric: list[tuple[str, int]],
    seed: int,
    taken: set[str],
    classes: np.ndarray | None = None,
) -> list[Cells]:
    """Cells of the encoded rows ``x`` (the caller's sample of the fit rows, at most
    ``FIT_ROWS``: every row is clustered) over the numeric blocks ``numeric`` ((column,
    feature index) pairs). ``taken``: names the cells' labels must not collide with.
    ``classes`` ``(n, K)``: the slot of each discrete column in each row (a group they explain
    already gets no cell: ``MAX_EXPLAINED``)."""
    import torch
    from sklearn.cluster import KMeans

    from pfcore.models.class_maps import class_shares

    n = len(x)
    k = min(MAX_CELLS, n // ROWS_PER_CELL)
    if k < 2 or len(numeric) < 2:
        return []
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCE115]))
    dims = [d for _, d in numeric]
    v = x[:, dims].astype(np.float64)
    slots = None
    if classes is not None and classes.shape[1]:
        slots = torch.from_numpy(np.ascontiguousarray(classes, dtype=np.int64))
    out = []
    for members in _groups(v):
        if slots is not None:
            shares, _which = class_shares(torch.from_numpy(v[:, members]), slots)
            if float(shares.mean()) >= MAX_EXPLAINED:
                continue
        name = f"{CELL_PREFIX}{len(out)}"
        if name in taken:
            continue
        km = KMeans(n_clusters=k, n_init=3, random_state=int(rng.integers(2**31 - 1)))
        km.fit(v[:, members])
        labels = km.labels_
        related = [
            j
            for j, share in enumerate(_between_shares(v, labels, k))
            if j not in members and share >= EVIDENCE_MIN_SHARE
        ]
        out.append(
            Cells(
                name,
                [numeric[i][0] for i in members],
                [dims[i] for i in members],
                km.cluster_centers_.astype(np.float32),
                (np.bincount(labels, minlength=k) / len(labels)).astype(np.float32),
                _laws(v[:, members], labels, km.cluster_centers_),
                [dims[j] for j in related],
                _laws(v[:, related], labels, np.zeros((k, len(related)))) if related else None,
            )
        )
    return out


def _laws(v: np.ndarray, labels: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """Quantiles ``(k, m, LAW_LEVELS)`` float32 of each column of ``v`` ``(n, m)`` per cell;
    a cell without rows (k-means leaves none in practice) is a point at ``empty`` ``(k, m)``."""
    return np.stack(
        [
            np.quantile(v[labels == c], _LEVELS, axis=0).T
            if (labels == c).any()
            else np.repeat(empty[c][:, None], LAW_LEVELS, axis=1)
            for c in range(len(empty))
        ]
    ).astype(np.float32)


def _between_shares(v: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per column of ``v`` ``(n, m)``, the share of its variance between the cells' means."""
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    means = np.stack([np.bincount(labels, weights=col, minlength=k) for col in v.T], axis=1)
    means /= np.maximum(counts, 1.0)[:, None]
    return means[labels].var(axis=0) / np.maximum(v.var(axis=0), 1e-12)

"""Continuous, integer and datetime columns: an exact-at-the-knots quantile-to-normal map.

Why quantile-to-normal (not CTGAN's mode-specific normalisation): the push-forward models map
N(0, I) to the encoded rows, so a marginal that is already N(0, 1) leaves the model only the
dependence structure to learn, costs one feature per column (mode-specific normalisation needs
one-hot mode blocks too) and inverts in closed form — the modelling prototype reached quality
0.97-0.99 with it. Its known failure is the tails (modelling notes, trap 1), handled here:

* Knots are ~1000 evenly spaced order statistics **plus the exact ``tail`` smallest and largest
  values**, so the outermost segments each carry one row's mass instead of stretching a 0.1%
  bin across an outlier gap. Decode clamps to the outer knots: it never leaves [min, max].
* The map is piecewise linear in *normal-score* space (value <-> z); decode is one
  interpolation per column (no erf in the hot path), by the formula both decodes share
  (``canonical.interpolate``; the torch decode in ``torch_decode`` gives the same bits).
* Repeated values ("atoms": integers, zeros, prices on a grid) own their exact probability
  range [F(v-), F(v)]. Encode spreads them uniformly inside it (seeded), so the encoded marginal
  stays continuous; every z in that range decodes back to exactly v.
* Decode snaps to the column's grid (integer ``step`` / observed ``decimals``) and clips to the
  schema's bounds, so integers and datetimes round-trip exactly and floats up to their decimals.
* Value protection (``protect_extremes=k``; the synthesizer uses 5, like MOSTLY AI's engine):
  the clip bounds tighten to the (k+1)-th smallest and largest fitted values, so no synthetic row
  discloses one of a column's k most extreme real values (a single outlier such as a 31.8 mm
  diamond among 3-10 mm ones). Tail mass beyond the bound lands on it. It also keeps sdmetrics'
  per-table histogram bins (equal-width between each table's own min and max) from being
  stretched by one copied outlier: on diamonds that alone moved pair scores by 0.5.
  Fitted on a sample of a larger table, the bounds are the *table's* (k+1)-th most extreme
  values (``table=``, from ingest's ``stats.json``): the guarantee is about the table, and the
  sample's own 6th most extreme value, in a 1% sample about the table's 600th, would clip far
  more of the tail than protection needs. Decode still never leaves the sample's outer knots,
  so the range decoded is what a fit on the whole table allows, cut to the sample's support:
  never wider than the whole-table fit's.

Missing values: a width-2 onehot ``f"{col}.__missing__"`` block follows the numeric block; the
numeric slot of a missing row holds an N(0, 1) draw (keeps the block's marginal Gaussian; the
model learns to ignore it when the indicator says missing). Decode writes null there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import ndtri

from pfcore.errors import InputError
from pfcore.schema import ColumnSchema, is_temporal, temporal_storage
from pfcore.tablestats import ColumnStats
from pfcore.transforms.base import ColumnTransform, arrow_values, onehot
from pfcore.transforms.canonical import clip, interpolate, snap

N_QUANTILES = 1000
TAIL_KNOTS = 50
#: Atoms are spread over the middle 98% of their probability range so float32 rounding of the
#: encoded value can never push it into a neighbouring segment.
ATOM_MARGIN = 0.01
#: Fit on at most this many values (seeded subsample) — sorting is the fit's only O(n log n).
MAX_FIT_VALUES = 2_000_000
#: Cap on knots added by the exactness repair (keeps state small when exactness is impossible).
MAX_KNOTS = 20_000


class QuantileNormal:
    """Piecewise-linear map between values (float64, relative to ``offset``) and normal scores."""

    def __init__(
        self,
        v_pts: np.ndarray,
        z_pts: np.ndarray,
        knots: np.ndarray,
        u_lo: np.ndarray,
        u_hi: np.ndarray,
        atom: np.ndarray,
        eps: float,
    ) -> None:
        self.v_pts, self.z_pts = v_pts, z_pts
        self.knots, self.u_lo, self.u_hi, self.atom = knots, u_lo, u_hi, atom
        self.eps = eps

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        *,
        n_quantiles: int = N_QUANTILES,
        tail: int = TAIL_KNOTS,
        extra_knots: np.ndarray | None = None,
        sorted_x: np.ndarray | None = None,
    ) -> QuantileNormal:
        """``extra_knots``: values that must be knots (exactness repair, see NumericTransform)."""
        xs = np.sort(np.asarray(x, dtype=np.float64)) if sorted_x is None else sorted_x
        n = xs.size
        if n == 0:
            xs, n = np.zeros(1), 1
        k = min(tail, n)
        ranks = np.unique(
            np.concatenate(
                [
                    np.arange(k),
                    n - 1 - np.arange(k),
                    np.rint(np.linspace(0, n - 1, min(n_quantiles, n))).astype(np.int64),
                ]
            )
        )
        knots = xs[ranks]
        if extra_knots is not None and extra_knots.size:
            knots = np.concatenate([knots, extra_knots])
        knots = np.unique(knots)
        left = np.searchsorted(xs, knots, "left")
        right = np.searchsorted(xs, knots, "right")
        atom = (right - left) >= 2
        u_lo, u_hi = left / n, right / n
        eps = 0.5 / n
        # A unique value is an interpolation point at its mid-rank; an atom spans [u_lo, u_hi].
        u_a = np.where(atom, u_lo, (u_lo + u_hi) / 2)
        u_b = np.where(atom, u_hi, (u_lo + u_hi) / 2)
        v_pts = np.repeat(knots, 2)
        u_pts = np.empty(2 * knots.size)
        u_pts[0::2], u_pts[1::2] = u_a, u_b
        # float32-representable knots: the encoded matrix is float32, so a value sitting on a knot
        # survives the cast exactly (matters where outer segments are steep).
        z_pts = ndtri(np.clip(u_pts, eps, 1 - eps)).astype(np.float32).astype(np.float64)
        return cls(v_pts, z_pts, knots, u_lo, u_hi, atom, eps)

    def encode(self, x: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """rng None: atoms go to the middle of their range (deterministic, for fit-time checks)."""
        z = np.interp(x, self.v_pts, self.z_pts)
        idx = np.minimum(np.searchsorted(self.knots, x, "left"), self.knots.size - 1)
        hit = (self.knots[idx] == x) & self.atom[idx]
        if hit.any():
            j = idx[hit]
            r = 0.5 if rng is None else ATOM_MARGIN + (1 - 2 * ATOM_MARGIN) * rng.random(j.size)
            u = self.u_lo[j] + r * (self.u_hi[j] - self.u_lo[j])
            z[hit] = ndtri(np.clip(u, self.eps, 1 - self.eps))
        return z

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Values of normal scores ``z``: :func:`canonical.interpolate` on the segment that holds
        each clipped z (the last knot <= z), the formula the torch decode uses too.

        Finding the segment is the generation hot path: np.searchsorted's binary search over
        ~2k knots is cache-unfriendly, so a uniform lookup table over [z_min, z_max] gives each
        z a starting segment and a few vectorised steps move it to the exact one (~3x faster).
        """
        zc = np.clip(z, self.z_pts[0], self.z_pts[-1])
        return interpolate(zc, self.segments(zc), self.z_pts, self.v_pts)

    def segments(self, zc: np.ndarray) -> np.ndarray:
        """Index j of the last knot with ``z_pts[j] <= zc``, at most ``len(z_pts) - 2``: exactly
        ``searchsorted(z_pts, zc, "right") - 1`` clipped to [0, len - 2]."""
        zp = self.z_pts
        last = zp.size - 1
        lut = self._lookup()
        if lut is None:
            j = np.searchsorted(zp, zc, side="right") - 1
            return np.clip(j, 0, max(last - 1, 0))
        lo, _hi, scale = self._lut_range
        b = ((zc - lo) * scale).astype(np.int64)
        np.clip(b, 0, lut.size - 1, out=b)
        j = lut[b]
        back = zp[j] > zc  # a table edge rounded above zc: step back (rare)
        while back.any():
            j[back] -= 1
            back = (j > 0) & (zp[j] > zc)
        todo = None
        while True:  # advance to the last knot <= z (1-2 passes in practice)
            if todo is None:
                nxt = np.minimum(j + 1, last)
                adv = (zp[nxt] <= zc) & (nxt > j)
                if not adv.any():
                    break
                j[adv] = nxt[adv]
                todo = np.flatnonzero(adv)
            else:
                nxt = np.minimum(j[todo] + 1, last)
                adv = (zp[nxt] <= zc[todo]) & (nxt > j[todo])
                if not adv.any():
                    break
                todo = todo[adv]
                j[todo] = nxt[adv]
        return np.minimum(j, last - 1)

    _LUT_SIZE = 1 << 16

    def _lookup(self) -> np.ndarray | None:
        if not hasattr(self, "_lut"):
            zp = self.z_pts
            if zp.size < 2 or not zp[-1] > zp[0]:
                self._lut = None
            else:
                lo, hi = float(zp[0]), float(zp[-1])
                edges = lo + (hi - lo) * np.arange(self._LUT_SIZE) / self._LUT_SIZE
                self._lut = np.maximum(np.searchsorted(zp, edges, side="right") - 1, 0).astype(
                    np.int64
                )
                self._lut_range = (lo, hi, self._LUT_SIZE / (hi - lo))
        return self._lut

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "v_pts": self.v_pts,
            "z_pts": self.z_pts,
            "knots": self.knots,
            "u_lo": self.u_lo,
            "u_hi": self.u_hi,
            "atom": self.atom.astype(np.uint8),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], eps: float) -> QuantileNormal:
        return cls(
            a["v_pts"], a["z_pts"], a["knots"], a["u_lo"], a["u_hi"], a["atom"].astype(bool), eps
        )


class NumericTransform(ColumnTransform):
    """continuous / integer / datetime column -> [numeric] (+ [missing onehot] if nullable)."""

    kind = "numeric"

    def __init__(
        self,
        column: ColumnSchema,
        qn: QuantileNormal,
        *,
        offset: int | float,
        grid: int | None,
        decimals: int | None,
        lo: float | None,
        hi: float | None,
        has_missing: bool,
    ) -> None:
        super().__init__(column)
        self.qn = qn
        self.offset = (
            offset  # values are modelled as (value - offset): keeps int64/ns exact in float64
        )
        self.grid = grid  # decode snaps to offset + k * grid (integers, datetimes)
        self.decimals = decimals  # floats: decode rounds to this many decimals
        self.lo, self.hi = lo, hi  # clip bounds, relative to offset
        self.has_missing = has_missing
        self.temporal = is_temporal(self.type)
        self.integral = pa.types.is_integer(self.type) or self.temporal

    # -- values <-> float64 relative to offset ------------------------------------------------
    @staticmethod
    def _raw(arr: pa.Array | pa.ChunkedArray, t: pa.DataType) -> pa.Array | pa.ChunkedArray:
        return arr.cast(temporal_storage(t)) if is_temporal(t) else arr

    def _to_float(self, arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
        raw = self._raw(arr, self.type)
        if self.integral:
            x = np.asarray(raw.cast(pa.int64()).fill_null(0), dtype=np.int64) - np.int64(
                self.offset
            )
            return x.astype(np.float64)
        return np.asarray(raw.cast(pa.float64()).fill_null(0.0), dtype=np.float64)

    @classmethod
    def fit(
        cls,
        column: ColumnSchema,
        arr: pa.ChunkedArray,
        rng: np.random.Generator,
        *,
        protect_extremes: int = 0,
        table: ColumnStats | None = None,
    ) -> NumericTransform:
        """``protect_extremes``: decode never goes beyond the k-th most extreme value per tail;
        ``table``: the whole table's statistics when ``arr`` is a sample of it (module doc)."""
        t = column.type
        valid = arr.drop_null()
        if pa.types.is_floating(t) and len(valid):
            if pc.any(pc.is_inf(valid)).as_py():
                raise InputError("contains infinite values", column=column.name)
            valid = valid.filter(pc.invert(pc.is_nan(valid)))
        integral = pa.types.is_integer(t) or is_temporal(t)
        offset: int | float = 0
        if integral and len(valid):
            offset = int(pc.min(cls._raw(valid, t)).as_py())
        elif integral and column.min is not None:
            offset = int(column.min)
        proto = cls(
            column,
            None,
            offset=offset,
            grid=None,
            decimals=None,
            lo=None,
            hi=None,
            has_missing=False,
        )  # type: ignore[arg-type]
        x = proto._to_float(valid) if len(valid) else np.zeros(0)
        x_lo, x_hi = (float(x.min()), float(x.max())) if x.size else (None, None)
        if x.size > MAX_FIT_VALUES:
            x = rng.choice(x, MAX_FIT_VALUES, replace=False)
        grid = None
        if integral:
            grid = int(column.step) if column.step else 1
            if x.size and grid > 1 and np.any(np.mod(x, grid) != 0):
                grid = 1  # fit data is off the schema's grid (e.g. overrides): plain integers
        decimals = None if integral else column.decimals
        if pa.types.is_decimal(t):
            decimals = t.scale if decimals is None else min(decimals, t.scale)
        xs = np.sort(x)
        qn = QuantileNormal.fit(x, sorted_x=xs)
        if grid is not None or decimals is not None:
            # Exactness repair: values that do not survive encode -> float32 -> decode -> snap
            # (steep segments between sparse values) become knots themselves, so the fit data
            # round-trips exactly. Rarely more than one pass; bounded at three.
            for _ in range(3):
                back = snap(
                    qn.decode(qn.encode(xs, None).astype(np.float32).astype(np.float64)),
                    grid,
                    decimals,
                )
                bad = back != snap(xs, grid, decimals)
                if not bad.any() or qn.knots.size + int(bad.sum()) > MAX_KNOTS:
                    break  # exact, or beyond float precision (e.g. ns over years): tolerance
                qn = QuantileNormal.fit(
                    x, sorted_x=xs, extra_knots=np.unique(np.concatenate([qn.knots, xs[bad]]))
                )
        lo = _bound(column.min, offset, x_lo)
        hi = _bound(column.max, offset, x_hi)
        protected = protected_bounds(xs, int(protect_extremes), table, offset)
        if protected is not None:
            lo = protected[0] if lo is None else max(lo, protected[0])
            hi = protected[1] if hi is None else min(hi, protected[1])
        has_missing = column.nullable or arr.null_count > 0
        return cls(
            column,
            qn,
            offset=offset,
            grid=grid,
            decimals=decimals,
            lo=lo,
            hi=hi,
            has_missing=has_missing,
        )

    def layout(self) -> list[tuple[str, str, int]]:
        out = [(self.column.name, "numeric", 1)]
        if self.has_missing:
            out.append((f"{self.column.name}.__missing__", "onehot", 2))
        return out

    def encode(self, arr: pa.ChunkedArray | pa.Array, rng: np.random.Generator) -> np.ndarray:
        n = len(arr)
        missing = np.asarray(arr.is_null(), dtype=bool)
        if pa.types.is_floating(self.type):
            missing |= np.asarray(pc.is_nan(arr).fill_null(True), dtype=bool)
        x = self._to_float(arr)
        if self.lo is not None or self.hi is not None:
            x = np.clip(
                x,
                self.lo if self.lo is not None else -np.inf,
                self.hi if self.hi is not None else np.inf,
            )
        z = self.qn.encode(x, rng)
        if missing.any():
            if not self.has_missing:
                raise InputError(
                    "has missing values but was fitted without any", column=self.column.name
                )
            z[missing] = rng.standard_normal(int(missing.sum()))
        out = np.empty((n, self.width), dtype=np.float32)
        out[:, 0] = z
        if self.has_missing:
            out[:, 1:3] = onehot(missing.astype(np.int64), 2)
        return out

    def decode(self, x: np.ndarray, n: int, rng: np.random.Generator, row_offset: int) -> pa.Array:
        values, missing = self.decode_values(x)
        return arrow_values(values, missing, self.type)

    def decode_values(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(int64 values for integers and datetimes, else float64; missing mask or None)."""
        v = snap(self.qn.decode(np.asarray(x[:, 0], dtype=np.float64)), self.grid, self.decimals)
        v = clip(v, self.lo, self.hi)
        missing = (x[:, 2] > x[:, 1]) if self.has_missing else None
        if self.integral:
            return v.astype(np.int64) + np.int64(self.offset), missing
        return v, missing

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "offset": self.offset,
            "grid": self.grid,
            "decimals": self.decimals,
            "lo": self.lo,
            "hi": self.hi,
            "has_missing": self.has_missing,
            "eps": self.qn.eps,
        }
        return meta, self.qn.arrays()

    @classmethod
    def from_state(
        cls, column: ColumnSchema, meta: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> NumericTransform:
        qn = QuantileNormal.from_arrays(arrays, float(meta["eps"]))
        return cls(
            column,
            qn,
            offset=meta["offset"],
            grid=meta["grid"],
            decimals=meta["decimals"],
            lo=meta["lo"],
            hi=meta["hi"],
            has_missing=bool(meta["has_missing"]),
        )


def protected_bounds(
    xs: np.ndarray, k: int, table: ColumnStats | None, offset: int | float
) -> tuple[float, float] | None:
    """Value protection's clip bounds relative to ``offset``: the (k+1)-th smallest and largest
    value of the whole table when ``table`` keeps that many, else of the sorted fit values
    ``xs``; None when k is 0 or there are no more than 4k values (too few to protect)."""
    if k <= 0:
        return None
    extreme = None if table is None else table.extreme(k)
    if extreme is not None:
        if table.valid <= 4 * k:
            return None
        # integers and temporals: exact int64 differences before the float
        return float(extreme[0] - offset), float(extreme[1] - offset)
    if xs.size > 4 * k:
        return float(xs[k]), float(xs[-1 - k])
    return None


def _bound(bound: float | None, offset: int | float, data_extreme: float | None) -> float | None:
    """A schema bound relative to ``offset``.

    Schema bounds are floats; for int64 nanosecond timestamps that float is off by up to a few
    hundred units, which would clip the true extreme value. When the bound is within float
    rounding of the fit data's own extreme, use that exact extreme instead.
    """
    if bound is None:
        return None
    rel = bound - offset
    if data_extreme is not None and abs(rel - data_extreme) <= abs(bound) * 1e-14 + 0.5:
        return data_extreme
    return rel

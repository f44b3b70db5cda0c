"""Columns built from other columns so that a rule holds in every decoded row, by construction.

Why in the transform: every model family and every sampling path (``Synthesizer.sample``, the
shard writer, the MLflow pyfunc) decodes through ``TableTransformer.decode``, so a rule enforced
here holds for all of them, for any seed and batch size, even for a badly trained model. No row
is rejected and no value is clamped onto a rule's boundary (the one construction that moves
a decoded value after the fact, an order no construction here can build, lives in
``pfcore.rules.repair`` and touches only the rows that break it):

* ``GapTransform`` (low <= high): the model sees the non-negative gap high - max(lows); decode
  adds the decoded parents back. The gap's decode never leaves its fitted range, whose minimum
  is the smallest training gap (>= 0, > 0 for a strict rule), so the sum is always on the right
  side. The column's own privacy bounds still apply; where the two disagree (a parent decoded
  beyond the child's bound) the rule wins. A child that holds its extreme on the far side
  (its minimum under an upper bound) on many rows keeps it exactly: those rows' gap is missing
  to the inner model and decode writes the extreme back (``_point_mass``).
* ``ComputedTransform`` (identity, clock arithmetic, calendar): not modelled; target =
  intercept + sum k * operand, rounded to the target's grid (integers, datetimes) or decimals --
  the tolerance the rule allows; or base + delta minutes on the 24-hour HHMM clock; or the local
  time of year/month/day/... columns in a time zone.
* ``ClockTransform`` (HHMM clock format): modelled in minutes since midnight, or in minutes
  after another clock column of the row (a duration), modulo a day.
* ``ConditionedTransform`` (missingness / sentinel): the column is modelled on its ordinary
  rows (special rows are encoded like missing values); decode writes null / the sentinel exactly
  where the trigger condition holds and the modelled value elsewhere. A sentinel lies outside
  the range of the ordinary values, so an ordinary decoded value never equals it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pfcore.rules.model import (
    DATE_PARTS,
    MINUTES_PER_DAY,
    Rule,
    _special,
    calendar_fields,
    calendar_value,
    clock_from_minutes,
    clock_minutes,
    far_extreme,
    fixed_targets,
    linear_value,
    month_span,
    numeric_values,
    triggered,
)
from pfcore.rules.valuesets import ValueSets
from pfcore.schema import ColumnSchema, is_temporal, type_from_string
from pfcore.transforms.base import ColumnTransform, arrow_values, onehot
from pfcore.transforms.canonical import snap_beyond
from pfcore.transforms.numeric import NumericTransform

__all__ = [
    "RuleTransform",
    "GapTransform",
    "ComputedTransform",
    "ClockTransform",
    "ConditionedTransform",
    "MonthDayTransform",
    "PinnedTransform",
    "DateSnapTransform",
    "TiedTransform",
    "FormulaTransform",
    "RULED",
]


class RuleTransform(ColumnTransform):
    """A column decoded after (and from) other columns; ``depends_on`` names them."""

    depends_on: list[str]

    def encode(self, arr: pa.ChunkedArray | pa.Array, rng: np.random.Generator) -> np.ndarray:
        raise TypeError("a rule-built column encodes from the whole table: use encode_from()")

    def decode(self, x: np.ndarray, n: int, rng: np.random.Generator, row_offset: int) -> pa.Array:
        raise TypeError("a rule-built column decodes from other columns: use decode_with()")

    def encode_from(self, table: pa.Table, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def decode_with(
        self,
        x: np.ndarray,
        n: int,
        rng: np.random.Generator,
        row_offset: int,
        resolved: dict[str, pa.Array],
    ) -> pa.Array:
        raise NotImplementedError


def _to_arrow(values: np.ndarray, present: np.ndarray | None, t: pa.DataType) -> pa.Array:
    mask = None if present is None or present.all() else ~present
    return arrow_values(values, mask, t)


def _integral(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or is_temporal(t)


def _inner_state(inner: NumericTransform) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    meta, arrays = inner.state()
    return {"inner_column": inner.column.to_dict(), "inner": meta}, arrays


def _inner_from(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> NumericTransform:
    col = ColumnSchema.from_dict(meta["inner_column"])
    return NumericTransform.from_state(col, meta["inner"], arrays)


class GapTransform(RuleTransform):
    """A column bounded by others (an inequality), modelled as its gap or ratio to them."""

    kind = "gap"

    def __init__(
        self,
        column: ColumnSchema,
        inner: NumericTransform,
        parents: list[str],
        direction: int,
        gap_min: float,
        lo: float | None,
        hi: float | None,
        decimals: int | None,
        mode: str = "diff",
        overwrite: dict[str, Any] | None = None,
        mass: float | None = None,
    ) -> None:
        super().__init__(column)
        self.inner, self.parents, self.direction = inner, list(parents), int(direction)
        self.gap_min, self.lo, self.hi, self.decimals = gap_min, lo, hi, decimals
        self.mode = mode
        # The column's extreme on the far side of its parents when it holds a point mass there
        # (``GAP_MASS_SHARE``): those rows' gap is "missing" to the inner model (its missing
        # indicator) and decode writes the value back (``_point_mass``).
        self.mass = mass
        # An implication written over the decoded value ({"trigger": [...], "when": [...],
        # "sentinel": v}): the column's extreme on the far side of its parents, so the
        # inequality still holds (rules.plan._over_gap).
        self.overwrite = overwrite
        self.depends_on = list(parents) + (list(overwrite["trigger"]) if overwrite else [])

    @classmethod
    def fit(
        cls,
        column: ColumnSchema,
        table: pa.Table,
        parents: list[str],
        direction: int,
        rng: np.random.Generator,
        parent_decimals: list[int | None],
        protect_extremes: int = 0,
        overwrite: dict[str, Any] | None = None,
    ) -> GapTransform:
        integral = _integral(column.type)
        v, present = numeric_values(table.column(column.name))
        base = _base(table, parents, direction)
        gap = (v - base) * direction
        decimals = None
        if not integral:
            decs = [column.decimals] + [
                0 if _integral(table.column(p).type) else d
                for p, d in zip(parents, parent_decimals, strict=True)
            ]
            decimals = None if any(d is None for d in decs) else max(decs)  # type: ignore[type-var]
            if decimals is not None:
                gap = np.round(gap, decimals)
        mode = _choose_mode(v[present], base[present], gap[present], len(parents), direction)
        rep, rep_integral, rep_decimals = gap, integral, decimals
        if mode == "ratio":
            rep = np.divide(v, base, out=np.ones(len(v)), where=base != 0)
            rep_integral, rep_decimals = False, None
        elif mode == "clamp":
            rep, rep_decimals = v, None if integral else column.decimals
        mass = _point_mass(v, present, direction) if mode == "diff" else None
        shown = present if mass is None else present & (v != mass)
        inner_col = ColumnSchema(
            name=column.name,
            kind="integer" if rep_integral else "continuous",
            arrow_type="int64" if rep_integral else "double",
            nullable=bool((~shown).any()),
            decimals=rep_decimals,
        )
        arr = pa.array(rep, mask=~shown, type=pa.int64() if rep_integral else pa.float64())
        inner = NumericTransform.fit(inner_col, pa.chunked_array([arr]), rng)
        g = gap[present]
        xs = np.sort(v[present])
        lo = hi = None
        if xs.size:
            k = int(protect_extremes)
            k = k if k > 0 and xs.size > 4 * k else 0
            lo, hi = xs[k].item(), xs[-1 - k].item()
        gap_min = g.min().item() if g.size else 0
        return cls(
            column, inner, parents, direction, gap_min, lo, hi, decimals, mode, overwrite, mass
        )

    def layout(self) -> list[tuple[str, str, int]]:
        return self.inner.layout()

    def encode_from(self, table: pa.Table, rng: np.random.Generator) -> np.ndarray:
        v, present = numeric_values(table.column(self.column.name))
        base = _base(table, self.parents, self.direction)
        if self.mode == "ratio":
            rep = np.divide(v, base, out=np.ones(len(v)), where=base != 0)
            return self.inner.encode(pa.array(rep, mask=~present, type=pa.float64()), rng)
        if self.mode == "clamp":
            t = pa.int64() if _integral(self.type) else pa.float64()
            return self.inner.encode(pa.array(v, mask=~present, type=t), rng)
        gap = (v - base) * self.direction
        if self.decimals is not None:
            gap = np.round(gap, self.decimals)
        t = pa.int64() if _integral(self.type) else pa.float64()
        shown = present if self.mass is None else present & (v != self.mass)
        return self.inner.encode(pa.array(gap, mask=~shown, type=t), rng)

    def decode_with(self, x, n, rng, row_offset, resolved):
        g, present = numeric_values(self.inner.decode(x, n, rng, row_offset))
        base = _base_arrays([resolved[p] for p in self.parents], self.direction)
        if self.mode == "ratio":
            value = base * g
            if _integral(self.type):
                value = np.rint(value).astype(np.int64)
        elif self.mode == "clamp":
            value = g
        else:
            value = base + self.direction * g
        floor = base + self.direction * self.gap_min  # the rule's own side: never crossed
        if self.lo is not None:
            value = np.clip(value, self.lo, self.hi)
        if self.decimals is not None:
            value, floor = np.round(value, self.decimals), np.round(floor, self.decimals)
        if self.mass is not None:  # a "missing" gap is the point mass (the column has no nulls)
            value = np.where(present, value, np.asarray(self.mass).astype(value.dtype))
            present = np.ones_like(present)
        value = np.maximum(value, floor) if self.direction > 0 else np.minimum(value, floor)
        value = self._on_grid(value, floor)
        if self.overwrite is not None:
            o = self.overwrite
            hit = triggered(resolved.__getitem__, o["trigger"], o["when"])
            value = np.where(hit, np.asarray(o["sentinel"]).astype(value.dtype), value)
            present = present | hit
        return _to_arrow(value, present, self.type)

    def _on_grid(self, value: Any, floor: Any) -> Any:
        """The column's own decimals, rounding away from its parents where rounding would
        cross the rule's side (both decodes). The gap's grid is the finest of the column's and
        its parents', and none when a parent has no fixed decimals: hippocorpus'
        ``timeSinceEvent`` (whole numbers) above ``logTimeSinceEvent`` came out with fractions
        on 45% of rows, which the gate counts invalid."""
        own = self.grid_decimals
        return value if own is None else snap_beyond(value, floor, own, self.direction)

    @property
    def grid_decimals(self) -> int | None:
        """The column's own decimals when decode snaps to them (a float column with a fixed,
        non-negative number of decimals), else None."""
        own = self.column.decimals
        return None if own is None or own < 0 or _integral(self.type) else int(own)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = _inner_state(self.inner)
        meta.update(
            parents=self.parents,
            direction=self.direction,
            gap_min=self.gap_min,
            lo=self.lo,
            hi=self.hi,
            decimals=self.decimals,
            mode=self.mode,
        )
        if self.overwrite is not None:
            meta["overwrite"] = self.overwrite
        if self.mass is not None:
            meta["mass"] = self.mass
        return meta, arrays

    @classmethod
    def from_state(cls, column, meta, arrays):
        return cls(
            column,
            _inner_from(meta, arrays),
            meta["parents"],
            meta["direction"],
            meta["gap_min"],
            meta["lo"],
            meta["hi"],
            meta["decimals"],
            meta.get("mode", "diff"),
            meta.get("overwrite"),
            meta.get("mass"),
        )


#: A gap's column whose extreme on the far side of its parents (its minimum under an upper
#: bound) holds at least this share of the rows keeps that value exactly (``_point_mass``).
GAP_MASS_SHARE = 0.05


def _point_mass(v: np.ndarray, present: np.ndarray, direction: int) -> float | None:
    """The column's extreme on the far side of its parents when at least ``GAP_MASS_SHARE`` of
    the rows hold it and none is null (the inner model's missing indicator then marks them).

    Why: a gap models ``parent - column``, so a column that is mostly 0 under an upper bound
    becomes a gap equal to its parent on those rows, which no model reproduces exactly: Ames
    house prices' screen porch area (0 on 92% of houses, built from ``ScreenPorch <=
    TotalBsmtSF``) came out 0 on 62% of sampled rows and between 0 and the smallest real area
    (60) on 12%. Writing the extreme keeps the inequality: a decoded parent stays in its
    training range, beyond that extreme. A ratio keeps a 0 by itself (0 / parent)."""
    if not present.all() or not v.size:
        return None
    extreme = far_extreme(v, direction)
    if float(np.mean(v == extreme)) < GAP_MASS_SHARE:
        return None
    return extreme.item()


#: Rows used to choose between modelling a gap and a ratio (a seeded-free prefix suffices).
MODE_ROWS = 20_000
#: An inequality that independent columns with the same values would break on fewer than
#: this share of rows is kept by clamping (``clamp``), not by modelling a gap: their ranges
#: all but set the order. Airbnb listings hold longitude (about 4.9) <= price and price <=
#: listing id on every row (chance of a break: under 1e-5); modelled as price - longitude the
#: longitude came out with column shape 0.80, as the price's tail plus a gap. Genuine rules
#: break by chance far more often: bedrooms <= rooms 0.055 (california_housing), air time <=
#: distance 0.043 (nyc_flights), a remodel year >= the build year 0.37, a basement's finished
#: areas <= its total 0.01-0.20 (Ames house prices).
CLAMP_CHANCE = 0.01
#: A difference whose interquartile range is this many times the column's own is clamped too:
#: the column's shape would drown in the gap's spread. Air-quality records hold absolute
#: humidity (0.2-2.2, -200 for a failed sensor) <= relative humidity (10-90, -200 likewise) on
#: every row; as RH minus a gap 25 times its spread, the humidity came out with column shape
#: 0.57 (a classifier told it apart on its own at AUC 0.94).
CLAMP_SPREAD = 4.0


def _chance_of_break(v: np.ndarray, base: np.ndarray, direction: int) -> float:
    """Share of (child, parent) pairs drawn independently, each from its own rows, that break
    child >= parent (``direction`` +1) or child <= parent (-1)."""
    b = np.sort(base)
    if direction > 0:  # child < parent
        below = np.searchsorted(b, v, side="right")
        return float(1.0 - below.mean() / b.size)
    return float(np.searchsorted(b, v, side="left").mean() / b.size)  # parent < child


def _choose_mode(
    v: np.ndarray, base: np.ndarray, gap: np.ndarray, n_parents: int, direction: int = 1
) -> str:
    """``diff`` (child - parent), ``ratio`` (child / parent) or ``clamp`` (the child itself,
    held to its side of the parent after decode). ``clamp`` when independent columns would
    keep the order on all but ``CLAMP_CHANCE`` of rows; otherwise whichever of diff and ratio
    depends less on the parent (Spearman), so the model learns the parent and a nearly
    independent second number.
    A duration is independent of its start (diff); bedrooms are a share of rooms (ratio: on
    california_housing the gap rooms - bedrooms has Spearman 0.99 with rooms). A ratio needs
    parents > 0 on every row and a child >= 0; with several parents it is taken to their max
    (child >= each) or min (child <= each), which keeps the rule by construction too. A
    difference far more spread than the column itself (``CLAMP_SPREAD``) is clamped instead."""
    if v.size < 10:
        return "diff"
    positive = base.min() > 0 and v.min() >= 0  # a ratio needs it on every row
    v, base, gap = v[:MODE_ROWS], base[:MODE_ROWS], gap[:MODE_ROWS]
    if _chance_of_break(v, base, direction) < CLAMP_CHANCE:
        return "clamp"
    if not positive:
        return "clamp" if _drowns(v, gap) else "diff"

    def rank(x: np.ndarray) -> np.ndarray:
        return np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64)

    def dependence(x: np.ndarray) -> float:
        c = np.corrcoef(rank(base), rank(x))[0, 1]
        return abs(float(c)) if np.isfinite(c) else 1.0

    if dependence(v / base) < dependence(gap):
        return "ratio"
    return "clamp" if _drowns(v, gap) else "diff"


def _drowns(v: np.ndarray, gap: np.ndarray) -> bool:
    """Whether the gap's interquartile range is over ``CLAMP_SPREAD`` times the column's own
    (a column constant on its middle half, such as one mostly 0, is never drowned: its
    point mass is ``_point_mass``'s case)."""
    q = np.percentile(v, [25, 75])
    g = np.percentile(gap, [25, 75])
    own = float(q[1] - q[0])
    return own > 0 and float(g[1] - g[0]) > CLAMP_SPREAD * own


def _base(table: pa.Table, parents: list[str], direction: int) -> np.ndarray:
    return _base_arrays([table.column(p) for p in parents], direction)


def _base_arrays(arrays: list[Any], direction: int) -> np.ndarray:
    vals = [numeric_values(a)[0] for a in arrays]
    out = vals[0]
    for v in vals[1:]:
        out = np.maximum(out, v) if direction > 0 else np.minimum(out, v)
    return out


class ComputedTransform(RuleTransform):
    """A column computed from others by ``formula``:

    * ``{"type": "linear", "operands", "coefficients", "intercept"}``: an identity;
    * ``{"type": "clock", "operands": [base, delta], "midnight"}``: HHMM clock arithmetic;
    * ``{"type": "calendar", "operands", "parts", "constants", "timezone"}``: the local time of
      calendar fields (``pfcore.rules.model.calendar_value``).

    ``inner`` (optional) models the column on rows where an operand is missing but the column
    is not (measured in training: e.g. an arrival time recorded without an arrival delay); a
    clock column's inner model works in minutes since midnight, so it too only emits valid
    clock times. Without ``inner`` the column is null exactly where an operand is.
    """

    kind = "computed"

    def __init__(
        self, column: ColumnSchema, formula: dict[str, Any], inner: NumericTransform | None = None
    ) -> None:
        super().__init__(column)
        self.formula, self.inner = dict(formula), inner
        self.depends_on = list(formula["operands"])

    @classmethod
    def fit(
        cls,
        column: ColumnSchema,
        table: pa.Table,
        formula: dict[str, Any],
        rng: np.random.Generator,
        *,
        with_inner: bool,
        protect_extremes: int = 0,
    ) -> ComputedTransform:
        inner = None
        if with_inner:
            inner_col, arr = _representation(column, table.column(column.name), formula)
            inner = NumericTransform.fit(inner_col, arr, rng, protect_extremes=protect_extremes)
        return cls(column, formula, inner)

    def layout(self) -> list[tuple[str, str, int]]:
        return [] if self.inner is None else self.inner.layout()

    def encode_from(self, table: pa.Table, rng: np.random.Generator) -> np.ndarray:
        if self.inner is None:
            return np.empty((table.num_rows, 0), dtype=np.float32)
        _, arr = _representation(self.column, table.column(self.column.name), self.formula)
        return self.inner.encode(arr, rng)

    def decode_with(self, x, n, rng, row_offset, resolved):
        f = self.formula
        ops = [numeric_values(resolved[c]) for c in f["operands"]]
        present = np.ones(n, dtype=bool)
        for _, p in ops:
            present &= p
        if f["type"] == "clock":
            (b, _), (d, _) = ops
            m = clock_minutes(b) + np.rint(d).astype(np.int64)
            value: np.ndarray = clock_from_minutes(m, int(f.get("midnight", 2400)))
        elif f["type"] == "calendar":
            fields = calendar_fields(f["parts"], [v for v, _ in ops], f.get("constants", {}), n)
            value = calendar_value(fields, f.get("timezone"), self.type.unit)[0]
        else:
            value = linear_value(f["coefficients"], f["intercept"], [v for v, _ in ops])
        if _integral(self.type):
            value = value if value.dtype == np.int64 else np.rint(value).astype(np.int64)
        else:
            value = value.astype(np.float64)
            if self.column.decimals is not None:
                value = np.round(value, int(self.column.decimals))
        if self.inner is not None and not present.all():
            own, own_present = numeric_values(self.inner.decode(x, n, rng, row_offset))
            if f["type"] == "clock":
                own = clock_from_minutes(own, int(f.get("midnight", 2400)))
            value = np.where(present, value, own.astype(value.dtype))
            present = present | own_present
        return _to_arrow(value, present, self.type)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta: dict[str, Any] = {"formula": self.formula}
        arrays: dict[str, np.ndarray] = {}
        if self.inner is not None:
            inner_meta, arrays = _inner_state(self.inner)
            meta.update(inner_meta)
        return meta, arrays

    @classmethod
    def from_state(cls, column, meta, arrays):
        inner = _inner_from(meta, arrays) if "inner" in meta else None
        return cls(column, meta["formula"], inner)


class ClockTransform(RuleTransform):
    """An HHMM clock column modelled in minutes since midnight: decode only emits valid times
    (a quantile map over HHMM values interpolates to 1163 between 1159 and 1200).

    ``base``: another clock column of the row (a departure for an arrival); the column is then
    modelled as the minutes after it, modulo a day, and decode adds the decoded base back.
    A duration is the variable a schedule is written in: on nyc_flights the scheduled arrival
    minus the scheduled departure varies by 7 minutes (median spread) within a route, while
    the model drawing the arrival as a time of day spread it by 80 minutes (its flow teacher
    37) and put 1% of arrivals before their departure. A row whose base is missing takes the
    modelled minutes as its time of day (``rules.plan._clock_bases`` picks a base only where it
    is present whenever the column is)."""

    kind = "clock"

    def __init__(
        self,
        column: ColumnSchema,
        inner: NumericTransform,
        midnight: int,
        base: str | None = None,
    ) -> None:
        super().__init__(column)
        self.inner, self.midnight, self.base = inner, int(midnight), base
        self.depends_on = [] if base is None else [base]

    @classmethod
    def fit(
        cls, column, table, midnight, rng, protect_extremes=0, base: str | None = None
    ) -> ClockTransform:
        inner_col, arr = _clock_representation(column, table, base)
        inner = NumericTransform.fit(inner_col, arr, rng, protect_extremes=protect_extremes)
        return cls(column, inner, midnight, base)

    def layout(self) -> list[tuple[str, str, int]]:
        return self.inner.layout()

    def encode_from(self, table: pa.Table, rng: np.random.Generator) -> np.ndarray:
        return self.inner.encode(_clock_representation(self.column, table, self.base)[1], rng)

    def decode_with(self, x, n, rng, row_offset, resolved):
        m, present = numeric_values(self.inner.decode(x, n, rng, row_offset))
        if self.base is not None:
            b, b_present = numeric_values(resolved[self.base])
            m = np.where(b_present, clock_minutes(np.rint(b).astype(np.int64)) + m, m)
        return _to_arrow(clock_from_minutes(m, self.midnight), present, self.type)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = _inner_state(self.inner)
        meta["midnight"] = self.midnight
        if self.base is not None:
            meta["base"] = self.base
        return meta, arrays

    @classmethod
    def from_state(cls, column, meta, arrays):
        return cls(column, _inner_from(meta, arrays), meta["midnight"], meta.get("base"))


def _clock_representation(
    column: ColumnSchema, table: pa.Table, base: str | None
) -> tuple[ColumnSchema, pa.ChunkedArray]:
    """The clock column as its inner model sees it: minutes since midnight, or minutes after
    ``base`` modulo a day where the base is present."""
    inner_col, arr = _representation(column, table.column(column.name), {"type": "clock"})
    if base is None:
        return inner_col, arr
    m, present = numeric_values(arr)
    b, b_present = numeric_values(table.column(base))
    bm = clock_minutes(np.rint(b).astype(np.int64))
    m = np.where(b_present, np.mod(m - bm, MINUTES_PER_DAY), m)
    return inner_col, pa.chunked_array([pa.array(m, mask=~present, type=pa.int64())])


def _representation(
    column: ColumnSchema, arr: pa.ChunkedArray, formula: dict[str, Any]
) -> tuple[ColumnSchema, pa.ChunkedArray]:
    """The column as its inner model sees it: clock times in minutes, anything else as is."""
    if formula.get("type") != "clock":
        return column, arr
    v, present = numeric_values(arr)
    m = clock_minutes(np.rint(v).astype(np.int64))
    inner_col = ColumnSchema(
        name=column.name, kind="integer", arrow_type="int64", nullable=bool((~present).any())
    )
    return inner_col, pa.chunked_array([pa.array(m, mask=~present, type=pa.int64())])


class ConditionedTransform(RuleTransform):
    """A column that is a sentinel (or null) exactly when its trigger says so: restored.

    ``implies``: the sentinel whenever any of its triggers (``trigger`` and ``when`` are then
    lists) says so, and an ordinary value (the sentinel included) elsewhere. The inner model
    then sees the column as it is (the triggered rows hold the sentinel, an ordinary value of
    the column) and decode writes the sentinel over the triggered rows: no missing indicator
    is added, which on credit_default's six payment columns (two extra dims each for rules on
    under 1% of rows) raised detection AUC from 0.687 to 0.711."""

    kind = "conditioned"

    def __init__(
        self,
        column: ColumnSchema,
        inner: NumericTransform,
        trigger: Any,
        special: dict[str, Any],
        when: Any,
        implies: bool = False,
    ) -> None:
        super().__init__(column)
        self.inner, self.trigger, self.special, self.when = inner, trigger, special, when
        self.implies = implies
        # (trigger columns, their states) as lists whichever the form: one way to read them
        self.triggers = (list(trigger), list(when)) if implies else ([trigger], [when])
        self.depends_on = self.triggers[0]

    def triggered(self, column: Any) -> np.ndarray:
        """Rows whose trigger says "special", from ``column(name)`` of the trigger columns."""
        return triggered(column, *self.triggers)

    def keeps(self, table: pa.Table, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Rows ``(n,)`` bool of ``table`` on which ``values`` written into this column keep
        its rule: the trigger does not say "special" there and, where the sentinel marks
        exactly the triggered rows, the value is not the sentinel."""
        ok = ~self.triggered(table.column)
        if not self.implies:
            ok &= ~_special(values, self.special)
        return ok

    @classmethod
    def fit(
        cls,
        column: ColumnSchema,
        table: pa.Table,
        trigger: Any,
        special: dict[str, Any],
        when: Any,
        rng: np.random.Generator,
        protect_extremes: int = 0,
        implies: bool = False,
    ) -> ConditionedTransform:
        if implies:
            arr = table.column(column.name)
            inner = NumericTransform.fit(column, arr, rng, protect_extremes=protect_extremes)
            return cls(column, inner, trigger, special, when, implies)
        arr = _ordinary(table.column(column.name), special)
        inner_col = ColumnSchema.from_dict({**column.to_dict(), "nullable": True})
        inner = NumericTransform.fit(inner_col, arr, rng, protect_extremes=protect_extremes)
        inner.has_missing = True
        return cls(column, inner, trigger, special, when, implies)

    def layout(self) -> list[tuple[str, str, int]]:
        return self.inner.layout()

    def encode_from(self, table: pa.Table, rng: np.random.Generator) -> np.ndarray:
        if self.implies:
            return self.inner.encode(table.column(self.column.name), rng)
        return self.inner.encode(_ordinary(table.column(self.column.name), self.special), rng)

    def decode_with(self, x, n, rng, row_offset, resolved):
        xx = np.array(x, dtype=np.float32, copy=True)
        if not self.implies:  # every row present: the trigger decides what is special
            xx[:, 1], xx[:, 2] = 1.0, -1.0
        values = self.inner.decode(xx, n, rng, row_offset)
        cond = pa.array(self.triggered(resolved.__getitem__))
        if self.special.get("null"):
            fill = pa.nulls(n, type=self.type)
        else:
            fill = pa.array([self.special["sentinel"]] * n).cast(self.type)
        import pyarrow.compute as pc

        return pc.if_else(cond, fill, values.cast(self.type))

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = _inner_state(self.inner)
        meta.update(trigger=self.trigger, special=self.special, when=self.when)
        if self.implies:
            meta["implies"] = True
        return meta, arrays

    @classmethod
    def from_state(cls, column, meta, arrays):
        inner = _inner_from(meta, arrays)
        return cls(
            column,
            inner,
            meta["trigger"],
            meta["special"],
            meta["when"],
            bool(meta.get("implies", False)),
        )


def _ordinary(arr: pa.ChunkedArray, special: dict[str, Any]) -> pa.ChunkedArray:
    """The column with its special rows (sentinel) turned into nulls."""
    if special.get("null"):
        return arr
    import pyarrow.compute as pc

    mask = pa.array(_special(arr, special))
    combined = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return pa.chunked_array([pc.if_else(mask, pa.nulls(len(combined), combined.type), combined)])


class MonthDayTransform(RuleTransform):
    """A day of the month modelled as its position within the month, (day - 0.5) / length,
    and decoded against the decoded year and month: every date exists (no February 30), and
    the real rows round-trip exactly. Used where a calendar rule builds a timestamp from the
    parts, which must then name a real date on every row."""

    kind = "month_day"

    def __init__(
        self, column: ColumnSchema, inner: NumericTransform, calendar: dict[str, Any]
    ) -> None:
        super().__init__(column)
        self.inner, self.calendar = inner, dict(calendar)
        self.depends_on = [v for v in self.calendar.values() if isinstance(v, str)]

    def _lengths(self, values: dict[str, np.ndarray], n: int) -> np.ndarray:
        ym = [values[v] if isinstance(v, str) else np.full(n, int(v), dtype=np.int64)
              for v in (self.calendar["year"], self.calendar["month"])]  # fmt: skip
        return month_span(ym[0], ym[1])[1]

    def _position(self, table: pa.Table) -> pa.ChunkedArray:
        day, present = numeric_values(table.column(self.column.name))
        parts = {v: numeric_values(table.column(v))[0] for v in self.depends_on}
        u = (day - 0.5) / self._lengths(parts, table.num_rows)
        return pa.chunked_array([pa.array(u, mask=~present, type=pa.float64())])

    @classmethod
    def fit(cls, column, table, calendar, rng, protect_extremes=0) -> MonthDayTransform:
        probe = cls(column, None, calendar)  # type: ignore[arg-type]
        inner_col = ColumnSchema(
            name=column.name,
            kind="continuous",
            arrow_type="double",
            nullable=bool(table.column(column.name).null_count),
        )
        arr = probe._position(table)
        inner = NumericTransform.fit(inner_col, arr, rng, protect_extremes=protect_extremes)
        return cls(column, inner, calendar)

    def layout(self) -> list[tuple[str, str, int]]:
        return self.inner.layout()

    def encode_from(self, table: pa.Table, rng: np.random.Generator) -> np.ndarray:
        return self.inner.encode(self._position(table), rng)

    def decode_with(self, x, n, rng, row_offset, resolved):
        u, present = numeric_values(self.inner.decode(x, n, rng, row_offset))
        parts = {v: numeric_values(resolved[v])[0] for v in self.depends_on}
        length = self._lengths(parts, n)
        day = np.clip(np.floor(u * length).astype(np.int64) + 1, 1, length)
        return _to_arrow(day, present, self.type)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = _inner_state(self.inner)
        meta["calendar"] = self.calendar
        return meta, arrays

    @classmethod
    def from_state(cls, column, meta, arrays):
        return cls(column, _inner_from(meta, arrays), meta["calendar"])


def _take(arr: Any, rows: np.ndarray) -> Any:
    """The ``rows`` of an Arrow array or chunked array."""
    return arr.take(pa.array(rows))


def _stored_int(value: Any, t: pa.DataType) -> int:
    """An Arrow scalar (or a plain value) of a date or timestamp type as its stored integer."""
    return int(numeric_values(pa.array([value], type=t))[0][0])


def _protected_range(inner: NumericTransform) -> tuple[float, float]:
    """The values ``inner`` decodes within (its value-protection bounds), unbounded sides
    infinite; the bounds are stored relative to the column's offset."""
    base = float(inner.offset) if inner.integral else 0.0
    lo = -np.inf if inner.lo is None else inner.lo + base
    hi = np.inf if inner.hi is None else inner.hi + base
    return lo, hi


def _value_range(arr: Any, numeric: NumericTransform) -> tuple[float, float]:
    """A column's own decode range: its training minimum and maximum, within the value
    protection of ``numeric`` (the column's own numeric transform)."""
    v, present = numeric_values(arr)
    lo, hi = (float(v[present].min()), float(v[present].max())) if present.any() else (0, 0)
    p_lo, p_hi = _protected_range(numeric)
    return max(lo, p_lo), min(hi, p_hi)


class _MovedValue(RuleTransform):
    """A column modelled by its own numeric transform ``inner``, whose decoded value a rule
    then moves (to a value its key held, to a day its parts give)."""

    inner: NumericTransform

    def layout(self) -> list[tuple[str, str, int]]:
        return self.inner.layout()

    def encode_from(self, table: pa.Table, rng: np.random.Generator) -> np.ndarray:
        return self.inner.encode(table.column(self.column.name), rng)


class PinnedTransform(_MovedValue):
    """A number its discrete key holds to a few values (``rules.pinned``): modelled as usual,
    moved on decode to the nearest value the fit rows held with the decoded key."""

    kind = "pinned"

    def __init__(
        self, column: ColumnSchema, inner: NumericTransform, keys: list[str], sets: ValueSets
    ) -> None:
        super().__init__(column)
        self.inner, self.keys, self.sets = inner, list(keys), sets
        self.depends_on = list(keys)
        self.left_out = 0  # key values the fit left out (value protection), for :meth:`restate`

    @classmethod
    def fit(
        cls,
        column: ColumnSchema,
        table: pa.Table,
        keys: list[str],
        rng: np.random.Generator,
        protect_extremes: int = 0,
        stats: Any = None,
    ) -> PinnedTransform:
        """With value protection on, a key that held a value beyond the column's protected
        extremes is left out of the sets (its rows keep the modelled value): snapping never
        writes a value that value protection keeps out of the rows."""
        arr = table.column(column.name)
        inner = NumericTransform.fit(
            column, arr, rng, protect_extremes=protect_extremes, table=stats
        )
        key_arrays = [table.column(k) for k in keys]
        full = sets = ValueSets.fit(key_arrays, *numeric_values(arr))
        if protect_extremes > 0 and (inner.lo is not None or inner.hi is not None):
            sets = full.within(*_protected_range(inner))
        out = cls(column, inner, keys, sets)
        out.left_out = len(full.combos) - len(sets.combos)
        return out

    def restate(self, rule: Any) -> None:
        """Make ``rule`` (the "values" rule this enforces) state the sets decode enforces, which
        leave out keys that hold protected extremes (see :meth:`fit`); a key the sets lack is
        one the rule does not constrain, so every decoded row keeps it."""
        rule.params = self.sets.to_params()
        if self.left_out:
            rule.note = (
                f"{self.left_out} key value(s) holding values beyond the column's protected "
                "extremes are left out (value protection)"
            )

    def decode_with(self, x, n, rng, row_offset, resolved):
        v, present = numeric_values(self.inner.decode(x, n, rng, row_offset))
        keys = [resolved[k] for k in self.keys]
        return _to_arrow(self.sets.snap(v, present, keys), present, self.type)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = _inner_state(self.inner)
        meta.update(
            keys=self.keys,
            key_types=[str(d.type) for d in self.sets.dictionaries],
            sets=self.sets.to_params(),
        )
        return meta, arrays

    @classmethod
    def from_state(cls, column, meta, arrays):
        inner = _inner_from(meta, arrays)
        types = [type_from_string(t) for t in meta["key_types"]]
        return cls(column, inner, meta["keys"], ValueSets.from_params(meta["sets"], types))


class DateSnapTransform(_MovedValue):
    """A date whose calendar parts other columns hold (``rules.dateparts``): modelled as usual,
    moved on decode by whole days (hours, when an hour is linked: a slot) to the nearest slot
    whose parts give the decoded part columns, keeping the rest of its time.

    ``slots`` holds the candidate slots of each combination of all the part columns. A row
    whose drawn parts no slot has together (a month with a season it never has) moves to the
    nearest slot that has the longest prefix of them (coarsest part first), and the part
    columns after that prefix are then rebuilt from the moved date (:meth:`parts_of`): every
    link holds on every row, and only those rows' finer parts are not the model's own."""

    kind = "date_snap"

    def __init__(
        self,
        column: ColumnSchema,
        inner: NumericTransform,
        rules: list[Any],
        slots: ValueSets,
        per_slot: int,
        lo: int,
        hi: int,
    ) -> None:
        super().__init__(column)
        self.rules = list(rules)  # fixed rules part(column) -> key, coarsest part first
        self.keys = [r.columns[1] for r in self.rules]
        self.inner, self.slots = inner, slots
        self.per_slot, self.lo, self.hi = int(per_slot), int(lo), int(hi)
        self.depends_on = list(self.keys)
        self._levels = self.levels(list(range(len(self.keys))))
        self._wall = self._local(self.lo), self._local(self.hi)  # [lo, hi] on the wall clock

    @classmethod
    def fit(
        cls,
        column: ColumnSchema,
        table: pa.Table,
        rules: list[Any],
        rng: np.random.Generator,
        protect_extremes: int = 0,
        stats: Any = None,
    ) -> DateSnapTransform | NumericTransform:
        """``rules``: the fixed rules ``part(column) determines target``. The candidate slots
        stay within the values the plain decode writes (the fit rows' range, less value
        protection) and on its grid, and a moved date is clipped to that range, so snapping
        never writes a value the plain decode could not. A grid no whole-slot move keeps (36
        hours, by days) gets the plain transform, and the rules are marked off with the reason."""
        from pfcore.rules.dateparts import hourly, slot_sets, slot_step, slot_units

        arr = table.column(column.name)
        inner = NumericTransform.fit(
            column, arr, rng, protect_extremes=protect_extremes, table=stats
        )
        per_slot = slot_units(arr.type, hourly(rules))
        assert per_slot is not None  # the plan only sends dates and naive timestamps here
        step = slot_step(inner.grid, int(inner.offset), per_slot)
        if step is None:
            for r in rules:
                r.active, r.enforcement = False, "none"
                r.note = "reported, not enforced: its values' grid does not move by whole slots"
            return inner
        v, present = numeric_values(arr)
        lo, hi = int(v[present].min()), int(v[present].max())
        if inner.lo is not None:
            lo = max(lo, int(inner.offset) + int(np.ceil(inner.lo)))
        if inner.hi is not None:
            hi = min(hi, int(inner.offset) + int(np.floor(inner.hi)))
        rules = sorted(rules, key=lambda r: DATE_PARTS.index(r.params["part"]))
        types = [table.column(r.columns[1]).type for r in rules]
        slots = slot_sets(rules, arr, types, lo, hi, step)
        return cls(column, inner, rules, slots, per_slot, lo, hi)

    def levels(self, order: list[int]) -> list[tuple[list[int], ValueSets]]:
        """The slots of each prefix of the part columns in ``order``, longest first."""
        return [(order[:k], self.slots.project(order[:k])) for k in range(len(order), 0, -1)]

    def decode_with(self, x, n, rng, row_offset, resolved):
        from pfcore.rules.dateparts import local_values

        v, present = local_values(self.inner.decode(x, n, rng, row_offset))
        keys = [resolved[k] for k in self.keys]
        return self._to_column(self._move(v, present, keys, self._levels, *self._wall), present)

    def _local(self, stored: int) -> int:
        """A stored value (an instant) on the wall clock (a zoned timestamp's local time)."""
        from pfcore.rules.dateparts import local_values

        return int(local_values(arrow_values(np.array([stored]), None, self.type))[0][0])

    def _to_column(self, local: np.ndarray, present: np.ndarray) -> pa.Array:
        """Wall-clock values back to the column, within ``[lo, hi]`` as stored."""
        from pfcore.rules.dateparts import from_local

        v, _ = numeric_values(from_local(local, present, self.type))
        return _to_arrow(np.clip(v, self.lo, self.hi), present, self.type)

    def _move(
        self,
        v: np.ndarray,
        todo: np.ndarray,
        keys: list[Any],
        levels: list[tuple[list[int], ValueSets]],
        lo: int,
        hi: int,
    ) -> np.ndarray:
        """``v`` (wall-clock units) of the ``todo`` rows moved by whole slots, first into the slots
        of ``[lo, hi]``, then to the nearest slot there that has the longest prefix of the
        row's parts (``levels``), else kept; clipped to ``[lo, hi]``."""
        slot = np.floor_divide(v, self.per_slot)
        first, last = lo // self.per_slot, hi // self.per_slot
        moved = np.clip(slot, first, last).astype(np.float64)
        left = np.flatnonzero(todo)
        for cols, sets in levels:  # each level on the rows a longer prefix did not place
            if not left.size:
                break
            at = sets.combo_index([_take(keys[j], left) for j in cols])
            new, found = sets.nearest(moved[left], at, first, last)
            moved[left[found]] = new[found]
            left = left[~found]
        out = np.where(todo, v + (moved.astype(np.int64) - slot) * self.per_slot, v)
        return np.clip(out, lo, hi)

    def _disagree(self, date: pa.Array, parts: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Per part column whose value some row's date does not give: (the rows, the date's)."""
        out = {}
        for rule, key in zip(self.rules, self.keys, strict=True):
            current = parts[key]
            if isinstance(current, pa.ChunkedArray):
                current = current.combine_chunks()
            expected, seen = fixed_targets(rule, date, current.type)
            if not len(expected):
                continue
            same = pc.equal(expected, current).fill_null(False)
            differ = pc.and_(pc.and_(pc.invert(same), pa.array(seen)), date.is_valid())
            if pc.any(differ).as_py():
                out[key] = (differ, pc.if_else(differ, expected, current))
        return out

    def parts_of(self, date: pa.Array, parts: dict[str, Any]) -> dict[str, pa.Array]:
        """The part columns rebuilt from ``date`` where they disagree with it (the rows whose
        drawn parts no day has together); only the columns that change."""
        return {k: fixed for k, (_rows, fixed) in self._disagree(date, parts).items()}

    def resnap(
        self, table: pa.Table, lo: Any, hi: Any, given: set[str], move: bool
    ) -> dict[str, pa.Array]:
        """A conditional block's date and part columns made to agree again once the request's
        values are in place (``condition_plan``). With ``move`` (the date is not given, or
        only a range ``[lo, hi]``: Arrow scalars or None), a date outside the range or off a
        part moves to the nearest day in the range whose parts give the row's part columns,
        the given ones first, then the others coarsest first (the longest such prefix). Then
        the part columns not in ``given`` are rebuilt from the date where they disagree; a
        given part no day in the range has stays as given. Returns the changed columns."""
        name = self.column.name
        date = table.column(name).combine_chunks()
        parts = {k: table.column(k) for k in self.keys}
        out: dict[str, pa.Array] = {}
        disagree = self._disagree(date, parts)
        if move:
            from pfcore.rules.dateparts import local_values

            v, present = local_values(date)
            lo_v = self.lo if lo is None else max(_stored_int(lo, self.type), self.lo)
            hi_v = self.hi if hi is None else min(_stored_int(hi, self.type), self.hi)
            lo_v, hi_v = self._local(lo_v), self._local(hi_v)
            off = np.zeros(len(v), dtype=bool)
            for rows, _fixed in disagree.values():
                off |= np.asarray(rows, dtype=bool)
            todo = present & (off | (v < lo_v) | (v > hi_v))
            if todo.any():
                first = [j for j, k in enumerate(self.keys) if k in given]
                order = first + [j for j in range(len(self.keys)) if j not in first]
                keys = [parts[k] for k in self.keys]
                v = self._move(v, todo, keys, self.levels(order), lo_v, hi_v)
                date = out[name] = self._to_column(v, present)
                disagree = self._disagree(date, parts)  # the moved date's, not the drawn one's
        out.update({k: fixed for k, (_rows, fixed) in disagree.items() if k not in given})
        return out

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = _inner_state(self.inner)
        meta.update(
            rules=[r.to_dict() for r in self.rules],
            key_types=[str(d.type) for d in self.slots.dictionaries],
            slots=self.slots.to_params(),
            per_slot=self.per_slot,
            lo=self.lo,
            hi=self.hi,
        )
        return meta, arrays

    @classmethod
    def from_state(cls, column, meta, arrays):
        inner = _inner_from(meta, arrays)
        types = [type_from_string(t) for t in meta["key_types"]]
        slots = ValueSets.from_params(meta["slots"], types)
        rules = [Rule.from_dict(r) for r in meta["rules"]]
        return cls(column, inner, rules, slots, meta["per_slot"], meta["lo"], meta["hi"])


class TiedTransform(RuleTransform):
    """A number that equals another column on part of the rows (``transforms.ties``): modelled
    as usual plus a flag ``A == B``; decode writes B's value where the flag is set."""

    kind = "tied"

    def __init__(
        self, column: ColumnSchema, inner: NumericTransform, source: str, lo: float, hi: float
    ) -> None:
        super().__init__(column)
        self.inner, self.source, self.lo, self.hi = inner, source, float(lo), float(hi)
        self.depends_on = [source]

    @classmethod
    def fit(
        cls,
        column: ColumnSchema,
        table: pa.Table,
        source: str,
        rng: np.random.Generator,
        protect_extremes: int = 0,
        stats: Any = None,
    ) -> TiedTransform:
        """``lo``, ``hi``: the column's own decode range. A copied value outside it is not
        written (the modelled one stays), so copying never leaves the range that value
        protection and the column's range and sign rules rely on."""
        arr = table.column(column.name)
        inner = NumericTransform.fit(
            column, arr, rng, protect_extremes=protect_extremes, table=stats
        )
        return cls(column, inner, source, *_value_range(arr, inner))

    def copied(self, table: pa.Table) -> np.ndarray:
        """Rows ``(n,)`` bool of ``table`` on which the column equals its source (both
        present): the flag of a training row, and of a seed row that gives both."""
        a, pa_ = numeric_values(table.column(self.column.name))
        b, pb = numeric_values(table.column(self.source))
        return pa_ & pb & (a == b)

    def layout(self) -> list[tuple[str, str, int]]:
        return [*self.inner.layout(), (f"{self.column.name}.__tied__", "onehot", 2)]

    def encode_from(self, table: pa.Table, rng: np.random.Generator) -> np.ndarray:
        x = self.inner.encode(table.column(self.column.name), rng)
        flag = onehot(self.copied(table).astype(np.int64), 2)
        return np.concatenate([x, flag], axis=1)

    def decode_with(self, x, n, rng, row_offset, resolved):
        w = self.inner.width
        a, present = numeric_values(self.inner.decode(x[:, :w], n, rng, row_offset))
        b, pb = numeric_values(resolved[self.source])
        copy = (x[:, w + 1] > x[:, w]) & present & pb & (b >= self.lo) & (b <= self.hi)
        return _to_arrow(np.where(copy, b, a), present, self.type)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = _inner_state(self.inner)
        meta.update(source=self.source, lo=self.lo, hi=self.hi)
        return meta, arrays

    @classmethod
    def from_state(cls, column, meta, arrays):
        return cls(column, _inner_from(meta, arrays), meta["source"], meta["lo"], meta["hi"])


class FormulaTransform(RuleTransform):
    """A number that follows a formula of others up to rounding and slips
    (``transforms.formulas``): modelled as its difference from the formula; decode computes the
    formula from the decoded operands and adds the drawn difference. Where the formula is
    undefined (an operand missing, or not positive in a product) the difference is the value
    itself. Decode stays within the column's own range (value protection included) and on its
    decimals."""

    kind = "formula"

    def __init__(
        self,
        column: ColumnSchema,
        inner: NumericTransform,
        formula: dict[str, Any],
        lo: float,
        hi: float,
    ) -> None:
        super().__init__(column)
        self.inner, self.formula, self.lo, self.hi = inner, dict(formula), float(lo), float(hi)
        self.depends_on = list(formula["operands"])

    @classmethod
    def fit(
        cls,
        column: ColumnSchema,
        table: pa.Table,
        formula: dict[str, Any],
        rng: np.random.Generator,
        protect_extremes: int = 0,
    ) -> FormulaTransform:
        diff = _difference(table, column.name, formula)
        inner_col = ColumnSchema(
            name=column.name, kind="continuous", arrow_type="double", nullable=bool(diff.null_count)
        )
        inner = NumericTransform.fit(inner_col, pa.chunked_array([diff]), rng)
        arr = table.column(column.name)
        own = NumericTransform.fit(column, arr, rng, protect_extremes=protect_extremes)
        return cls(column, inner, formula, *_value_range(arr, own))

    def layout(self) -> list[tuple[str, str, int]]:
        return self.inner.layout()

    def encode_from(self, table: pa.Table, rng: np.random.Generator) -> np.ndarray:
        return self.inner.encode(_difference(table, self.column.name, self.formula), rng)

    def decode_with(self, x, n, rng, row_offset, resolved):
        d, present = numeric_values(self.inner.decode(x, n, rng, row_offset))
        base = _formula_of(self.formula, [resolved[a] for a in self.depends_on])
        value = np.clip(base + d, self.lo, self.hi)
        if _integral(self.type):
            value = np.rint(value).astype(np.int64)
        elif self.column.decimals is not None and self.column.decimals >= 0:
            value = np.round(value, int(self.column.decimals))
        return _to_arrow(value, present, self.type)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = _inner_state(self.inner)
        meta.update(formula=self.formula, lo=self.lo, hi=self.hi)
        return meta, arrays

    @classmethod
    def from_state(cls, column, meta, arrays):
        return cls(column, _inner_from(meta, arrays), meta["formula"], meta["lo"], meta["hi"])


def _formula_of(formula: dict[str, Any], operands: list[Any]) -> np.ndarray:
    """The formula per row from its operands' arrays; 0 where it is undefined (an operand
    missing, or not positive in a product)."""
    from pfcore.transforms.formulas import formula_value

    vals = [numeric_values(a) for a in operands]
    value, defined = formula_value(
        formula["form"], formula["coefficients"], formula["intercept"], [v for v, _ in vals]
    )
    for _, present in vals:
        defined &= present
    return np.where(defined, value, 0.0)


def _difference(table: pa.Table, name: str, formula: dict[str, Any]) -> pa.Array:
    """A formula column's modelled value: itself minus its formula (missing where it is)."""
    v, present = numeric_values(table.column(name))
    d = v - _formula_of(formula, [table.column(a) for a in formula["operands"]])
    return pa.array(d, mask=~present, type=pa.float64())


RULED: dict[str, type[RuleTransform]] = {
    FormulaTransform.kind: FormulaTransform,
    TiedTransform.kind: TiedTransform,
    PinnedTransform.kind: PinnedTransform,
    DateSnapTransform.kind: DateSnapTransform,
    MonthDayTransform.kind: MonthDayTransform,
    GapTransform.kind: GapTransform,
    ComputedTransform.kind: ComputedTransform,
    ConditionedTransform.kind: ConditionedTransform,
    ClockTransform.kind: ClockTransform,
}

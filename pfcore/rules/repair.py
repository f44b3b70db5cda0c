"""Orders no construction can build, kept by moving one end on the rows that break them.

Why: ``low <= high`` is built as a gap (``rules.plan``) only when one end can be rebuilt from
the other: a present, non-nullable parent and a child no other rule builds. Many real orders
fail that test: both ends are sometimes missing (a first and a last milestone age, both null
for a company with none), one end is already built by a missingness rule (reviews per month,
null exactly when there are no reviews, at most the number of reviews) or the other end is
built by another rule (a flight's air time, which a missing arrival makes null, below its
distance, which its route pins). Left to the model, such an order broke on 0.3% of
nyc_flights' rows (``air_time < distance``), 0.7% of an Airbnb table's
(``reviews_per_month <= number_of_reviews``) and 22% of a startup table's
(``age_first_milestone_year <= age_last_milestone_year``), one-minute fits, 50k rows.

So decode keeps them last: on a row that breaks ``low <= high``, one end (chosen at fit time)
is reflected across the other end's value (``2 * other - own``: a row that overshot by a little
lands a little inside, so no point mass builds up on the boundary) and snapped to the nearest of
its own training values on the rule's side (its grid, decimals and value-protection bounds
kept). Rows that hold are never touched, so the columns' laws move only on the broken rows.

The ends are two numbers or two datetimes of one Arrow type (an account's opening and closing
instants, both missing on some rows). Integers and datetimes move in int64, their own unit: a
nanosecond timestamp is beyond float64's exact integers (instants 1 ns apart compare equal, and
an instant read back from a float lands up to 128 ns away), so which values keep the order is
decided on the integers, and floats only pick the nearest of them.

Which end may move, so that moves never undo one another or another construction:

* it is modelled as it is: no construction builds it (a missingness rule that writes nulls is
  fine: only present values move) and none reads it (a gap's parent, an identity's operand, a
  trigger of a value, a lookup's source; a trigger read only for being null may move);
* repairs run in plan order, after every construction; an end moved up is never the low end
  of an order kept before it (a construction's or an earlier repair's), an end moved down never
  the high end, so a move only keeps what was kept before it (``a <= b <= c``: b moves up
  above a, then c above the moved b; ``q1 <= total``, ``q2 <= total``: total moves up twice).

A conditional request writes its given values after decode and then runs the repairs itself
(``condition_plan``): an exact given value never moves, a value drawn in a requested range moves
only within it, and where the chosen end cannot move the other end moves when it may.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from pfcore.rules.model import Rule, number_of, numeric_values

__all__ = ["OrderRepair", "plan_repairs", "apply_repairs", "MAX_VALUES"]

#: Training values kept per movable end (evenly spaced quantiles of its distinct values): the
#: values a moved row may take. Only broken rows move, so a coarse set is invisible elsewhere.
MAX_VALUES = 1024

_KINDS = ("continuous", "integer", "datetime")


@dataclass
class OrderRepair:
    """``low <= high`` (``<`` if strict), kept on broken rows by moving ``moved``; ``values``
    maps each end that may move to its sorted admissible values."""

    low: str
    high: str
    strict: bool
    moved: str
    values: dict[str, np.ndarray]

    def to_dict(self) -> dict[str, Any]:
        return {
            "low": self.low,
            "high": self.high,
            "strict": self.strict,
            "moved": self.moved,
            "movable": sorted(self.values),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> OrderRepair:
        return cls(
            doc["low"],
            doc["high"],
            bool(doc["strict"]),
            doc["moved"],
            {c: arrays[c] for c in doc["movable"]},
        )


def plan_repairs(
    rules: list[Rule], schema: Any, plan: Any, transforms: dict[str, Any], table: pa.Table
) -> list[OrderRepair]:
    """Repairs for the inactive orders between two numbers whose ends may move (see module
    docstring); each such rule becomes active with enforcement ``repaired`` and a note."""
    built = (plan.built() | set(plan.reads)) - {
        n for n, r in plan.conditioned.items() if _null_special(r)
    }
    read = set().union(
        *(cols for c, cols in plan.reads.items() if not _null_trigger(plan.conditioned.get(c)))
    )
    orders = [r for r in rules if r.active and r.kind == "inequality"]
    lows = {r.columns[0] for r in orders}  # ends of the orders decode keeps before a repair
    highs = {r.columns[1] for r in orders}
    out: list[OrderRepair] = []
    for r in rules:
        if r.active or r.kind != "inequality" or any(c not in schema.names for c in r.columns):
            continue
        low, high = r.columns
        if low == high or not _comparable(schema[low], schema[high]):
            continue

        def may_move(col: str, up: bool) -> bool:
            if col in built or col in read or _inner(transforms.get(col)) is None:
                return False
            return col not in (lows if up else highs)

        movable = [c for c, up in ((high, True), (low, False)) if may_move(c, up)]
        if not movable:
            continue
        values = {c: _admissible(table.column(c), transforms[c]) for c in movable}
        if any(v.size == 0 for v in values.values()):
            continue
        lows.add(low)
        highs.add(high)
        moved = movable[0]
        out.append(OrderRepair(low, high, bool(r.params.get("strict")), moved, values))
        other = low if moved == high else high
        r.active, r.enforcement = True, "repaired"
        r.note = (
            f"on a row that breaks it, {moved!r} is reflected across {other!r} onto one of its "
            "own values"
            + (f" ({other!r} moves instead where {moved!r} is given)" if len(movable) > 1 else "")
        )
    return out


def _comparable(low: Any, high: Any) -> bool:
    """Whether an order between these two columns can be repaired: two numbers, or two
    datetimes of one Arrow type (their int64 values are then in one unit)."""
    if low.kind not in _KINDS or high.kind not in _KINDS:
        return False
    if "datetime" in (low.kind, high.kind):
        return low.kind == high.kind and low.arrow_type == high.arrow_type
    return True


def apply_repairs(
    table: pa.Table,
    repairs: Iterable[OrderRepair],
    fixed: frozenset[str] | set[str] = frozenset(),
    limits: Mapping[str, tuple[Any, Any]] | None = None,
) -> pa.Table:
    """``table`` with every repaired order holding on every row where both ends are present.

    Columns in ``fixed`` never move (a row whose both ends are fixed stays as it is); a column
    in ``limits`` (a requested range, ``(lo, hi)``, None for an open side) moves only within
    it. On a broken row the chosen end moves first; where none of its values keeps the order,
    the other end (if it may move); where neither can, an end without limits takes the
    boundary itself, and two ends with limits meet inside both (the other end moves to the
    chosen one's limit, then the chosen one moves)."""
    limits = limits or {}
    for rep in repairs:
        ends = [c for c in (rep.moved, *(c for c in rep.values if c != rep.moved))]
        ends = [c for c in ends if c not in fixed]
        if not ends:
            continue
        pair = _Pair.read(table, rep)
        if not pair.broken().any():
            continue
        for col in ends:
            pair.move(col, limits.get(col))
        free = [c for c in ends if c not in limits]
        if pair.broken().any():
            if free:
                pair.move(free[0], None, boundary=True)
            elif len(ends) == 2:
                first, other = ends
                pair.move(other, limits[other], edge=limits[first][1 if first == rep.high else 0])
                pair.move(first, limits[first])
        table = pair.write(table)
    return table


@dataclass
class _Pair:
    """One repaired order's two columns as arrays (read once, moved in place, written once)."""

    rep: OrderRepair
    values: dict[str, np.ndarray]  # column -> values (int64 for integers, else float64)
    present: dict[str, np.ndarray]
    changed: set[str]

    @classmethod
    def read(cls, table: pa.Table, rep: OrderRepair) -> _Pair:
        cols = {c: numeric_values(table.column(c)) for c in (rep.low, rep.high)}
        return cls(
            rep, {c: v for c, (v, _) in cols.items()}, {c: p for c, (_, p) in cols.items()}, set()
        )

    def broken(self) -> np.ndarray:
        """Rows where both ends are present and break the order."""
        rep = self.rep
        lo, hi = _common(self.values[rep.low], self.values[rep.high])
        both = self.present[rep.low] & self.present[rep.high]
        return both & ((lo >= hi) if rep.strict else (lo > hi))

    def move(
        self, col: str, limit: tuple[Any, Any] | None, *, boundary: bool = False, edge: Any = None
    ) -> None:
        """Move ``col`` on the broken rows: reflected onto its own values within ``limit``
        (rows without one stay), or (``boundary``) onto the other end's value where none
        qualifies; with ``edge``, across that value instead of the other end's (rows it keeps
        the order with do not move)."""
        rep = self.rep
        up = col == rep.high
        own = self.values[col]
        if not own.flags.writeable:  # a zero-copy view of the Arrow column
            own = self.values[col] = own.copy()
        bound = self.values[rep.low if up else rep.high]
        bad = self.broken()
        if edge is not None:
            bound = np.full(bound.shape, _number(edge, own.dtype))
            bad &= (own < bound) if up else (own > bound)
        if not bad.any():
            return
        integral = own.dtype.kind == "i"
        new, found = _reflect(own[bad], bound[bad], _within(rep.values[col], limit), up, rep.strict)
        if boundary:
            new = new.astype(np.result_type(new, bound))
            new[~found] = _boundary(bound[bad][~found], up, rep.strict, integral)
            found[:] = True
        rows = np.flatnonzero(bad)[found]
        own[rows] = np.round(new[found]) if integral and new.dtype.kind == "f" else new[found]
        self.changed.add(col)

    def write(self, table: pa.Table) -> pa.Table:
        from pfcore.transforms.ruled import _to_arrow

        for col in self.changed:
            arr = _to_arrow(self.values[col], self.present[col], table.schema.field(col).type)
            table = table.set_column(table.column_names.index(col), col, arr)
        return table


def _within(values: np.ndarray, limit: tuple[Any, Any] | None) -> np.ndarray:
    if limit is None:
        return values
    keep = np.ones(values.shape, dtype=bool)
    if limit[0] is not None:
        keep &= values >= _number(limit[0], values.dtype)
    if limit[1] is not None:
        keep &= values <= _number(limit[1], values.dtype)
    return values[keep]


def _number(value: Any, dtype: np.dtype) -> Any:
    """A limit (a Python number or an Arrow scalar of the column's type, a timestamp included)
    as a number comparable with the column's values: exact for int64 ones."""
    value = number_of(value)
    if dtype.kind == "i" and float(value).is_integer():
        return np.int64(value)
    return np.float64(value)


def _common(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both ends in one dtype: int64 when both are (a nanosecond timestamp is beyond float64's
    exact integers: two instants 1 ns apart compare equal as floats), float64 otherwise."""
    if a.dtype.kind == "i" and b.dtype.kind == "i":
        return a, b
    return a.astype(np.float64), b.astype(np.float64)


def _reflect(
    own: np.ndarray, bound: np.ndarray, values: np.ndarray, up: bool, strict: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(each ``own`` reflected across ``bound`` and snapped to the nearest of ``values`` on the
    rule's side (above ``bound`` if ``up``), whether such a value exists)."""
    if not up:  # mirror: moving down is moving -own up across -bound
        out, found = _reflect(-own, -bound, -values[::-1], True, strict)
        return -out, found
    if values.size == 0:
        return own.copy(), np.zeros(own.shape, dtype=bool)
    # which values lie on the rule's side: exact (int64 against int64 where both are); the
    # reflected target only picks the nearest of them, so float64 is close enough for it
    sorted_values, exact = _common(values, bound)
    side = np.searchsorted(sorted_values, exact, side="right" if strict else "left")
    b = bound.astype(np.float64)
    target = b + (b - own.astype(np.float64))
    last = values.size - 1
    v = values.astype(np.float64)
    j = np.minimum(np.maximum(np.searchsorted(v, target), side), last)
    below = np.minimum(np.maximum(j - 1, side), last)
    pick = np.where(np.abs(v[below] - target) <= np.abs(v[j] - target), below, j)
    return values[pick], side <= last


def _boundary(bound: np.ndarray, up: bool, strict: bool, integral: bool) -> np.ndarray:
    """The value nearest ``bound`` on the rule's side: the bound itself, or (strict) one unit
    beyond it for an integer, the next float otherwise."""
    if integral and bound.dtype.kind == "i":  # exact: a timestamp stays on its own unit
        step = np.int64(1 if up else -1)
        return bound + step if strict else bound.copy()
    sign = 1.0 if up else -1.0
    b = sign * bound
    if integral:
        out = np.floor(b) + 1 if strict else np.ceil(b)
    else:
        out = np.nextafter(b, np.inf) if strict else b
    return sign * out


def _admissible(column: pa.ChunkedArray, transform: Any) -> np.ndarray:
    """Sorted distinct training values the column decodes to (within its value-protection
    bounds), thinned to ``MAX_VALUES`` evenly spaced quantiles; none for integers beyond
    float64's exact range (such an end does not move)."""
    from pfcore.transforms.ruled import _protected_range

    v, ok = numeric_values(column)
    if v.dtype.kind == "i" and ok.any() and np.abs(v[ok]).max() > 2**62:
        return np.zeros(0, dtype=v.dtype)  # a reflection across such a value could overflow
    v = np.unique(v[ok])  # int64 for integers and datetimes: moved values stay exact
    lo, hi = _protected_range(_inner(transform))
    f = v.astype(np.float64)
    v = v[(f >= lo) & (f <= hi)]
    if v.size > MAX_VALUES:
        v = v[np.unique(np.linspace(0, v.size - 1, MAX_VALUES).round().astype(np.int64))]
    return v


def _inner(transform: Any) -> Any:
    """The numeric transform that decodes the column's own values (None: not a plain number)."""
    from pfcore.transforms.numeric import NumericTransform
    from pfcore.transforms.ruled import ConditionedTransform, TiedTransform

    if isinstance(transform, NumericTransform):
        return transform
    if isinstance(transform, (ConditionedTransform, TiedTransform)):
        return transform.inner
    return None


def _null_trigger(rule: Rule | None) -> bool:
    """Whether a missingness rule reads its trigger only for being null (so the trigger's
    present values may move)."""
    return (
        rule is not None
        and not rule.params.get("implies")
        and bool(rule.params.get("when", {}).get("null"))
    )


def _null_special(rule: Rule) -> bool:
    return bool(rule.params.get("special", {}).get("null")) and not rule.params.get("implies")

"""Rule objects: what a rule says, where it came from, how often it held, and how it is enforced.

A rule is a statement every real row satisfies (a start before its end, a total equal to its
parts, a sentinel exactly when a count is zero, a city that belongs to its state, an age within
bounds). Each rule records its ``origin`` (``detected`` on the training rows, or ``declared`` by
the user), its hold rate on the training and held-out rows, whether it is ``active`` (enforced by
construction in the transform, and checked by the fidelity gate) and ``enforcement``: how decode
makes it hold. Inactive rules are kept so users see what was found and why it is not enforced.

Kinds and their ``columns`` / ``params``:

* ``inequality``: ``[low, high]``; ``strict``. low <= high (or <) where both are present.
* ``range``: ``[column]``; ``min``/``max`` (None: unbounded; datetimes in their Arrow unit
  since the epoch), ``min_strict``/``max_strict``. ``sign`` is the detected special case with a
  bound at 0.
* ``identity``: ``[target, *operands]``; ``coefficients``, ``intercept``, ``tolerance``:
  |target - (intercept + sum coefficient * operand)| <= tolerance where all are present.
* ``clock``: ``[time]``: an HHMM clock time (0 <= v <= 2400, minute part < 60, midnight
  written as ``midnight``: 2400 or 0); ``[time, base, delta]``: also minutes(time) ==
  minutes(base) + delta modulo 1440, where minutes(v) = 60 * (v // 100) + v % 100. Clock times
  are not linear in their value (10:59 + 1 minute is 1100, not 1060), so a linear identity
  cannot state "a departure is its scheduled time plus its delay"; this kind can.
* ``calendar``: ``[time, *part columns]``; ``parts`` (the calendar field of each part column:
  year, month, day, hour, minute, second), ``constants`` (the fields no column gives, with the
  one value they take), ``timezone`` (None for a naive timestamp): the timestamp is the local
  time built from its parts in that zone (a flight's scheduled hour as a UTC instant, stored
  beside its year, month, day and hour). Not a linear identity: month lengths, leap years and
  daylight-saving shifts make it piecewise.
* ``missing``: ``[column, trigger]``; ``special`` (``{"null": true}`` or ``{"sentinel": v}``),
  ``when`` (``{"null": true}`` or ``{"equals": v}``): column is special exactly when the
  trigger condition holds.
* ``fixed``: ``[source, target]``; ``map`` ([[source value, target value], ...]): target is the
  function of source seen in training (rows with a source value never seen count as holding);
  ``part`` (optional, ``DATE_PARTS``): the source is a date or timestamp and the map's keys are
  that calendar part of it (a month column beside its date). Such a rule is enforced by moving
  the date to its parts (``rules.dateparts``), not by rebuilding the part from the date.
* ``key``: the columns no two rows share.
* ``expression``: ``expression`` (see ``pfcore.rules.expr``); rows where it is null hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pfcore.errors import InputError, SchemaError

__all__ = [
    "KINDS",
    "Rule",
    "hold_mask",
    "hold_rate",
    "numbered_codes",
    "numeric_values",
    "first_violation",
    "RULES_FILE",
    "clock_minutes",
    "clock_from_minutes",
    "is_clock",
    "CALENDAR_PARTS",
    "calendar_value",
    "calendar_fields",
    "month_span",
    "PER_SECOND",
    "DATE_PARTS",
    "date_part",
    "source_keys",
    "fixed_targets",
]

KINDS = (
    "inequality",
    "range",
    "sign",
    "identity",
    "clock",
    "calendar",
    "missing",
    "fixed",
    "key",
    "values",
    "expression",
)
ORIGINS = ("detected", "declared")
RULES_FILE = "rules.json"
FORMAT_VERSION = 1


@dataclass
class Rule:
    """One rule over columns, where it came from, how often it held, and how it is enforced."""

    kind: str
    columns: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    origin: str = "detected"
    train_hold_rate: float | None = None
    holdout_hold_rate: float | None = None
    active: bool = True
    enforcement: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SchemaError(f"rule kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.origin not in ORIGINS:
            raise SchemaError(f"rule origin {self.origin!r} is not one of {', '.join(ORIGINS)}")
        if not self.columns or not all(isinstance(c, str) for c in self.columns):
            raise SchemaError(f"{self.kind} rule needs column names, got {self.columns!r}")
        if self.kind == "fixed" and self.params.get("part") is not None:
            if self.params["part"] not in DATE_PARTS:
                raise SchemaError(
                    f"fixed rule {self.columns!r}: part must be one of {', '.join(DATE_PARTS)}, "
                    f"got {self.params['part']!r}"
                )

    @property
    def name(self) -> str:
        """A readable statement of the rule, also its identity in ``rules.json``."""
        c, p = self.columns, self.params
        if self.kind == "inequality":
            return f"{c[0]} {'<' if p.get('strict') else '<='} {c[1]}"
        if self.kind in ("range", "sign"):
            parts = []
            if p.get("min") is not None:
                parts.append(f"{c[0]} {'>' if p.get('min_strict') else '>='} {_num(p['min'])}")
            if p.get("max") is not None:
                parts.append(f"{c[0]} {'<' if p.get('max_strict') else '<='} {_num(p['max'])}")
            return " and ".join(parts) or f"{c[0]} unbounded"
        if self.kind == "identity":
            terms = [
                _term(k, col) for k, col in zip(p["coefficients"], c[1:], strict=True) if k != 0
            ]
            if p.get("intercept"):
                terms.append(_num(p["intercept"]))
            text = " + ".join(terms).replace("+ -", "- ")
            return f"{c[0]} == {text}"
        if self.kind == "clock":
            if len(c) == 1:
                return f"{c[0]} is an HHMM clock time"
            return f"{c[0]} == {c[1]} + {c[2]} minutes (HHMM clock, modulo 24h)"
        if self.kind == "calendar":
            given = dict(zip(p["parts"], c[1:], strict=True))
            fields = [given.get(f, str(p["constants"].get(f, ""))) for f in CALENDAR_PARTS]
            where = f" in {p['timezone']}" if p.get("timezone") else ""
            return f"{c[0]} == datetime({', '.join(fields)}){where}"
        if self.kind == "missing":
            sp = "null" if p["special"].get("null") else f"== {p['special']['sentinel']!r}"
            if p.get("implies"):
                whens = " or ".join(
                    f"{b} {_when_text(w)}" for b, w in zip(c[1:], p["when"], strict=True)
                )
                return f"{c[0]} {sp} whenever {whens}"
            return f"{c[0]} {sp} exactly when {c[1]} {_when_text(p['when'])}"
        if self.kind == "fixed":
            src = f"{p['part']}({c[0]})" if p.get("part") else c[0]
            return f"{src} determines {c[1]}"
        if self.kind == "key":
            return f"unique ({', '.join(c)})"
        if self.kind == "values":
            return f"{c[0]} takes only the values seen with its ({', '.join(c[1:])})"
        return str(p.get("expression"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d = {"name": self.name, **d}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rule:
        known = {"kind", "columns", "params", "origin", "train_hold_rate", "holdout_hold_rate",
                 "active", "enforcement", "note"}  # fmt: skip
        unknown = set(d) - known - {"name"}
        if unknown:
            raise SchemaError(f"rule {d.get('name', d)!r}: unknown fields {sorted(unknown)}")
        if "kind" not in d or "columns" not in d:
            raise SchemaError(f"rule {d!r}: needs 'kind' and 'columns'")
        return cls(**{k: v for k, v in d.items() if k in known})


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _term(k: float, col: str) -> str:
    if k == 1:
        return col
    if k == -1:
        return f"-{col}"
    return f"{_num(k)}*{col}"


def far_extreme(values: np.ndarray, direction: int) -> Any:
    """The extreme of a column bounded by others on the far side of its bound: its minimum
    under an upper bound (``direction`` -1: column <= parents), its maximum over a lower one.
    A value written there keeps the inequality whatever the parents decode to, since they stay
    in their training range, beyond it."""
    return values.min() if direction < 0 else values.max()


def numbered_codes(col: Any) -> bool:
    """Whether ``col`` is a discrete column whose classes are numbers (counts with few values,
    such as bedrooms and rooms, are categorical in the schema), so an order between two such
    columns is a rule the discrete sampler can keep by masking classes."""
    t = col.type
    return col.kind == "categorical" and (pa.types.is_integer(t) or pa.types.is_floating(t))


def numeric_values(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(values, present): int64 for integers and datetimes (their unit since epoch, exact),
    float64 otherwise; NaN counts as missing."""
    from pfcore.schema import is_temporal, temporal_storage

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    present = np.asarray(arr.is_valid(), dtype=bool)
    if is_temporal(t):
        arr = arr.cast(temporal_storage(t))
        t = arr.type
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return np.asarray(arr.cast(pa.int64()).fill_null(0), dtype=np.int64), present
    if pa.types.is_dictionary(t):
        arr = arr.cast(t.value_type)
    v = np.asarray(arr.cast(pa.float64()).fill_null(0.0), dtype=np.float64)
    nan = np.isnan(v)
    if nan.any():
        present &= ~nan
        v = np.where(nan, 0.0, v)
    return v, present


def number_of(value: Any) -> np.int64 | np.float64:
    """A Python number or an Arrow scalar (a timestamp or a date included) as the number
    ``numeric_values`` gives for it: int64 for integers and datetimes, else float64."""
    if isinstance(value, pa.Scalar):
        v, present = numeric_values(pa.array([value]))
        if not present[0]:
            raise ValueError("a missing value is not a number")
        return v[0]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return np.int64(value)
    return np.float64(value)


def linear_value(
    coefficients: list[float], intercept: float, operands: list[np.ndarray]
) -> np.ndarray:
    """intercept + sum k*x, exact in int64 when everything is integral, else in long double
    (64-bit mantissa: nanosecond timestamps keep their last digit)."""
    integral = all(float(k).is_integer() for k in coefficients) and float(intercept).is_integer()
    if integral and all(x.dtype == np.int64 for x in operands):
        out = np.full(operands[0].shape, int(intercept), dtype=np.int64)
        for k, x in zip(coefficients, operands, strict=True):
            out += int(k) * x
        return out
    out = np.full(operands[0].shape, intercept, dtype=np.longdouble)
    for k, x in zip(coefficients, operands, strict=True):
        out += np.longdouble(k) * x.astype(np.longdouble)
    return out


MINUTES_PER_DAY = 1440


def clock_minutes(v: np.ndarray) -> np.ndarray:
    """Minutes since midnight of HHMM clock values."""
    return (v // 100) * 60 + np.mod(v, 100)


def clock_from_minutes(m: np.ndarray, midnight: int = 2400) -> np.ndarray:
    """HHMM clock values of minutes since midnight (any integer; taken modulo a day)."""
    m = np.mod(m, MINUTES_PER_DAY)
    v = (m // 60) * 100 + np.mod(m, 60)
    if midnight == 2400:
        v = np.where(v == 0, 2400, v)
    return v


def is_clock(v: np.ndarray, midnight: int = 2400) -> np.ndarray:
    """True where ``v`` is a whole HHMM time with midnight written as ``midnight``."""
    other = 0 if midnight == 2400 else 2400
    return (v >= 0) & (v <= 2400) & (np.mod(v, 100) < 60) & (v == np.round(v)) & (v != other)


CALENDAR_PARTS = ("year", "month", "day", "hour", "minute", "second")
PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
#: Calendar parts by which a date or timestamp can determine another column (a ``fixed`` rule's
#: ``part``), coarsest first: detection keeps the first that works. ``weekday``: Monday is 0;
#: ``monthday``: 100 * month + day (a season, a fixed-date holiday); time parts on timestamps.
DATE_PARTS = ("year", "quarter", "month", "weekday", "monthday", "day", "hour", "minute")
TIME_PARTS = ("hour", "minute")


def date_part(arr: pa.Array | pa.ChunkedArray, part: str) -> pa.Array:
    """The calendar ``part`` (``DATE_PARTS``) of dates or timestamps as int64, null where the
    value is null; a zoned timestamp gives its local-time part (what its users read)."""
    if part not in DATE_PARTS:
        raise ValueError(f"date part must be one of {', '.join(DATE_PARTS)}, got {part!r}")
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if part == "monthday":
        out = pc.add(pc.multiply(pc.month(arr), 100), pc.day(arr))
    elif part == "weekday":
        out = pc.day_of_week(arr)
    else:
        out = getattr(pc, part)(arr)
    return out.cast(pa.int64())


def source_keys(arr: pa.Array | pa.ChunkedArray, part: str | None) -> pa.Array | pa.ChunkedArray:
    """What a fixed rule maps: its source's values, or their calendar ``part``."""
    return arr if part is None else date_part(arr, part)


def fixed_targets(
    rule: Rule, source: pa.Array | pa.ChunkedArray, target_type: pa.DataType
) -> tuple[pa.Array, np.ndarray]:
    """What a fixed rule's map gives for each ``source`` value (as ``target_type``; an empty
    array when the map is empty), and where the map knows the value (elsewhere the rule does
    not constrain the row)."""
    from pfcore.schema import values_from_json

    if isinstance(source, pa.ChunkedArray):
        source = source.combine_chunks()
    src = source_keys(source, rule.params.get("part"))
    pairs = rule.params.get("map") or []
    keys = values_from_json([k for k, _ in pairs], src.type)
    vals = values_from_json([v for _, v in pairs], target_type)
    idx = pc.index_in(src, value_set=keys, skip_nulls=False)
    seen = np.asarray(idx.is_valid(), dtype=bool)
    return (vals.take(idx.fill_null(0)) if len(vals) else vals), seen


_FIELD_RANGE = {"month": (1, 12), "hour": (0, 23), "minute": (0, 59), "second": (0, 59)}


def month_span(year: np.ndarray, month: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(days since the epoch of each (year, month)'s first day, the month's length in days);
    months outside 1-12 are clamped."""
    m = ((np.asarray(year, np.int64) - 1970) * 12 + np.clip(month, 1, 12) - 1).astype("M8[M]")
    first = m.astype("M8[D]").astype(np.int64)
    return first, (m + 1).astype("M8[D]").astype(np.int64) - first


def calendar_value(
    fields: dict[str, np.ndarray],
    timezone: str | None,
    unit: str,
    *,
    first_of_repeated: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps in ``unit`` since the epoch, valid): the local time given by calendar fields.

    ``fields`` maps each name of ``CALENDAR_PARTS`` to an int64 array (a constant field as a
    full array). A field out of its range (month 13, April 31) is clamped so every row still gets
    a timestamp, and ``valid`` is False there: such parts name no real time, so the rule does
    not hold on that row. A local time that a daylight-saving jump skips moves forward to the
    first existing instant; one that happens twice (clocks set back) takes its first occurrence,
    or its second with ``first_of_repeated=False``.
    """
    year = fields["year"].astype(np.int64)
    n = year.shape[0]
    valid = (year >= 1678) & (year <= 2261)  # datetime64[ns] holds these years whole
    year = np.clip(year, 1678, 2261)
    v = {}
    for f, (lo, hi) in _FIELD_RANGE.items():
        x = fields[f].astype(np.int64)
        valid &= (x >= lo) & (x <= hi)
        v[f] = np.clip(x, lo, hi)
    first, length = month_span(year, v["month"])
    day = fields["day"].astype(np.int64)
    valid &= (day >= 1) & (day <= length)
    day = np.clip(day, 1, length)
    seconds = (first + day - 1) * 86_400 + v["hour"] * 3_600 + v["minute"] * 60 + v["second"]
    if timezone:
        import pandas as pd

        local = pd.DatetimeIndex((seconds * 1_000_000_000).astype("datetime64[ns]"))
        utc = local.tz_localize(
            timezone, ambiguous=np.full(n, first_of_repeated), nonexistent="shift_forward"
        )
        return utc.asi8 // (1_000_000_000 // PER_SECOND[unit]), valid
    return seconds * PER_SECOND[unit], valid


def calendar_fields(
    parts: list[str], values: list[np.ndarray], constants: dict[str, int], n: int
) -> dict[str, np.ndarray]:
    """Every calendar field as an int64 array: the part columns' values, else the constants."""
    out = {f: np.full(n, int(constants.get(f, 1 if f in ("month", "day") else 0)), np.int64)
           for f in CALENDAR_PARTS}  # fmt: skip
    for f, x in zip(parts, values, strict=True):
        out[f] = np.rint(x).astype(np.int64) if x.dtype != np.int64 else x
    return out


def _when_text(when: dict[str, Any]) -> str:
    return "null" if when.get("null") else f"== {when['equals']!r}"


def triggered(column: Any, triggers: Sequence[str], whens: Sequence[dict[str, Any]]) -> np.ndarray:
    """Rows where any trigger column ``column(name)`` is in its state (an implication's rows)."""
    hit = _special(column(triggers[0]), whens[0])
    for b, w in zip(triggers[1:], whens[1:], strict=True):
        hit = hit | _special(column(b), w)
    return hit


def _special(arr: pa.ChunkedArray | pa.Array, spec: dict[str, Any]) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    null = np.asarray(arr.is_null(), dtype=bool)
    if pa.types.is_floating(arr.type):
        null |= np.asarray(pc.is_nan(arr).fill_null(False), dtype=bool)
    if spec.get("null"):
        return null
    key = "sentinel" if "sentinel" in spec else "equals"
    value = spec[key]
    from pfcore.schema import is_temporal, temporal_storage

    if is_temporal(arr.type):
        arr = arr.cast(temporal_storage(arr.type))
    try:
        eq = pc.equal(arr, pa.scalar(value).cast(arr.type))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        eq = pc.equal(arr.cast(pa.string()), pa.scalar(str(value)))
    return np.asarray(eq.fill_null(False), dtype=bool)


def hold_mask(rule: Rule, table: pa.Table) -> np.ndarray:
    """True for every row of ``table`` that satisfies ``rule``."""
    n = table.num_rows
    c, p = rule.columns, rule.params
    missing = [x for x in c if x not in table.column_names]
    if missing:
        raise InputError(f"rule {rule.name!r} names a column the table lacks", column=missing[0])
    if rule.kind == "inequality":
        a, pa_ = numeric_values(table.column(c[0]))
        b, pb = numeric_values(table.column(c[1]))
        ok = (a < b) if p.get("strict") else (a <= b)
        return ok | ~(pa_ & pb)
    if rule.kind in ("range", "sign"):
        v, present = numeric_values(table.column(c[0]))
        ok = np.ones(n, dtype=bool)
        if p.get("min") is not None:
            ok &= (v > p["min"]) if p.get("min_strict") else (v >= p["min"])
        if p.get("max") is not None:
            ok &= (v < p["max"]) if p.get("max_strict") else (v <= p["max"])
        return ok | ~present
    if rule.kind == "identity":
        t, pt = numeric_values(table.column(c[0]))
        ops = [numeric_values(table.column(x)) for x in c[1:]]
        f = linear_value(p["coefficients"], p["intercept"], [o[0] for o in ops])
        present = pt.copy()
        for _, po in ops:
            present &= po
        diff = np.abs(t.astype(f.dtype) - f)
        return (diff <= p.get("tolerance", 0.0)) | ~present
    if rule.kind == "clock":
        t, pt = numeric_values(table.column(c[0]))
        ok = is_clock(t, int(p.get("midnight", 2400)))
        if len(c) == 3:
            b, pb = numeric_values(table.column(c[1]))
            d, pd_ = numeric_values(table.column(c[2]))
            both = pt & pb & pd_
            m = clock_minutes(b) + d - clock_minutes(t)
            ok &= (np.mod(m, 1440) == 0) | ~both
        return ok | ~pt
    if rule.kind == "calendar":
        t, present = numeric_values(table.column(c[0]))
        vals = []
        for x in c[1:]:
            v, pv = numeric_values(table.column(x))
            vals.append(v)
            present &= pv
        fields = calendar_fields(p["parts"], vals, p.get("constants", {}), n)
        unit = table.column(c[0]).type.unit
        value, valid = calendar_value(fields, p.get("timezone"), unit)
        ok = value == t
        if p.get("timezone"):
            ok |= calendar_value(fields, p["timezone"], unit, first_of_repeated=False)[0] == t
        return (ok & valid) | ~present
    if rule.kind == "missing":
        special = _special(table.column(c[0]), p["special"])
        if p.get("implies"):
            return special | ~triggered(table.column, c[1:], p["when"])
        return special == _special(table.column(c[1]), p["when"])
    if rule.kind == "fixed":
        dst = table.column(c[1]).combine_chunks()
        expected, seen = fixed_targets(rule, table.column(c[0]), dst.type)
        if not len(expected):
            expected = dst
        same = np.asarray(
            pc.or_kleene(
                pc.equal(expected, dst), pc.and_(expected.is_null(), dst.is_null())
            ).fill_null(False),
            dtype=bool,
        )
        return same | ~seen
    if rule.kind == "values":
        from pfcore.rules.valuesets import ValueSets

        keys = [table.column(x) for x in c[1:]]
        sets = ValueSets.from_params(p, [k.type for k in keys])
        v, present = numeric_values(table.column(c[0]))
        return sets.holds(v, present & ~np.isnan(v), keys)
    if rule.kind == "key":
        cols = [table.column(x).combine_chunks() for x in c]
        codes = np.zeros(n, dtype=np.int64)
        for arr in cols:
            enc = pc.dictionary_encode(arr)
            k = len(enc.dictionary) + 1
            codes = codes * k + np.asarray(enc.indices.fill_null(k - 1), dtype=np.int64)
            _, codes = np.unique(codes, return_inverse=True)
        counts = np.bincount(codes, minlength=1) if n else np.zeros(0, dtype=np.int64)
        return counts[codes] == 1 if n else np.ones(0, dtype=bool)
    # expression: violating rows are those where it is false (null holds, as in SQL CHECK)
    from pfcore.rules.expr import parse, to_arrow

    expr = to_arrow(parse(p["expression"]))
    idx = table.select(c).append_column("__row__", pa.array(np.arange(n, dtype=np.int64)))
    try:
        bad = idx.filter(~expr).column("__row__")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise InputError(f"rule {rule.name!r} cannot be evaluated: {exc}") from None
    ok = np.ones(n, dtype=bool)
    ok[np.asarray(bad, dtype=np.int64)] = False
    return ok


def hold_rate(rule: Rule, table: pa.Table) -> float | None:
    """Share of rows that satisfy ``rule`` (None for an empty table)."""
    if table.num_rows == 0:
        return None
    return float(hold_mask(rule, table).mean())


def first_violation(rule: Rule, table: pa.Table) -> tuple[int, dict[str, Any]] | None:
    """(row index, the rule's values in that row) of the first row that breaks ``rule``."""
    mask = hold_mask(rule, table)
    bad = np.flatnonzero(~mask)
    if not bad.size:
        return None
    i = int(bad[0])
    row = table.select(rule.columns).slice(i, 1).to_pylist()[0]
    return i, {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}

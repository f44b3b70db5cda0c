"""Decide how each rule is enforced by construction, or why it cannot be.

Each column is built by at most one construction, and constructions must not depend on each
other in a cycle, so rules compete: declared rules go first, then detected ones, and within
each, identities (they remove a column from the model), missingness, inequalities, fixed
combinations. A rule that cannot be built is kept with ``active = False`` and a note.

Constructions (``pfcore.transforms.ruled``):

* ``computed``: an identity's (or a calendar timestamp's) target is not modelled; decode
  computes it from its operands.
* ``conditioned``: a column that is null / a sentinel exactly when a trigger condition holds is
  modelled on its other rows; decode writes the special value exactly where the trigger says.
* ``gap``: for low <= high the model sees high - max(lows) >= 0 (or low via min(highs) - low);
  decode adds the parents back. A column may have several parents on one side.
* ``derived``: a fixed combination; the target is looked up from its source's decoded value.
* ``snapped``: columns a calendar part of a date determines (a month beside its date) stay
  modelled; decode moves the date by whole days (hours) to the nearest one whose parts give them
  (``rules.dateparts``).
* ``pinned``: a number a discrete key holds to a few values is modelled as usual; decode moves
  it to the nearest value its key held (``rules.pinned``).
* ``support``: ranges and signs hold because numeric decode never leaves the fitted range and
  discrete decode only emits values seen in training.
* ``masked``: an order between two numbered codes (``rules.model.numbered_codes``: bedrooms
  at most rooms, both few-valued counts) holds because the discrete sampler never draws a class
  the other column's drawn class rules out (``rules.masks``); both columns stay modelled.
* ``repaired``: an order between two numbers that none of the above builds (both ends
  sometimes missing, an end built by another rule) is planned after the transform's columns
  (``rules.repair``, from ``TableTransformer.fit``): decode moves one end on the rows that
  break it, reflected across the other onto one of its own training values.
* ``regenerated``: a one-column key on an ``id`` column (fresh unique ids per row index).
* ``checked``: a custom expression; not built in, the fidelity gate fails a model that breaks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pfcore.rules.model import Rule, far_extreme, numbered_codes, numeric_values

__all__ = ["Plan", "plan_rules", "reaches"]

NUMERIC = ("continuous", "integer", "datetime")
_ORDER = {
    "identity": 0, "clock": 0, "calendar": 0, "missing": 1, "inequality": 2, "fixed": 3,
    "values": 4,
}  # fmt: skip


def _priority(r: Rule) -> int:
    """Implications come last: they fix one value on some rows, and must not take a column that
    a rule fixing all of its rows (nyc_flights' minute from the scheduled time) would build.
    (Declared rules are planned before all detected ones, whatever their kind.)"""
    return 8 if r.params.get("implies") else _ORDER.get(r.kind, 9)


@dataclass
class Plan:
    """How the transform enforces the active rules, column by column."""

    #: target -> (formula, with_inner): see ``transforms.ruled.ComputedTransform``
    computed: dict[str, tuple[dict[str, Any], bool]] = field(default_factory=dict)
    clocks: dict[str, int] = field(default_factory=dict)  # HHMM column -> midnight
    #: modelled HHMM column -> the clock column it is modelled after (``_clock_bases``)
    clock_bases: dict[str, str] = field(default_factory=dict)
    conditioned: dict[str, Rule] = field(default_factory=dict)
    #: child -> (direction, parents, strict): +1 child >= max(parents), -1 child <= min(parents)
    gaps: dict[str, tuple[int, list[str], bool]] = field(default_factory=dict)
    derived: dict[str, str] = field(default_factory=dict)  # target -> source
    pinned: dict[str, Rule] = field(default_factory=dict)  # target -> its rule (keys: columns[1:])
    #: day column -> its calendar's {"year": column or constant, "month": column or constant}
    month_days: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: date column -> the fixed rules ``part(date) determines column`` its decode snaps to
    snapped: dict[str, list[Rule]] = field(default_factory=dict)
    #: gap child -> the implication written over it after the gap's decode (``_over_gap``)
    overwrites: dict[str, Rule] = field(default_factory=dict)
    #: inequalities between two numbered codes, kept by masking classes when drawing
    masked: list[Rule] = field(default_factory=list)
    #: built column -> the columns its construction reads (what ``claim`` checked for cycles)
    reads: dict[str, set[str]] = field(default_factory=dict)

    def built(self) -> set[str]:
        """Every column a construction builds (decoded from other columns)."""
        return {
            *self.computed, *self.clocks, *self.conditioned, *self.gaps, *self.derived,
            *self.pinned, *self.month_days, *self.snapped,
        }  # fmt: skip


def _integral(col: Any) -> bool:
    return col.kind == "datetime" or pa.types.is_integer(col.type)


def reaches(reads: Mapping[str, set[str]], start: str, goal: str) -> bool:
    """Whether ``goal`` is ``start`` or a column ``start``'s construction reads, directly or
    through others (``reads``: built column -> the columns it reads, ``Plan.reads``)."""
    seen, todo = set(), [start]
    while todo:
        c = todo.pop()
        if c == goal:
            return True
        if c not in seen:
            seen.add(c)
            todo.extend(reads.get(c, ()))
    return False


def plan_rules(rules: list[Rule], schema: Any, table: pa.Table) -> Plan:
    """Fill each rule's ``active`` / ``enforcement`` / ``note`` and return the constructions."""
    plan = Plan()
    deps = plan.reads

    def claim(col: str, on: list[str]) -> bool:
        if any(reaches(deps, p, col) for p in on):
            return False
        deps.setdefault(col, set()).update(on)
        return True

    def claimed(col: str) -> bool:
        return (
            col in plan.computed
            or col in plan.conditioned
            or col in plan.derived
            or col in plan.clocks
            or col in plan.month_days
            or col in plan.pinned
            or col in plan.snapped
        )

    def off(rule: Rule, why: str) -> None:
        rule.active, rule.enforcement, rule.note = False, "none", why

    names = set(schema.names)
    by_priority = sorted(
        rules,
        key=lambda r: (r.origin != "declared", _priority(r) + (len(r.columns) == 1)),
    )
    identity_cols: list[tuple[set[str], Rule]] = []
    implied_orders: list[Rule] = []
    for r in by_priority:
        r.active, r.enforcement, r.note = True, "", ""
        if any(c not in names for c in r.columns):
            off(r, "names a column the schema does not have")
            continue
        cols = [schema[c] for c in r.columns]
        if r.kind in ("identity", "calendar") or (r.kind == "clock" and len(r.columns) == 3):
            t = cols[0]
            nulls = _nulls_follow_operands(table, r.columns)
            if t.kind not in NUMERIC:
                off(r, f"target {t.name!r} is {t.kind}, not a numeric or datetime column")
            elif claimed(t.name) or t.name in plan.gaps:
                off(r, f"{t.name!r} is already built by another rule")
            elif nulls is None:
                off(r, f"{t.name!r} is missing on rows where its operands are present")
            elif not claim(t.name, r.columns[1:]):
                off(r, "would make the rules depend on each other in a cycle")
            elif r.kind == "calendar" and (why := _month_day(plan, r, claimed, claim)):
                deps.pop(t.name, None)
                off(r, why)
            else:
                if r.kind == "clock":
                    formula = {"type": "clock", "operands": r.columns[1:],
                               "midnight": int(r.params.get("midnight", 2400))}  # fmt: skip
                elif r.kind == "calendar":
                    formula = {"type": "calendar", "operands": r.columns[1:],
                               "parts": r.params["parts"],
                               "constants": r.params.get("constants", {}),
                               "timezone": r.params.get("timezone")}  # fmt: skip
                else:
                    formula = {"type": "linear", "operands": r.columns[1:],
                               "coefficients": r.params["coefficients"],
                               "intercept": r.params["intercept"]}  # fmt: skip
                plan.computed[t.name] = (formula, not nulls)
                r.enforcement = "computed"
                identity_cols.append((set(r.columns), r))
        elif r.kind == "clock":
            c = cols[0]
            midnight = int(r.params.get("midnight", 2400))
            if c.name in plan.computed and plan.computed[c.name][0]["type"] == "clock":
                r.enforcement = "computed"
            elif _clock_by_parts(plan, c.name, midnight, table):
                r.enforcement = "computed"
                r.note = "computed as 100 * hour + minute from an hour in 0-23 and a minute in 0-59"
            elif claimed(c.name) or c.name in plan.gaps:
                off(r, f"{c.name!r} is already built by another rule")
            elif c.kind not in ("continuous", "integer"):
                off(r, f"{c.name!r} is {c.kind}, not a number")
            else:
                claim(c.name, [])
                plan.clocks[c.name] = int(r.params.get("midnight", 2400))
                r.enforcement = "clock"
        elif r.kind == "missing":
            a = cols[0]
            implied = "" if r.params.get("implies") else _implied_by_computed(plan, r, table)
            if implied:
                r.enforcement = "computed"
                r.note = f"holds because {implied!r} is null exactly when an operand is"
            elif a.kind not in NUMERIC:
                off(r, f"{a.name!r} is {a.kind}: only numeric/datetime columns are conditioned")
            elif r.params.get("implies") and a.name in plan.gaps and not claimed(a.name):
                why = _over_gap(plan, r, a, table)
                if why:
                    off(r, why)
                elif not claim(a.name, list(r.columns[1:])):
                    off(r, "would make the rules depend on each other in a cycle")
                else:
                    plan.overwrites[a.name] = r
                    r.enforcement = "conditioned"
                    r.note = f"written over {a.name!r} after its inequality's gap is decoded"
            elif claimed(a.name) or a.name in plan.gaps:
                off(r, f"{a.name!r} is already built by another rule")
            elif (
                "sentinel" in r.params["special"]
                and not r.params.get("implies")  # its sentinel is also an ordinary value
                and not _sentinel_outside(table, r)
            ):
                off(r, "the sentinel lies inside the range of the column's other values")
            elif not claim(a.name, list(r.columns[1:])):
                off(r, "would make the rules depend on each other in a cycle")
            else:
                plan.conditioned[a.name] = r
                r.enforcement = "conditioned"
        elif r.kind == "inequality" and all(numbered_codes(c) for c in cols):
            plan.masked.append(r)  # checked once every construction is known (below)
            r.enforcement = "masked"
        elif r.kind == "inequality":
            why = _gap(plan, r, cols, table, claimed, claim)
            if why and (implied := _implied_order(plan, r, table)):
                implied_orders.append(r)  # checked again once every construction is known
                r.enforcement = "computed"
                r.note = f"holds because {implied!r} is computed by an identity that keeps it"
            elif why:
                off(r, why)
            else:
                r.enforcement = "gap"
        elif r.kind == "fixed":
            src, dst = cols
            if r.params.get("part") is not None:
                why = _snap_blocked(plan, r, table, claimed)
                if why:
                    off(r, why)
                elif not claim(src.name, [dst.name]):
                    off(r, "would make the rules depend on each other in a cycle")
                else:
                    plan.snapped.setdefault(src.name, []).append(r)
                    r.enforcement = "snapped"
            elif src.kind not in ("categorical", "boolean", "integer"):
                off(r, f"source {src.name!r} is {src.kind}: a fixed combination needs a "
                    "discrete source")  # fmt: skip
            elif (
                claimed(dst.name) or dst.name in plan.gaps or dst.kind in ("id", "constant", "text")
            ):
                off(r, f"{dst.name!r} is already built by another rule")
            elif src.name in plan.derived:
                off(r, f"{src.name!r} is itself looked up from another column")
            elif dst.name in {s for s in plan.derived.values()}:
                off(r, f"{dst.name!r} is the source of another fixed combination")
            elif not claim(dst.name, [src.name]):
                off(r, "would make the rules depend on each other in a cycle")
            else:
                plan.derived[dst.name] = src.name
                r.enforcement = "derived"
        elif r.kind == "values":
            t = cols[0]
            if t.kind not in ("continuous", "integer"):
                off(r, f"{t.name!r} is {t.kind}, not a number")
            elif claimed(t.name) or t.name in plan.gaps:
                off(r, f"{t.name!r} is already built by another rule")
            elif not claim(t.name, r.columns[1:]):
                off(r, "would make the rules depend on each other in a cycle")
            else:
                plan.pinned[t.name] = r
                r.enforcement = "pinned"
        elif r.kind in ("range", "sign"):
            c = cols[0]
            if c.kind == "id":
                off(r, f"{c.name!r} is regenerated as a fresh id per row; bounds do not apply")
            elif c.name in plan.computed:
                if _implied_bounds(plan, r, table):
                    r.enforcement = "computed"
                    r.note = "holds for every value the formula can produce from its operands"
                else:
                    off(r, f"{c.name!r} is computed by an identity; its range is not enforced")
            else:
                r.enforcement = "support"
        elif r.kind == "key":
            if len(cols) == 1 and cols[0].kind == "id":
                r.enforcement = "regenerated"
                r.note = (
                    "a fresh id per row index (integers: start + step * index; strings: prefix "
                    "+ counter), so no two rows of any batch share one; integer ids stop at "
                    "the column type's largest value"
                )
            elif len(cols) == 1:
                off(r, "not enforced: declare it `unique` to regenerate the column as an id")
            else:
                off(r, "not enforced: composite keys of modelled columns are not generated")
        else:
            r.enforcement = "checked"
            r.note = "not built in: the fidelity gate fails a model whose rows break it"
    for r in implied_orders:  # a later construction may have widened an operand's range
        if not _implied_order(plan, r, table):
            off(r, "no construction keeps it (an identity did, until another rule rebuilt one "
                "of its operands)")  # fmt: skip
    built = plan.built()
    for r in list(plan.masked):
        taken = [c for c in r.columns if c in built]
        if taken:  # a column decoded from others is not drawn, so no class of it is masked
            plan.masked.remove(r)
            off(r, f"{taken[0]!r} is built by another rule, not drawn by the model")
    _clock_bases(plan, rules, table, claim)
    return plan


#: A modelled clock column is modelled after another clock column when the minutes between
#: them (modulo a day) carry at least this many nats less entropy than its own time of day,
#: both in 10-minute bins. Why entropy: with B the base, C the column and G = C - B, the
#: dependence the model has to learn between the pair, I(C; B) = H(C) - H(G | B), falls to
#: I(G; B) = H(G) - H(G | B) exactly when H(G) < H(C). nyc_flights' scheduled arrival: 4.63
#: nats as a time of day, 2.86 after the scheduled departure; two independent clocks' difference
#: spreads wider than either, so it is never chosen.
MIN_CLOCK_BASE_NATS = 0.5
_CLOCK_BASE_ROWS = 50_000


def _clock_bases(plan: Plan, rules: list[Rule], table: pa.Table, claim) -> None:
    """Pick, for each modelled clock column, the clock column of the same row it is best
    modelled after (``Plan.clock_bases``; ``transforms.ruled.ClockTransform``'s ``base``)."""
    from pfcore.rules.model import MINUTES_PER_DAY, clock_minutes

    clock_cols = sorted(
        {r.columns[0] for r in rules if r.kind == "clock" and len(r.columns) == 1 and r.active}
    )
    targets = [c for c in sorted(plan.clocks) if c in clock_cols]
    if len(clock_cols) < 2 or not targets:
        return
    step = max(1, table.num_rows // _CLOCK_BASE_ROWS)  # spread over the table, not its head
    rows = table.take(np.arange(0, table.num_rows, step))
    minutes = {}
    for c in clock_cols:
        v, present = numeric_values(rows.column(c))
        minutes[c] = (clock_minutes(np.rint(v).astype(np.int64)), present)

    def entropy(m: np.ndarray) -> float:
        counts = np.bincount(np.mod(m, MINUTES_PER_DAY) // 10)
        p = counts[counts > 0] / m.size
        return float(-(p * np.log(p)).sum())

    for c in targets:
        m, present = minutes[c]
        if present.sum() < 2:
            continue
        own, best = entropy(m[present]), None
        for b in clock_cols:
            bm, b_present = minutes[b]
            if b == c or (present & ~b_present).any():
                continue
            h = entropy(m[present] - bm[present])
            if h <= own - MIN_CLOCK_BASE_NATS and (best is None or h < best[0]):
                best = (h, b)
        if best is not None and claim(c, [best[1]]):
            plan.clock_bases[c] = best[1]
            for r in rules:
                if r.kind == "clock" and r.columns == [c] and r.enforcement == "clock":
                    r.note = (
                        f"modelled as the minutes after {best[1]!r}, modulo a day ({best[0]:.2f} "
                        f"nats against {own:.2f} as a time of day)"
                    )


def _month_day(plan: Plan, r: Rule, claimed, claim) -> str:
    """Build a calendar's day column within its month, so every decoded date exists (no
    April 31) and the timestamp built from the parts always matches them; '' when done, else
    why the calendar cannot be enforced."""
    given = dict(zip(r.params["parts"], r.columns[1:], strict=True))
    const = r.params.get("constants", {})
    if "day" not in given:
        return "" if int(const.get("day", 1)) <= 28 else "its constant day is not in every month"
    day = given["day"]
    if claimed(day) or day in plan.gaps:
        return f"its day column {day!r} is already built by another rule"
    on = [given[f] for f in ("year", "month") if f in given]
    if not claim(day, on):
        return "would make the rules depend on each other in a cycle"
    plan.month_days[day] = {f: given.get(f, int(const.get(f, 1))) for f in ("year", "month")}
    return ""


def _snap_blocked(plan: Plan, r: Rule, table: pa.Table, claimed) -> str:
    """Why the date-part rule ``r`` cannot be enforced by moving its date ('' if it can)."""
    from pfcore.rules.dateparts import not_snappable

    src = r.columns[0]  # the part column only has to be decoded first (``claim`` checks)
    if (claimed(src) and src not in plan.snapped) or src in plan.gaps:
        return f"{src!r} is already built by another rule"
    return not_snappable(r, table.column(src)) or ""


def _gap(plan: Plan, r: Rule, cols: list[Any], table: pa.Table, claimed, claim) -> str:
    low, high = cols
    if low.kind not in NUMERIC or high.kind not in NUMERIC:
        return "compares a column that is not numeric or datetime"
    if (low.kind == "datetime") != (high.kind == "datetime") or (
        low.kind == "datetime" and low.arrow_type != high.arrow_type
    ):
        return "compares columns of different types (a datetime, or datetime units)"
    strict = bool(r.params.get("strict"))
    for child, parent, direction in ((high, low, 1), (low, high, -1)):
        if claimed(child.name):
            continue
        if _integral(child) and not _integral(parent):
            continue  # an integer is not a float parent plus a gap; the float side can be
        if table.column(parent.name).null_count:
            continue
        cur = plan.gaps.get(child.name)
        if cur is not None and cur[0] != direction:
            continue
        if not claim(child.name, [parent.name]):
            continue
        if cur is None:
            plan.gaps[child.name] = (direction, [parent.name], strict)
        else:
            plan.gaps[child.name] = (direction, cur[1] + [parent.name], cur[2] and strict)
        return ""
    return (
        "neither column can be rebuilt from the other (already built, a nullable parent, an "
        "integer child of a float parent, or a cycle)"
    )


def _over_gap(plan: Plan, r: Rule, a: Any, table: pa.Table) -> str:
    """Why the implication ``r`` cannot be written over ``a``'s gap decode ("" if it can): only
    a number's minimum over an upper bound (``a <= parents``) or its maximum over a lower bound
    (``a >= parents``) keeps the inequality on every row, since a decoded parent never leaves
    its training range, which lies on the far side of that extreme. Ames house prices:
    unfinished basement area is 0 whenever there is no basement, and at most the total area."""
    if a.kind not in ("continuous", "integer"):
        return f"{a.name!r} is built by an inequality and is not a plain number"
    direction = plan.gaps[a.name][0]
    v, present = numeric_values(table.column(a.name))
    if not present.any():
        return f"{a.name!r} has no value"
    if r.params["special"].get("sentinel") != far_extreme(v[present], direction):
        side = "minimum" if direction < 0 else "maximum"
        return (
            f"{a.name!r} is built by an inequality whose far side is its {side}, and the "
            "sentinel is not that value"
        )
    return ""


def _nulls_follow_operands(table: pa.Table, columns: list[str]) -> bool | None:
    """True: the target is present exactly when every operand is; False: it is also present
    on some rows where an operand is missing (those rows need their own model); None: it is
    missing on a row where every operand is present (the rule cannot compute it)."""
    _, pt = numeric_values(table.column(columns[0]))
    present = np.ones(table.num_rows, dtype=bool)
    for c in columns[1:]:
        present &= numeric_values(table.column(c))[1]
    if np.array_equal(pt, present):
        return True
    return None if (present & ~pt).any() else False


def _implied_by_computed(plan: Plan, r: Rule, table: pa.Table) -> str:
    """'A null exactly when B null' where one of them is computed, without its own model, from
    the other and from columns that are never missing: the computation makes it hold."""
    p = r.params
    if not (p["special"].get("null") and p["when"].get("null")):
        return ""
    a, b = r.columns
    for target, other in ((a, b), (b, a)):
        spec = plan.computed.get(target)
        if spec is None or spec[1] or other not in spec[0]["operands"]:
            continue
        rest = [c for c in spec[0]["operands"] if c != other]
        if all(_never_null(plan, c, table) for c in rest):
            return target
    return ""


def _never_null(plan: Plan, col: str, table: pa.Table) -> bool:
    """No decoded row can be null: no nulls in training, and if computed, from such columns."""
    if table.column(col).null_count:
        return False
    spec = plan.computed.get(col)
    if spec is None:
        return True
    return not spec[1] and all(_never_null(plan, c, table) for c in spec[0]["operands"])


def _implied_order(plan: Plan, r: Rule, table: pa.Table) -> str:
    """The column whose identity keeps the order ``r`` on every decoded row, or "": one end is
    computed as the other end plus terms whose decoded range keeps the difference on the
    right side of 0 (Ames house prices: the ground-floor area is at most the living area, which
    is computed as ground floor + upper floor + low-quality area, all at least 0; King County:
    the area above ground is at most the living area). Integer columns, coefficients and
    intercept only, so the decoded arithmetic is exact."""
    low, high = r.columns
    strict = bool(r.params.get("strict"))
    for target, other, side in ((high, low, 1), (low, high, -1)):
        spec = plan.computed.get(target)
        if spec is None or spec[1] or spec[0]["type"] != "linear":
            continue
        f = spec[0]
        terms = dict(zip(f["operands"], f["coefficients"], strict=True))
        numbers = [f["intercept"], *terms.values()]
        if terms.get(other) != 1.0 or any(float(k) != int(k) for k in numbers):
            continue
        if not all(pa.types.is_integer(table.schema.field(c).type) for c in (target, *terms)):
            continue
        rest = {**f, "operands": [c for c in terms if c != other],
                "coefficients": [k for c, k in terms.items() if c != other]}  # fmt: skip
        rng = _formula_range(plan, rest, table)
        if rng is None:
            continue
        gap = rng[0] if side > 0 else -rng[1]  # the least high - low any decoded row can have
        if gap > 0 or (gap == 0 and not strict):
            return target
    return ""


def _decoded_range(plan: Plan, col: str, table: pa.Table) -> tuple[float, float] | None:
    """Bounds every decoded value of ``col`` lies in, when they follow from construction:
    a modelled column never leaves its training range (numeric decode clamps to its fitted
    range, discrete decode emits seen values), nor does a conditioned one (its special value
    is one of its training values, or null, and its other rows are modelled on its other
    values); a computed one follows its formula."""
    spec = plan.computed.get(col)
    if col in plan.gaps:
        return None
    if spec is None:
        v, present = numeric_values(table.column(col))
        return (float(v[present].min()), float(v[present].max())) if present.any() else None
    formula = spec[0]
    if formula["type"] == "clock":  # its own model (spec[1]) also decodes through the clock
        return (1.0, 2400.0) if formula.get("midnight", 2400) == 2400 else (0.0, 2359.0)
    if spec[1] or formula["type"] == "calendar":
        return None
    return _formula_range(plan, formula, table)


def _formula_range(
    plan: Plan, formula: dict[str, Any], table: pa.Table
) -> tuple[float, float] | None:
    """Bounds of a linear formula's value over its operands' decoded ranges (None: unbounded)."""
    lo = hi = float(formula["intercept"])
    for k, c in zip(formula["coefficients"], formula["operands"], strict=True):
        r = _decoded_range(plan, c, table)
        if r is None:
            return None
        a, b = k * r[0], k * r[1]
        lo, hi = lo + min(a, b), hi + max(a, b)
    return lo, hi


def _implied_bounds(plan: Plan, r: Rule, table: pa.Table) -> bool:
    rng = _decoded_range(plan, r.columns[0], table)
    if rng is None:
        return False
    p = r.params
    ok = True
    if p.get("min") is not None:
        ok &= rng[0] > p["min"] if p.get("min_strict") else rng[0] >= p["min"]
    if p.get("max") is not None:
        ok &= rng[1] < p["max"] if p.get("max_strict") else rng[1] <= p["max"]
    return bool(ok)


def _clock_by_parts(plan: Plan, col: str, midnight: int, table: pa.Table) -> bool:
    """An HHMM column computed as 100 * hour + minute, with hour in 0..23 and minute in 0..59
    (checked on their decoded ranges), is always a valid clock time."""
    spec = plan.computed.get(col)
    if spec is None or spec[1] or spec[0]["type"] != "linear" or spec[0]["intercept"] != 0:
        return False
    parts = dict(zip(spec[0]["coefficients"], spec[0]["operands"], strict=True))
    if set(parts) != {100.0, 1.0}:
        return False
    h, m = _decoded_range(plan, parts[100.0], table), _decoded_range(plan, parts[1.0], table)
    if h is None or m is None or h[0] < 0 or h[1] > 23 or m[0] < 0 or m[1] > 59:
        return False
    return not (midnight == 2400 and h[0] == 0 and m[0] == 0)


def _sentinel_outside(table: pa.Table, r: Rule) -> bool:
    v, present = numeric_values(table.column(r.columns[0]))
    s = r.params["special"]["sentinel"]
    other = v[present & (v != s)]
    return bool(other.size == 0 or s < other.min() or s > other.max()) and not (~present).any()

"""Conditions on both ends of an order between two numbered codes (``pfcore.rules.masks``).

Why: the model masks the classes an order rules out only for the columns it draws. A request
that gives both ends draws them itself: an equality fixes one class, a range draws a class per
row from the training counts inside it. Drawn independently, ``beds=5`` with ``rooms>=3``
would give rows of five bedrooms and three rooms, which no real row has. So, before sampling,
each end's allowed values are cut to those the other end's allow (a request that leaves none
is contradictory and refused, naming the rule), and a range drawn after the other end's range
is drawn per row among the values that keep the order with that row's class (the same
inverse-CDF draw, over the allowed classes only; no rejection).

A rebalanced column is one more end the request draws (first): ``beds=uniform`` with
``rooms<=3`` is uniform over the bedroom counts three rooms allow, and ``rooms=uniform`` with
``beds>=4`` draws each row's bedrooms among those its drawn rooms allow (drawn independently,
56% and 37% of such rows broke the order); a class the rebalancing names with a share but the
order rules out is refused.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from pfcore.conditions import spread_rest
from pfcore.errors import InputError
from pfcore.rules.model import number_of, numeric_values

__all__ = ["draw_ordered", "drawn", "keep_orders", "refuse_broken_orders"]


def keep_orders(out: Any, rules: Any) -> None:
    """Cut ``out``'s (``CompiledConditions``) class ranges and rebalanced column to what every
    masked order of ``rules`` (a ``RuleSet`` or None) allows with the other end's conditions;
    record in ``out.class_orders`` the pairs of drawn columns (indices into ``drawn(out)``)
    drawn row by row. Raises ``InputError`` when the conditions and an order leave no value,
    or rule out a class the rebalancing names."""
    for r in _orders(rules, "masked"):
        low, high = r.columns
        a, b = _allowed(out, low), _allowed(out, high)
        if a is None or b is None:
            continue  # the model draws the free end under the order's mask
        strict = bool(r.params.get("strict"))
        top, bottom = b.max(), a.min()
        if not _keeps(a, top, True, strict).any() or not _keeps(b, bottom, False, strict).any():
            raise _contradiction(r)
        _cut(out, low, (top, True, strict), r)
        _cut(out, high, (bottom, False, strict), r)
        names = [cr.column for cr in drawn(out)]
        if low in names and high in names:
            out.class_orders.append((names.index(low), names.index(high), strict))


def drawn(out: Any) -> list[Any]:
    """The columns a request draws itself, in drawing order: the rebalanced one, then every
    range on a numbered code."""
    return ([] if out.rebalance is None else [out.rebalance]) + list(out.class_ranges)


def refuse_broken_orders(out: Any, rules: Any) -> None:
    """Refuse a request whose conditions on both ends of a repaired order (``rules.repair``)
    leave no pair of values that keeps it: decode never moves a given value, so every row
    would break the rule. (Overlapping conditions are drawn as they are: a row whose two given
    ends break the order keeps them.)"""
    for r in _orders(rules, "repaired"):
        low, high = (_bounds(out, c) for c in r.columns)
        if low is None or high is None:
            continue
        if low[0] > high[1] or (r.params.get("strict") and low[0] >= high[1]):
            raise _contradiction(r)


def _orders(rules: Any, enforcement: str) -> list[Any]:
    """The active orders of ``rules`` (a ``RuleSet`` or None) kept by ``enforcement``."""
    if rules is None:
        return []
    return [r for r in rules.rules if r.active and r.enforcement == enforcement]


def _contradiction(rule: Any) -> InputError:
    low, high = rule.columns
    return InputError(
        f"contradictory conditions: rule {rule.name!r} holds on every training row, and no "
        f"value the conditions allow for {high!r} keeps it",
        column=low,
    )


def _bounds(out: Any, name: str) -> tuple[Any, Any] | None:
    """The smallest and largest value a request allows for ``name`` (None: not given); int64
    for integers and datetimes (a nanosecond timestamp is not exact as a float)."""
    given = _allowed(out, name)
    if given is not None:
        return (given.min(), given.max()) if given.size else None
    if name in out.ranges:
        lo, hi = out.ranges[name]
        return (-np.inf if lo is None else number_of(lo), np.inf if hi is None else number_of(hi))
    return None


def _allowed(out: Any, name: str) -> np.ndarray | None:
    """The values a request allows for ``name`` (None: not given, the model draws it)."""
    if name in out.equal:
        v, present = numeric_values(out.equal[name])
        return v[present]
    for cr in drawn(out):
        if cr.column == name:
            return _numbers(cr)[cr.probs > 0]
    return None


def _keeps(v: np.ndarray, bound: float, below: bool, strict: bool) -> np.ndarray:
    """Which values ``v`` lie on the order's side of ``bound`` (below it if ``below``)."""
    if below:
        return v < bound if strict else v <= bound
    return v > bound if strict else v >= bound


def _cut(out: Any, name: str, side: tuple[float, bool, bool], rule: Any) -> None:
    """Keep only the classes of ``name``'s class range or rebalancing on ``side`` (``_keeps``'
    bound, below, strict) of the other end (an equality keeps its one value). A rebalancing
    keeps the shares of the classes it names (refused if it names one the order rules out) and
    spreads the rest over the others left; a uniform one stays uniform over the classes left."""
    for k, cr in enumerate(out.class_ranges):
        if cr.column == name:
            keep = _keeps(_numbers(cr), *side)
            if not keep.all():
                out.class_ranges[k] = _kept(cr, keep)
    rb = out.rebalance
    if rb is None or rb.column != name:
        return
    values = _numbers(rb)
    live = rb.probs > 0
    keep = _keeps(values, *side) & live
    if not (live & ~keep).any():
        return
    lost = rb.named & live & ~keep
    if lost.any():
        raise InputError(
            f"contradictory conditions: rebalancing asks for {name}={values[lost][0]:g}, which "
            f"rule {rule.name!r} rules out with the other conditions",
            column=name,
        )
    probs = spread_rest(rb.probs, rb.named, rb.probs * keep)
    if probs is None:
        raise InputError(
            f"contradictory conditions: the classes rule {rule.name!r} leaves cannot take the "
            "share the rebalancing leaves to unnamed classes",
            column=name,
        )
    out.rebalance = replace(rb, probs=probs)


def _numbers(cr: Any) -> np.ndarray:
    """A drawn column's class values as float64 numbers."""
    return numeric_values(cr.values)[0].astype(np.float64)


def _kept(cr: Any, keep: np.ndarray) -> Any:
    """Class range ``cr`` with only its ``keep`` classes, their shares renormalised."""
    probs = cr.probs[keep]
    return replace(
        cr,
        probs=probs / probs.sum(),
        slots=cr.slots[keep],
        values=cr.values.filter(keep),
    )


def draw_ordered(
    ranges: list[Any], orders: list[tuple[int, int, bool]], u: list[np.ndarray]
) -> list[np.ndarray]:
    """Each class range's drawn class per row (indices into its ``probs``), by inverse CDF at
    its uniforms ``u[k]`` in ``[0, 1)``; a range that is an end of an order with an earlier
    range draws among the classes that keep the order with that range's drawn class."""
    ordered = {k for lo, hi, _s in orders for k in (lo, hi)}  # only these are numbers
    values = {k: _numbers(ranges[k]) for k in ordered}
    out: list[np.ndarray] = []
    for k, cr in enumerate(ranges):
        weights = np.broadcast_to(cr.probs, (len(u[k]), len(cr.probs)))
        for lo, hi, strict in orders:
            other, mine_low = (hi, True) if lo == k else (lo, False) if hi == k else (-1, False)
            if not 0 <= other < k:
                continue
            v = values[other][out[other]][:, None]  # the earlier end's drawn value per row
            ok = (values[k] < v if strict else values[k] <= v) if mine_low else (
                values[k] > v if strict else values[k] >= v
            )  # fmt: skip
            weights = weights * ok
        cdf = np.cumsum(weights, axis=1)
        target = u[k] * cdf[:, -1]
        idx = (cdf <= target[:, None]).sum(axis=1)
        out.append(np.minimum(idx, len(cr.probs) - 1))
    return out

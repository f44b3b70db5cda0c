"""Conditions on both ends of an order between two numbered codes (``pfcore.rules.masks``).

Why: the model masks the classes an order rules out only for the columns it draws. A request
that gives both ends draws them itself: an equality fixes one class, a range draws a class per
row from the training counts inside it. Drawn independently, ``beds=5`` with ``rooms>=3``
would give rows of five bedrooms and three rooms, which no real row has. So, before sampling,
each end's allowed values are cut to those the other end's allow (a request that leaves none
is contradictory and refused, naming the rule), and a range drawn after the other end's range
is drawn per row among the values that keep the order with that row's class (the same
inverse-CDF draw, over the allowed classes only; no rejection).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from pfcore.errors import InputError
from pfcore.rules.model import numeric_values

__all__ = ["draw_ordered", "keep_orders", "refuse_broken_orders"]


def keep_orders(out: Any, rules: Any) -> None:
    """Cut ``out``'s (``CompiledConditions``) class ranges to what every masked order of
    ``rules`` (a ``RuleSet`` or None) allows with the other end's conditions; record in
    ``out.class_orders`` the pairs of ranges drawn row by row. Raises ``InputError`` when the
    conditions and an order leave no value."""
    masked = [] if rules is None else [
        r for r in rules.rules if r.active and r.enforcement == "masked"
    ]  # fmt: skip
    for r in masked:
        low, high = r.columns
        a, b = _allowed(out, low), _allowed(out, high)
        if a is None or b is None:
            continue  # the model draws the free end under the order's mask
        strict = bool(r.params.get("strict"))
        ok_a = a < b.max() if strict else a <= b.max()
        ok_b = b > a.min() if strict else b >= a.min()
        if not ok_a.any() or not ok_b.any():
            raise InputError(
                f"contradictory conditions: rule {r.name!r} holds on every training row, and "
                f"no value the conditions allow for {high!r} keeps it",
                column=low,
            )
        _cut(out, low, ok_a)
        _cut(out, high, ok_b)
        ranges = [cr.column for cr in out.class_ranges]
        if low in ranges and high in ranges:
            out.class_orders.append((ranges.index(low), ranges.index(high), strict))


def refuse_broken_orders(out: Any, rules: Any) -> None:
    """Refuse a request whose conditions on both ends of a repaired order (``rules.repair``)
    leave no pair of values that keeps it: decode never moves a given value, so every row
    would break the rule. (Overlapping conditions are drawn as they are: a row whose two given
    ends break the order keeps them.)"""
    repaired = [] if rules is None else [
        r for r in rules.rules if r.active and r.enforcement == "repaired"
    ]  # fmt: skip
    for r in repaired:
        low, high = (_bounds(out, c) for c in r.columns)
        if low is None or high is None:
            continue
        if low[0] > high[1] or (r.params.get("strict") and low[0] >= high[1]):
            raise InputError(
                f"contradictory conditions: rule {r.name!r} holds on every training row, and "
                f"no value the conditions allow for {r.columns[1]!r} keeps it",
                column=r.columns[0],
            )


def _bounds(out: Any, name: str) -> tuple[float, float] | None:
    """The smallest and largest value a request allows for ``name`` (None: not given)."""
    if name in out.equal:
        v, present = numeric_values(out.equal[name])
        return (float(v[present].min()), float(v[present].max())) if present.any() else None
    if name in out.ranges:
        lo, hi = out.ranges[name]
        return (-np.inf if lo is None else float(lo), np.inf if hi is None else float(hi))
    return None


def _allowed(out: Any, name: str) -> np.ndarray | None:
    """The values a request allows for ``name`` (None: not given, the model draws it)."""
    if name in out.equal:
        v, present = numeric_values(out.equal[name])
        return v[present].astype(np.float64)
    for cr in out.class_ranges:
        if cr.column == name:
            return numeric_values(cr.values)[0].astype(np.float64)
    return None


def _cut(out: Any, name: str, keep: np.ndarray) -> None:
    """Keep only the ``keep`` classes of ``name``'s class range (an equality keeps its one
    value: ``keep`` is then all true)."""
    for k, cr in enumerate(out.class_ranges):
        if cr.column == name and not keep.all():
            probs = cr.probs[keep]
            out.class_ranges[k] = replace(
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
    values = [numeric_values(cr.values)[0].astype(np.float64) for cr in ranges]
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

"""Orders between two numbered codes, as pairs of classes the discrete sampler never draws
together.

Why: counts with few values (bedrooms, rooms, garage places; a 0/1 flag beside a count) are
categorical columns, one class per value, drawn one after the other by the discrete network.
An order between two of them (``BedroomAbvGr <= TotRmsAbvGrd``, ``waterfront <= view``) is a
set of forbidden class pairs: the column drawn second never takes a class the first one's
drawn class rules out, so the order holds on every row, and where it does not bind the
network's own conditional law is only renormalised over the classes left.

``class_bans`` turns each masked rule (``rules.plan``: ``enforcement == "masked"``) into those
pairs, as dims of the encoded matrix; the model saves them with its weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pfcore.rules.model import Rule, numeric_values

__all__ = ["class_bans", "unmask"]


def class_bans(rules: list[Rule], transformer: Any) -> np.ndarray:
    """``(B, 2)`` encoded dims ``(i, j)`` of two columns' classes that break an active masked
    rule when drawn together. The null class is never banned (an order holds where a value is
    missing). A rule over a column whose rare values share a pooled slot (whose value is only
    drawn at decode) cannot be masked: it is switched off here, with a note."""
    by_name = {tr.column.name: tr for tr in transformer.transforms}
    starts = {b.column: b.start for b in transformer.blocks if b.kind == "onehot"}
    out: list[np.ndarray] = []
    for r in rules:
        if not (r.active and r.enforcement == "masked"):
            continue
        low, high = (by_name.get(c) for c in r.columns)
        if low is None or high is None or any(c not in starts for c in r.columns):
            unmask(r, "a column is not drawn as a code by the model")
            continue
        pooled = [t.column.name for t in (low, high) if getattr(t, "has_other", True)]
        if pooled:
            unmask(r, f"{pooled[0]!r} pools rare values in one class, so its value is not drawn")
            continue
        a, a_ok = numeric_values(low.kept)
        b, b_ok = numeric_values(high.kept)
        a, b = a.astype(np.float64)[:, None], b.astype(np.float64)[None, :]
        bad = (a >= b if r.params.get("strict") else a > b) & a_ok[:, None] & b_ok[None, :]
        i, j = np.nonzero(bad)
        out.append(np.stack([i + starts[r.columns[0]], j + starts[r.columns[1]]], axis=1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), np.int64)


def unmask(rule: Rule, why: str) -> None:
    """Switch a masked rule off: the model will not keep it."""
    rule.active, rule.enforcement, rule.note = False, "none", why

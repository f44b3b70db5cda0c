"""One function decides a table's rules at training time: declared ones checked, others detected.

Called by ``Synthesizer.fit`` (every training entry point goes through it). Declared rules that
the training rows break are refused (InputError naming the rule and the first violating row).
Detection runs on the training rows and checks each candidate on the held-out rows; without a
held-out table a seeded ``DETECT_HOLDOUT_FRACTION`` of the training rows plays that role for
the search (the rule must still hold on every training row).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pyarrow as pa

from pfcore.errors import InputError
from pfcore.rules.declare import _fill_map, check_declared, resolve_declared
from pfcore.rules.detect import detect_rules
from pfcore.rules.model import Rule, hold_rate
from pfcore.rules.pinned import pinned_rule
from pfcore.rules.ruleset import RuleSet

__all__ = ["collect_rules", "force_unique_ids"]

DETECT_HOLDOUT_FRACTION = 0.2


def collect_rules(
    train: pa.Table,
    holdout: pa.Table | None,
    schema: Any,
    ruleset: RuleSet | None,
    *,
    seed: int = 0,
) -> list[Rule]:
    """The rules in force: declared ones checked on the training rows, plus detected ones that hold
    on every training row and on >= 99.9% of held-out rows (unless ignored or replaced)."""
    ruleset = ruleset or RuleSet()
    declared = [copy.deepcopy(r) for r in ruleset.rules if r.origin == "declared"]
    declared = check_declared(resolve_declared(declared, schema), train)
    for r in declared:
        r.holdout_hold_rate = hold_rate(r, holdout) if holdout is not None else None
    if not ruleset.detect:
        return declared
    ignore = set(ruleset.ignore) | {r.name for r in declared}
    declared_keys = {(_family(r.kind), frozenset(r.columns)) for r in declared}
    if holdout is None and train.num_rows >= 20:
        perm = np.random.default_rng(np.random.SeedSequence([seed, 0xD7EC7])).permutation(
            train.num_rows
        )
        k = int(train.num_rows * DETECT_HOLDOUT_FRACTION)
        search, check = (
            train.take(pa.array(np.sort(perm[k:]))),
            train.take(pa.array(np.sort(perm[:k]))),
        )
        found = detect_rules(search, check, schema, seed=seed, ignore=sorted(ignore))
        kept = []
        for r in found:
            if r.kind == "fixed":
                try:
                    _fill_map(r, train)  # the map of every training row, not the search part
                except InputError:
                    continue
            elif r.kind == "values":  # the sets of every training row, likewise
                r.params = pinned_rule(train, r.columns[0], r.columns[1:]).params
            r.train_hold_rate = hold_rate(r, train)
            if r.train_hold_rate == 1.0:
                kept.append(r)
        found = kept
    else:
        found = detect_rules(train, holdout, schema, seed=seed, ignore=sorted(ignore))
    # A declared rule replaces what detection finds on the same columns (a declared a <= b and
    # a detected a < b would otherwise both claim b).
    # A declared "missing" rule conditions its column: a detected implication on that column
    # (other triggers) would be planned off as "already built", so it is not listed at all.
    conditioned = {r.columns[0] for r in declared if r.kind == "missing"}
    found = [
        r
        for r in found
        if (_family(r.kind), frozenset(r.columns)) not in declared_keys
        and not (r.kind == "missing" and r.params.get("implies") and r.columns[0] in conditioned)
    ]
    return declared + found


def _family(kind: str) -> str:
    return "range" if kind in ("range", "sign") else kind


def force_unique_ids(schema: Any, rules: list[Rule]) -> Any:
    """A schema where every column a declared one-column ``unique`` rule names is an ``id``:
    regenerated as a fresh value per row, so no two synthetic rows share it, in any batch size
    (integer ids continue the arithmetic sequence; string ids get a prefix and a counter)."""
    from pfcore.schema import apply_overrides

    keys = [r for r in rules if r.kind == "key" and r.origin == "declared" and len(r.columns) == 1]
    cols = {r.columns[0] for r in keys}
    cols = {c for c in cols if c in schema.names and schema[c].kind != "id"}
    if not cols:
        return schema
    return apply_overrides(schema, {"columns": {n: {"kind": "id"} for n in sorted(cols)}})

"""Numbers pinned by discrete columns: a value drawn only from the few its key held.

Why: tables hold numbers that a category, or a pair of them, fixes up to a handful of values: a
flight route's distance, a product's list price, a station's coordinates. A model draws such a
number near the right value, never exactly on it, and a detection classifier spots every
(key, value) combination that real rows never hold: on nyc_flights the pair (dest, distance)
was the table's most detectable pair (pair detection AUC 0.79), and (origin, distance),
(carrier, distance) and (flight, distance) came next. Decode therefore moves each modelled
value to the nearest value its key held in the fit rows (``transforms.ruled.PinnedTransform``).
The column stays modelled, so the other columns are still generated given a value near the
right one; the encode -> decode round trip stays exact (a real value is in its key's set); a key
the fit rows never held keeps the modelled value. Unlike a fixed combination
(``transforms.derived``: one value per key, exact on every row) a key may hold a few values:
two of nyc_flights' 224 routes changed their distance by one mile during the year.

A numeric column is pinned by a key (one discrete column, or a pair) when, on the detection rows,

* the key leaves few values: on average at most ``MAX_MEAN_VALUES`` per row's key, and the column
  has at least ``MIN_DISTINCT_RATIO`` times more distinct values than that (the key carries the
  information, not a coarse grid of the column's own);
* each key value has on average ``MIN_ROWS_PER_KEY`` rows (an id-like key "pins" everything);
* the sets generalise: fitted on half of the rows, they hold the other half's value for at
  least ``MIN_HELDOUT_COVERAGE`` of the rows whose key they saw, and they saw at least
  ``MIN_SEEN`` of those rows.

Of the keys that qualify, the one that leaves the fewest values wins (a single column before a
pair on a tie). Rule detection then keeps the rule only if it holds on the held-out rows too
(``rules.detect.MIN_HOLDOUT_RATE``).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pyarrow as pa

from pfcore.rules.model import Rule, numeric_values
from pfcore.rules.valuesets import ValueSets, key_codes

__all__ = ["find_pinned", "pinned_rule"]

MAX_MEAN_VALUES = 4.0
MIN_DISTINCT_RATIO = 10.0
MIN_ROWS_PER_KEY = 5
MIN_HELDOUT_COVERAGE = 0.99
MIN_SEEN = 0.9
#: Detection looks at this many rows (a seeded sample beyond), the first ``MAX_KEY_COLUMNS``
#: discrete columns as keys (and their pairs) and the first ``MAX_TARGETS`` numeric columns.
DETECT_ROWS = 50_000
MAX_KEY_COLUMNS = 16
MAX_TARGETS = 64
SCREEN_ROWS = 4_000
#: A key column with more distinct values than this is an identifier, not a key.
MAX_KEY_VALUES = 10_000
KEY_KINDS = ("categorical", "boolean", "integer")
TARGET_KINDS = ("continuous", "integer")


def pinned_rule(table: pa.Table, target: str, keys: list[str]) -> Rule:
    """The rule "``target`` takes only the values seen with ``keys``", its sets fitted on
    ``table``'s rows."""
    v, present = numeric_values(table.column(target))
    sets = ValueSets.fit([table.column(k) for k in keys], v, present)
    return Rule("values", [target, *keys], sets.to_params())


def find_pinned(
    table: pa.Table,
    columns: list[Any],
    seed: int = 0,
    skip: set[str] | frozenset[str] = frozenset(),
) -> dict[str, list[str]]:
    """Pinned numeric columns (target -> its key columns) found on ``table`` (module docstring);
    ``skip`` names targets another construction already builds."""
    n = table.num_rows
    if n < 2 * MIN_ROWS_PER_KEY:
        return {}
    if n > DETECT_ROWS:
        rows = np.sort(np.random.default_rng([seed, 0x9194]).choice(n, DETECT_ROWS, replace=False))
        table = table.take(pa.array(rows))
        n = DETECT_ROWS
    keys: dict[str, tuple[np.ndarray, int]] = {}
    for c in columns:
        if c.kind in KEY_KINDS and len(keys) < MAX_KEY_COLUMNS:
            codes, d = key_codes(table.column(c.name))
            if 2 <= len(d) <= min(MAX_KEY_VALUES, n // MIN_ROWS_PER_KEY):
                keys[c.name] = (codes, len(d))
    targets: dict[str, tuple[np.ndarray, int]] = {}
    for c in columns:
        if c.kind not in TARGET_KINDS or c.name in skip or len(targets) >= MAX_TARGETS:
            continue
        if not (pa.types.is_integer(c.type) or pa.types.is_floating(c.type)):
            continue
        codes, d = key_codes(table.column(c.name))
        if len(d) >= MIN_DISTINCT_RATIO:
            targets[c.name] = (codes, len(d))
    # Each key's combined codes once (pairs with too few rows per value dropped). On a seeded
    # subset of rows each key's set can only be smaller, so the mean there estimates the full
    # one from below: a key that leaves too many values there is dropped without the full count
    # (16 keys x 64 targets x 50k rows: 79 s -> 5.7 s on the loaded 2-core machine).
    candidates: dict[tuple[str, ...], np.ndarray] = {}
    for cand in [(a,) for a in keys] + list(itertools.combinations(keys, 2)):
        ck = np.zeros(n, dtype=np.int64)
        for name in cand:
            codes, k = keys[name]
            ck = ck * k + codes
        if len(cand) == 1 or np.unique(ck).size * MIN_ROWS_PER_KEY <= n:
            candidates[cand] = ck
    screen = np.sort(np.random.default_rng([seed, 0x5C4E]).permutation(n)[:SCREEN_ROWS])
    even, odd = np.arange(0, n, 2), np.arange(1, n, 2)
    out: dict[str, list[str]] = {}
    for t, (ct, nt) in targets.items():
        best: tuple[float, int, tuple[str, ...]] | None = None
        for cand, ck in candidates.items():
            if t in cand or _mean_set_size(ck[screen], ct[screen], nt) > MAX_MEAN_VALUES:
                continue
            mean = _mean_set_size(ck, ct, nt)
            if mean > MAX_MEAN_VALUES or nt < MIN_DISTINCT_RATIO * mean:
                continue
            if best is not None and (mean, len(cand)) >= best[:2]:
                continue
            if _heldout_coverage(ck[even], ct[even], ck[odd], ct[odd], nt) < MIN_HELDOUT_COVERAGE:
                continue
            best = (mean, len(cand), cand)
        if best is not None:
            out[t] = list(best[2])
    return out


def _mean_set_size(ck: np.ndarray, ct: np.ndarray, nt: int) -> float:
    """Mean over rows of the number of distinct column values their key holds."""
    pairs = np.unique(ck * nt + ct)
    kk, size = np.unique(pairs // nt, return_counts=True)
    return float(size[np.searchsorted(kk, ck)].mean())


def _heldout_coverage(
    ck_fit: np.ndarray, ct_fit: np.ndarray, ck_test: np.ndarray, ct_test: np.ndarray, nt: int
) -> float:
    """Share of held-out rows whose value the fit half's set for their key holds, among rows
    whose key it saw; 0 when it saw fewer than ``MIN_SEEN`` of them."""
    fit_pairs = np.unique(ck_fit * nt + ct_fit)
    seen = np.isin(ck_test, np.unique(ck_fit))
    if not seen.size or seen.mean() < MIN_SEEN:
        return 0.0
    hit = np.isin(ck_test[seen] * nt + ct_test[seen], fit_pairs)
    return float(hit.mean())

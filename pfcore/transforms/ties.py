"""Numbers that equal another column on part of the rows: modelled with a flag, written exactly.

Why: tables repeat a value across columns on some rows only. A credit card's payment equals the
previous bill whenever the bill was paid in full (credit_default: ``PAY_AMT1 == BILL_AMT2`` on
22% of rows, 14% with a non-zero amount, against 0.7% expected by chance); a refund equals the
price when the whole order is returned; an end date equals the start date for one-day events.
A model draws the two numbers close on those rows, never equal, and a detection classifier sees
every pair that misses (the worst five pairs of credit_default were all a bill and the next
month's payment). So the column gets a flag, ``A == B``, that the model draws like any discrete
column (the hybrid's autoregressive network), and decode writes B's decoded value into A where
the flag is set (``transforms.ruled.TiedTransform``). Elsewhere A keeps its modelled value.

A pair (A, B) of numeric columns of one type is tied when, on the fit rows (a seeded sample of
at most ``DETECT_ROWS``), A equals B on at least ``MIN_SHARE`` of the rows and on at least
``MIN_RATIO`` times the share that independent columns with the same value frequencies would
tie by chance (``chance``) and than it misses B by the smallest difference seen (correlated
counts agree by nearness, not by copying), and not on every row (an identity, a rule's job). A
column is tied to at most one other (the one it equals most often beyond chance); a column
another one copies is not tied itself, so no chain has to be resolved. Columns another
construction builds (rules, lookups) take no part.

In conditional requests (``condition_plan``) a value fixed by a where-clause holds the flag at
"not copied"; seed rows that give A with B encode the flag from their own values, and seed
rows that give A alone leave the flag to the model and write A's value into B where it is
drawn set (``_seed_tie``): held off, credit_default's seed rows had ``PAY_AMT3 == BILL_AMT4``
on 0.1% of the rows against 12.7% of the real ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from pfcore.rules.model import numeric_values
from pfcore.rules.plan import reaches

__all__ = ["find_ties", "chance"]

MIN_SHARE = 0.01
MIN_RATIO = 5.0
DETECT_ROWS = 50_000
#: Pairs are searched among the first this many numeric columns.
MAX_COLUMNS = 64
KINDS = ("continuous", "integer")


def chance(fa: tuple[np.ndarray, np.ndarray], fb: tuple[np.ndarray, np.ndarray]) -> float:
    """Share of rows on which two independent columns agree, from each column's value
    frequencies (sorted distinct values, counts)."""
    (va, ca), (vb, cb) = fa, fb
    _common, ia, ib = np.intersect1d(va, vb, assume_unique=True, return_indices=True)
    if not ia.size:
        return 0.0
    return float((ca[ia] / ca.sum() * cb[ib] / cb.sum()).sum())


def _next_step(x: np.ndarray, y: np.ndarray) -> float:
    """Share of rows on which ``x`` misses ``y`` by the smallest difference seen, per side:
    correlated counts (a district's bedrooms and households) agree about as often as they miss
    by one, a copied value agrees far more often."""
    d = np.abs(x - y)
    pos = d[d > 0]
    if not pos.size:
        return 0.0
    step = pos.min()
    return float((np.abs(d - step) <= 1e-9 * step).mean()) / 2


def find_ties(
    table: pa.Table,
    columns: list[Any],
    seed: int = 0,
    skip: set[str] | frozenset[str] = frozenset(),
    reads: Mapping[str, set[str]] | None = None,
) -> dict[str, str]:
    """Tied columns (A -> the column B it copies) found on ``table``; ``skip`` names columns
    another construction builds: they are neither A nor B (a B built from A would make A
    depend on itself). ``reads``: built column -> the columns its construction reads, for
    the columns that are not skipped (an implication's column, modelled but overwritten
    where its trigger holds): no pair is tied where one's construction reads the other,
    directly or through others. Air-quality records mark a failed sensor -200 in every column
    at once, so ``NO2 == -200 whenever NOx == -200`` and ``NOx == NO2`` on those rows: tying
    NOx to NO2 built each from the other (the fit stopped there), and tying NO2 to NOx would
    replace a rule that holds on every row by a flag the model draws."""
    n = table.num_rows
    if n < 2:
        return {}
    if n > DETECT_ROWS:
        rows = np.sort(np.random.default_rng([seed, 0x71E5]).choice(n, DETECT_ROWS, replace=False))
        table = table.take(pa.array(rows))
    cols = [c for c in columns if c.kind in KINDS][:MAX_COLUMNS]
    values = {c.name: numeric_values(table.column(c.name)) for c in cols}
    # value frequencies over each column's present rows, computed once: the chance of a pair is
    # then a merge of two tables. With the mode bound below, 64 zero-inflated columns of 50k rows
    # take 0.8 s instead of 9.7 s.
    freqs = {k: np.unique(v[p], return_counts=True) for k, (v, p) in values.items()}
    # each column's most frequent value and its share: two columns that share it agree by
    # chance at least on the product of the shares (a cheap bound that settles most pairs)
    modes = {
        k: (v[np.argmax(c)], c.max() / c.sum()) if c.size else (np.nan, 0.0)
        for k, (v, c) in freqs.items()
    }
    reads = reads or {}
    found: list[tuple[float, str, str]] = []
    for a in cols:
        if a.name in skip:
            continue
        va, pa_ = values[a.name]
        for b in cols:
            if b is a or b.name in skip or str(b.type) != str(a.type):
                continue
            if reaches(reads, b.name, a.name) or reaches(reads, a.name, b.name):
                continue
            vb, pb = values[b.name]
            both = pa_ & pb
            if both.sum() < 2:
                continue
            x, y = va[both], vb[both]
            eq = float((x == y).mean())
            if eq < MIN_SHARE or eq >= 1.0:
                continue
            (ma, sa), (mb, sb) = modes[a.name], modes[b.name]
            if ma == mb and eq < MIN_RATIO * sa * sb:
                continue
            by_chance = chance(freqs[a.name], freqs[b.name])
            if eq < MIN_RATIO * max(by_chance, _next_step(x, y)):
                continue
            found.append((eq - by_chance, a.name, b.name))
    ties: dict[str, str] = {}
    for _gain, a_name, b_name in sorted(found, key=lambda t: -t[0]):
        if a_name in ties or a_name in ties.values() or b_name in ties:
            continue
        ties[a_name] = b_name
    return ties

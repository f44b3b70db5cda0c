"""Which numeric columns the model draws as codes (one class per seen value) rather than numbers.

Schema inference already makes an integer column with at most 20 distinct values categorical
(``pfcore.schema``). A numeric column with more values, or with fractional values (floors 1,
1.5, 2 ...; bathrooms in quarters), is a quantity there, and stays one in the saved dataset's
schema. At training time, :func:`numeric_codes` also draws it as a code when the training rows
hold every one of its values often: at most ``MAX_CODE_LEVELS`` distinct values and at least
``MIN_ROWS_PER_LEVEL`` non-null rows per value on average (a day of the month, a minute, an age
in years, a zip code, a credit limit in round thousands, a house's floors or bathrooms).

Why: the discrete network draws a code's class given the codes before it, so each value's share
in every context is learnt, where the numbers' flow smooths a column of spikes (a day of the
month that follows the month's working days, ages that bunch at round values, a zip code beside
its latitude and longitude). Measured with ``benchmarks/fidelity.py`` (5-minute fits, 20k
training rows, detection AUC, lower is better; ``benchmarks/results/integer_codes.json``):
King County house sales 0.876 -> 0.653 / 0.666 (before: seed 0; after: seeds 0 / 1; zip code,
renovation year), bank marketing 0.595 -> 0.560 / 0.556 (day of the month, age), nyc_flights
0.826 -> 0.813 (day, minute), credit default 0.691 -> 0.688; Quality within 0.004 on all
four. Six further public tables through ``pushforward train --preset fast`` moved the same way
when every such column was a code (travel insurance 0.787 -> 0.691, pharma 0.561 -> 0.512,
framingham 0.547 -> 0.521).

A column of floats is a code on the same terms, when half of its values hold at least
``MIN_MEDIAN_ROWS`` rows each, and when it has at most ``MAX_INT_CATEGORIES`` values (the cut at
which schema inference makes an integer column categorical) or its values are spikes: the exact
values' counts predict held-out rows at least ``MIN_SPIKE_NATS`` per row better than the same
counts smoothed over neighbouring values (``spike_nats``). Why both: King County's floors (6
values) and bathrooms (29, in quarters: 0.40 nats), drawn as numbers and rounded to their grid,
made its three worst pairs with the year built; as codes its detection AUC went 0.621 +/- 0.005
-> 0.574 +/- 0.005 (floors alone: 0.594 +/- 0.004) and the one-step student's gap to its ODE
teacher 0.042 -> 0.009. california_housing's ``housing_median_age`` (52 whole years stored as
floats, smooth: 0.04 nats) scored 0.565 +/- 0.009 as a code against 0.551 +/- 0.000 as a number
(three 5-minute fits each, ``benchmarks/results/float_codes.json``).

A column that any rule other than a bound reads as a number (an order ``beds <= rooms``, an
identity, a sentinel implication) stays a quantity: the rules that keep those on every row work
on numbers. Bounds hold for a code by construction (every drawn value was seen). Fewer rows per
value (a year built among 1,460 houses) stay quantities, whose neighbouring values share what
is learnt. The output type is unchanged: decode gives the column's integers or floats back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pfcore.schema import MAX_INT_CATEGORIES

__all__ = ["MAX_CODE_LEVELS", "MIN_ROWS_PER_LEVEL", "MIN_SPIKE_NATS", "numeric_codes", "spike_nats"]

#: At most this many distinct values: a code's softmax stays small and every class is learnt.
MAX_CODE_LEVELS = 100
#: At least this many non-null training rows per distinct value, on average.
MIN_ROWS_PER_LEVEL = 50
#: Rules that hold for a code by construction, so they do not keep a column a number.
_BOUNDS = ("sign", "range")
#: The schema kinds a code may stand for.
_NUMBERS = ("integer", "continuous")
#: A column of floats with more than ``MAX_INT_CATEGORIES`` values is a code when its exact
#: counts beat the smoothed ones by this much per held-out row: between california_housing's
#: median age (0.04, worse as a code) and the columns that held or gained as codes (the air
#: table's CO 0.13, the bike table's humidity 0.14, King County's bathrooms 0.40).
MIN_SPIKE_NATS = 0.1
#: Neighbouring distinct values (each side) the smoothed counts spread a value's count over.
SMOOTH_NEIGHBOURS = 2
#: A column of floats is a code only when half of its values hold at least this many training
#: rows: diamonds' ``table`` (107 values in 20k rows, a median of 4 rows each: whole
#: percentages plus a tail of rare tenths) made a code cost Quality 0.952 -> 0.929 (pair trends
#: 0.917 -> 0.872; detection AUC level at 0.587), where King County's bathrooms (median 45),
#: the bike table's humidity (131) and the air table's CO (27) kept or gained.
MIN_MEDIAN_ROWS = 20


def numeric_codes(schema: Any, table: pa.Table, rules: list[Any]) -> Any:
    """``schema`` with each integer or continuous column the training rows ``table`` hold as a
    code made categorical (see module doc); the same object when none is."""
    read = {c for r in rules if r.kind not in _BOUNDS for c in r.columns}
    promote = []
    for col in schema.columns:
        if col.kind not in _NUMBERS or col.name in read or col.name not in table.column_names:
            continue
        values = table.column(col.name)
        counts = pc.value_counts(pc.drop_null(values)).field("counts").to_numpy()
        levels = len(counts)  # rows per distinct value, null excluded
        if not (1 < levels <= MAX_CODE_LEVELS and counts.sum() >= MIN_ROWS_PER_LEVEL * levels):
            continue
        if col.kind == "integer" or (
            np.median(counts) >= MIN_MEDIAN_ROWS
            and (levels <= MAX_INT_CATEGORIES or spike_nats(values) >= MIN_SPIKE_NATS)
        ):
            promote.append(col.name)
    if not promote:
        return schema
    from pfcore.schema import apply_overrides

    return apply_overrides(schema, {"columns": {n: {"kind": "categorical"} for n in promote}})


def spike_nats(values: pa.ChunkedArray | pa.Array, seed: int = 0) -> float:
    """Nats per held-out row by which a column's exact value counts beat the same counts
    smoothed over the ``SMOOTH_NEIGHBOURS`` nearest distinct values each side (counted on a
    seeded half of the non-null rows, scored on the other half).

    Why: a quantity whose neighbouring values are about as common as each other (ages in
    whole years, a temperature in steps) is learnt as well by a smooth law, which shares
    what it learns between neighbours; a column of spikes (King County's bathrooms in
    quarters, where 2.5 is 4.4 times as common as 2.75) loses them when a smooth law is
    rounded to its grid."""
    v = np.asarray(pc.drop_null(values).to_numpy(zero_copy_only=False), dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) < 2:
        return 0.0
    distinct, rank = np.unique(v, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(v))
    half = len(v) // 2
    fit, score = rank[order[:half]], rank[order[half:]]
    counts = np.bincount(fit, minlength=len(distinct)).astype(np.float64) + 0.5
    exact = counts / counts.sum()
    window = np.ones(2 * SMOOTH_NEIGHBOURS + 1)
    spread = np.convolve(counts, window, mode="same") / np.convolve(
        np.ones(len(counts)), window, mode="same"
    )
    smooth = spread / spread.sum()
    return float(np.mean(np.log(exact[score]) - np.log(smooth[score])))

"""Which integer columns the model draws as codes (one class per seen value) rather than numbers.

Schema inference already makes an integer column with at most 20 distinct values categorical
(``pfcore.schema``). An integer column with more values is a quantity there, and stays one in
the saved dataset's schema. At training time, :func:`integer_codes` also draws it as a code
when the training rows hold every one of its values often: at most ``MAX_CODE_LEVELS``
distinct values and at least ``MIN_ROWS_PER_LEVEL`` non-null rows per value on average (a day
of the month, a minute, an age in years, a zip code, a credit limit in round thousands).

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

A column that any rule other than a bound reads as a number (an order ``beds <= rooms``, an
identity, a sentinel implication) stays a quantity: the rules that keep those on every row work
on numbers. Bounds hold for a code by construction (every drawn value was seen). Fewer rows per
value (a year built among 1,460 houses) stay quantities, whose neighbouring values share what
is learnt. The output type is unchanged: decode gives the column's integers back.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["MAX_CODE_LEVELS", "MIN_ROWS_PER_LEVEL", "integer_codes"]

#: At most this many distinct values: a code's softmax stays small and every class is learnt.
MAX_CODE_LEVELS = 100
#: At least this many non-null training rows per distinct value, on average.
MIN_ROWS_PER_LEVEL = 50
#: Rules that hold for a code by construction, so they do not keep a column a number.
_BOUNDS = ("sign", "range")


def integer_codes(schema: Any, table: pa.Table, rules: list[Any]) -> Any:
    """``schema`` with each integer column the training rows ``table`` hold as a code made
    categorical (see module doc); the same object when none is."""
    read = {c for r in rules if r.kind not in _BOUNDS for c in r.columns}
    promote = []
    for col in schema.columns:
        if col.kind != "integer" or col.name in read or col.name not in table.column_names:
            continue
        values = table.column(col.name)
        present = len(values) - values.null_count
        levels = pc.count_distinct(values, mode="only_valid").as_py()
        if 1 < levels <= MAX_CODE_LEVELS and present >= MIN_ROWS_PER_LEVEL * levels:
            promote.append(col.name)
    if not promote:
        return schema
    from pfcore.schema import apply_overrides

    return apply_overrides(schema, {"columns": {n: {"kind": "categorical"} for n in promote}})

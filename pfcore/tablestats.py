"""Whole-table statistics that ingest writes so a transform fitted on a sample can use them.

Why: a table larger than the training sample has its transform fitted on the sample
(``pfcore.rowsample``), and a sample misses what is rare. A category held by 50 of 100M rows
is absent from a 1M-row sample about 60% of the time and would never be generated; the choice
of which categories keep a slot and which are pooled would follow the sample's noisy
frequencies; and value protection would clip at the sample's 6th most extreme value, which in a
1% sample is about the table's 600th. Ingest already reads every row once, one row group at a
time, to infer the schema, and counts each discrete column's values there; it writes what the
transform needs to ``stats.json`` beside ``schema.json``, in the same pass:

* per column: rows and nulls;
* per column whose values ingest counts (strings, integers, booleans; floats and temporals with
  at most ``schema.MAX_TRACKED_DISTINCT_FLOAT`` distinct values): its ``MAX_COUNTED`` most
  frequent values with their counts, most frequent first, and what is not listed, counted
  honestly: ``other_rows`` (non-null rows holding an unlisted value) and ``other_values``
  (distinct unlisted values; None when unknown). Counts are exact unless a column holds more
  than ``schema.MAX_TRACKED_DISTINCT`` (200,000) distinct values; then ``counts_exact`` is
  false and the counts are lower bounds (a value dropped from the tracked set while streaming
  is counted again from zero when it comes back);
* per number and temporal column: its ``TAIL_VALUES`` smallest and largest values, repeats
  included, in the column's unit (temporals: integers since the epoch), so value protection can
  clip at the table's own (k+1)-th most extreme value.

Kept out of ``schema.json`` on purpose: the schema travels inside every trained synthesizer,
and a column's most extreme values are exactly what value protection keeps out of it.
:func:`stats_for_fit` is the one decision of when a fit uses them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pfcore.atomic import atomic_write
from pfcore.errors import InputError
from pfcore.schema import is_temporal, temporal_storage, values_from_json, values_to_json

if TYPE_CHECKING:
    from pfcore.schema import SchemaAccumulator, TableSchema

__all__ = [
    "MAX_COUNTED",
    "STATS_FILE",
    "TAIL_VALUES",
    "ColumnStats",
    "StatsAccumulator",
    "TableStats",
    "load_stats",
    "stats_for_fit",
    "table_stats",
]

STATS_FILE = "stats.json"
FORMAT_VERSION = 1
#: Values listed per column: as many as a categorical transform can use (100 with a slot of
#: their own + 100,000 pooled, ``pfcore.transforms.categorical``); rarer ones are never
#: generated from a table this wide anyway.
MAX_COUNTED = 100_100
#: Smallest and largest values kept per number column: value protection up to
#: ``protect_extremes=15`` clips at the table's own bound (the default is 5).
TAIL_VALUES = 16


@dataclass
class ColumnStats:
    """One column over every row of the table (see the module docstring)."""

    name: str
    rows: int
    nulls: int
    #: Most frequent values first (ties by value), as ``schema.values_to_json`` writes them.
    values: list[Any] | None = None
    counts: list[int] | None = None
    #: The three below are None when the column's values were not counted.
    counts_exact: bool | None = None
    other_rows: int | None = None
    other_values: int | None = None  # also None when more values than tracked
    #: The ``TAIL_VALUES`` smallest values, ascending, and largest, descending (repeats kept).
    low: list[int | float] | None = None
    high: list[int | float] | None = None

    @property
    def valid(self) -> int:
        return self.rows - self.nulls

    def value_counts(self, arrow_type: pa.DataType) -> tuple[pa.Array, np.ndarray] | None:
        """The listed values as an array of ``arrow_type`` and their counts (None: not counted)."""
        if self.values is None or self.counts is None:
            return None
        return values_from_json(self.values, arrow_type), np.asarray(self.counts, dtype=np.int64)

    def extreme(self, k: int) -> tuple[int | float, int | float] | None:
        """The (k+1)-th smallest and largest value over the table; None when not kept."""
        if self.low is None or self.high is None or min(len(self.low), len(self.high)) <= k:
            return None
        return self.low[k], self.high[k]


@dataclass
class TableStats:
    """Every column's :class:`ColumnStats`, for a table of ``rows`` rows."""

    rows: int
    columns: dict[str, ColumnStats] = field(default_factory=dict)

    def get(self, name: str) -> ColumnStats | None:
        return self.columns.get(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "rows": self.rows,
            "columns": [asdict(c) for c in self.columns.values()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableStats:
        if int(d.get("format_version", FORMAT_VERSION)) > FORMAT_VERSION:
            raise InputError(f"stats format {d['format_version']} is newer than this reads")
        cols = [ColumnStats(**c) for c in d["columns"]]
        return cls(rows=int(d["rows"]), columns={c.name: c for c in cols})

    def save(self, path: str | os.PathLike[str]) -> Path:
        text = json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)
        return atomic_write(path, text + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TableStats:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"not a valid {STATS_FILE} ({exc})", path=path) from None


class _Tail:
    """The ``k`` smallest and ``k`` largest values seen, repeats included, in O(k) memory.

    Per batch only the values beyond the current k-th extreme are looked at (one vectorised
    comparison), so the pass costs little next to the schema's value counts.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.low: np.ndarray | None = None  # ascending
        self.high: np.ndarray | None = None  # descending

    def update(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        k = self.k
        low = x if self.low is None or self.low.size < k else x[x < self.low[-1]]
        if low.size:
            merged = low if self.low is None else np.concatenate([self.low, low])
            self.low = np.sort(np.partition(merged, k - 1)[:k] if merged.size > k else merged)
        high = x if self.high is None or self.high.size < k else x[x > self.high[-1]]
        if high.size:
            merged = high if self.high is None else np.concatenate([self.high, high])
            top = np.partition(merged, merged.size - k)[-k:] if merged.size > k else merged
            self.high = np.sort(top)[::-1]


def _numbers(arr: pa.Array | pa.ChunkedArray, t: pa.DataType) -> np.ndarray:
    """Non-null values as the numeric transform reads them: int64 for integers and temporals
    (their unit since the epoch), float64 without NaN otherwise."""
    valid = arr.drop_null()
    if is_temporal(t):
        return np.asarray(valid.cast(temporal_storage(t)).cast(pa.int64()), dtype=np.int64)
    if pa.types.is_integer(t):
        return np.asarray(valid.cast(pa.int64()), dtype=np.int64)
    x = np.asarray(valid.cast(pa.float64()), dtype=np.float64)
    return x[~np.isnan(x)]


def _has_tail(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or is_temporal(t)
    ) and not pa.types.is_uint64(t)  # uint64 beyond 2**63 has no int64 value


class StatsAccumulator:
    """Streams the tails of the number columns; the value counts come from the schema's own
    accumulator (one count per ingest, not two)."""

    def __init__(self, arrow_schema: pa.Schema) -> None:
        self.types = {f.name: f.type for f in arrow_schema}
        self.tails = {f.name: _Tail(TAIL_VALUES) for f in arrow_schema if _has_tail(f.type)}

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        for name, tail in self.tails.items():
            tail.update(_numbers(batch.column(name), self.types[name]))

    def finish(self, schema: TableSchema, counted: SchemaAccumulator) -> TableStats:
        """The statistics of ``schema``'s columns (those kept after overrides), over the rows
        ``counted`` and this accumulator saw."""
        cols: dict[str, ColumnStats] = {}
        rows = counted.n_rows
        for col in schema.columns:
            st = ColumnStats(name=col.name, rows=rows, nulls=counted.nulls(col.name))
            top = counted.top_counts(col.name, MAX_COUNTED)
            if top is not None:
                st.values = values_to_json(top.values)
                st.counts = [int(c) for c in top.counts]
                st.counts_exact = bool(top.exact)
                st.other_rows = st.valid - int(top.counts.sum())
                st.other_values = top.tracked - len(top.counts) if top.exact else None
            tail = self.tails.get(col.name)
            if tail is not None and tail.low is not None and tail.high is not None:
                st.low = [_scalar(v) for v in tail.low]
                st.high = [_scalar(v) for v in tail.high]
            cols[col.name] = st
        return TableStats(rows=rows, columns=cols)


def _scalar(v: np.generic) -> int | float:
    return v.item()


def table_stats(table: pa.Table, schema: TableSchema) -> TableStats:
    """What ingest writes for ``table``'s rows, for ``schema``'s columns (benchmarks and tests
    that start from a table)."""
    from pfcore.schema import SchemaAccumulator

    counted, tails = SchemaAccumulator(table.schema), StatsAccumulator(table.schema)
    for batch in table.to_batches():
        counted.update(batch)
        tails.update(batch)
    counted.finish()
    return tails.finish(schema, counted)


def load_stats(dataset_dir: str | os.PathLike[str]) -> TableStats | None:
    """An ingested dataset's statistics; None for one ingested before they were written."""
    path = Path(dataset_dir) / STATS_FILE
    return TableStats.load(path) if path.exists() else None


def stats_for_fit(dataset_dir: str | os.PathLike[str], split: Any) -> TableStats | None:
    """The whole-table statistics a transform fitted on ``split``'s training rows uses.

    Only when those rows are a sample of a larger table (a ``"hash"`` split). A table whose
    training rows fit the sample is fitted on them alone, exactly as before: its statistics
    would add nothing the rows lack but the held-out rows' values (the dataset's counts include
    them; ingest does not know the split), and on a table that small a category only the
    holdout holds is a real share of what validation scores.
    """
    if getattr(split, "method", None) != "hash":
        return None
    stats = load_stats(dataset_dir)
    if stats is not None and split.dataset_rows is not None and stats.rows != split.dataset_rows:
        raise InputError(
            f"{STATS_FILE} counts {stats.rows} rows but the split was planned on "
            f"{split.dataset_rows}: ingest the source again",
            path=dataset_dir,
        )
    return stats

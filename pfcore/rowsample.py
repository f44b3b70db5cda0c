"""Seeded uniform row samples of an ingested dataset, read in bounded memory.

Why hashing row indices: a table larger than memory cannot be permuted, and a reservoir that
keeps whichever rows it met first depends on the read order. Here every row ``i`` gets a 64-bit
key ``splitmix64(seed, i)``, a function of the seed and the row's position only. The holdout is
every row whose key falls below ``holdout_fraction * 2**64``; a sample of ``k`` training (or
holdout) rows is the ``k`` rows with the smallest keys in that range. So

* the sample is uniform without replacement whatever the row order (a table sorted by a column
  is sampled as well as a shuffled one: keys do not depend on values);
* it is reproducible for a seed and independent of batch sizes, part files and row groups;
* the training sample and the holdout are disjoint by construction (disjoint key ranges), and a
  smaller sample of a range is a subset of a larger one (validation reads a bounded subset of
  the training rows without reading them all).

Cost: one pass over the row indices (no I/O: 100M keys hash in seconds) finds the key threshold
of each sample, then one streaming pass over the part files keeps the rows under it. Memory is
one record batch plus the samples.

Why row groups first, when they look alike: a uniform sample of rows touches every Parquet page
(1M rows of 100M is one row in 100, and a page holds ~100k values), so that pass costs the
whole table's decoding (about 50 s of a 70 s training run at 100M rows). When the table holds
many more row groups than the sample needs, :func:`choose_row_groups` picks ``m`` of them by a
seeded key of the group index and the samples above are drawn from those rows only. Every row
stays equally likely to be drawn (each group is picked with probability ``m / G``, then the
rows by their keys), so means and shares are unbiased; what changes is the spread: rows come
in clusters of one group. That costs nothing when the groups are alike and adds variance when
they differ, so groups are sampled only when every column's row-group min/max ranges overlap
(:func:`clustered_column` finds a table sorted or clustered by a column from the footers),
and then at least ``MIN_SAMPLED_GROUPS`` of them (a group-level share is off by at most
``sqrt(0.25 / 128) = 4.4%`` of a difference between groups that min/max did not show). A table
sorted by a column is always read whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pfcore.io import parquet_batches, part_files

__all__ = [
    "KeyRange",
    "choose_row_groups",
    "clustered_column",
    "row_group_spans",
    "dataset_rows",
    "holdout_cut",
    "in_spans",
    "read_key_ranges",
    "row_keys",
    "sample_range",
    "sample_ranges",
]

#: Row indices hashed per chunk while finding a threshold (8M keys: 64 MB at a time).
_CHUNK = 1 << 23
#: Rows per batch in the streaming read (one ingest row group).
READ_BATCH_ROWS = 65_536
_U64 = np.uint64
_MAX_KEY = (1 << 64) - 1
#: Fewest row groups a sample is drawn from when groups are sampled (see the module docstring).
MIN_SAMPLED_GROUPS = 128
#: Groups hold this many times the rows a sample needs, so each group gives a quarter of its rows.
GROUP_OVERSAMPLE = 4
#: Row groups look alike when this share of pairs of them have overlapping min/max, per column
#: (a shuffled table: 1.0; sorted by a column: about 2 / G).
MIN_RANGE_OVERLAP = 0.9
#: Mixed into the seed of the row-group keys, so they are unrelated to the row keys.
_GROUP_SALT = 0x6A09E667F3BCC908
Span = tuple[int, int]


def row_keys(seed: int, start: int, stop: int) -> np.ndarray:
    """``splitmix64`` keys (uint64) of rows ``start .. stop-1`` for ``seed``.

    splitmix64 passes BigCrush on sequential inputs, so keys of neighbouring rows are
    independent; the seed enters through its own splitmix64 so seeds 0 and 1 are unrelated.
    """
    mix = _splitmix(np.array([seed & _MAX_KEY], dtype=_U64))[0]
    idx = np.arange(start, stop, dtype=_U64)
    with np.errstate(over="ignore"):
        return _splitmix(idx ^ mix)


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


def holdout_cut(holdout_fraction: float) -> int:
    """Keys below this are held out (a fraction ``holdout_fraction`` of rows in expectation)."""
    return min(_MAX_KEY, int(float(holdout_fraction) * 2.0**64))


@dataclass(frozen=True)
class KeyRange:
    """Rows whose key lies in ``[lo, hi]`` (inclusive): ``rows`` of them; the range they were
    chosen from holds ``total`` rows."""

    lo: int
    hi: int
    rows: int
    total: int

    def mask(self, keys: np.ndarray) -> np.ndarray:
        return (keys >= _U64(self.lo)) & (keys <= _U64(self.hi))


def _chunks(n_rows: int, spans: Sequence[Span] | None) -> Iterator[Span]:
    """``[start, stop)`` pieces of at most ``_CHUNK`` rows covering ``spans`` (all rows: None)."""
    for lo, hi in [(0, n_rows)] if spans is None else spans:
        for start in range(lo, hi, _CHUNK):
            yield start, min(hi, start + _CHUNK)


def sample_ranges(
    n_rows: int,
    seed: int,
    wanted: Sequence[tuple[int, int, int | None]],
    spans: Sequence[Span] | None = None,
) -> list[KeyRange]:
    """For each ``(lo, hi, k)``: the ``k`` rows with the smallest keys in ``[lo, hi]`` (all of
    them when ``k`` is None or at least their number), as a key range; only rows inside
    ``spans`` (``[start, stop)`` row indices; None: every row) count.

    One pass over the row indices, holding at most ``k`` keys per range plus one chunk.
    """
    best = [np.empty(0, dtype=_U64) for _ in wanted]
    totals = [0] * len(wanted)
    for start, stop in _chunks(n_rows, spans):
        keys = row_keys(seed, start, stop)
        for j, (lo, hi, k) in enumerate(wanted):
            inside = keys[(keys >= _U64(lo)) & (keys <= _U64(hi))]
            totals[j] += len(inside)
            if not k:
                continue
            if len(best[j]) == k:
                inside = inside[inside < best[j].max()]
            merged = np.concatenate([best[j], inside])
            best[j] = np.partition(merged, k - 1)[:k] if len(merged) > k else merged
    out = []
    for (lo, hi, k), b, total in zip(wanted, best, totals, strict=True):
        if k is None or total <= k:
            out.append(KeyRange(lo, hi, total, total))
        elif k == 0:
            out.append(KeyRange(lo, lo, 0, total))
        else:
            out.append(KeyRange(lo, int(b.max()), k, total))
    return out


def sample_range(n_rows: int, seed: int, lo: int, hi: int, k: int | None) -> KeyRange:
    """:func:`sample_ranges` for one range."""
    return sample_ranges(n_rows, seed, [(lo, hi, k)])[0]


def row_group_spans(dataset_dir: str | os.PathLike[str]) -> list[Span]:
    """``[start, stop)`` row indices of every row group of the part files, in row order."""
    import pyarrow.parquet as pq

    spans, offset = [], 0
    for f in part_files(dataset_dir):
        meta = pq.read_metadata(f)
        for g in range(meta.num_row_groups):
            rows = meta.row_group(g).num_rows
            spans.append((offset, offset + rows))
            offset += rows
    return spans


def clustered_column(dataset_dir: str | os.PathLike[str]) -> str | None:
    """Why the row groups cannot stand for each other (a column whose row-group value ranges
    seldom overlap: the table is sorted or clustered by it), or None when they look alike.

    Reads only the Parquet footers. Groups without min/max for a column (all null there) are
    left out of that column's count; a dataset without statistics is called clustered.
    """
    import bisect

    import pyarrow.parquet as pq

    ranges: dict[str, list[tuple[object, object]]] = {}
    names: list[str] = []
    for f in part_files(dataset_dir):
        meta = pq.read_metadata(f)
        names = meta.schema.to_arrow_schema().names
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            for j, name in enumerate(names):
                st = rg.column(j).statistics
                if st is not None and st.has_min_max:
                    ranges.setdefault(name, []).append((st.min, st.max))
    if not ranges:
        return "the part files hold no min/max statistics"
    for name in names:
        pairs = ranges.get(name, [])
        n = len(pairs)
        if n < 2:
            continue
        try:
            los = sorted(lo for lo, _ in pairs)
            # pairs (g, h) that do not overlap: h starts after g ends (each such pair once)
            apart = sum(n - bisect.bisect_right(los, hi) for _, hi in pairs)
        except TypeError:  # values that do not compare (should not happen): be safe
            return f"column {name!r}: row-group statistics do not compare"
        overlap = 1.0 - apart / (n * (n - 1) / 2)
        if overlap < MIN_RANGE_OVERLAP:
            return (
                f"column {name!r}: the value ranges of only {overlap:.0%} of row-group pairs "
                "overlap (the table is sorted or clustered by it)"
            )
    return None


def choose_row_groups(
    dataset_dir: str | os.PathLike[str], seed: int, need_rows: int
) -> tuple[list[Span] | None, str]:
    """The row groups a sample of ``need_rows`` rows is drawn from (None: every row), and why.

    Groups are picked when the dataset holds more than ``GROUP_OVERSAMPLE * need_rows`` rows in
    more than ``MIN_SAMPLED_GROUPS`` groups and its groups look alike (:func:`clustered_column`):
    the ``m`` groups with the smallest keys ``splitmix64(seed', group index)``, in row order.
    """
    spans = row_group_spans(dataset_dir)
    n_groups, n_rows = len(spans), (spans[-1][1] if spans else 0)
    per_group = n_rows / max(1, n_groups)
    m = max(MIN_SAMPLED_GROUPS, int(np.ceil(GROUP_OVERSAMPLE * need_rows / max(1.0, per_group))))
    if m >= n_groups:
        return None, f"every row read: the sample needs {m} of the {n_groups} row groups"
    why = clustered_column(dataset_dir)
    if why is not None:
        return None, f"every row read: {why}"
    keys = row_keys(seed ^ _GROUP_SALT, 0, n_groups)
    picked = np.sort(np.argpartition(keys, m - 1)[:m])
    chosen = [spans[int(g)] for g in picked]
    return chosen, f"{m} of {n_groups} row groups read (their value ranges overlap)"


def dataset_rows(dataset_dir: str | os.PathLike[str]) -> int:
    """Rows of an ingested dataset, from the manifest (or the Parquet footers without one)."""
    try:
        rows = json.loads((Path(dataset_dir) / "manifest.json").read_text())["rows"]
        return int(rows)
    except (OSError, ValueError, KeyError, TypeError):
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f in part_files(dataset_dir))


def _batches(
    dataset_dir: str | os.PathLike[str],
    columns: Sequence[str] | None,
    spans: Sequence[Span] | None = None,
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(first row index, batch) over every part file in row order; with ``spans``, only the
    row groups that hold rows inside them are read."""
    import pyarrow.parquet as pq

    want = None if spans is None else sorted(spans)
    offset = 0
    for f in part_files(dataset_dir):
        with pq.ParquetFile(f) as pf:
            meta = pf.metadata
            groups = []
            for g in range(meta.num_row_groups):
                rows = meta.row_group(g).num_rows
                if want is None or _overlaps(want, offset, offset + rows):
                    groups.append((g, offset))
                offset += rows
            for g, start in groups:
                for batch in parquet_batches(pf, READ_BATCH_ROWS, columns=columns, row_groups=[g]):
                    yield start, batch
                    start += batch.num_rows


def _overlaps(spans: Sequence[Span], start: int, stop: int) -> bool:
    """Whether ``spans`` hold any row of ``[start, stop)``."""
    return any(lo < stop and hi > start for lo, hi in spans)


def in_spans(spans: Sequence[Span] | None, start: int, stop: int) -> np.ndarray:
    """Boolean mask of rows ``start .. stop-1`` that lie inside ``spans`` (all: None)."""
    inside = np.ones(stop - start, dtype=bool)
    if spans is None:
        return inside
    inside[:] = False
    for lo, hi in spans:
        a, b = max(lo, start), min(hi, stop)
        if a < b:
            inside[a - start : b - start] = True
    return inside


def read_key_ranges(
    dataset_dir: str | os.PathLike[str],
    seed: int,
    ranges: Sequence[KeyRange],
    *,
    columns: Sequence[str] | None = None,
    spans: Sequence[Span] | None = None,
) -> list[pa.Table]:
    """One streaming pass: for each range, the rows whose key falls in it, in row order; with
    ``spans``, only rows inside them (and only the row groups holding them are read)."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(part_files(dataset_dir)[0]).remove_metadata()
    if columns:
        schema = pa.schema([schema.field(c) for c in columns])
    kept: list[list[pa.RecordBatch]] = [[] for _ in ranges]
    for offset, batch in _batches(dataset_dir, columns, spans):
        keys = row_keys(seed, offset, offset + batch.num_rows)
        inside = in_spans(spans, offset, offset + batch.num_rows)
        for out, r in zip(kept, ranges, strict=True):
            if r.rows == 0:
                continue
            idx = np.flatnonzero(r.mask(keys) & inside)
            if len(idx):
                out.append(batch.take(pa.array(idx)))
    tables = []
    for out in kept:
        t = pa.Table.from_batches(out, schema=schema) if out else schema.empty_table()
        tables.append(t.combine_chunks())
    return tables

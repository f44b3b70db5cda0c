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
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pfcore.io import part_files

__all__ = [
    "KeyRange",
    "dataset_rows",
    "holdout_cut",
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


def sample_ranges(
    n_rows: int, seed: int, wanted: Sequence[tuple[int, int, int | None]]
) -> list[KeyRange]:
    """For each ``(lo, hi, k)``: the ``k`` rows with the smallest keys in ``[lo, hi]`` (all of
    them when ``k`` is None or at least their number), as a key range.

    One pass over the row indices, holding at most ``k`` keys per range plus one chunk.
    """
    best = [np.empty(0, dtype=_U64) for _ in wanted]
    totals = [0] * len(wanted)
    for start in range(0, n_rows, _CHUNK):
        keys = row_keys(seed, start, min(n_rows, start + _CHUNK))
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


def dataset_rows(dataset_dir: str | os.PathLike[str]) -> int:
    """Rows of an ingested dataset, from the manifest (or the Parquet footers without one)."""
    try:
        rows = json.loads((Path(dataset_dir) / "manifest.json").read_text())["rows"]
        return int(rows)
    except (OSError, ValueError, KeyError, TypeError):
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f in part_files(dataset_dir))


def _batches(
    dataset_dir: str | os.PathLike[str], columns: Sequence[str] | None
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(first row index, batch) over every part file, in row order."""
    import pyarrow.parquet as pq

    offset = 0
    for f in part_files(dataset_dir):
        pf = pq.ParquetFile(f)
        cols = list(columns) if columns else None
        for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS, columns=cols):
            yield offset, batch
            offset += batch.num_rows


def read_key_ranges(
    dataset_dir: str | os.PathLike[str],
    seed: int,
    ranges: Sequence[KeyRange],
    *,
    columns: Sequence[str] | None = None,
) -> list[pa.Table]:
    """One streaming pass: for each range, the rows whose key falls in it, in row order."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(part_files(dataset_dir)[0]).remove_metadata()
    if columns:
        schema = pa.schema([schema.field(c) for c in columns])
    kept: list[list[pa.RecordBatch]] = [[] for _ in ranges]
    for offset, batch in _batches(dataset_dir, columns):
        keys = row_keys(seed, offset, offset + batch.num_rows)
        for out, r in zip(kept, ranges, strict=True):
            if r.rows == 0:
                continue
            idx = np.flatnonzero(r.mask(keys))
            if len(idx):
                out.append(batch.take(pa.array(idx)))
    tables = []
    for out in kept:
        t = pa.Table.from_batches(out, schema=schema) if out else schema.empty_table()
        tables.append(t.combine_chunks())
    return tables

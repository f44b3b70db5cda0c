"""Columns that are an exact function of another column: rebuilt by lookup, not modelled.

Why: tables repeat information. A census table holds ``education`` and its numeric code
``education-num``; a flights table holds a scheduled time and the hour it falls in; a product
table holds a SKU and its category. A generative model has to learn each such link as a
near-deterministic dependence and never gets it exactly right (the modelling prototype measured
contingency 0.61-0.67 for a category and its code, where real data scores ~1.0), and a detection
classifier spots every inconsistent row. Detected links are instead enforced: the dependent
column leaves the model's features and decode looks its value up from the source's decoded
value, so every synthetic row is consistent and the model spends its capacity elsewhere.

A column B is derived from A when, on the fit rows,

* every value of A maps to one value of B (exact: the encode -> decode round trip stays exact),
* and the link generalises: a map fitted on half the rows predicts B on the other half for at
  least ``MIN_HELDOUT_COVERAGE`` of the rows whose source value it saw, and it saw at least
  ``MIN_SEEN`` of them. This rejects id-like sources, which "determine" everything only because
  each of their values occurs once.

Sources are discrete columns (categorical or boolean with at most ``MAX_KEPT`` values, so none
is pooled and redrawn at random; integer). An integer source may decode to a
value it never had in training; the nearest known value's mapping is used then. Two columns that
determine each other (1:1) keep the earlier as the source. A derived column is never a source.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pfcore.rules.valuesets import key_codes
from pfcore.schema import ColumnSchema, values_from_json, values_to_json
from pfcore.transforms.base import ColumnTransform
from pfcore.transforms.categorical import MAX_KEPT

__all__ = [
    "DerivedTransform",
    "derived_from",
    "detection_sample",
    "find_derived",
    "link_coverage",
]

MIN_HELDOUT_COVERAGE = 0.99
#: Held-out rows whose source value the fit half saw must be at least this share.
MIN_SEEN = 0.9
#: Rows used for detection (a seeded sample beyond this); the map itself uses every fit row.
DETECT_ROWS = 50_000
#: A source needs on average this many rows per value to count as evidence.
MIN_ROWS_PER_SOURCE_VALUE = 5
SOURCE_KINDS = ("categorical", "boolean", "integer")
TARGET_KINDS = ("categorical", "boolean", "integer", "continuous", "datetime")


class DerivedTransform(ColumnTransform):
    """A column that is an exact function of another: looked up from its source on decode."""

    kind = "derived"

    def __init__(self, column: ColumnSchema, source: str, keys: pa.Array, values: pa.Array) -> None:
        super().__init__(column)
        self.source = source
        self.keys, self.values = keys, values.cast(column.type)
        self._numeric_keys = pa.types.is_integer(keys.type)
        if self._numeric_keys:
            valid = np.flatnonzero(np.asarray(keys.is_valid()))
            k = np.asarray(keys.filter(keys.is_valid()), dtype=np.int64)
            order = np.argsort(k)
            self._sorted_keys, self._sorted_pos = k[order], valid[order]

    def layout(self) -> list[tuple[str, str, int]]:
        return []

    def encode(self, arr: pa.ChunkedArray | pa.Array, rng: np.random.Generator) -> np.ndarray:
        return np.empty((len(arr), 0), dtype=np.float32)

    def decode(self, x: np.ndarray, n: int, rng: np.random.Generator, row_offset: int) -> pa.Array:
        raise TypeError("a derived column decodes from its source: use decode_from()")

    def decode_from(self, source: pa.Array | pa.ChunkedArray) -> pa.Array:
        """This column's values for the decoded ``source`` values."""
        return self.values.take(pa.array(self.positions(source), type=pa.int64()))

    def positions(self, source: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Index into ``values`` per source value: its key's position, else (integer keys) the
        nearest key's, else that of the first mapping. Elementwise, so the torch decode applies
        it to a categorical source's dictionary once and gathers by the source's codes."""
        if isinstance(source, pa.ChunkedArray):
            source = source.combine_chunks()
        idx = pc.index_in(source, value_set=self.keys, skip_nulls=False)
        if idx.null_count and self._numeric_keys and self._sorted_keys.size:
            pos = np.asarray(idx.fill_null(-1), dtype=np.int64)
            miss = (pos < 0) & np.asarray(source.is_valid())
            if miss.any():
                v = np.asarray(source.filter(pa.array(miss)), dtype=np.int64)
                j = np.clip(np.searchsorted(self._sorted_keys, v), 1, self._sorted_keys.size - 1)
                left, right = self._sorted_keys[j - 1], self._sorted_keys[j]
                j = np.where(np.abs(v - left) <= np.abs(right - v), j - 1, j)
                if self._sorted_keys.size == 1:
                    j = np.zeros_like(v)
                pos[miss] = self._sorted_pos[j]
            idx = pa.array(pos, mask=pos < 0)
        # unseen (e.g. null where training had none): first known mapping
        return np.asarray(idx.fill_null(0), dtype=np.int64)

    def null_key_position(self) -> int:
        """Where a null source value looks up: the null key's position, else 0."""
        nulls = np.flatnonzero(np.asarray(self.keys.is_null()))
        return int(nulls[0]) if nulls.size else 0

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "source": self.source,
            "key_type": str(self.keys.type),
            "keys": values_to_json(self.keys),
            "values": values_to_json(self.values),
        }
        return meta, {}

    @classmethod
    def from_state(
        cls,
        column: ColumnSchema,
        meta: dict[str, Any],
        arrays: dict[str, np.ndarray],
        source_type: pa.DataType | None = None,
    ) -> DerivedTransform:
        assert source_type is not None, "the source column's type is needed to rebuild keys"
        keys = values_from_json(meta["keys"], source_type)
        return cls(column, meta["source"], keys, values_from_json(meta["values"], column.type))


def find_derived(
    table: pa.Table, columns: list[ColumnSchema], seed: int = 0
) -> dict[str, DerivedTransform]:
    """Derived columns by name, each with its source and lookup table (see module docstring)."""
    if table.num_rows < 2 * MIN_ROWS_PER_SOURCE_VALUE:
        return {}
    sample = detection_sample(table, seed)
    codes: dict[str, tuple[np.ndarray, int]] = {}
    for c in columns:
        if c.kind in TARGET_KINDS:
            codes[c.name] = _codes(sample.column(c.name))
    m = sample.num_rows
    found: list[tuple[float, int, int]] = []
    out_keys: dict[str, tuple[pa.Array, pa.Array]] = {}
    order = {c.name: i for i, c in enumerate(columns)}
    for a in columns:
        if a.kind not in SOURCE_KINDS or a.name not in codes:
            continue
        ca, na = codes[a.name]
        if na < 2 or na * MIN_ROWS_PER_SOURCE_VALUE > m:
            continue
        for b in columns:
            if b is a or b.name not in codes:
                continue
            cb, nb = codes[b.name]
            if nb < 2 or nb > na:  # a function of A has at most as many values as A
                continue
            if a.kind != "integer" and na > MAX_KEPT and nb <= MAX_KEPT:
                # A categorical source of more than MAX_KEPT values is pooled: its rare values
                # are redrawn by frequency, seeing at most one other column. A target with as
                # many values (a country's code beside the country) is pooled too and gains
                # from following it exactly: female labour statistics' Code from Entity (324
                # countries), pair trends 0.79 -> 0.85, detection AUC 0.890 -> 0.83. A target
                # with few values is better modelled with the rest of the row: region derived
                # from the 190 countries of a suicide-rate table took its detection AUC from
                # 0.54 to 0.65 (one fast fit each).
                continue
            cov = link_coverage(ca, cb, nb)
            if cov is not None:
                found.append((cov, order[b.name], order[a.name]))
    # Latest columns first, best-covered and earliest source first: in a 1:1 pair the later
    # column is derived from the earlier one; in a chain A -> B -> C both hang off A.
    derived: dict[str, str] = {}
    sources: set[str] = set()
    for _cov, bi, ai in sorted(found, key=lambda t: (-t[1], -t[0], t[2])):
        a, b = columns[ai], columns[bi]
        if b.name in derived or b.name in sources or a.name in derived:
            continue
        keys_values = _lookup(table.column(a.name), table.column(b.name))
        if keys_values is None:  # exact on the detection sample only
            continue
        derived[b.name] = a.name
        sources.add(a.name)
        out_keys[b.name] = keys_values
    return {b: DerivedTransform(columns[order[b]], a, *out_keys[b]) for b, a in derived.items()}


def derived_from(
    table: pa.Table, columns: list[ColumnSchema], pairs: dict[str, str]
) -> dict[str, DerivedTransform]:
    """Derived columns for given (target -> source) pairs, e.g. fixed-combination rules that
    were checked on these rows already; a pair that is not a function raises ValueError."""
    by_name = {c.name: c for c in columns}
    out = {}
    for target, source in pairs.items():
        kv = _lookup(table.column(source), table.column(target))
        if kv is None:
            raise ValueError(f"{target!r} is not a function of {source!r} on the fit rows")
        out[target] = DerivedTransform(by_name[target], source, *kv)
    return out


def _codes(arr: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """Dense integer codes per value (null is its own code) and the number of codes."""
    idx, values = key_codes(arr)
    return idx, len(values)


def detection_sample(table: pa.Table, seed: int) -> pa.Table:
    """The rows links are searched on: all of them, or a seeded sample of ``DETECT_ROWS`` in
    table order (the maps themselves are then built from every row)."""
    n = table.num_rows
    if n <= DETECT_ROWS:
        return table
    rows = np.sort(np.random.default_rng(seed).choice(n, DETECT_ROWS, replace=False))
    return table.take(pa.array(rows))


def link_coverage(ca: np.ndarray, cb: np.ndarray, nb: int) -> float | None:
    """Whether the codes ``cb`` (``nb`` of them) are a function of the source codes ``ca`` that
    generalises: exact on every row, and a map fitted on the even rows predicts at least
    ``MIN_HELDOUT_COVERAGE`` of the odd rows whose source value it saw (its coverage then;
    None otherwise). The same test for a discrete source and for a date's calendar part."""
    if not _is_function(ca[:2000], cb[:2000], nb) or not _is_function(ca, cb, nb):
        return None  # the small prefix rejects most pairs cheaply
    even, odd = np.arange(0, ca.size, 2), np.arange(1, ca.size, 2)
    cov = _heldout_coverage(ca[even], cb[even], ca[odd], cb[odd], nb)
    return cov if cov >= MIN_HELDOUT_COVERAGE else None


def _is_function(ca: np.ndarray, cb: np.ndarray, nb: int) -> bool:
    pairs = np.unique(ca * nb + cb)
    return np.unique(pairs // nb).size == pairs.size


def _heldout_coverage(
    ca_fit: np.ndarray, cb_fit: np.ndarray, ca_test: np.ndarray, cb_test: np.ndarray, nb: int
) -> float:
    """Share of held-out rows the fit half's map predicts, among rows whose source value it saw.

    0 when fewer than ``MIN_SEEN`` of the held-out rows have a seen source value: a source
    whose values mostly occur once carries no evidence of a function.
    """
    pairs = np.unique(ca_fit * nb + cb_fit)  # a function: one pair per source value
    src, dst = pairs // nb, pairs % nb
    pos = np.minimum(np.searchsorted(src, ca_test), src.size - 1)
    seen = src[pos] == ca_test
    if not seen.size or seen.mean() < MIN_SEEN:
        return 0.0
    return float((dst[pos][seen] == cb_test[seen]).mean())


def _lookup(source: pa.ChunkedArray, target: pa.ChunkedArray) -> tuple[pa.Array, pa.Array] | None:
    """Distinct source values and the target value each maps to; None if not a function."""
    idx, source_values = key_codes(source)
    cb, nb = _codes(target)
    if not _is_function(idx, cb, nb):
        return None
    uniq, first = np.unique(idx, return_index=True)
    keys = source_values.take(pa.array(uniq))
    values = target.combine_chunks().take(pa.array(first))
    return keys, values

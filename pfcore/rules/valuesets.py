"""Value sets per key: the distinct values a number took with each combination of key values.

The lookup behind pinned numbers (``rules.pinned``): fitted on the fit rows, it moves a modelled
value to the nearest value its key held (``snap``), tells whether a row's value is one its key
held (``holds``, the rule's check), and round trips through JSON. Kept apart from the rule so
that ``rules.model`` can check the rule without importing detection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pfcore.schema import values_from_json, values_to_json

__all__ = ["ValueSets", "key_codes"]


def key_codes(arr: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Dense code per row and the value of each code (null is a value of its own, last): how
    keys are coded here, in rule detection and in lookups (``transforms.derived``)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    enc = pc.dictionary_encode(arr)
    k = len(enc.dictionary)
    idx = np.asarray(enc.indices.fill_null(k), dtype=np.int64)
    if enc.indices.null_count == 0:
        return idx, enc.dictionary
    return idx, pa.concat_arrays([enc.dictionary, pa.nulls(1, type=enc.dictionary.type)])


@dataclass
class ValueSets:
    """For each key combination the fit rows held: the sorted distinct values of the column.

    ``dictionaries[j]``: the values of key column ``j``; a combination is coded as
    ``sum(code_j * stride_j)``, listed in ``combos`` (sorted), whose values are
    ``values[offsets[i]:offsets[i + 1]]`` (sorted).
    """

    dictionaries: list[pa.Array]
    combos: np.ndarray
    offsets: np.ndarray
    values: np.ndarray

    @property
    def strides(self) -> list[int]:
        sizes = [len(d) for d in self.dictionaries]
        return [int(np.prod(sizes[j + 1 :], dtype=np.int64)) for j in range(len(sizes))]

    @classmethod
    def fit(
        cls, keys: list[pa.ChunkedArray | pa.Array], v: np.ndarray, present: np.ndarray
    ) -> ValueSets:
        """The sets of the column's values ``v`` on the rows where it is ``present``."""
        present = present & ~np.isnan(v)
        coded = [key_codes(k) for k in keys]
        dictionaries = [d for _, d in coded]
        sets = cls(dictionaries, np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0))
        combo = sets._combine([c for c, _ in coded])[present]
        pairs = np.unique(np.stack([combo, v[present]], axis=1), axis=0)  # sorted by key, value
        combos, first = np.unique(pairs[:, 0].astype(np.int64), return_index=True)
        offsets = np.append(first, len(pairs)).astype(np.int64)
        return cls(dictionaries, combos, offsets, pairs[:, 1].astype(np.float64))

    def within(self, lo: float, hi: float) -> ValueSets:
        """The sets without the keys that hold a value outside ``[lo, hi]``."""
        if not len(self.combos):
            return self
        bad = (self.values < lo) | (self.values > hi)
        keep = ~np.add.reduceat(bad, self.offsets[:-1]).astype(bool)
        sizes = np.diff(self.offsets)[keep]
        values = self.values[np.repeat(keep, np.diff(self.offsets))]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return ValueSets(self.dictionaries, self.combos[keep], offsets, values)

    def project(self, columns: list[int]) -> ValueSets:
        """The sets keyed by the key columns ``columns`` alone (in that order): a combination
        of theirs holds the values of every full combination that shares it."""
        codes = self._codes()
        out = ValueSets(
            [self.dictionaries[j] for j in columns],
            np.zeros(0, np.int64),
            np.zeros(1, np.int64),
            np.zeros(0),
        )
        if not len(self.combos):
            return out
        sub = np.repeat(out._combine([codes[j] for j in columns]), np.diff(self.offsets))
        pairs = np.unique(np.stack([sub.astype(np.float64), self.values], axis=1), axis=0)
        combos, first = np.unique(pairs[:, 0].astype(np.int64), return_index=True)
        offsets = np.append(first, len(pairs)).astype(np.int64)
        return ValueSets(out.dictionaries, combos, offsets, pairs[:, 1].astype(np.float64))

    def _codes(self) -> list[np.ndarray]:
        """Each key column's code in every combination (``combos`` decoded)."""
        codes, rem = [], self.combos.copy()
        for s in self.strides:
            codes.append(rem // s)
            rem = rem % s
        return codes

    def _combine(self, codes: list[np.ndarray]) -> np.ndarray:
        out = np.zeros(len(codes[0]), dtype=np.int64)
        for c, s in zip(codes, self.strides, strict=True):
            out += c * s
        return out

    def combo_index(self, keys: list[pa.ChunkedArray | pa.Array]) -> np.ndarray:
        """Index into ``combos`` of each row's key combination, -1 where the fit rows lacked it."""
        n = len(keys[0])
        codes, seen = [], np.ones(n, dtype=bool)
        for arr, d in zip(keys, self.dictionaries, strict=True):
            arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
            idx = pc.index_in(arr.cast(d.type), value_set=d, skip_nulls=False)
            seen &= np.asarray(idx.is_valid(), dtype=bool)
            codes.append(np.asarray(idx.fill_null(0), dtype=np.int64))
        combo = self._combine(codes)
        pos = np.minimum(np.searchsorted(self.combos, combo), max(len(self.combos) - 1, 0))
        hit = seen & (len(self.combos) > 0)
        if len(self.combos):
            hit &= self.combos[pos] == combo
        return np.where(hit, pos, -1)

    def snap(
        self, values: np.ndarray, present: np.ndarray, keys: list[pa.ChunkedArray | pa.Array]
    ) -> np.ndarray:
        """``values`` moved to the nearest value of their key's set (the lower on a tie); rows
        whose value is missing or whose key the fit rows lacked keep theirs."""
        at = np.where(present, self.combo_index(keys), -1)
        return self.nearest(values, at)[0]

    def nearest(
        self, values: np.ndarray, at: np.ndarray, low: float = -np.inf, high: float = np.inf
    ) -> tuple[np.ndarray, np.ndarray]:
        """(each value moved to the nearest value within ``[low, high]`` of the set ``at``
        indexes (``combo_index``; -1: none), the lower on a tie; whether it had one). A value
        with none keeps its own. With bounds, a value should lie within them: the candidates
        are the nearest set values on either side of it."""
        out = values.astype(np.float64, copy=True)
        found = np.zeros(len(out), dtype=bool)
        rows = np.flatnonzero(at >= 0)
        if not rows.size:
            return out, found
        v = out[rows]
        lo, hi = self.offsets[at[rows]], self.offsets[at[rows] + 1]
        start, end = lo.copy(), hi.copy()
        while True:  # vectorised binary search: first index in [lo, hi) whose value is >= v
            open_ = lo < hi
            if not open_.any():
                break
            mid = (lo + hi) // 2
            below = self.values[np.minimum(mid, len(self.values) - 1)] < v
            lo = np.where(open_ & below, mid + 1, lo)
            hi = np.where(open_ & ~below, mid, hi)
        above = np.minimum(lo, end - 1)
        under = np.maximum(lo - 1, start)
        up, down = self.values[above], self.values[under]
        up_ok, down_ok = (up >= low) & (up <= high), (down >= low) & (down <= high)
        take_down = down_ok & (~up_ok | (np.abs(v - down) <= np.abs(up - v)))
        out[rows] = np.where(take_down, down, np.where(up_ok, up, v))
        found[rows] = up_ok | down_ok
        return out, found

    def holds(
        self, values: np.ndarray, present: np.ndarray, keys: list[pa.ChunkedArray | pa.Array]
    ) -> np.ndarray:
        """True where the value is in its key's set, missing, or its key unknown to the sets."""
        snapped = self.snap(values, present, keys)
        return ~present | (snapped == values)

    # -- persistence (rules.json params, transform state) ---------------------------------
    def to_params(self) -> dict[str, Any]:
        """JSON form: each key column's values, and per combination its codes and values."""
        codes = self._codes()
        sets = [
            [
                [int(c[i]) for c in codes],
                self.values[self.offsets[i] : self.offsets[i + 1]].tolist(),
            ]
            for i in range(len(self.combos))
        ]
        return {"keys": [values_to_json(d) for d in self.dictionaries], "sets": sets}

    @classmethod
    def from_params(cls, params: dict[str, Any], key_types: list[pa.DataType]) -> ValueSets:
        dictionaries = [
            values_from_json(v, t) for v, t in zip(params["keys"], key_types, strict=True)
        ]
        out = cls(dictionaries, np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0))
        sets = params["sets"]
        strides = out.strides
        combos = np.array(
            [sum(int(c) * s for c, s in zip(codes, strides, strict=True)) for codes, _ in sets],
            dtype=np.int64,
        )
        order = np.argsort(combos, kind="stable")
        vals = [np.sort(np.asarray(sets[i][1], dtype=np.float64)) for i in order]
        sizes = np.array([len(v) for v in vals], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        values = np.concatenate(vals) if vals else np.zeros(0)
        return cls(dictionaries, combos[order], offsets, values)

"""Categorical and boolean columns: one-hot ±1 with rare-category pooling.

Slots, in order: the kept categories (most frequent first), ``__null__`` if the column can be
missing, ``__other__`` if some categories were pooled. A column with at most ``MAX_KEPT``
categories keeps them all (exact round trip; a one-hot of <= 100 columns is cheap, and small
code sets such as payment status -2..8 keep their rare codes). Above that, a category is kept
when it is among the ``MAX_KEPT`` most frequent and holds at least ``MIN_FREQUENCY`` of the
rows; the rest share the
``__other__`` slot, and decode redraws a concrete value for each ``__other__`` row from the
pooled values' frequencies (seeded). So 100k categories cost ~100 one-hot columns, the marginal
distribution is kept, and only the joint structure of the rare tail is lost — the rare tail is
what no model could learn from a handful of rows anyway (categories under 0.1% of rows are
pooled).

The redraws of a block are a sample without replacement from the pooled values' counts
(:func:`draw_pooled`): the block's pooled rows hold the values a random subset of as many
training rows would hold, so a value one training row holds is drawn at most once per pass
over the pool, as in a sample of real rows. Independent draws repeat such values at the
birthday rate: free-text titles, tickets and amounts written as text (near-unique columns,
almost all pooled) then held a value that another synthetic row also held in 22-31% of rows,
where held-out real rows did in 1.1-11% (without replacement: 1.4-18%), and a classifier told
the column alone from the real one at AUC 0.59-0.63 (now 0.49-0.53; two fits per table,
``benchmarks/pooled_repeats.py``).

Fitted on a sample of a larger table, with that table's counts (``table=``, from ingest's
``stats.json``; ``pfcore.tablestats``): the same rule decides the slots on the whole table's
counts and rows, and every pooled value is redrawn by its whole-table count, so a category the
sample never drew is still generated, in proportion. A slot of its own that no training row
holds would never be the argmax, so a category the rule keeps but the sample lacks is pooled
instead; the pool then also takes every category under ``MIN_FREQUENCY`` of the table's rows,
whose training rows teach the model how often the pool occurs. (A pool no training row holds,
only possible when every rare category is absent from the sample, is not generated.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pfcore.schema import ColumnSchema, values_from_json, values_to_json
from pfcore.tablestats import ColumnStats
from pfcore.transforms.base import ColumnTransform, onehot
from pfcore.transforms.pooled_parent import ParentLink

MAX_KEPT = 100
MIN_FREQUENCY = 0.001
#: Pooled values remembered for redraws (most frequent first); rarer ones are not reproduced.
MAX_POOLED = 100_000


class CategoricalTransform(ColumnTransform):
    """One-hot ±1 block per categorical; decode takes the argmax; rare values pooled."""

    kind = "onehot"

    def __init__(
        self,
        column: ColumnSchema,
        kept: pa.Array,
        has_null: bool,
        has_other: bool,
        pooled: pa.Array,
        pooled_counts: np.ndarray,
        link: ParentLink | None = None,
    ) -> None:
        super().__init__(column)
        self.link = link  # pooled values redrawn given another column (pooled_parent.py)
        self.kept = kept
        self.has_null = has_null
        self.has_other = has_other
        self.pooled = pooled
        self.pooled_counts = np.asarray(pooled_counts, dtype=np.int64)
        total = self.pooled_counts.sum()
        self._pooled_cdf = np.cumsum(self.pooled_counts) / total if total > 0 else np.zeros(0)
        parts = [kept]
        if has_null:
            parts.append(pa.nulls(1, type=self.type))
        self._null_slot = len(kept) if has_null else -1
        self._other_slot = len(kept) + int(has_null) if has_other else -1
        parts.append(pooled)
        self._combined = pa.concat_arrays([p.cast(self.type) for p in parts])
        self._n_slots = len(kept) + int(has_null) + int(has_other)

    @classmethod
    def fit(
        cls,
        column: ColumnSchema,
        arr: pa.ChunkedArray,
        rng: np.random.Generator,
        *,
        table: ColumnStats | None = None,
    ) -> CategoricalTransform:
        """``table``: the whole table's counts when ``arr`` is a sample of it (module doc)."""
        full = None if table is None else table.value_counts(column.type)
        if full is not None:
            return cls._fit_on_table(column, arr, full[0], full[1], table.rows)
        n = len(arr)
        valid = arr.drop_null()
        vc = pc.value_counts(
            valid.combine_chunks() if isinstance(valid, pa.ChunkedArray) else valid
        )
        tbl = pa.table({"v": vc.field("values"), "c": vc.field("counts").cast(pa.int64())})
        if len(tbl):
            tbl = tbl.sort_by([("c", "descending"), ("v", "ascending")])
        counts = np.asarray(tbl["c"], dtype=np.int64) if len(tbl) else np.zeros(0, np.int64)
        n_keep = _n_kept(counts, n, column.kind == "boolean")
        kept = (
            tbl["v"].slice(0, n_keep).combine_chunks() if len(tbl) else pa.array([], type=arr.type)
        )
        pooled = (
            tbl["v"].slice(n_keep, MAX_POOLED).combine_chunks()
            if len(tbl) > n_keep
            else pa.array([], arr.type)
        )
        pooled_counts = counts[n_keep : n_keep + MAX_POOLED]
        return cls._built(column, arr, kept, pooled, pooled_counts)

    @classmethod
    def _fit_on_table(
        cls,
        column: ColumnSchema,
        arr: pa.ChunkedArray,
        values: pa.Array,
        counts: np.ndarray,
        n_rows: int,
    ) -> CategoricalTransform:
        """Slots and pool from the whole table's ``values``/``counts`` (most frequent first)
        over ``n_rows`` rows; ``arr`` (the sample) only says which values training rows hold."""
        keep = np.zeros(len(values), dtype=bool)
        keep[: _n_kept(counts, n_rows, column.kind == "boolean")] = True
        seen = _seen_in(values, arr)
        if (keep & ~seen).any():
            keep &= seen & (counts >= _rare_threshold(n_rows))
        kept = values.take(pa.array(np.flatnonzero(keep)))
        pooled_at = np.flatnonzero(~keep)[:MAX_POOLED]
        return cls._built(column, arr, kept, values.take(pa.array(pooled_at)), counts[pooled_at])

    @classmethod
    def _built(
        cls,
        column: ColumnSchema,
        arr: pa.ChunkedArray,
        kept: pa.Array,
        pooled: pa.Array,
        pooled_counts: np.ndarray,
    ) -> CategoricalTransform:
        has_null = bool(column.nullable or arr.null_count > 0)
        if len(kept) == 0 and not has_null and len(pooled) > 0:
            # every value rare (video game titles: 11.5k names over 16.6k rows, none common
            # enough to keep) and no null slot: the pool alone would be a one-slot block, so
            # the most frequent value gets its own slot
            kept, pooled, pooled_counts = pooled.slice(0, 1), pooled.slice(1), pooled_counts[1:]
        has_other = len(pooled) > 0
        if len(kept) + int(has_null) + int(has_other) < 2:
            has_other = True  # a onehot block needs two slots; an empty pool decodes as the mode
        return cls(
            column,
            kept.cast(column.type),
            has_null,
            has_other,
            pooled.cast(column.type),
            pooled_counts,
        )

    def layout(self) -> list[tuple[str, str, int]]:
        return [(self.column.name, "onehot", self._n_slots)]

    @property
    def n_slots(self) -> int:
        return self._n_slots

    def slots_of(self, arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Slot index per value (kept category, null slot or the pooled ``__other__`` slot)."""
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = arr.cast(self.type)
        idx = pc.index_in(arr, value_set=self.kept)
        fallback = self._other_slot if self.has_other else 0
        slot = np.asarray(idx.fill_null(fallback), dtype=np.int64)
        if arr.null_count:
            nulls = np.asarray(arr.is_null(), dtype=bool)
            slot[nulls] = self._null_slot if self.has_null else fallback
        return slot

    def pooled_index(self, arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Index into ``pooled`` per value; -1 where the value is kept, null or not pooled."""
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        idx = pc.index_in(arr.cast(self.type), value_set=self.pooled)
        return np.asarray(idx.fill_null(-1), dtype=np.int64)

    def encode(self, arr: pa.ChunkedArray | pa.Array, rng: np.random.Generator) -> np.ndarray:
        return onehot(self.slots_of(arr), self._n_slots)

    def decoded_slots(self, x: np.ndarray) -> np.ndarray:
        """Argmax slot per row of this column's model output (before any pooled redraw)."""
        if x.shape[1] == 2:  # booleans and two-value codes: a comparison beats argmax 2x
            return (x[:, 1] > x[:, 0]).astype(np.int64)
        return np.argmax(x, axis=1).astype(np.int64)

    def decode(
        self,
        x: np.ndarray,
        n: int,
        rng: np.random.Generator,
        row_offset: int,
        parent_slots: np.ndarray | None = None,
    ) -> pa.Array:
        """``parent_slots``: the linked parent's decoded slots (required when ``link`` is set)."""
        return self.decode_slots(self.decoded_slots(x), n, rng, parent_slots)

    def decode_slots(
        self,
        slot: np.ndarray,
        n: int,
        rng: np.random.Generator,
        parent_slots: np.ndarray | None = None,
    ) -> pa.Array:
        """Values for argmax ``slot``s (not modified: a child may read them as parent slots)."""
        if self.has_other:
            other = slot == self._other_slot
            m = int(other.sum())
            if m:
                slot = slot.copy()
                base = len(self.kept) + int(self.has_null)
                if self._pooled_cdf.size and self.link is not None and parent_slots is not None:
                    draws = self.link.draw(parent_slots[other], self._pooled_cdf, rng)
                    slot[other] = base + draws
                elif self._pooled_cdf.size:
                    slot[other] = base + draw_pooled(m, self.pooled_counts, rng)
                elif len(self.kept):
                    slot[other] = 0
                else:
                    slot[other] = self._null_slot
        if len(self._combined) == 0:
            return pa.nulls(n, type=self.type)
        return self._combined.take(pa.array(slot, type=pa.int64()))

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "kept": values_to_json(self.kept),
            "has_null": self.has_null,
            "has_other": self.has_other,
            "pooled": values_to_json(self.pooled),
            "parent": None if self.link is None else self.link.parent,
        }
        arrays = {"pooled_counts": self.pooled_counts}
        if self.link is not None:
            arrays.update(self.link.arrays())
        return meta, arrays

    @classmethod
    def from_state(
        cls, column: ColumnSchema, meta: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> CategoricalTransform:
        t = column.type
        return cls(
            column,
            values_from_json(meta["kept"], t),
            bool(meta["has_null"]),
            bool(meta["has_other"]),
            values_from_json(meta["pooled"], t),
            arrays.get("pooled_counts", np.zeros(0, np.int64)),
            None if not meta.get("parent") else ParentLink.from_arrays(meta["parent"], arrays),
        )

    @property
    def pooled_frequencies(self) -> np.ndarray:
        total = self.pooled_counts.sum()
        return self.pooled_counts / total if total > 0 else self.pooled_counts.astype(float)


def draw_pooled(m: int, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indexes into ``counts`` of ``m`` draws without replacement from the multiset that holds
    value ``i`` ``counts[i]`` times, in random order; past the multiset's size every value
    first comes ``m // total`` times its count. Both decodes (NumPy and torch) draw here, from
    the column's decode stream: one hypergeometric pass over the pool (about 25 ms for 100k
    pooled values) and a shuffle of the ``m`` indexes."""
    counts = np.asarray(counts, dtype=np.int64)
    full, rest = divmod(m, int(counts.sum()))
    k = full * counts + rng.multivariate_hypergeometric(counts, rest, method="marginals")
    return rng.permutation(np.repeat(np.arange(counts.size), k))


def _rare_threshold(n_rows: int) -> int:
    """Rows a category needs, of ``n_rows``, to get a slot of its own in a wide column."""
    return max(1, math.ceil(MIN_FREQUENCY * n_rows))


def _n_kept(counts: np.ndarray, n_rows: int, keep_all: bool) -> int:
    """How many of the most frequent categories (``counts``, descending) get a slot of their
    own: all of them up to ``MAX_KEPT`` (or ``keep_all``: booleans), else the at most
    ``MAX_KEPT`` that hold ``MIN_FREQUENCY`` of the ``n_rows`` rows."""
    if keep_all or counts.size <= MAX_KEPT:
        return int(counts.size)  # few categories: one-hot them all, decode stays exact
    return int(min(MAX_KEPT, np.sum(counts >= _rare_threshold(n_rows))))


def _seen_in(values: pa.Array, rows: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Which of ``values`` occur among ``rows`` (boolean mask)."""
    if isinstance(rows, pa.ChunkedArray):
        rows = rows.combine_chunks()
    present = pc.unique(rows.drop_null().cast(values.type))
    return np.asarray(pc.is_in(values, value_set=present), dtype=bool)

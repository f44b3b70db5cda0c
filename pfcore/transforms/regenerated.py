"""Columns that are not modelled: decode rebuilds them from the schema alone.

* ``constant``: every row holds the column's single value (or null for an all-null column).
* ``id``: fresh unique ids numbered from ``row_offset``, so ids stay unique across generated
  batches: integers ``id_start + id_step * (row_offset + i)``; strings
  ``id_prefix + str(row_offset + i)`` (left-padded with zeros to ``id_width``).
  Real ids carry no information a model should learn, and copying them would leak rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pfcore.schema import ColumnSchema, is_temporal, temporal_storage
from pfcore.transforms.base import ColumnTransform


class ConstantTransform(ColumnTransform):
    """A column with one value: nothing to model, restored on decode."""

    kind = "constant"

    def layout(self) -> list[tuple[str, str, int]]:
        return []

    def encode(self, arr: pa.ChunkedArray | pa.Array, rng: np.random.Generator) -> np.ndarray:
        return np.empty((len(arr), 0), dtype=np.float32)

    def decode(self, x: np.ndarray, n: int, rng: np.random.Generator, row_offset: int) -> pa.Array:
        v = self.column.value
        if v is None or pa.types.is_null(self.type):
            return pa.nulls(n, type=self.type)
        if is_temporal(self.type):
            scalar = pa.scalar(v, type=temporal_storage(self.type)).cast(self.type)
        else:
            scalar = pa.scalar(v, type=self.type)
        return pa.repeat(scalar, n)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {}

    @classmethod
    def from_state(
        cls, column: ColumnSchema, meta: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> ConstantTransform:
        return cls(column)


class IdTransform(ColumnTransform):
    """A unique id column: never modelled (it would leak rows); regenerated from the row number."""

    kind = "id"

    def layout(self) -> list[tuple[str, str, int]]:
        return []

    def encode(self, arr: pa.ChunkedArray | pa.Array, rng: np.random.Generator) -> np.ndarray:
        return np.empty((len(arr), 0), dtype=np.float32)

    def decode(self, x: np.ndarray, n: int, rng: np.random.Generator, row_offset: int) -> pa.Array:
        k = np.arange(row_offset, row_offset + n, dtype=np.int64)
        c = self.column
        if pa.types.is_integer(self.type):
            start = c.id_start if c.id_start is not None else 0
            step = c.id_step if c.id_step else 1
            return pa.array(start + step * k, type=pa.int64()).cast(self.type)
        s = pc.cast(pa.array(k), pa.string())
        if c.id_width:
            s = pc.utf8_lpad(s, width=c.id_width, padding="0")
        if c.id_prefix:
            s = pc.binary_join_element_wise(pa.scalar(c.id_prefix), s, "")
        return s.cast(self.type)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {}

    @classmethod
    def from_state(
        cls, column: ColumnSchema, meta: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> IdTransform:
        return cls(column)

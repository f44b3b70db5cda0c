"""The block layout and the interface every per-column transform implements."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from pfcore.schema import ColumnSchema


@dataclass(frozen=True)
class Block:
    """A contiguous slice of the encoded matrix that belongs to one column (or its missingness).

    kind ``"numeric"``: width 1, roughly N(0, 1). kind ``"onehot"``: width >= 2, values in
    {-1, +1} with exactly one +1 per row. Missing-value indicators are onehot blocks named
    ``f"{column}.__missing__"`` (slot 0 present, slot 1 missing).
    """

    column: str
    kind: str
    start: int
    width: int

    @property
    def stop(self) -> int:
        return self.start + self.width


def onehot(index: np.ndarray, width: int) -> np.ndarray:
    """Rows of -1 with a +1 at ``index`` (±1 keeps onehots on the scale of N(0, 1))."""
    out = np.full((index.shape[0], width), -1.0, dtype=np.float32)
    out[np.arange(index.shape[0]), index] = 1.0
    return out


def arrow_values(values: np.ndarray, missing: np.ndarray | None, t: pa.DataType) -> pa.Array:
    """The Arrow array of type ``t`` for decoded numbers: int64 storage for integers and
    datetimes (their unit since epoch), float64 otherwise; ``missing`` marks nulls.

    Both decode paths (NumPy, torch) build their numeric columns here, so the final cast
    (narrow integers, float32, decimals, time zones) is one piece of code.
    """
    from pfcore.schema import is_temporal, temporal_storage

    if pa.types.is_integer(t) or is_temporal(t):
        arr = pa.array(np.asarray(values, dtype=np.int64), type=pa.int64(), mask=missing)
        if is_temporal(t):
            return arr.cast(temporal_storage(t)).cast(t)
        return arr.cast(t)
    arr = pa.array(np.asarray(values, dtype=np.float64), type=pa.float64(), mask=missing)
    return arr.cast(t, safe=False) if pa.types.is_decimal(t) else arr.cast(t)


def stream_key(key: int | str) -> int:
    """An integer for ``SeedSequence``: ints as they are, names by a stable 63-bit hash.

    Columns are keyed by name, not position, so dropping or reordering one column leaves every
    other column's draws unchanged (and Python's ``hash`` is salted per process: not usable).
    """
    if isinstance(key, str):
        return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little") >> 1
    return int(key)


def rng_for(seed: int, *keys: int | str) -> np.random.Generator:
    """An independent stream per (seed, keys): columns never share or shift each other's draws."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, *[stream_key(k) for k in keys]])
    )


ENCODE_STREAM, DECODE_STREAM = 0, 1


def decode_rng(seed: int, row_offset: int, column: str) -> np.random.Generator:
    """A column's decode randomness for the block at ``row_offset``: the NumPy and the torch
    decode both draw from this stream, so their redraws agree."""
    return rng_for(seed, DECODE_STREAM, row_offset, column)


class ColumnTransform(ABC):
    """Encode one column to ``width`` float columns and decode them back to an Arrow array."""

    kind: ClassVar[str]

    def __init__(self, column: ColumnSchema) -> None:
        self.column = column
        self.type: pa.DataType = column.type

    @abstractmethod
    def layout(self) -> list[tuple[str, str, int]]:
        """(block column label, block kind, width) for each block, in order; [] if not modelled."""

    @property
    def width(self) -> int:
        return sum(w for _, _, w in self.layout())

    @abstractmethod
    def encode(self, arr: pa.ChunkedArray | pa.Array, rng: np.random.Generator) -> np.ndarray:
        """(n, width) float32."""

    @abstractmethod
    def decode(self, x: np.ndarray, n: int, rng: np.random.Generator, row_offset: int) -> pa.Array:
        """x: (n, width) float view of the raw model output; returns an array of ``self.type``."""

    @abstractmethod
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able settings and named numpy arrays (saved with safetensors)."""

    @classmethod
    @abstractmethod
    def from_state(
        cls, column: ColumnSchema, meta: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> ColumnTransform: ...

"""Table schema: what each column is, inferred once from the data and editable by the user.

The schema is the contract between ingest, the transforms and the generator: it fixes each
column's *kind* (how it is modelled), its exact Arrow type (what decode must give back) and the
statistics decode needs to stay inside the data's support (bounds, decimals, step, categories).

Inference is streaming: ``SchemaAccumulator.update(batch)`` keeps O(columns x cap) state, so a
table far larger than memory can be profiled batch by batch while ingest writes it.

Kind rules (``infer_schema``), in order:

* no non-null value                      -> ``constant`` (value ``None``: decode gives nulls)
* one distinct value and no null         -> ``constant``
* Arrow ``bool``                         -> ``boolean``
* one distinct value plus nulls          -> ``categorical`` (value-or-null)
* timestamp / date                       -> ``datetime``
* string with more than ``TEXT_MIN_DISTINCT`` distinct values and at least
  ``NEAR_UNIQUE_SHARE`` as many as non-null rows, no prefix shared by every value -> ``text``
  (titles, names, descriptions, tickets: a class per value cannot be learnt, and copying them
  leaks rows; ``pfcore.transforms.text``), unless its values are single words that are all
  distinct with no null (``id`` below) or mostly dates or decimal numbers in a form ingest
  did not read (``12/28/2009``, ``0.5`` beside ``-``: left categorical, copies of real values
  rather than made-up malformed ones)
* string: all values distinct (a stray duplicate allowed: ``ID_DISTINCT_SHARE``), no nulls, at
  least ``ID_MIN_ROWS`` rows -> ``id``; else ``categorical``
* integer with at most ``max_int_categories`` (20) distinct values -> ``categorical``.
  Why 20: integer *codes* (sex, marital status, education, payment status -2..8, month, weekday)
  have a handful of values, and one-hot keeps their exact joint structure (modelling notes,
  trap 3), while genuine integer quantities (age, counts, amounts) spread over far more than 20
  values. A one-hot block of <= 20 columns is cheap, and decode is exact either way.
* integer, all unique, no nulls, at least ``ID_MIN_ROWS`` rows and forming an arithmetic
  sequence (max - min == step * (n - 1)) -> ``id``; else ``integer``
* float / decimal                        -> ``continuous``

Everything here is deterministic: same data in the same order gives the same JSON.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pfcore.atomic import atomic_write
from pfcore.errors import InputError, SchemaError

__all__ = [
    "KINDS",
    "MODELLED_KINDS",
    "ColumnSchema",
    "TableSchema",
    "SchemaAccumulator",
    "infer_schema",
    "apply_overrides",
    "load_overrides",
    "type_from_string",
]

KINDS = ("continuous", "integer", "categorical", "boolean", "datetime", "constant", "id", "text")
MODELLED_KINDS = ("continuous", "integer", "categorical", "boolean", "datetime")
FORMAT_VERSION = 1

#: Integer columns with at most this many distinct values are categorical codes (see module doc).
MAX_INT_CATEGORIES = 20
#: Fewer rows than this and "all values unique" is no evidence of an id column.
ID_MIN_ROWS = 20
#: Distinct share at which a string column without nulls is an id despite a few repeats.
ID_DISTINCT_SHARE = 0.99
#: Distinct values tracked per string/integer column while streaming (bounded memory).
MAX_TRACKED_DISTINCT = 200_000
#: Distinct values tracked for float/temporal columns: only "constant or not" is needed.
MAX_TRACKED_DISTINCT_FLOAT = 64
#: A string column with more distinct values than this (a categorical keeps 100 classes) and at
#: least ``NEAR_UNIQUE_SHARE`` as many as its non-null rows is near-unique: titles, free text,
#: tickets. Its synthetic values would be training values copied verbatim.
TEXT_MIN_DISTINCT = 100
NEAR_UNIQUE_SHARE = 0.5
#: Share of values with two or more words that makes a near-unique string column free text.
TEXT_WORD_SHARE = 0.5
#: A value of two or more words.
MULTI_WORD = r"\S\s+\S"
#: Values of a string column checked for several words (the first ones seen).
TEXT_PROBE_VALUES = 100_000
#: A quantity in a form ingest did not read: a date or date-time (``12/28/2009``,
#: ``2009.12.28 10:00``) or a decimal number (``0.5`` beside ``-`` and ``?``). Made of
#: characters these would be malformed (``12.5.0``); integers (ticket numbers) are fine.
QUANTITY_LIKE = (
    r"^\s*(\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2})?)?"
    r"|[-+]?\d*\.\d+([eE][-+]?\d+)?)\s*$"
)
#: Categories written into schema.json (most frequent first); the transformer recounts on fit.
MAX_STORED_CATEGORIES = 1000
#: Largest number of decimals recorded for a float column; beyond it ``decimals`` is None.
MAX_DECIMALS = 8


# --------------------------------------------------------------------------------------------
# Arrow type helpers
# --------------------------------------------------------------------------------------------

_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "null": pa.null(),
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "halffloat": pa.float16(),
    "float": pa.float32(),
    "double": pa.float64(),
    "string": pa.string(),
    "large_string": pa.large_string(),
    "binary": pa.binary(),
    "large_binary": pa.large_binary(),
    "date32[day]": pa.date32(),
    "date64[ms]": pa.date64(),
}
_TS_RE = re.compile(r"^timestamp\[(s|ms|us|ns)(?:, tz=(.+))?\]$")
_UNIT_RE = re.compile(r"^(duration|time32|time64)\[(s|ms|us|ns)\]$")
_DEC_RE = re.compile(r"^decimal(128|256)\((\d+), (-?\d+)\)$")


def type_from_string(text: str) -> pa.DataType:
    """Parse ``str(pa.DataType)`` back for the types a schema can hold."""
    if text in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[text]
    m = _TS_RE.match(text)
    if m:
        return pa.timestamp(m.group(1), tz=m.group(2))
    m = _UNIT_RE.match(text)
    if m:
        return {"duration": pa.duration, "time32": pa.time32, "time64": pa.time64}[m.group(1)](
            m.group(2)
        )
    m = _DEC_RE.match(text)
    if m:
        ctor = pa.decimal128 if m.group(1) == "128" else pa.decimal256
        return ctor(int(m.group(2)), int(m.group(3)))
    raise SchemaError(f"unsupported arrow type string {text!r}")


def is_temporal(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


def temporal_storage(t: pa.DataType) -> pa.DataType:
    """Integer type with the same bits as a temporal type (counts of its unit since epoch)."""
    return pa.int32() if pa.types.is_date32(t) else pa.int64()


def is_stringlike(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _json_value(v: Any) -> Any:
    """A Python scalar as JSON can hold it (numpy scalars unwrapped; non-finite floats refused)."""
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        raise SchemaError(f"non-finite value {v!r} cannot be stored in a schema")
    return v


def values_to_json(arr: pa.Array) -> list[Any]:
    """Arrow values to JSON-able Python values; temporal values become integers of their unit."""
    t = arr.type
    if is_temporal(t):
        arr = arr.cast(temporal_storage(t))
    elif pa.types.is_decimal(t):
        return [None if v is None else str(v) for v in arr.to_pylist()]
    return [_json_value(v) for v in arr.to_pylist()]


def values_from_json(values: list[Any], arrow_type: pa.DataType) -> pa.Array:
    """Inverse of :func:`values_to_json`."""
    if is_temporal(arrow_type):
        return pa.array(values, type=temporal_storage(arrow_type)).cast(arrow_type)
    if pa.types.is_decimal(arrow_type):
        import decimal

        return pa.array(
            [None if v is None else decimal.Decimal(v) for v in values], type=arrow_type
        )
    return pa.array(values, type=arrow_type)


# --------------------------------------------------------------------------------------------
# Dataclasses
# --------------------------------------------------------------------------------------------


@dataclass
class ColumnSchema:
    """One column: its kind, exact Arrow type and the statistics decode needs.

    ``min``/``max`` are floats (datetimes: counts of the Arrow unit since the epoch) and act as
    clip bounds on decode. ``step`` is the gcd of the differences between values (integers and
    datetimes), so decode can snap to the observed grid (e.g. whole hours). ``decimals`` is the
    number of decimals floats were observed to carry (None: more than ``MAX_DECIMALS``).
    ``value`` is the value of a ``constant`` column; ``id_start``/``id_step``/``id_prefix``/
    ``id_width`` describe how to regenerate an ``id`` column.
    """

    name: str
    kind: str
    arrow_type: str
    nullable: bool = False
    missing_rate: float = 0.0
    n_missing: int = 0
    n_distinct: int | None = None
    distinct_truncated: bool = False
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    step: int | None = None
    categories: list[dict[str, Any]] | None = None
    value: Any = None
    id_start: int | None = None
    id_step: int | None = None
    id_prefix: str | None = None
    id_width: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SchemaError(
                f"column {self.name!r}: unknown kind {self.kind!r} (one of {', '.join(KINDS)})"
            )

    @property
    def type(self) -> pa.DataType:
        return type_from_string(self.arrow_type)

    @property
    def modelled(self) -> bool:
        return self.kind in MODELLED_KINDS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColumnSchema:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SchemaError(f"column {d.get('name')!r}: unknown schema fields {sorted(unknown)}")
        return cls(**dict(d))


@dataclass
class TableSchema:
    """All columns in source order, the row count, and the source's exact Arrow schema."""

    columns: list[ColumnSchema]
    n_rows: int
    arrow_schema_ipc: str | None = field(default=None, repr=False)  # base64 Arrow IPC schema
    #: How the source was read (format, CSV delimiter, encoding, null tokens) and ``guesses``:
    #: what ingest detected rather than was told, so a wrong guess is visible in schema.json.
    source_dialect: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"duplicate column names {dupes}")

    # -- access ---------------------------------------------------------------------------
    def __getitem__(self, name: str) -> ColumnSchema:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def modelled(self) -> list[ColumnSchema]:
        """Columns the model sees (constant, id and text columns are written by decode)."""
        return [c for c in self.columns if c.modelled]

    def require_modelled(self, path: str | os.PathLike[str] | None = None) -> None:
        """Refuse a table with nothing to learn, before any training starts (preflight and
        ``Synthesizer.fit`` alike), naming the columns' kinds."""
        if self.modelled:
            return
        kinds = ", ".join(f"{c.name!r}: {c.kind}" for c in self.columns[:10])
        raise InputError(
            f"has no column to model ({kinds}): constant and id columns are regenerated, not "
            "learned; add varying columns, or force a kind with an override",
            path=path,
        )

    def arrow_schema(self) -> pa.Schema:
        """The exact Arrow schema decode returns: the source's fields, minus dropped columns."""
        if self.arrow_schema_ipc:
            full = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.arrow_schema_ipc)))
            by_name = {f.name: f for f in full}
            if all(c.name in by_name for c in self.columns):
                return pa.schema([by_name[c.name] for c in self.columns])
        return pa.schema([pa.field(c.name, c.type) for c in self.columns])

    # -- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "n_rows": self.n_rows,
            "columns": [c.to_dict() for c in self.columns],
            "arrow_schema_ipc": self.arrow_schema_ipc,
            **({"source_dialect": self.source_dialect} if self.source_dialect else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TableSchema:
        if d.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise SchemaError(
                f"schema format {d['format_version']} is newer than this pushforward reads"
            )
        return cls(
            columns=[ColumnSchema.from_dict(c) for c in d["columns"]],
            n_rows=int(d["n_rows"]),
            arrow_schema_ipc=d.get("arrow_schema_ipc"),
            source_dialect=d.get("source_dialect"),
        )

    @classmethod
    def from_json(cls, text: str) -> TableSchema:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        atomic_write(path, self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TableSchema:
        path = Path(path)
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError("schema file does not exist", path=path) from None
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"not a valid schema.json ({exc})", path=path) from None


def schema_to_ipc(schema: pa.Schema) -> str:
    return base64.b64encode(schema.remove_metadata().serialize().to_pybytes()).decode("ascii")


# --------------------------------------------------------------------------------------------
# Streaming statistics
# --------------------------------------------------------------------------------------------


def _decimals_needed(x: np.ndarray, start: int, rel: float) -> int | None:
    """Smallest d >= start such that every value has at most d decimals (None: > MAX_DECIMALS)."""
    if x.size == 0:
        return start
    for d in range(start, MAX_DECIMALS + 1):
        s = x * (10.0**d)
        if np.all(np.abs(s - np.rint(s)) <= np.maximum(np.abs(s), 1.0) * rel):
            return d
    return None


class TopCounts(NamedTuple):
    """A column's most frequent values over the whole table, as streaming counted them."""

    values: pa.Array  # most frequent first, ties by value; temporals as integers of their unit
    counts: np.ndarray  # int64
    exact: bool  # False: more distinct values than tracked; counts are lower bounds
    tracked: int  # distinct values tracked (all of them when exact)


class _ColumnStats:
    """Per-column running statistics with bounded memory."""

    def __init__(self, name: str, arrow_type: pa.DataType) -> None:
        self.name = name
        self.type = arrow_type
        self.n = 0
        self.n_null = 0
        self.min: Any = None
        self.max: Any = None
        self.is_float = pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type)
        self.is_int = pa.types.is_integer(arrow_type)
        self.is_temporal = is_temporal(arrow_type)
        self.is_string = is_stringlike(arrow_type)
        self.probed = 0  # string values checked for several words / a date's look, and how many
        self.multi_word = 0
        self.quantity_like = 0
        self.cap = (
            MAX_TRACKED_DISTINCT_FLOAT
            if (self.is_float or self.is_temporal)
            else MAX_TRACKED_DISTINCT
        )
        self.pending: list[pa.StructArray] = []
        self.pending_len = 0
        self.counts: pa.Table | None = pa.table(
            {"v": pa.array([], type=self._vc_type()), "c": pa.array([], pa.int64())}
        )
        self.tracking = True  # False once a float/temporal column exceeds its cap
        self.truncated = False
        self.all_unique = True
        self.decimals: int | None = 0 if self.is_float else None
        self.decimals_known = True
        self.anchor: int | None = None
        self.gcd = 0

    def _vc_type(self) -> pa.DataType:
        return temporal_storage(self.type) if self.is_temporal else self.type

    def update(self, arr: pa.Array) -> None:
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        self.n += len(arr)
        self.n_null += arr.null_count
        valid = arr.drop_null() if arr.null_count else arr
        if len(valid) == 0:
            return
        if self.is_temporal:
            valid = valid.cast(temporal_storage(self.type))
        if self.is_string and self.probed < TEXT_PROBE_VALUES:
            head = valid.slice(0, TEXT_PROBE_VALUES - self.probed)
            self.probed += len(head)
            self.multi_word += int(pc.sum(pc.match_substring_regex(head, MULTI_WORD)).as_py() or 0)
            quantity = pc.match_substring_regex(head, QUANTITY_LIKE)
            self.quantity_like += int(pc.sum(quantity).as_py() or 0)
        if self.is_float or self.is_int or self.is_temporal or self.is_string:
            mm = pc.min_max(valid)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            self.min = lo if self.min is None else min(self.min, lo)
            self.max = hi if self.max is None else max(self.max, hi)
        if self.is_float and self.decimals_known:
            x = np.asarray(valid.cast(pa.float64()))
            # float64 carries ~16 significant digits: 1e-12 absorbs binary noise (0.1 + 0.2) without
            # calling 200000.2422 a 3-decimal number (1e-9 did: 0.2 units off at 2e8 scale).
            rel = (
                1e-6 if pa.types.is_float32(self.type) or pa.types.is_float16(self.type) else 1e-12
            )
            d = _decimals_needed(x, self.decimals or 0, rel)
            if d is None:
                self.decimals_known, self.decimals = False, None
            else:
                self.decimals = d
        if (self.is_int or self.is_temporal) and not pa.types.is_uint64(self.type):
            x = np.asarray(valid.cast(pa.int64()))
            if self.anchor is None:
                self.anchor = int(x[0])
            with np.errstate(over="ignore"):
                diffs = np.abs(x - np.int64(self.anchor))
            g = int(np.gcd.reduce(diffs)) if diffs.size else 0
            self.gcd = math.gcd(self.gcd, g)
        if self.tracking:
            vc = pc.value_counts(valid)
            if self.all_unique and len(vc) and pc.max(vc.field("counts")).as_py() > 1:
                self.all_unique = False
            if (self.is_float or self.is_temporal) and len(vc) > self.cap:
                # Already more distinct values than tracked: merging them first cost 8 s per
                # 330k-row CSV block of floats, only to stop tracking afterwards.
                self.tracking, self.counts, self.pending, self.pending_len = False, None, [], 0
                return
            self.pending.append(vc)
            self.pending_len += len(vc)
            if self.pending_len > 2 * self.cap:
                self._merge()

    def _merge(self) -> None:
        if not self.pending:
            return
        parts = [self.counts] + [
            pa.table({"v": vc.field("values"), "c": vc.field("counts").cast(pa.int64())})
            for vc in self.pending
        ]
        self.pending, self.pending_len = [], 0
        merged = (
            pa.concat_tables(parts)
            .group_by("v")
            .aggregate([("c", "sum")])
            .rename_columns(["v", "c"])
        )
        if self.all_unique and len(merged) and pc.max(merged["c"]).as_py() > 1:
            self.all_unique = False
        merged = merged.sort_by([("c", "descending"), ("v", "ascending")])
        if len(merged) > self.cap:
            if self.is_float or self.is_temporal:
                self.tracking, self.counts = False, None
                return
            merged = merged.slice(0, self.cap)
            self.truncated = True
        self.counts = merged

    def top_counts(self, limit: int) -> TopCounts | None:
        """The ``limit`` most frequent values over every row seen (temporal values as integers
        of their unit) with their counts; None when the column's values were not tracked
        (floats and temporals beyond ``MAX_TRACKED_DISTINCT_FLOAT``).

        Exact unless more than ``cap`` distinct values were met: each merge then drops the
        values ranked below ``cap``, so a dropped value that comes back is counted again from
        zero (its count is a lower bound).
        """
        if self.tracking:
            self._merge()
        if self.counts is None:
            return None
        top = self.counts.slice(0, limit)
        return TopCounts(
            top["v"].combine_chunks(),
            np.asarray(top["c"], dtype=np.int64),
            not self.truncated,
            len(self.counts),
        )

    def finish(self) -> ColumnSchema:
        if self.tracking:
            self._merge()
        n_valid = self.n - self.n_null
        counts = self.counts
        n_distinct = None if counts is None else len(counts)
        exact = counts is not None and not self.truncated
        t = self.type
        col = ColumnSchema(
            name=self.name,
            kind="continuous",
            arrow_type=str(t),
            nullable=self.n_null > 0,
            missing_rate=(self.n_null / self.n) if self.n else 0.0,
            n_missing=self.n_null,
            n_distinct=n_distinct,
            distinct_truncated=not exact,
        )
        if self.is_float or self.is_int or self.is_temporal:
            col.min = None if self.min is None else float(self.min)
            col.max = None if self.max is None else float(self.max)
        if self.is_int or self.is_temporal:
            col.step = self.gcd if self.gcd > 0 else None
        if self.is_int:
            col.decimals = 0
        if self.is_float:
            col.decimals = self.decimals
        if counts is not None:
            top = counts.slice(0, MAX_STORED_CATEGORIES)
            vals = values_to_json(top["v"].combine_chunks())
            col.categories = [
                {"value": v, "count": int(c)}
                for v, c in zip(vals, top["c"].to_pylist(), strict=True)
            ]

        # ---- kind rules (see module docstring) ----
        if n_valid == 0:
            col.kind, col.value, col.categories = "constant", None, None
        elif exact and n_distinct == 1 and self.n_null == 0:
            col.kind = "constant"
            col.value = col.categories[0]["value"] if col.categories else None
        elif pa.types.is_boolean(t):
            col.kind = "boolean"
        elif exact and n_distinct == 1:
            col.kind = "categorical"
        elif self.is_temporal:
            col.kind = "datetime"
        elif self.is_string:
            # Regenerated ids look like the real ones: common prefix without trailing digits,
            # then a number zero-padded to the real ids' width when they all share one.
            prefix = _common_prefix(self.min, self.max).rstrip("0123456789")
            col.id_prefix = prefix
            same_len = self.min is not None and len(self.min) == len(self.max)
            col.id_width = (
                len(self.min) - len(prefix) if same_len and self.min[len(prefix) :].isdigit() else 0
            )
            if self._free_text(n_distinct, n_valid, prefix, exact):
                col.kind = "text"
            elif self._string_id(n_distinct, n_valid, exact):
                col.kind = "id"
            else:
                col.kind = "categorical"
        elif self.is_int:
            step = col.step or 1
            if exact and n_distinct is not None and n_distinct <= MAX_INT_CATEGORIES:
                col.kind = "categorical"
            elif (
                self.all_unique
                and self.n_null == 0
                and n_valid >= ID_MIN_ROWS
                and self.max - self.min == step * (n_valid - 1)
            ):
                col.kind, col.id_start, col.id_step = "id", int(self.min), int(step)
            else:
                col.kind = "integer"
        elif self.is_float:
            col.kind = "continuous"
        else:
            raise InputError(f"unsupported column type {t}", column=self.name)
        if col.kind in ("continuous", "datetime", "integer", "id", "text"):
            # categories of a quantity (or of free text) are noise in schema.json.
            col.categories = None
        return col

    def _string_id(self, n_distinct: int | None, n_valid: int, exact: bool) -> bool:
        """Distinct strings, never missing, in at least ``ID_MIN_ROWS`` rows; a stray duplicate
        allowed (``ID_DISTINCT_SHARE``): a startups table's ``c:6669`` ids hold 922 distinct
        values in 923 rows, and as a categorical every synthetic id was a training one
        (single-column detection AUC 1.0)."""
        if self.n_null or n_valid < ID_MIN_ROWS:
            return False
        if self.all_unique:
            return True
        return exact and n_distinct is not None and n_distinct >= ID_DISTINCT_SHARE * n_valid

    def _free_text(self, n_distinct: int | None, n_valid: int, prefix: str, exact: bool) -> bool:
        """Near-unique values that share no prefix (``Order 1``, ``Order 2`` are ids): titles,
        names, descriptions; single words (tickets, codes) unless they are ids, dates or
        decimal numbers."""
        if prefix or not near_unique(n_distinct, n_valid, self.truncated):
            return False
        probed = max(self.probed, 1)
        if self.multi_word >= TEXT_WORD_SHARE * probed:
            return True
        if self._string_id(n_distinct, n_valid, exact):
            return False  # single distinct words: an id
        return self.quantity_like < TEXT_WORD_SHARE * probed


def near_unique(n_distinct: int | None, n_valid: int, truncated: bool) -> bool:
    """More than ``TEXT_MIN_DISTINCT`` distinct values and at least ``NEAR_UNIQUE_SHARE`` as
    many as non-null rows (or more than were counted): titles, free text, tickets."""
    if n_distinct is None or n_distinct <= TEXT_MIN_DISTINCT:
        return False
    return truncated or n_distinct >= NEAR_UNIQUE_SHARE * n_valid


def _common_prefix(a: str | None, b: str | None) -> str:
    """Longest common prefix of all strings = that of the lexicographic min and max."""
    if a is None or b is None:
        return ""
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return a[:i]


_SUPPORTED_CHECKS = (
    pa.types.is_boolean,
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_decimal,
    pa.types.is_timestamp,
    pa.types.is_date,
    is_stringlike,
    pa.types.is_null,
)


class SchemaAccumulator:
    """Build a :class:`TableSchema` from record batches with bounded memory."""

    def __init__(self, arrow_schema: pa.Schema) -> None:
        names = arrow_schema.names
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputError(f"duplicate column names {dupes}")
        for f in arrow_schema:
            if not any(check(f.type) for check in _SUPPORTED_CHECKS):
                raise InputError(
                    f"unsupported type {f.type} (supported: bool, integers, floats, decimals, "
                    "strings, timestamps, dates)",
                    column=f.name,
                )
        self.arrow_schema = arrow_schema.remove_metadata()
        self.stats = [_ColumnStats(f.name, f.type) for f in arrow_schema]
        self.n_rows = 0

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.schema.names != self.arrow_schema.names:
            raise InputError("batch columns differ from the first batch's columns")
        self.n_rows += batch.num_rows
        for st, arr in zip(self.stats, batch.columns, strict=True):
            if st.is_float:
                arr = _nan_to_null(arr, st.name)
            st.update(arr)

    def top_counts(self, name: str, limit: int) -> TopCounts | None:
        """Column ``name``'s most frequent values and counts (see ``_ColumnStats.top_counts``)."""
        st = self._column(name)
        return None if pa.types.is_null(st.type) else st.top_counts(limit)

    def nulls(self, name: str) -> int:
        """Missing values seen in column ``name`` (NaN counts as missing)."""
        return int(self._column(name).n_null)

    def _column(self, name: str) -> _ColumnStats:
        for st in self.stats:
            if st.name == name:
                return st
        raise KeyError(name)

    def finish(self) -> TableSchema:
        cols = []
        for st in self.stats:
            if pa.types.is_null(st.type):
                cols.append(
                    ColumnSchema(
                        name=st.name,
                        kind="constant",
                        arrow_type="null",
                        nullable=True,
                        missing_rate=1.0 if st.n else 0.0,
                        n_missing=st.n,
                        n_distinct=0,
                    )
                )
            else:
                cols.append(st.finish())
        return TableSchema(
            columns=cols, n_rows=self.n_rows, arrow_schema_ipc=schema_to_ipc(self.arrow_schema)
        )


def _nan_to_null(arr: pa.Array | pa.ChunkedArray, name: str) -> pa.Array | pa.ChunkedArray:
    """NaN counts as missing (one notion of missing, as in ingest); infinities are an error."""
    if pa.types.is_decimal(arr.type) or len(arr) == 0:
        return arr
    if pc.any(pc.is_inf(arr)).as_py():
        raise InputError("contains infinite values (replace them or drop the rows)", column=name)
    nan = pc.is_nan(arr)
    if pc.any(nan).as_py():
        arr = pc.if_else(nan, pa.scalar(None, type=arr.type), arr)
    return arr


def _batches(data: Any) -> tuple[pa.Schema, Iterable[pa.RecordBatch]]:
    from pfcore.io import plain_table

    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        data = plain_table(data)
        return data.schema, data.to_batches()
    try:
        import pyarrow.dataset as ds

        if isinstance(data, ds.Dataset):
            return data.schema, data.to_batches()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(
        f"infer_schema needs a pyarrow Table, RecordBatch or Dataset, not {type(data).__name__}"
    )


def infer_schema(data: pa.Table | Any) -> TableSchema:
    """Infer a schema from a table or a ``pyarrow.dataset.Dataset`` (scanned batch by batch).

    NaN in floats counts as missing (like null); an infinity is an InputError naming the column.
    """
    schema, batches = _batches(data)
    acc = SchemaAccumulator(schema)
    for b in batches:
        acc.update(b)
    return acc.finish()


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------

_OVERRIDE_KEYS = {"kind", "drop", "min", "max"}


def load_overrides(source: Mapping[str, Any] | str | os.PathLike[str] | None) -> dict[str, Any]:
    """Read overrides from a dict, or a YAML / JSON file (YAML is a superset of JSON)."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if not path.exists():
        raise InputError("overrides file does not exist", path=path)
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"overrides file is not valid YAML/JSON: {exc}", path=path) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InputError(
            "overrides file must hold a mapping with 'columns' and/or 'drop'", path=path
        )
    return dict(data)


def _bound_value(v: Any, col: ColumnSchema) -> float:
    """A user bound as a float in the column's unit (datetimes accept ISO strings)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    t = col.type
    if is_temporal(t) and isinstance(v, str):
        try:
            s = pa.scalar(v).cast(
                pa.timestamp("ns", tz=getattr(t, "tz", None)) if pa.types.is_timestamp(t) else t
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            s = None
        if s is None:
            raise SchemaError(f"column {col.name!r}: bound {v!r} is not an ISO date/time")
        return float(s.cast(t).cast(temporal_storage(t)).as_py())
    raise SchemaError(f"column {col.name!r}: bound {v!r} is not a number")


_KIND_ALLOWED = {
    "continuous": lambda t: (
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    ),
    "integer": lambda t: pa.types.is_integer(t),
    "categorical": lambda t: not pa.types.is_null(t),
    "boolean": pa.types.is_boolean,
    "datetime": is_temporal,
    "constant": lambda t: True,
    "id": lambda t: pa.types.is_integer(t) or is_stringlike(t),
    "text": is_stringlike,
}


def apply_overrides(
    schema: TableSchema, overrides: Mapping[str, Any] | str | os.PathLike[str] | None
) -> TableSchema:
    """Return a new schema with the user's overrides applied.

    Format (YAML or JSON)::

        drop: [ID]                      # columns not to keep at all
        columns:
          SEX: {kind: categorical}      # force a kind
          AGE: {min: 18, max: 100}      # decode bounds (datetimes: ISO strings allowed)
          notes: {drop: true}

    Unknown columns, keys or kinds, and kinds that cannot hold the column's type (e.g.
    ``continuous`` for a string) raise SchemaError naming the column.
    """
    ov = load_overrides(overrides)
    unknown_top = set(ov) - {"columns", "drop", "rules"}  # rules: pfcore.rules.declare
    if unknown_top:
        raise SchemaError(
            f"unknown override keys {sorted(unknown_top)} (use 'columns', 'drop' and 'rules')"
        )
    out = copy.deepcopy(schema)
    names = set(out.names)
    drop = list(ov.get("drop") or [])
    per_col = ov.get("columns") or {}
    if not isinstance(per_col, Mapping):
        raise SchemaError("overrides 'columns' must be a mapping of column name to settings")
    for name in list(drop) + list(per_col):
        if name not in names:
            raise SchemaError(f"override names column {name!r}, which is not in the table")
    for name, settings in per_col.items():
        if not isinstance(settings, Mapping):
            raise SchemaError(f"column {name!r}: override must be a mapping, not {settings!r}")
        bad = set(settings) - _OVERRIDE_KEYS
        if bad:
            raise SchemaError(
                f"column {name!r}: unknown override keys {sorted(bad)} "
                f"(use {sorted(_OVERRIDE_KEYS)})"
            )
        if settings.get("drop"):
            drop.append(name)
            continue
        col = out[name]
        if "kind" in settings:
            _force_kind(col, str(settings["kind"]))
        for key in ("min", "max"):
            if key in settings:
                setattr(col, key, _bound_value(settings[key], col))
        if col.min is not None and col.max is not None and col.min > col.max:
            raise SchemaError(f"column {name!r}: min {col.min} is above max {col.max}")
    out.columns = [c for c in out.columns if c.name not in set(drop)]
    return out


def _force_kind(col: ColumnSchema, kind: str) -> None:
    if kind not in KINDS:
        raise SchemaError(f"column {col.name!r}: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    if not _KIND_ALLOWED[kind](col.type):
        raise SchemaError(
            f"column {col.name!r}: kind {kind!r} cannot hold arrow type {col.arrow_type}"
        )
    if kind == "constant":
        if col.categories:
            col.value = col.categories[0]["value"]
        elif col.min is not None:
            col.value = (
                int(col.min) if pa.types.is_integer(col.type) or is_temporal(col.type) else col.min
            )
    if kind == "id":
        if pa.types.is_integer(col.type):
            col.id_start = int(col.min) if col.min is not None else 0
            col.id_step = col.step or 1
        else:
            col.id_prefix = col.id_prefix or ""
            col.id_width = col.id_width or 0
    col.kind = kind

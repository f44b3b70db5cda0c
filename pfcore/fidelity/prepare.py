"""Turn real / synthetic / train tables into aligned numeric arrays every metric can share.

Why one preparation step: every metric (shapes, pairs, detection, privacy, efficacy) needs the
same decisions -- which columns are compared, which are numeric, how a category maps to an
integer, what counts as missing. Making them once keeps the metrics consistent with each other
and keeps the 100k x 100k budget (each column is converted exactly once).

Column roles:
- ``"numeric"``: continuous or integer values, float64 with NaN for missing.
- ``"datetime"``: seconds since the Unix epoch (UTC) as float64, NaN for missing. KS and
  Pearson are invariant to the unit, so seconds lose nothing.
- ``"categorical"`` / ``"boolean"``: integer codes into one category list shared by all tables
  (ordered by real frequency, most frequent first), ``-1`` for missing.

Kinds ``constant``, ``id`` and ``text`` from the schema are skipped: they are written by decode,
not modelled, so comparing them says nothing about the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pfcore.errors import InputError

__all__ = ["ColumnInfo", "Prepared", "prepare", "to_pandas"]

NUMERIC_ROLES = ("numeric", "datetime")
DISCRETE_ROLES = ("categorical", "boolean")
_SKIPPED_KINDS = ("constant", "id", "text")
_KIND_TO_ROLE = {
    "continuous": "numeric",
    "integer": "numeric",
    "categorical": "categorical",
    "boolean": "boolean",
    "datetime": "datetime",
}
_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


@dataclass
class ColumnInfo:
    """How one column is compared.

    ``min``/``max`` are the valid bounds in the prepared unit (seconds for datetimes) or None;
    ``categories`` holds the schema's category values (None: none known) and
    ``categories_complete`` whether that list is every allowed value (schemas store only the
    most frequent levels of a high-cardinality column);
    ``integer`` is True when values must be whole numbers; ``bounds_source`` says where
    ``min``/``max`` came from ("schema" or "observed") so validity messages can say why.
    """

    name: str
    role: str
    integer: bool = False
    min: float | None = None
    max: float | None = None
    categories: list[Any] | None = None
    categories_complete: bool = False
    bounds_source: str = "observed"

    @property
    def is_numeric(self) -> bool:
        return self.role in NUMERIC_ROLES


@dataclass
class Prepared:
    """Aligned arrays for every compared column of each table.

    ``values[table][column]`` is a 1-D array (float64 for numeric roles, int64 codes for
    discrete roles); ``levels[column]`` is the shared category list of a discrete column.
    """

    columns: list[ColumnInfo]
    values: dict[str, dict[str, np.ndarray]]
    levels: dict[str, list[Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    _ordinal: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def n_rows(self, table: str) -> int:
        first = next(iter(self.values[table].values()), None)
        return 0 if first is None else len(first)

    def column(self, name: str) -> ColumnInfo:
        for info in self.columns:
            if info.name == name:
                return info
        raise KeyError(name)

    def ordinal(self, name: str) -> np.ndarray:
        """Each level's position when a classifier reads a discrete column as one ordered
        number: by the count of the level over every table (most frequent first), ties by the
        value's text, so that no position says which table a value was first seen in.

        Why: ``levels`` lists the real table's values first, so every value only the
        synthetic rows hold came after all real ones, and a level seen once (a free-text
        answer, a timestamp read as text, a rare tail number) told the classifier its table by
        position alone: real rows against other real rows of nyc_flights scored detection AUC
        0.56-0.60 that way (its 4,000 tail numbers), 0.50 on tables without such a column."""
        cached = self._ordinal.get(name)
        if cached is not None:
            return cached
        levels = self.levels[name]
        counts = np.zeros(len(levels), dtype=np.int64)
        for table in self.values.values():
            codes = table[name]
            counts += np.bincount(codes[codes >= 0], minlength=len(levels))
        order = sorted(range(len(levels)), key=lambda i: (-counts[i], str(levels[i])))
        rank = np.empty(len(levels), dtype=np.int64)
        rank[np.asarray(order, dtype=np.int64)] = np.arange(len(levels))
        self._ordinal[name] = rank
        return rank

    def missing(self, table: str, name: str) -> np.ndarray:
        """Boolean mask of missing cells of one column."""
        arr = self.values[table][name]
        return np.isnan(arr) if arr.dtype.kind == "f" else arr < 0


def to_pandas(table: Any, what: str) -> pd.DataFrame:
    """Accept a ``pa.Table`` or ``pd.DataFrame``; anything else is an InputError."""
    if isinstance(table, pd.DataFrame):
        df = table.reset_index(drop=True)
        if any(not isinstance(c, str) for c in df.columns):
            df.columns = [str(c) for c in df.columns]
        return df
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is a hard dependency
        pa = None
    if pa is not None and isinstance(table, pa.Table):
        # Decimals would become Python objects; they are scored as the numbers they are.
        for i, f in enumerate(table.schema):
            if pa.types.is_decimal(f.type):
                table = table.set_column(i, f.name, table.column(i).cast(pa.float64()))
        # dates as datetime64, not Python date objects: they are scored as the datetimes they are
        return table.to_pandas(date_as_object=False)
    raise InputError(
        f"{what} must be a pyarrow.Table or pandas.DataFrame, got {type(table).__name__}"
    )


def _datetime_seconds(series: pd.Series) -> np.ndarray:
    s = series
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    mask = s.isna().to_numpy()
    ns = s.to_numpy(dtype="datetime64[ns]").astype("int64").astype(np.float64)
    out = ns * 1e-9
    out[mask] = np.nan
    return out


def _numeric(series: pd.Series, role: str, table: str) -> np.ndarray:
    if role == "datetime":
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            return _datetime_seconds(series)
        if pd.api.types.is_numeric_dtype(series.dtype):
            return series.to_numpy(dtype=np.float64, na_value=np.nan)
        raise InputError(
            f"expected datetimes in the {table} table, got {series.dtype}", column=str(series.name)
        )
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return _datetime_seconds(series)
    raise InputError(
        f"expected numbers in the {table} table, got {series.dtype}", column=str(series.name)
    )


def _infer_role(series: pd.Series) -> str:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    return "categorical"


def _is_integer_dtype(series: pd.Series) -> bool:
    return pd.api.types.is_integer_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
        series.dtype
    )


def _schema_columns(schema: Any) -> dict[str, Any]:
    """Duck-typed view of a TableSchema: ``columns`` with ``name``/``kind``/``min``/...``."""
    if schema is None:
        return {}
    cols = getattr(schema, "columns", None)
    if cols is None:
        raise InputError("schema has no 'columns' attribute (expected a pfcore.schema.TableSchema)")
    return {str(c.name): c for c in cols}


def _arrow_unit_seconds(arrow_type: str | None) -> float:
    """Seconds per unit of a schema's datetime min/max (``timestamp[us, ...]`` -> 1e-6)."""
    if not arrow_type:
        return 1e-6
    if arrow_type.startswith("date32"):
        return 86400.0
    if arrow_type.startswith("date64"):
        return 1e-3
    m = re.match(r"timestamp\[(s|ms|us|ns)", arrow_type)
    return _UNIT_SECONDS[m.group(1)] if m else 1e-6


def _column_info(name: str, real: pd.Series, col_schema: Any) -> ColumnInfo | str:
    """Role and constraints of one column, or a string saying why it is skipped."""
    if col_schema is None:
        role = _infer_role(real)
        return ColumnInfo(
            name=name, role=role, integer=role == "numeric" and _is_integer_dtype(real)
        )
    kind = getattr(col_schema, "kind", None)
    if kind in _SKIPPED_KINDS:
        return f"schema kind {kind!r} is regenerated by decode, not modelled"
    role = _KIND_TO_ROLE.get(kind)
    if role is None:
        role = _infer_role(real)
    info = ColumnInfo(name=name, role=role)
    if role in NUMERIC_ROLES:
        decimals = getattr(col_schema, "decimals", None)
        info.integer = role == "numeric" and (kind == "integer" or decimals == 0)
        lo, hi = getattr(col_schema, "min", None), getattr(col_schema, "max", None)
        scale = (
            _arrow_unit_seconds(getattr(col_schema, "arrow_type", None))
            if role == "datetime"
            else 1.0
        )
        if lo is not None and hi is not None:
            info.min, info.max = float(lo) * scale, float(hi) * scale
            info.bounds_source = "schema"
    else:
        cats = getattr(col_schema, "categories", None)
        if cats:
            info.categories = [c["value"] if isinstance(c, dict) else c for c in cats]
            n_distinct = getattr(col_schema, "n_distinct", None)
            info.categories_complete = not getattr(col_schema, "distinct_truncated", False) and (
                n_distinct is None or len(info.categories) >= n_distinct
            )
    return info


def _levels(name: str, frames: list[pd.Series]) -> list[Any]:
    """Category list shared by all tables, most frequent in the first table first."""
    counts = frames[0].value_counts(dropna=True)
    levels = list(counts.index)
    seen = set(levels)
    for s in frames[1:]:
        for v in pd.unique(s.dropna()):
            if v not in seen:
                seen.add(v)
                levels.append(v)
    return levels


def prepare(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    train: pd.DataFrame | None,
    schema: Any = None,
) -> Prepared:
    """Check the tables agree and convert every compared column once.

    Raises:
        InputError: a table is empty, the column sets differ, or a column's values do not fit
            its role (e.g. strings in a numeric column).
    """
    tables = {"real": real, "synthetic": synthetic}
    if train is not None:
        tables["train"] = train
    for tname, df in tables.items():
        if len(df) == 0:
            raise InputError(f"the {tname} table has no rows")
    real_cols = [str(c) for c in real.columns]
    for tname, df in tables.items():
        cols = [str(c) for c in df.columns]
        missing = [c for c in real_cols if c not in cols]
        extra = [c for c in cols if c not in real_cols]
        if missing:
            raise InputError(f"missing from the {tname} table", column=missing[0])
        if extra:
            raise InputError(
                f"present in the {tname} table but not in the real table", column=extra[0]
            )
    schema_cols = _schema_columns(schema)
    infos: list[ColumnInfo] = []
    skipped: dict[str, str] = {}
    for name in real_cols:
        info = _column_info(name, real[name], schema_cols.get(name))
        if isinstance(info, str):
            skipped[name] = info
        else:
            infos.append(info)

    values: dict[str, dict[str, np.ndarray]] = {t: {} for t in tables}
    levels: dict[str, list[Any]] = {}
    for info in infos:
        if info.role in NUMERIC_ROLES:
            for tname, df in tables.items():
                values[tname][info.name] = _numeric(df[info.name], info.role, tname)
        else:
            series = [df[info.name] for df in tables.values()]
            # Booleans and mixed objects compare by value; normalise pandas' nullable scalars.
            lv = _levels(info.name, series)
            levels[info.name] = lv
            index = pd.Index(lv, dtype=object)
            for tname, df in tables.items():
                col = df[info.name].astype(object)
                codes = index.get_indexer(col.where(col.notna(), None))
                codes = np.asarray(codes, dtype=np.int64)
                codes[col.isna().to_numpy()] = -1
                values[tname][info.name] = codes
    if not infos:
        raise InputError("no comparable columns: every column is skipped (constant or id)")
    return Prepared(columns=infos, values=values, levels=levels, skipped=skipped)

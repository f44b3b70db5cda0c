"""The pyfunc contract: request rows in, synthetic pandas rows out, and its MLflow signature.

Input, either requests (one request per row; MLflow's signature enforces the column types)::

    n_rows:    long    number of synthetic rows to draw, 0 <= n_rows <= MAX_ROWS_PER_REQUEST
    seed:      long    non-negative; the same (model version, n_rows, seed) gives identical rows
    where:     string  optional fixed values, clauses separated by ';': "region=EU; age>=30"
    rebalance: string  optional target distribution of one column: "y=yes:0.5" or "y=uniform"
    conditional_method: string  optional sampler of a conditional request: "auto" (default),
                       "student", "inpaint" or "project"
                       (``pfcore.models.conditional.conditional_method``)

or seed rows: a frame without ``n_rows`` whose columns are some of the model's columns; each
row is completed (given values kept exactly, nulls included), one output row per input row, in
order, with the seed from ``params={"seed": s}`` (default 0). See ``pfcore.conditions``.

``params={"conditional_method": m}`` sets the sampler of seed rows, and of the conditional
request rows whose ``conditional_method`` cell is empty; a cell on a request without
conditions is refused (that row's rows come from the unconditional sampler).

Output: one DataFrame with exactly the source's columns, in the source's order; the rows of each
request are concatenated in request order (index 0..total-1). Each request is sampled on its own,
so its rows do not depend on the other requests in the same call.

A request draws its rows through ``Synthesizer.sample``, the same canonical blocks
(``pfcore.sampling``) that ``pfcore.generate`` publishes: ``predict(n_rows=N, seed=s)`` on
version V returns the rows of the published batch (V, N, s) whatever its shard layout, so an
analyst can reproduce or spot-check a batch from the model version and the seed alone.

Dtypes are what pandas gives when it reads the source Parquet through pyarrow (int64, float64,
bool, datetime64[.., UTC], strings), except that integer and boolean columns that can be missing
use pandas' nullable ``Int64``/``boolean`` dtypes, so a null never turns a whole integer column
into floats and the dtype never depends on whether a given sample happened to draw a null.

For batches larger than memory use ``pfcore.generate``, which streams canonical blocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pfcore.defaults import DEFAULT_CONDITIONAL_METHOD
from pfcore.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from mlflow.models.signature import ModelSignature

    from pfcore.schema import TableSchema
    from pfcore.synthesizer import Synthesizer

__all__ = [
    "INPUT_COLUMNS",
    "MAX_ROWS_PER_REQUEST",
    "input_example",
    "signature_for",
    "to_pandas",
    "predict_frame",
]

INPUT_COLUMNS = ("n_rows", "seed")
#: Optional request columns: conditions in the CLI's text forms (``pfcore.conditions``).
CONDITION_COLUMNS = ("where", "rebalance", "conditional_method")
#: predict() materialises its result in memory; beyond this, pfcore.generate is the right tool.
MAX_ROWS_PER_REQUEST = 5_000_000


def _nullable_columns(schema: TableSchema) -> set[str]:
    """Columns that may hold nulls in synthetic output (they had missing values in the source)."""
    out: set[str] = set()
    for col in schema.columns:
        rate = getattr(col, "missing_rate", None)
        if rate is not None:
            if float(rate) > 0:
                out.add(col.name)
        elif getattr(col, "nullable", False):
            out.add(col.name)
    return out


def _pandas_type_for(arrow_type: pa.DataType, nullable: bool) -> Any:
    """A pandas extension dtype for nullable integer/boolean columns, else None (default)."""
    import pandas as pd
    import pyarrow as pa

    if not nullable:
        return None
    if pa.types.is_boolean(arrow_type):
        return pd.BooleanDtype()
    if pa.types.is_integer(arrow_type):
        name = str(arrow_type)  # "int64" -> "Int64", "uint8" -> "UInt8"
        return pd.api.types.pandas_dtype(
            "UInt" + name[4:] if name.startswith("u") else "I" + name[1:]
        )
    return None


def to_pandas(table: pa.Table, schema: TableSchema) -> pd.DataFrame:
    """Arrow table -> DataFrame with the documented dtypes (see the module docstring)."""
    import pandas as pd

    nullable = _nullable_columns(schema)
    cols: dict[str, Any] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        ext = _pandas_type_for(column.type, name in nullable)
        series = column.to_pandas(types_mapper={column.type: ext}.get if ext is not None else None)
        cols[name] = series.reset_index(drop=True)
    return pd.DataFrame(cols, columns=table.column_names)


def _mlflow_type(arrow_type: pa.DataType) -> str | None:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        # MLflow "integer" is int32, "long" is int64: pick the narrowest that holds every value.
        fits_int32 = arrow_type.bit_width < 32 or (
            arrow_type.bit_width == 32 and pa.types.is_signed_integer(arrow_type)
        )
        return "integer" if fits_int32 else "long"
    if pa.types.is_float32(arrow_type):
        return "float"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "double"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "datetime"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "binary"
    return None


def signature_for(schema: TableSchema) -> ModelSignature:
    """Input: (n_rows long, seed long). Output: the source's columns with MLflow types.

    A column whose Arrow type has no MLflow equivalent is declared as string-typed rather than
    dropped, so the declared output still lists every column; MLflow does not enforce output
    schemas, it documents them.
    """
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    nullable = _nullable_columns(schema)
    arrow_schema = schema.arrow_schema()
    outputs = [
        ColSpec(_mlflow_type(f.type) or "string", f.name, required=f.name not in nullable)
        for f in arrow_schema
    ]
    # Every input column is optional: a request frame has n_rows and seed (checked by
    # predict_frame), a seed-row frame some of the model's columns.
    request = (*INPUT_COLUMNS, *CONDITION_COLUMNS)
    inputs = [ColSpec("long", c, required=False) for c in INPUT_COLUMNS]
    inputs += [ColSpec("string", c, required=False) for c in CONDITION_COLUMNS]
    inputs += [
        ColSpec(_mlflow_type(f.type) or "string", f.name, required=False)
        for f in arrow_schema
        if f.name not in request
    ]
    params = ParamSchema(
        [
            ParamSpec("seed", "long", 0),
            ParamSpec("conditional_method", "string", DEFAULT_CONDITIONAL_METHOD),
        ]
    )
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs), params=params)


def input_example(n_rows: int = 5, seed: int = 0) -> pd.DataFrame:
    """The example request MLflow stores with the model: one (n_rows, seed) row."""
    import pandas as pd

    return pd.DataFrame({"n_rows": [n_rows], "seed": [seed]}, dtype="int64")


def _text(value: Any) -> str | None:
    """An optional text cell (None, NaN and blank mean absent)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def _param_method(params: dict[str, Any] | None) -> str | None:
    """The ``conditional_method`` param (None when not given), checked by name."""
    from pfcore.conditions import check_method

    method = _text((params or {}).get("conditional_method"))
    return None if method is None else check_method(method)


def _conditions(where: Any, rebalance: Any, method: Any, default_method: str | None) -> Any:
    """One request row's ``Conditions``: its own ``conditional_method`` cell, else the param's
    (which only applies when the row has conditions)."""
    from pfcore.conditions import Conditions

    w = _text(where)
    clauses = [c.strip() for c in w.split(";") if c.strip()] if w else None
    rb = _text(rebalance)
    cell = _text(method)
    if cell is None and (clauses or rb):
        cell = default_method
    return Conditions.make(where=clauses, rebalance=rb, method=cell)


def _requests(model_input: Any, params: dict[str, Any] | None = None) -> list[tuple[int, int, Any]]:
    """Validate and extract (n_rows, seed, conditions) from a DataFrame or mapping of columns."""
    import numpy as np
    import pandas as pd

    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(
            f"model input needs columns {list(INPUT_COLUMNS)}, missing {missing}; "
            f"got {list(frame.columns)}",
            column=missing[0],
        )
    out: list[tuple[int, int, Any]] = []
    for col in INPUT_COLUMNS:
        values = frame[col]
        if values.isna().any():
            raise InputError("must not be null", column=col)
        if not np.all(
            np.asarray(values, dtype="float64") == np.floor(np.asarray(values, "float64"))
        ):
            raise InputError("must be whole numbers", column=col)
    default_method = _param_method(params)
    where, rebalance, method = (
        frame[c] if c in frame.columns else [None] * len(frame) for c in CONDITION_COLUMNS
    )
    rows = zip(
        frame["n_rows"].astype("int64"),
        frame["seed"].astype("int64"),
        where,
        rebalance,
        method,
        strict=True,
    )
    for n, seed, w, rb, m in rows:
        if not 0 <= int(n) <= MAX_ROWS_PER_REQUEST:
            raise InputError(
                f"must be in [0, {MAX_ROWS_PER_REQUEST}], got {int(n)}; use pfcore.generate "
                "for larger batches",
                column="n_rows",
            )
        if int(seed) < 0:
            raise InputError(f"must be >= 0, got {int(seed)}", column="seed")
        out.append((int(n), int(seed), _conditions(w, rb, m, default_method)))
    return out


def _seed_rows(synth: Synthesizer, frame: pd.DataFrame, params: dict[str, Any] | None) -> Any:
    """A seed-row frame as ``Conditions`` (columns checked by name here, values by the model)."""
    import pyarrow as pa

    from pfcore.conditions import Conditions

    known = {c.name for c in synth.schema.columns}
    for col in frame.columns:
        if col not in known:
            raise InputError(
                f"model input is missing the request columns {list(INPUT_COLUMNS)}, and as seed "
                f"rows it names a column the model does not have (its columns: {sorted(known)})",
                column=str(col),
            )
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    return Conditions.make(seed_rows=table, method=_param_method(params))


def predict_frame(
    synth: Synthesizer, model_input: Any, params: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Sample every request and concatenate (see the module docstring for the contract)."""
    import pandas as pd
    import pyarrow as pa

    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    if "n_rows" not in frame.columns and len(frame.columns) and "seed" not in frame.columns:
        seed = int((params or {}).get("seed", 0) or 0)
        if seed < 0:
            raise InputError(f"must be >= 0, got {seed}", column="seed")
        table = synth.sample(None, seed, conditions=_seed_rows(synth, frame, params))
        return to_pandas(table, synth.schema)
    tables = [
        synth.sample(n, seed, conditions=conditions)
        for n, seed, conditions in _requests(frame, params)
    ]
    if not tables:
        tables = [synth.sample(0, 0)]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return to_pandas(table, synth.schema)

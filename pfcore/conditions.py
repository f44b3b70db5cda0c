"""What a conditional request asks for: fixed values, seed rows to complete, a rebalanced column.

Why a typed, JSON-able object: every entry point (Python, CLI, flow form, MLflow pyfunc, the
batch writer's plan) builds the same ``Conditions`` and the batch records its ``to_dict()`` as
provenance (batch id, shard sidecars, manifest, Parquet metadata), so a batch says exactly what
was asked. Checking the request against a model's schema is a separate step
(``pfcore.condition_plan.compile_conditions``), done before any row is sampled.

Text forms (CLI and flow form):

* ``--where 'region=EU'`` equality (categorical, boolean, integer; any numeric or datetime);
  ``--where 'age>=30'`` / ``'age<65'`` / ``'age<=64'`` / ``'age>29'`` bounds on numeric and
  datetime columns; several bounds on one column intersect. ``--where 'phone=null'`` (``None``
  from Python) asks for rows where the column is missing.
* ``--rebalance 'y=yes:0.5'``: the target distribution of one categorical column; classes not
  named share the remaining mass in proportion to their training frequencies;
  ``'y=uniform'`` gives every non-null class the same share.
* ``--seed-rows file.parquet``: partial rows; its columns are kept exactly (nulls included) and
  the other columns are generated, one output row per seed row, in order.
* ``--conditional-method auto|student|inpaint|project``: which conditional sampler generates
  the rest (``pfcore.models.conditional.conditional_method`` decides what "auto" runs).
  Compiling a request against a model replaces "auto" by the sampler chosen, so the recorded
  request says how its rows were made, and the method is part of the batch id (samplers give
  different rows for the same seed).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pfcore.defaults import CONDITIONAL_METHODS, DEFAULT_CONDITIONAL_METHOD
from pfcore.errors import InputError

__all__ = ["OPS", "Conditions", "Rebalance", "SeedRows", "Where", "check_method", "spread_rest"]

#: Comparison operators of a ``--where`` clause (longest first: the parser tries them in order).
OPS: tuple[str, ...] = (">=", "<=", "==", "=", ">", "<")
#: The value of a ``--where`` equality that asks for a missing value (``None`` from Python).
NULL_TEXT = "null"
_WHERE = re.compile(r"^\s*(?P<col>[^<>=]+?)\s*(?P<op>>=|<=|==|=|>|<)\s*(?P<val>.*?)\s*$")


@dataclass(frozen=True)
class Where:
    """One clause: ``column op value``; ``value`` is text (CLI) or a Python scalar (API)."""

    column: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        op = "=" if self.op == "==" else self.op
        object.__setattr__(self, "op", op)
        if op not in OPS:
            raise InputError(f"unknown operator {self.op!r}; use one of {list(OPS)}")
        if not isinstance(self.column, str) or not self.column:
            raise InputError(f"a condition needs a column name, got {self.column!r}")
        if isinstance(self.value, str) and self.value == "":
            raise InputError(f"condition {self.text()!r} has no value", column=self.column)
        if self.is_null and op != "=":
            raise InputError(
                f"condition {self.text()!r} compares with null: only "
                f"'{self.column}={NULL_TEXT}' asks for missing values",
                column=self.column,
            )

    @property
    def is_null(self) -> bool:
        """``column=null``: rows whose value is missing (the text ``null``, any case, or None)."""
        if isinstance(self.value, str):
            return self.value.strip().lower() == NULL_TEXT
        return self.value is None

    @classmethod
    def parse(cls, text: str) -> Where:
        """``'region=EU'``, ``'age>=30'``; raises ``InputError`` on anything else."""
        if not isinstance(text, str):
            raise InputError(f"a --where condition must be text like 'region=EU', got {text!r}")
        m = _WHERE.match(text)
        if m is None or not m.group("col").strip():
            raise InputError(
                f"cannot parse condition {text!r}: expected 'column=value', 'column>=value', "
                "'column<=value', 'column>value' or 'column<value'"
            )
        return cls(m.group("col").strip(), m.group("op"), m.group("val"))

    def text(self) -> str:
        return f"{self.column}{self.op}{NULL_TEXT if self.value is None else self.value}"

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "op": self.op, "value": _jsonable(self.value)}


def spread_rest(probs: np.ndarray, named: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """A rebalancing's target shares: the ``named`` classes keep theirs in ``probs``, what they
    leave of 1 is spread over the other classes in proportion to ``weights`` (their training
    counts; once an order cuts classes, their shares so far); None when it is left to no class
    (every other weight is 0)."""
    probs = np.where(named, probs, 0.0)
    rest = 1.0 - probs.sum()
    free = weights * ~named
    if rest > 1e-9:
        if free.sum() <= 0:
            return None
        probs = probs + rest * free / free.sum()
    return probs / probs.sum()


@dataclass(frozen=True)
class Rebalance:
    """Target class distribution of one categorical column.

    ``weights``: (class, share) pairs as given; ``uniform``: every non-null class equally.
    """

    column: str
    weights: tuple[tuple[Any, float], ...] = ()
    uniform: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise InputError(f"rebalancing needs a column name, got {self.column!r}")
        if self.uniform == bool(self.weights):
            raise InputError(
                "rebalancing takes either 'uniform' or class:share pairs", column=self.column
            )
        seen = set()
        total = 0.0
        for value, share in self.weights:
            key = json.dumps(_jsonable(value))
            if key in seen:
                raise InputError(f"class {value!r} is given twice", column=self.column)
            seen.add(key)
            if not 0.0 <= float(share) <= 1.0:
                raise InputError(
                    f"share of class {value!r} must be in [0, 1], got {share}", column=self.column
                )
            total += float(share)
        if total > 1.0 + 1e-9:
            raise InputError(f"class shares sum to {total:g} > 1", column=self.column)

    @classmethod
    def parse(cls, text: str) -> Rebalance:
        """``'y=yes:0.5'``, ``'y=yes:0.3,no:0.7'`` or ``'y=uniform'``."""
        if not isinstance(text, str) or "=" not in text:
            raise InputError(
                f"cannot parse rebalancing {text!r}: expected 'column=class:share,...' "
                "or 'column=uniform'"
            )
        column, _, spec = text.partition("=")
        column, spec = column.strip(), spec.strip()
        if not column or not spec:
            raise InputError(f"cannot parse rebalancing {text!r}: column or classes missing")
        if spec.lower() == "uniform":
            return cls(column, uniform=True)
        pairs = []
        for part in spec.split(","):
            value, sep, share = part.rpartition(":")
            if not sep or not value.strip():
                raise InputError(
                    f"cannot parse {part!r} in {text!r}: expected 'class:share'", column=column
                )
            try:
                s = float(share)
            except ValueError:
                raise InputError(
                    f"share {share!r} of class {value.strip()!r} is not a number", column=column
                ) from None
            pairs.append((value.strip(), s))
        return cls(column, weights=tuple(pairs))

    def to_dict(self) -> dict[str, Any]:
        if self.uniform:
            return {"column": self.column, "uniform": True}
        return {
            "column": self.column,
            "weights": [[_jsonable(v), float(s)] for v, s in self.weights],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rebalance:
        if d.get("uniform"):
            return cls(str(d["column"]), uniform=True)
        return cls(str(d["column"]), weights=tuple((v, float(s)) for v, s in d["weights"]))


@dataclass(frozen=True)
class SeedRows:
    """Partial rows to complete; identified by a content hash (the path is only a label)."""

    table: pa.Table = field(compare=False, repr=False)
    sha256: str
    path: str | None = None

    @classmethod
    def from_table(cls, table: pa.Table, path: str | None = None) -> SeedRows:
        if not isinstance(table, pa.Table):
            raise InputError(f"seed rows must be an Arrow table, got {type(table).__name__}")
        table = table.replace_schema_metadata(None).combine_chunks()
        return cls(table=table, sha256=table_sha256(table), path=path)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> SeedRows:
        """Parquet (file or folder), CSV or JSON Lines, by extension; ``InputError`` if not."""
        p = Path(path)
        if not p.exists():
            raise InputError("seed rows file does not exist", path=p)
        try:
            if p.is_dir() or p.suffix.lower() in (".parquet", ".pq"):
                import pyarrow.parquet as pq

                table = pq.read_table(p)
            elif p.suffix.lower() in (".csv", ".tsv", ".txt"):
                from pyarrow import csv

                delim = "\t" if p.suffix.lower() == ".tsv" else ","
                table = csv.read_csv(p, parse_options=csv.ParseOptions(delimiter=delim))
            elif p.suffix.lower() in (".arrow", ".feather", ".ipc"):
                with pa.memory_map(str(p)) as src:
                    table = pa.ipc.open_file(src).read_all()
            elif p.suffix.lower() in (".jsonl", ".json", ".ndjson"):
                from pyarrow import json as pj

                table = pj.read_json(p)
            else:
                raise InputError(
                    "seed rows must be .parquet, .csv, .tsv, .jsonl or .arrow (by extension)",
                    path=p,
                )
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"cannot read seed rows: {exc}", path=p) from None
        return cls.from_table(table, path=str(p.resolve()))

    def write_copy(self, path: str | os.PathLike[str]) -> SeedRows:
        """An exact copy (Arrow IPC file, written atomically) that workers read from ``path``."""
        from pfcore.atomic import atomic_write

        def write(tmp: Path) -> None:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, self.table.schema) as w:
                w.write_table(self.table)

        atomic_write(Path(path), write)
        return SeedRows(table=self.table, sha256=self.sha256, path=str(Path(path).resolve()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "rows": int(self.table.num_rows),
            "columns": list(self.table.column_names),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeedRows:
        """Re-read ``path`` and check its content is the recorded one (a worker's view)."""
        if not d.get("path"):
            raise InputError("recorded seed rows have no path to read them from")
        rows = cls.read(d["path"])
        if rows.sha256 != d.get("sha256"):
            raise InputError(
                "seed rows changed since the request was made (content hash differs)",
                path=d["path"],
            )
        return rows


def table_sha256(table: pa.Table) -> str:
    """Hash of a table's schema and values (Arrow IPC of one chunk per column)."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return hashlib.sha256(sink.getvalue()).hexdigest()


def check_method(method: Any, *, conditioned: bool = True) -> str:
    """``method`` if it names a conditional sampler, else ``InputError`` naming the parameter.

    A sampler other than "auto" on a request without conditions is refused too: unconditional
    rows always come from the model's own sampler, so accepting it would record a choice that
    never ran. Every entry point (``Conditions``, the flow form, the pyfunc) checks with this.
    """
    if not isinstance(method, str) or method not in CONDITIONAL_METHODS:
        raise InputError(
            f"conditional_method must be one of {list(CONDITIONAL_METHODS)}, got {method!r}"
        )
    if not conditioned and method != DEFAULT_CONDITIONAL_METHOD:
        raise InputError(
            f"conditional_method {method!r} applies only to a conditional request (where, "
            "rebalance or seed rows), and none was given"
        )
    return method


@dataclass(frozen=True)
class Conditions:
    """A whole conditional request; empty means unconditional.

    ``method``: the conditional sampler asked for (``CONDITIONAL_METHODS``); after
    ``pfcore.condition_plan.compile_conditions`` it is the one that runs, never "auto".
    """

    where: tuple[Where, ...] = ()
    rebalance: Rebalance | None = None
    seed_rows: SeedRows | None = None
    method: str = DEFAULT_CONDITIONAL_METHOD

    def __post_init__(self) -> None:
        check_method(self.method, conditioned=not self.empty)

    @classmethod
    def make(
        cls,
        where: Any = None,
        rebalance: Rebalance | str | None = None,
        seed_rows: SeedRows | pa.Table | str | os.PathLike[str] | None = None,
        method: str | None = None,
    ) -> Conditions:
        """Build from loose parts: ``where`` as clause texts, ``Where``s or a mapping.

        A mapping ``{"region": "EU", "age": (30, 65)}`` means equality for a scalar and the
        closed range ``[lo, hi]`` for a pair (``None`` leaves a side open). ``method``: the
        conditional sampler (None or "auto": the model's preferred one).
        """
        clauses: list[Where] = []
        if isinstance(where, (str, Where)):
            where = [where]
        if isinstance(where, dict):
            for col, v in where.items():
                if isinstance(v, (tuple, list)):
                    if len(v) != 2:
                        raise InputError(f"a range is (low, high), got {v!r}", column=str(col))
                    if v[0] is not None:
                        clauses.append(Where(str(col), ">=", v[0]))
                    if v[1] is not None:
                        clauses.append(Where(str(col), "<=", v[1]))
                else:
                    clauses.append(Where(str(col), "=", v))
        elif where is not None:
            for w in where:
                clauses.append(w if isinstance(w, Where) else Where.parse(w))
        if isinstance(rebalance, str):
            rebalance = Rebalance.parse(rebalance)
        if isinstance(seed_rows, pa.Table):
            seed_rows = SeedRows.from_table(seed_rows)
        elif isinstance(seed_rows, (str, os.PathLike)):
            seed_rows = SeedRows.read(seed_rows)
        return cls(tuple(clauses), rebalance, seed_rows, method or DEFAULT_CONDITIONAL_METHOD)

    @property
    def empty(self) -> bool:
        return not self.where and self.rebalance is None and self.seed_rows is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "where": [w.to_dict() for w in self.where],
            "rebalance": None if self.rebalance is None else self.rebalance.to_dict(),
            "seed_rows": None if self.seed_rows is None else self.seed_rows.to_dict(),
            "method": self.method,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Conditions:
        if not d:
            return cls()
        where = tuple(Where(w["column"], w["op"], w["value"]) for w in d.get("where") or ())
        rb = d.get("rebalance")
        sr = d.get("seed_rows")
        return cls(
            where,
            None if rb is None else Rebalance.from_dict(rb),
            None if sr is None else SeedRows.from_dict(sr),
            # recorded before the method was: those batches ran the default ("auto")
            d.get("method") or DEFAULT_CONDITIONAL_METHOD,
        )

    def digest(self) -> str:
        """Short content hash (seed rows by content, not path): part of a batch's id."""
        d = self.to_dict()
        if d["seed_rows"] is not None:
            d["seed_rows"] = {k: v for k, v in d["seed_rows"].items() if k != "path"}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _jsonable(v: Any) -> Any:
    """Scalars as JSON: datetimes and decimals as ISO / text, numpy scalars as Python."""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)

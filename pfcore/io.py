"""Reading source tables (CSV, Parquet file or directory, JSON Lines) as normalised Arrow batches.

Everything streams: readers yield record batches of bounded size, so ingest can profile and
write inputs far larger than memory. Every failure becomes an ``InputError`` that names the file,
the column where known, and the problem.

Normalisation (the same for every format, so a CSV and its Parquet copy ingest alike):

* dictionary columns are decoded; ``large_string`` -> ``string``; ``float16`` -> ``float32``;
* NaN in float columns becomes null (pushforward has one notion of missing); an infinity is an
  ``InputError`` naming the column (no quantile transform can place it);
* CSV: empty fields are null in every column; ISO timestamps/dates are parsed by Arrow's
  inference; a column whose later values do not fit the type Arrow inferred from the first block
  (numbers, then text) is re-read as **string** (so it becomes categorical) and listed in the
  manifest under ``string_fallback_columns``; bytes that are not valid UTF-8 are an error naming
  the column (pass ``encoding="latin-1"`` or similar to transcode);
* binary, nested, time-of-day and duration columns are not supported (InputError naming them).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pfcore.errors import InputError

__all__ = [
    "SourceReader",
    "open_source",
    "read_table",
    "read_dataset",
    "detect_format",
    "source_checksum",
]

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".csv.bz2", ".csv.zst")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz")
DEFAULT_BLOCK_BYTES = 4 << 20


def _name(p: Path) -> str:
    return p.name.lower()


def detect_format(path: Path) -> str:
    """'csv' | 'parquet' | 'jsonl' from the path (a directory is a Parquet dataset)."""
    if path.is_dir():
        return "parquet"
    n = _name(path)
    if n.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if n.endswith(CSV_SUFFIXES):
        return "csv"
    if n.endswith(JSONL_SUFFIXES):
        return "jsonl"
    raise InputError(
        "unknown file type (expected .csv/.tsv, .parquet or .jsonl/.ndjson, "
        "or a directory of Parquet files)",
        path=path,
    )


def source_files(path: Path) -> list[Path]:
    """The files making up a source: itself, or a directory's Parquet files in sorted order.

    Names starting with ``_`` or ``.`` are skipped, as pyarrow.dataset does (staging folders,
    ``_SUCCESS`` markers).
    """
    if not path.exists():
        raise InputError("does not exist", path=path)
    if path.is_file():
        return [path]
    files = []
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).parts
        if any(part.startswith(("_", ".")) for part in rel):
            continue
        if p.is_file() and _name(p).endswith(PARQUET_SUFFIXES):
            files.append(p)
    if not files:
        raise InputError("directory holds no Parquet files", path=path)
    return files


def source_checksum(path: Path) -> tuple[str, int]:
    """sha256 of the source content (a directory: of each file's relative path and content)."""
    files = source_files(path)
    total = 0
    if len(files) == 1 and files[0] == path:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
                total += len(chunk)
        return h.hexdigest(), total
    h = hashlib.sha256()
    for f in files:
        fh_hash = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                fh_hash.update(chunk)
                total += len(chunk)
        h.update(f.relative_to(path).as_posix().encode("utf-8") + b"\0" + fh_hash.digest())
    return h.hexdigest(), total


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------


def normal_type(t: pa.DataType, *, path: Path, column: str) -> pa.DataType:
    if pa.types.is_dictionary(t):
        return normal_type(t.value_type, path=path, column=column)
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_float16(t):
        return pa.float32()
    ok = (
        pa.types.is_boolean(t)
        or pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or pa.types.is_string(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_date(t)
        or pa.types.is_null(t)
    )
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        raise InputError(
            "holds bytes that are not valid UTF-8 text (re-encode the file as UTF-8, or pass "
            "encoding='latin-1' or the file's encoding)",
            path=path,
            column=column,
        )
    if not ok:
        raise InputError(
            f"unsupported type {t} (supported: bool, integers, floats, decimals, strings, "
            "timestamps, dates)",
            path=path,
            column=column,
        )
    return t


def normal_schema(schema: pa.Schema, path: Path) -> pa.Schema:
    names = schema.names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"duplicate column names {dupes}", path=path, column=dupes[0])
    if not names:
        raise InputError("has no columns", path=path)
    return pa.schema(
        [pa.field(f.name, normal_type(f.type, path=path, column=f.name)) for f in schema]
    )


def normalise_batch(batch: pa.RecordBatch, schema: pa.Schema, path: Path) -> pa.RecordBatch:
    cols = []
    for f, arr in zip(schema, batch.columns, strict=True):
        if arr.type != f.type:
            arr = arr.cast(f.type)
        if pa.types.is_floating(f.type) and len(arr):
            if pc.any(pc.is_inf(arr)).as_py():
                raise InputError(
                    "contains infinite values (replace them with null or finite values)",
                    path=path,
                    column=f.name,
                )
            nan = pc.is_nan(arr)
            if pc.any(nan).as_py():
                arr = pc.if_else(nan, pa.scalar(None, type=f.type), arr)
        cols.append(arr)
    return pa.RecordBatch.from_arrays(cols, schema=schema)


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


class _RetryAsString(Exception):
    def __init__(self, column: str) -> None:
        self.column = column


_CSV_ERR = re.compile(r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to (\w+)")
_JSON_COL = re.compile(r"Column\((/[^)]*)\)")


@dataclass
class SourceReader:
    """Iterate a source's normalised batches; ``schema`` is known after ``open()``."""

    path: Path
    format: str
    batch_rows: int = 65_536
    encoding: str = "utf8"
    block_bytes: int = DEFAULT_BLOCK_BYTES
    string_columns: set[str] = field(default_factory=set)

    def batches(self) -> Iterator[pa.RecordBatch]:
        if self.format == "csv":
            yield from self._csv()
        elif self.format == "parquet":
            yield from self._parquet()
        else:
            yield from self._jsonl()

    # -- CSV --------------------------------------------------------------------------------
    def _csv(self) -> Iterator[pa.RecordBatch]:
        import pyarrow.csv as csv

        n = _name(self.path)
        delimiter = "\t" if ".tsv" in n else ","
        try:
            stream = pa.input_stream(str(self.path), compression="detect")
            reader = csv.open_csv(
                stream,
                read_options=csv.ReadOptions(block_size=self.block_bytes, encoding=self.encoding),
                parse_options=csv.ParseOptions(delimiter=delimiter),
                convert_options=csv.ConvertOptions(
                    column_types={c: pa.string() for c in self.string_columns},
                    strings_can_be_null=True,
                ),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError, LookupError) as exc:
            msg = str(exc)
            if "Empty CSV file" in msg:
                raise InputError("is empty (no header, no rows)", path=self.path) from None
            raise InputError(f"cannot be read as CSV: {msg}", path=self.path) from None
        names = reader.schema.names
        self.schema = normal_schema(reader.schema, self.path)
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                msg = str(exc)
                m = _CSV_ERR.search(msg)
                if m:
                    col = names[int(m.group(1))]
                    if m.group(2) in ("string", "binary") or "UTF8" in msg:
                        raise InputError(
                            "holds bytes that are not valid UTF-8 text (re-encode the file as "
                            "UTF-8, or pass encoding='latin-1' or the file's encoding)",
                            path=self.path,
                            column=col,
                        ) from None
                    if col not in self.string_columns:
                        raise _RetryAsString(col) from None
                raise InputError(f"CSV parse error: {msg}", path=self.path) from None
            yield normalise_batch(batch, self.schema, self.path)

    # -- Parquet ----------------------------------------------------------------------------
    def _parquet(self) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        files = source_files(self.path)
        first: pa.Schema | None = None
        opened = []
        for f in files:
            try:
                pf = pq.ParquetFile(f)
                sch = normal_schema(pf.schema_arrow, f)
            except InputError:
                raise
            except (pa.ArrowException, OSError) as exc:
                raise InputError(f"is not a valid Parquet file ({exc})", path=f) from None
            if first is None:
                first = sch
            elif not sch.equals(first):
                raise InputError(
                    f"has columns {sch} that differ from the first file's {first}", path=f
                )
            opened.append((f, pf))
        assert first is not None
        self.schema = first
        for f, pf in opened:
            try:
                for batch in pf.iter_batches(batch_size=self.batch_rows):
                    yield normalise_batch(batch, first, f)
            except InputError:
                raise
            except (pa.ArrowException, OSError) as exc:
                raise InputError(f"is not a valid Parquet file ({exc})", path=f) from None

    # -- JSON Lines ---------------------------------------------------------------------------
    def _jsonl(self) -> Iterator[pa.RecordBatch]:
        import pyarrow.json as pj

        if self.path.stat().st_size == 0:
            raise InputError("is empty (no rows)", path=self.path)
        try:
            stream = pa.input_stream(str(self.path), compression="detect")
            reader = pj.open_json(stream, read_options=pj.ReadOptions(block_size=self.block_bytes))
            self.schema = normal_schema(reader.schema, self.path)
            for batch in reader:
                yield normalise_batch(batch, self.schema, self.path)
        except pa.ArrowInvalid as exc:
            msg = str(exc)
            m = _JSON_COL.search(msg)
            col = m.group(1).lstrip("/") if m else None
            if "changed from" in msg and col:
                raise InputError(
                    f"has values of mixed types ({msg}); make the field one type",
                    path=self.path,
                    column=col,
                ) from None
            raise InputError(
                f"cannot be read as JSON Lines: {msg}", path=self.path, column=col
            ) from None


def open_source(
    source: str | os.PathLike[str], *, format: str | None = None, **kwargs: object
) -> SourceReader:
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError("does not exist", path=path)
    fmt = format or detect_format(path)
    if fmt not in ("csv", "parquet", "jsonl"):
        raise InputError(f"unknown format {fmt!r} (csv, parquet, jsonl)", path=path)
    return SourceReader(path=path, format=fmt, **kwargs)  # type: ignore[arg-type]


def read_table(
    source: str | os.PathLike[str], *, format: str | None = None, encoding: str = "utf8"
) -> pa.Table:
    """Read a whole (small) source into memory, normalised exactly as ingest would."""
    string_columns: set[str] = set()
    while True:
        reader = open_source(
            source, format=format, encoding=encoding, string_columns=set(string_columns)
        )
        try:
            batches = list(reader.batches())
        except _RetryAsString as retry:
            string_columns.add(retry.column)
            continue
        return pa.Table.from_batches(batches, schema=reader.schema)


def read_dataset(out_dir: str | os.PathLike[str], columns: Sequence[str] | None = None) -> pa.Table:
    """Load an ingested dataset's rows (all part files, in order) with the schema's exact types."""
    import pyarrow.parquet as pq

    out = Path(out_dir)
    data = out / "data"
    if not (out / "manifest.json").exists() or not data.is_dir():
        raise InputError("is not an ingested dataset (manifest.json or data/ missing)", path=out)
    files = sorted(data.glob("part-*.parquet"))
    if not files:
        raise InputError("dataset has no part files", path=data)
    tables = [pq.read_table(f, columns=list(columns) if columns else None) for f in files]
    return pa.concat_tables(tables).replace_schema_metadata(None)

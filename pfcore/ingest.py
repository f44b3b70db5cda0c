"""Ingest: a source table -> ``out_dir/{data/part-*.parquet, schema.json, stats.json,
manifest.json}``.

Guarantees:

* **Streaming.** Batches flow reader -> normalise -> schema statistics -> Parquet writer; memory
  is bounded by the batch size and the schema's capped category tracking.
* **Atomic.** Everything is written to a hidden temp folder next to ``out_dir`` and renamed into
  place at the end. On any failure the temp folder is removed and a previous ``out_dir`` is left
  exactly as it was. An existing non-empty folder that is not a pushforward dataset is never
  overwritten.
* **Idempotent.** The manifest records the source's sha256 and a hash of the ingest options;
  ingesting the same content with the same options into a valid existing output is a no-op that
  returns the existing result. Re-ingesting elsewhere writes byte-identical data files (fixed
  row groups of ``batch_rows``, no timestamps inside Parquet); only ``created_at`` differs.
* **Whole-table statistics** (``pfcore.tablestats``): value counts, nulls and each number
  column's most extreme values go to ``stats.json`` in the same pass, for a transform that is
  later fitted on a sample of the table.
* **Bad input** raises ``InputError`` naming the file, the column and the problem (see
  ``pfcore.io`` for the per-format handling). Documented choices: an empty file, or a file with a
  header but no rows, is an error; an all-null column is kept and becomes kind ``constant``
  (value null); a one-row table ingests (every column is ``constant``); Arrow types are
  normalised as described in ``pfcore.io``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pfcore import __version__, storage
from pfcore.atomic import atomic_write
from pfcore.errors import InputError, PushforwardError
from pfcore.io import (
    DEFAULT_NULL_TOKENS,
    _RetryAsString,
    local_source,
    open_source,
    read_dataset,
    source_checksum,
)
from pfcore.schema import (
    SchemaAccumulator,
    TableSchema,
    apply_overrides,
    load_overrides,
)
from pfcore.tablestats import STATS_FILE, StatsAccumulator, TableStats, load_stats

__all__ = ["IngestResult", "ingest", "read_dataset", "load_ingested", "local_dataset"]

#: 2: datasets hold ``stats.json``; a dataset ingested before is ingested again, not reused.
MANIFEST_VERSION = 2
DEFAULT_BATCH_ROWS = 65_536
DEFAULT_ROWS_PER_FILE = 1_048_576
_log = logging.getLogger("pushforward.ingest")


@dataclass
class IngestResult:
    """Where an ingest wrote its dataset, the schema it inferred and the manifest it recorded."""

    out_dir: Path | str  # a URI when the dataset is kept in an object store
    data_dir: Path | str
    schema: TableSchema
    manifest: dict[str, Any]
    reused: bool = False  # True when an identical earlier ingest was found and nothing was written
    stats: TableStats | None = None  # whole-table statistics (None: ingested before they existed)


class _PartWriter:
    """Writes fixed-size row groups into ``part-NNNNN.parquet`` files (deterministic layout)."""

    def __init__(
        self, data_dir: Path, schema: pa.Schema, batch_rows: int, rows_per_file: int
    ) -> None:
        self.data_dir = data_dir
        self.schema = schema
        self.batch_rows = batch_rows
        self.rows_per_file = max(batch_rows, rows_per_file // batch_rows * batch_rows)
        self.buffer: list[pa.RecordBatch] = []
        self.buffered = 0
        self.writer: pq.ParquetWriter | None = None
        self.file_rows = 0
        self.files: list[dict[str, Any]] = []
        self.dict_cols = [f.name for f in schema if pa.types.is_string(f.type)]

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self.buffer.append(batch)
        self.buffered += batch.num_rows
        while self.buffered >= self.batch_rows:
            self._flush(self.batch_rows)

    def _flush(self, rows: int) -> None:
        table = pa.Table.from_batches(self.buffer, schema=self.schema)
        head, rest = table.slice(0, rows), table.slice(rows)
        self.buffer = rest.to_batches() if rest.num_rows else []
        self.buffered = rest.num_rows
        if self.writer is None or self.file_rows >= self.rows_per_file:
            self._close_file()
            path = self.data_dir / f"part-{len(self.files):05d}.parquet"
            self.writer = pq.ParquetWriter(
                path, self.schema, compression="zstd", use_dictionary=self.dict_cols or False
            )
            self.files.append({"path": f"data/{path.name}", "rows": 0})
            self.file_rows = 0
        self.writer.write_table(head.combine_chunks(), row_group_size=rows)
        self.file_rows += rows
        self.files[-1]["rows"] += rows

    def _close_file(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def close(self) -> list[dict[str, Any]]:
        if self.buffered:
            self._flush(self.buffered)
        self._close_file()
        for f in self.files:
            p = self.data_dir.parent / f["path"]
            f["bytes"] = p.stat().st_size
            f["sha256"] = _file_sha256(p)
        return self.files

    def abort(self) -> None:
        try:
            self._close_file()
        except Exception:  # noqa: BLE001 - already failing; the temp folder is removed next
            pass


def _file_sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _options_hash(
    overrides: Mapping[str, Any],
    batch_rows: int,
    rows_per_file: int,
    encoding: str,
    dialect: Mapping[str, Any] | None = None,
) -> str:
    doc = {
        "overrides": overrides,
        "batch_rows": batch_rows,
        "rows_per_file": rows_per_file,
        "encoding": encoding,
        "manifest_version": MANIFEST_VERSION,
    }
    if dialect:
        doc["dialect"] = dict(dialect)
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def local_dataset(dataset_dir: str | os.PathLike[str]) -> Path:
    """An ingested dataset as a local folder: itself, or a cached copy from an object store.

    Training and validation read the dataset by row ranges many times; they read a local copy,
    cached under ``$PUSHFORWARD_HOME/cache/datasets`` by URI and listing.
    """
    if not storage.is_remote(dataset_dir):
        return Path(dataset_dir)
    from pfcore.paths import pushforward_home

    loc = storage.resolve(dataset_dir)
    if not loc.child("manifest.json").exists():
        raise InputError("is not an ingested dataset (manifest.json missing)", path=loc.uri)
    return storage.local_copy(loc, pushforward_home() / "cache" / "datasets")


def _ingest_to_store(source: Any, out_uri: str, options: dict[str, Any]) -> IngestResult:
    """Ingest into an object-store prefix: ingest locally (idempotent, atomic), then upload the
    data files, schema and rules, and ``manifest.json`` last, which marks the dataset complete.

    An existing dataset at ``out_uri`` with the same source checksum and options is reused.
    """
    from pfcore.paths import pushforward_home

    key = hashlib.sha256(out_uri.encode()).hexdigest()[:16]
    local = ingest(source, pushforward_home() / "cache" / "ingest" / key, **options)
    dest = storage.resolve(out_uri)
    man = dest.child("manifest.json")
    try:
        remote = json.loads(man.read_text())
    except (FileNotFoundError, ValueError):
        remote = None
    same = remote is not None and all(
        remote.get(k) == local.manifest.get(k) for k in ("source_sha256", "options_sha256")
    )
    if not same:
        if remote is None and dest.files():
            raise InputError(
                "output prefix exists, is not empty and is not a pushforward dataset; "
                "refusing to overwrite it",
                path=out_uri,
            )
        for rel in sorted(p.relative_to(local.out_dir) for p in local.out_dir.rglob("*")):
            if (local.out_dir / rel).is_file() and rel.name != "manifest.json":
                dest.child(*rel.parts).upload(local.out_dir / rel)
        man.write_bytes((local.out_dir / "manifest.json").read_bytes())
    return IngestResult(
        out_dir=out_uri,
        data_dir=storage.join(out_uri, "data"),
        schema=local.schema,
        manifest=local.manifest,
        reused=same,
        stats=local.stats,
    )


def load_ingested(out_dir: str | os.PathLike[str]) -> IngestResult:
    """Open an existing ingest output (InputError if it is not a complete, valid one)."""
    out = local_dataset(out_dir)
    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("is not an ingested dataset (manifest.json missing)", path=out) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"manifest.json is corrupt ({exc})", path=out) from None
    for f in manifest.get("files", []):
        p = out / f["path"]
        if not p.exists() or p.stat().st_size != f.get("bytes"):
            raise InputError("dataset file is missing or has the wrong size", path=p)
    schema = TableSchema.load(out / "schema.json")
    return IngestResult(
        out_dir=out, data_dir=out / "data", schema=schema, manifest=manifest, stats=load_stats(out)
    )


def _existing_matches(out: Path, checksum: str, options_hash: str) -> IngestResult | None:
    if not (out / "manifest.json").exists():
        return None
    try:
        res = load_ingested(out)
    except PushforwardError:
        return None
    m = res.manifest
    if m.get("source_sha256") == checksum and m.get("options_sha256") == options_hash:
        res.reused = True
        return res
    return None


def _declared_text(overrides: Mapping[str, Any]) -> set[str]:
    """Columns the overrides declare categorical or id: a text column among them is kept as
    text, never parsed as date-times, so the synthetic rows keep the source's spelling."""
    per_col = overrides.get("columns") or {}
    if not isinstance(per_col, Mapping):
        return set()  # apply_overrides names the problem
    return {
        str(name)
        for name, settings in per_col.items()
        if isinstance(settings, Mapping) and settings.get("kind") in ("categorical", "id")
    }


def ingest(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    overrides: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    encoding: str = "utf8",
    format: str | None = None,
    csv_block_bytes: int | None = None,
    delimiter: str | None = None,
    quote_char: str = '"',
    null_tokens: Sequence[str] | None = None,
) -> IngestResult:
    """Ingest ``source`` (CSV/TSV, Parquet file or directory, JSON Lines) into ``out_dir``.

    ``overrides`` (dict or YAML/JSON path) are applied to the inferred schema; dropped columns
    are not written. ``encoding`` transcodes CSV input (e.g. ``"latin-1"``). CSV only:
    ``delimiter`` (None: detected), ``quote_char``, ``null_tokens`` (None:
    ``pfcore.io.DEFAULT_NULL_TOKENS``). Whatever was detected rather than given is listed under
    ``guesses`` in the manifest and the schema, and logged.
    """
    if delimiter is not None and len(delimiter) != 1:
        raise InputError(f"delimiter must be one character, got {delimiter!r}", path=source)
    if len(quote_char) != 1:
        raise InputError(f"quote character must be one character, got {quote_char!r}", path=source)
    tokens = tuple(DEFAULT_NULL_TOKENS if null_tokens is None else null_tokens)
    csv_opts = {"delimiter": delimiter, "quote_char": quote_char, "null_tokens": tokens}
    if batch_rows < 1:
        raise ValueError("batch_rows must be >= 1")
    if storage.is_remote(out_dir):
        return _ingest_to_store(
            source,
            storage.normalise(out_dir),
            dict(
                overrides=overrides,
                batch_rows=batch_rows,
                rows_per_file=rows_per_file,
                encoding=encoding,
                format=format,
                csv_block_bytes=csv_block_bytes,
                delimiter=delimiter,
                quote_char=quote_char,
                null_tokens=null_tokens,
            ),
        )
    src = local_source(source)
    out = Path(out_dir).expanduser().absolute()
    reader = open_source(
        src, format=format, batch_rows=batch_rows, encoding=encoding
    )  # checks existence and readability
    ov = load_overrides(overrides)
    declared = _declared_rules(ov)  # malformed rules fail here, before any data is read
    checksum, n_bytes = source_checksum(src)
    dialect_opts = csv_opts if reader.format == "csv" else None
    opts = _options_hash(ov, batch_rows, rows_per_file, encoding, dialect_opts)
    if out.exists():
        if not out.is_dir():
            raise InputError("output path exists and is not a directory", path=out)
        found = _existing_matches(out, checksum, opts)
        if found is not None:
            return found
        if any(out.iterdir()) and not (out / "manifest.json").exists():
            raise InputError(
                "output directory exists, is not empty and is not a pushforward dataset; "
                "refusing to overwrite it",
                path=out,
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        string_columns: set[str] = set()
        plain_text: set[str] = _declared_text(ov)
        while True:
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "data").mkdir(parents=True)
            kw: dict[str, Any] = {
                "batch_rows": batch_rows,
                "encoding": encoding,
                "string_columns": set(string_columns),
                "plain_text_columns": set(plain_text),
            }
            if reader.format == "csv":
                kw.update(csv_opts)
            if csv_block_bytes:
                kw["block_bytes"] = csv_block_bytes
            reader = open_source(src, format=reader.format, **kw)
            try:
                schema, stats, files, rows = _write(reader, tmp, ov, batch_rows, rows_per_file)
                break
            except _RetryAsString as retry:
                string_columns.add(retry.column)
                if retry.plain:
                    plain_text.add(retry.column)
        guesses = list(reader.guesses) + [
            f"column {c!r}: values of several types, read as text (categorical)"
            for c in sorted(string_columns)
            if c in schema.names and schema[c].arrow_type == "string"
        ]
        guesses += _near_unique_text(schema, rows)
        schema.source_dialect = {"format": reader.format, **reader.dialect, "guesses": guesses}
        for line in guesses:
            _log.info("%s: %s", src, line)
        manifest = {
            "format_version": MANIFEST_VERSION,
            "pushforward_version": __version__,
            "source": storage.normalise(source)
            if storage.is_remote(source)
            else str(src.absolute()),
            "source_format": reader.format,
            "source_sha256": checksum,
            "source_bytes": n_bytes,
            "options_sha256": opts,
            "overrides": ov,
            "rows": rows,
            "columns": len(schema.columns),
            "dropped_columns": [n for n in reader.schema.names if n not in schema.names],
            "string_fallback_columns": sorted(
                c for c in string_columns if c in schema.names and schema[c].arrow_type == "string"
            ),
            "dialect": reader.dialect,
            "guesses": guesses,
            "files": files,
            "arrow_schema": str(schema.arrow_schema()),
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        schema.save(tmp / "schema.json")
        stats.save(tmp / STATS_FILE)
        if declared:
            from pfcore.rules import RuleSet, resolve_declared

            RuleSet(rules=resolve_declared(declared, schema)).save(tmp / "rules.json")
        atomic_write(
            tmp / "manifest.json",
            json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n",
        )
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return IngestResult(
        out_dir=out, data_dir=out / "data", schema=schema, manifest=manifest, stats=stats
    )


def _near_unique_text(schema: Any, rows: int) -> list[str]:
    """A guess for each near-unique text column, saying what synthetic rows will hold.

    Free text is ``text``: new values from its words or characters (where a real row holds a
    value of its own). Near-unique values left categorical (dates or decimals in a form
    ingest did not read) are pooled by the model: synthetic rows hold training values copied
    verbatim where new real rows hold new ones. The fidelity gate then fails (Airbnb listing
    titles as classes: detection AUC 0.99; declared ``id``, 0.725 and the gate passed), so
    the user hears it at ingest, with what to do."""
    from pfcore.schema import near_unique

    out = []
    for col in schema.columns:
        present = rows - col.n_missing
        if not col.arrow_type.startswith(("string", "large_string")):
            continue
        if col.n_distinct is None or present <= 0:
            continue
        shown = f"{col.n_distinct:,}" + ("+" if col.distinct_truncated else "")
        if col.kind == "text":
            out.append(
                f"column {col.name!r}: free text ({shown} distinct values in {present:,} "
                "rows): synthetic rows hold its frequent values as classes and, where a real "
                "row holds a value of its own, new text made of its words (of its characters, "
                "for single words; never a value only one training row holds); declare it "
                "categorical to keep its training values instead, or drop it"
            )
        elif col.kind == "categorical" and near_unique(
            col.n_distinct, present, col.distinct_truncated
        ):
            out.append(
                f"column {col.name!r}: {shown} distinct texts in {present:,} rows (near-unique: "
                "titles, free text or codes): synthetic rows will hold training values copied "
                "verbatim; declare it id to generate fresh values, text to make new ones from "
                "its words, or drop it"
            )
    return out


def _declared_rules(ov: Mapping[str, Any]) -> list:
    """The overrides' ``rules:`` list, parsed (SchemaError names the malformed rule)."""
    if not ov.get("rules"):
        return []
    from pfcore.rules import parse_declared

    return parse_declared(ov["rules"])


def _write(
    reader: Any, tmp: Path, ov: Mapping[str, Any], batch_rows: int, rows_per_file: int
) -> tuple[TableSchema, TableStats, list, int]:
    batches = reader.batches()
    first = next(batches, None)  # opening the reader sets reader.schema
    if not hasattr(reader, "schema"):
        raise InputError("has no header and no rows", path=reader.path)
    acc = SchemaAccumulator(reader.schema)
    # Drops are known up front (validated against the source's columns by apply_overrides).
    probe = apply_overrides(acc.finish(), ov) if ov else None
    keep = probe.names if probe is not None else reader.schema.names
    out_schema = pa.schema([reader.schema.field(n) for n in keep])
    acc = SchemaAccumulator(reader.schema)
    extremes = StatsAccumulator(reader.schema)
    writer = _PartWriter(tmp / "data", out_schema, batch_rows, rows_per_file)
    try:
        for batch in [first] if first is not None else []:
            acc.update(batch)
            extremes.update(batch)
            writer.write(batch.select(keep))
        for batch in batches:
            acc.update(batch)
            extremes.update(batch)
            writer.write(batch.select(keep))
        if acc.n_rows == 0:
            raise InputError("has a header but no data rows", path=reader.path)
        files = writer.close()
    except BaseException:
        writer.abort()
        raise
    try:
        schema = acc.finish()
    except InputError as exc:
        raise InputError(exc.problem, path=reader.path, column=exc.column) from None
    schema = apply_overrides(schema, ov)
    return schema, extremes.finish(schema, acc), files, acc.n_rows


def _publish(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside, restored on failure."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)

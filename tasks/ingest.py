"""Ingest task: a real table to a Parquet dataset with an inferred, editable schema."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from prefect import task
from prefect.context import TaskRunContext

from tasks._common import logger, retry_if_transient


def _source_fingerprint(context: TaskRunContext, parameters: dict) -> str:
    """Cache key: content of the source (size + mtime of every file) and the overrides.

    Hashing the full content would cost as much as ingest itself; pfcore.ingest is already
    idempotent by content checksum, so this cheap key only skips work that is certainly done.
    """
    from pfcore import storage

    h = hashlib.sha256()
    if storage.is_remote(parameters["source"]):
        h.update(storage.listing_key(parameters["source"]).encode())
    else:
        src = Path(parameters["source"]).expanduser().resolve()
        files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
        for p in files:
            st = p.stat()
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    for extra in ("out_dir", "overrides", "read_options"):
        val = parameters.get(extra)
        h.update(f"{extra}={val}\n".encode())
        if extra == "overrides" and val and os.path.exists(val):
            h.update(Path(val).read_bytes())
    return "ingest-" + h.hexdigest()


@task(
    name="ingest",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_if_transient,
    cache_key_fn=_source_fingerprint,
    persist_result=True,
)
def ingest_task(
    source: str, out_dir: str, overrides: str | None = None, read_options: dict | None = None
) -> dict:
    """Returns plain data (paths, counts): tasks pass paths, never big in-memory tables.

    ``read_options``: how to read a CSV source (``TrainParams.read_options()``)."""
    from pfcore.ingest import ingest

    res = ingest(source, out_dir, overrides=overrides, **(read_options or {}))
    log = logger()
    for line in res.manifest.get("guesses") or []:
        log.info("guessed: %s", line)
    log.info(
        "ingested %s: %s rows, %d columns -> %s",
        source,
        res.manifest.get("rows"),
        len(res.schema.columns),
        res.out_dir,
    )
    kinds = ", ".join(f"{c.name}:{c.kind}" for c in res.schema.columns)
    log.info("schema: %s", kinds)
    return {
        "dataset_dir": str(res.out_dir),
        "rows": int(res.manifest.get("rows", 0)),
        "checksum": str(res.manifest.get("source_sha256") or res.manifest.get("checksum") or ""),
    }

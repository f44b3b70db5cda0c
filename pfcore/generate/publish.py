"""Publish a staged batch atomically and describe it in ``_manifest.json``.

Why rename: readers (pyarrow.dataset, DuckDB, Polars globs, Spark) list a folder and read what
they find. The batch is assembled under ``<out_root>/_staging/`` (outside every
``dataset=<name>`` tree, and ``_``-prefixed so pyarrow.dataset skips it), the manifest is written
last, and one ``rename`` of the folder makes the whole batch appear at once. A crash at any
point leaves either no batch or a complete one.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pfcore import __version__
from pfcore.errors import GenerationError
from pfcore.generate.lock import batch_lock, remove_batch_locks
from pfcore.generate.plan import BatchPlan
from pfcore.generate.shard import ShardResult, file_sha256

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_FORMAT_VERSION",
    "BatchManifest",
    "publish_batch",
    "read_manifest",
    "published_manifest",
    "recover_interrupted_publish",
    "verify_batch",
]

MANIFEST_NAME = "_manifest.json"
MANIFEST_FORMAT_VERSION = 1
_PUBLISH_DIR = "publish"


@dataclass(frozen=True)
class BatchManifest:
    """A published batch: where it is and what ``_manifest.json`` says about it."""

    batch_dir: Path
    data: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.batch_dir / MANIFEST_NAME

    @property
    def batch_id(self) -> str:
        return str(self.data["batch_id"])

    @property
    def rows(self) -> int:
        return int(self.data["rows"])

    @property
    def seed(self) -> int:
        return int(self.data["seed"])

    @property
    def files(self) -> list[dict[str, Any]]:
        return list(self.data["files"])

    @property
    def file_paths(self) -> list[Path]:
        return [self.batch_dir / f["path"] for f in self.data["files"]]

    def to_dict(self) -> dict[str, Any]:
        return {"batch_dir": str(self.batch_dir), **self.data}


def read_manifest(batch_dir: str | os.PathLike[str]) -> BatchManifest:
    """The manifest of a published batch; a missing or unreadable one is a GenerationError."""
    batch_dir = Path(batch_dir)
    path = batch_dir / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise GenerationError(f"{batch_dir}: no {MANIFEST_NAME}: not a published batch") from exc
    except ValueError as exc:
        raise GenerationError(f"{path}: unreadable manifest: {exc}") from exc
    if int(data.get("format_version", 0)) > MANIFEST_FORMAT_VERSION:
        raise GenerationError(f"{path}: manifest format {data['format_version']} is too new")
    return BatchManifest(batch_dir=batch_dir, data=data)


def verify_batch(manifest: BatchManifest) -> None:
    """Check every listed file exists with its size and sha256; raise GenerationError if not."""
    for f in manifest.files:
        p = manifest.batch_dir / f["path"]
        if not p.exists():
            raise GenerationError(f"{p}: listed in the manifest but missing")
        if p.stat().st_size != f["bytes"] or file_sha256(p) != f["sha256"]:
            raise GenerationError(f"{p}: size or sha256 differs from the manifest")


def published_manifest(plan: BatchPlan) -> BatchManifest | None:
    """The manifest of an already published batch of this plan, or None if not published.

    A published batch with the same id but other content (another model or seed) is an error,
    never silently overwritten.
    """
    if not (plan.final_dir / MANIFEST_NAME).exists():
        return None
    manifest = read_manifest(plan.final_dir)
    d = manifest.data
    mismatch = [
        k
        for k, v in (
            ("model_fingerprint", plan.model_fingerprint),
            ("seed", plan.seed),
            ("rows", plan.n_rows),
            ("block_rows", plan.block_rows),
            ("noise", plan.noise),
            ("conditions_digest", plan.conditions_digest),
        )
        if d.get(k, "cpu" if k == "noise" else None) != v
    ]
    if mismatch:
        raise GenerationError(
            f"{plan.final_dir}: batch {plan.batch_id!r} is already published with other "
            f"{', '.join(mismatch)}; choose another batch id"
        )
    return manifest


def recover_interrupted_publish(plan: BatchPlan) -> int:
    """Move shards of a publish that crashed half-way back into staging; returns how many.

    Without this a rerun would find the shards neither staged nor published and redo them.
    """
    with batch_lock(plan, shared=False):
        return _recover(plan)


def _recover(plan: BatchPlan) -> int:
    pub = plan.staging_dir / _PUBLISH_DIR
    if not pub.is_dir():
        return 0
    moved = 0
    for spec in plan.shards:
        src = pub / spec.file_name
        if src.exists():
            plan.shards_dir.mkdir(parents=True, exist_ok=True)
            os.replace(src, plan.staged_path(spec.index))
            moved += 1
    shutil.rmtree(pub, ignore_errors=True)
    return moved


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _schema_json(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def _cleanup_staging(plan: BatchPlan) -> None:
    shutil.rmtree(plan.staging_dir, ignore_errors=True)
    # drop the now-empty <dataset>/<run_date> parents, never _staging itself
    for parent in (plan.staging_dir.parent, plan.staging_dir.parent.parent):
        try:
            parent.rmdir()
        except OSError:
            break


def publish_batch(
    plan: BatchPlan | dict[str, Any] | str | os.PathLike[str],
    shard_results: Iterable[ShardResult | dict[str, Any]],
    *,
    verify_checksums: bool = True,
    extra: dict[str, Any] | None = None,
) -> BatchManifest:
    """Check the staged shards, write ``_manifest.json`` last and rename the batch into place.

    Idempotent: if the batch is already published (a rerun after a crash that happened after
    the rename), the existing manifest is returned and the staging leftovers are removed.
    ``extra`` is stored under ``"run"`` in the manifest (timings, skipped shards, ...).
    """
    plan = BatchPlan.coerce(plan)
    # Exclusive: no shard of any run of this batch is being checked or written meanwhile, and
    # a concurrent run that publishes second finds the batch published (pfcore.generate.lock).
    with batch_lock(plan, shared=False):
        manifest = _publish_locked(plan, shard_results, verify_checksums, extra)
        remove_batch_locks(plan)  # last: a waiter then re-locks a fresh file
    return manifest


def _publish_locked(
    plan: BatchPlan,
    shard_results: Iterable[ShardResult | dict[str, Any]],
    verify_checksums: bool,
    extra: dict[str, Any] | None,
) -> BatchManifest:
    existing = published_manifest(plan)
    if existing is not None:
        _cleanup_staging(plan)
        return existing

    parsed = (x if isinstance(x, ShardResult) else ShardResult.from_dict(x) for x in shard_results)
    results = {r.index: r for r in parsed}
    missing = [s.index for s in plan.shards if s.index not in results]
    if missing:
        raise GenerationError(f"batch {plan.batch_id}: no result for shards {missing}")
    files: list[dict[str, Any]] = []
    for spec in plan.shards:
        r = results[spec.index]
        staged = plan.staged_path(spec.index)
        if r.rows != spec.rows or r.first_block != spec.first_block:
            raise GenerationError(
                f"batch {plan.batch_id}: shard {spec.index} result does not match the plan"
            )
        if not staged.exists():
            raise GenerationError(f"{staged}: staged shard is missing")
        bad_sum = verify_checksums and file_sha256(staged) != r.sha256
        if staged.stat().st_size != r.bytes or bad_sum:
            raise GenerationError(f"{staged}: size or sha256 differs from the shard result")
        files.append(
            {
                "path": spec.file_name,
                "rows": spec.rows,
                "bytes": r.bytes,
                "sha256": r.sha256,
                "first_block": spec.first_block,
                "n_blocks": spec.n_blocks,
                "row_start": spec.row_start,
            }
        )

    arrow_schema = pq.read_schema(plan.staged_path(plan.shards[0].index))
    table_schema: Any = None
    schema_file = Path(plan.synth_dir) / "schema.json"
    if schema_file.exists():
        try:
            table_schema = json.loads(schema_file.read_text())
        except ValueError:
            table_schema = None
    manifest = {
        "format_version": MANIFEST_FORMAT_VERSION,
        "package_version": __version__,
        "dataset": plan.dataset,
        "run_date": plan.run_date,
        "batch_id": plan.batch_id,
        "model_name": plan.model_name,
        "model_version": plan.model_version,
        "model_fingerprint": plan.model_fingerprint,
        "seed": plan.seed,
        "rows": plan.n_rows,
        "block_rows": plan.block_rows,
        "rows_per_shard": plan.rows_per_shard,
        "row_group_rows": plan.row_group_rows,
        "row_group_bytes": plan.row_group_bytes,
        "compression": plan.compression,
        "noise": plan.noise,
        "conditions": plan.conditions,
        "conditions_digest": plan.conditions_digest,
        "files": files,
        "schema": {
            "fields": _schema_json(arrow_schema),
            "metadata": {
                k.decode(errors="replace"): v.decode(errors="replace")
                for k, v in (arrow_schema.metadata or {}).items()
                if not k.startswith(b"ARROW:")
            },
        },
        "table_schema": table_schema,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "run": dict(extra or {}),
    }

    pub = plan.staging_dir / _PUBLISH_DIR
    pub.mkdir(parents=True, exist_ok=True)
    for spec in plan.shards:
        os.replace(plan.staged_path(spec.index), pub / spec.file_name)
    tmp = pub / f".{MANIFEST_NAME}.tmp"
    with open(tmp, "w") as fh:
        json.dump(manifest, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, pub / MANIFEST_NAME)  # last file of the batch
    _fsync_dir(pub)

    final = plan.final_dir
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(pub, final)
    except OSError:
        # Another run of the same batch id published first (same content by construction).
        existing = published_manifest(plan)
        if existing is None:
            raise
        _cleanup_staging(plan)
        return existing
    _fsync_dir(final.parent)
    _cleanup_staging(plan)
    return BatchManifest(batch_dir=final, data=manifest)

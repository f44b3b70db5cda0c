"""Publish a staged batch atomically and describe it in ``_manifest.json``.

One protocol for local disks and object stores: shards are staged under
``<out_root>/_staging/`` (outside every ``dataset=<name>`` tree, and ``_``-prefixed so
pyarrow.dataset and Spark skip it), each with a sidecar; the manifest is written last; only
the commit step differs.

* Local disk: the shards and the manifest are moved into a folder that one ``rename`` puts in
  place, so even a plain ``**/*.parquet`` glob sees no batch or a complete one.
* Object store (no rename): each staged shard is copied server-side to
  ``dataset=/run_date=/batch=<id>/part-NNNNN.parquet``, then ``_manifest.json`` is created
  with a conditional put (``If-None-Match: *``). The manifest is the commit: a reader that lists
  manifests (:mod:`pfcore.generate.read`) never sees a partial batch, and of two overlapping
  runs exactly one creates it; the other finds it, checks it describes the same content, and
  returns it. A crash after some copies leaves part files without a manifest: readers that
  glob ``*.parquet`` instead of reading manifests can see them until a rerun commits.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pfcore import __version__, storage
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

    batch_dir: Path | str  # a local folder, or a URI on an object store
    data: dict[str, Any]

    @property
    def path(self) -> Path | str:
        return _child(self.batch_dir, MANIFEST_NAME)

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
    def file_paths(self) -> list[Path | str]:
        return [_child(self.batch_dir, f["path"]) for f in self.data["files"]]

    @property
    def commit_id(self) -> str | None:
        """Unique per commit: of two runs that raced, the one whose id this is committed."""
        return self.data.get("commit_id")

    def to_dict(self) -> dict[str, Any]:
        return {"batch_dir": str(self.batch_dir), **self.data}


def _child(batch_dir: Path | str, name: str) -> Path | str:
    if isinstance(batch_dir, str) and storage.is_remote(batch_dir):
        return storage.join(batch_dir, name)
    return Path(batch_dir) / name


def read_manifest(batch_dir: str | os.PathLike[str]) -> BatchManifest:
    """The manifest of a published batch; a missing or unreadable one is a GenerationError."""
    remote = storage.is_remote(batch_dir)
    where: Path | str = storage.normalise(batch_dir) if remote else Path(batch_dir)
    path = _child(where, MANIFEST_NAME)
    try:
        data = json.loads(storage.resolve(path).read_text() if remote else Path(path).read_text())
    except FileNotFoundError as exc:
        raise GenerationError(f"{where}: no {MANIFEST_NAME}: not a published batch") from exc
    except ValueError as exc:
        raise GenerationError(f"{path}: unreadable manifest: {exc}") from exc
    if int(data.get("format_version", 0)) > MANIFEST_FORMAT_VERSION:
        raise GenerationError(f"{path}: manifest format {data['format_version']} is too new")
    return BatchManifest(batch_dir=where, data=data)


def verify_batch(manifest: BatchManifest) -> None:
    """Check every listed file exists with its size and sha256; raise GenerationError if not."""
    for f in manifest.files:
        p = _child(manifest.batch_dir, f["path"])
        loc = storage.resolve(p)
        if not loc.exists():
            raise GenerationError(f"{p}: listed in the manifest but missing")
        if loc.remote:
            same = loc.size() == f["bytes"] and _sha256_remote(loc) == f["sha256"]
        else:
            same = Path(p).stat().st_size == f["bytes"] and file_sha256(p) == f["sha256"]
        if not same:
            raise GenerationError(f"{p}: size or sha256 differs from the manifest")


def _sha256_remote(loc: storage.Location) -> str:
    import hashlib

    h = hashlib.sha256()
    with loc.fs.open(loc.path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def published_manifest(plan: BatchPlan) -> BatchManifest | None:
    """The manifest of an already published batch of this plan, or None if not published.

    A published batch with the same id but other content (another model or seed) is an error,
    never silently overwritten.
    """
    if plan.remote:
        if not storage.resolve(plan.final_uri).child(MANIFEST_NAME).exists():
            return None
        manifest = read_manifest(plan.final_uri)
    elif not (plan.final_dir / MANIFEST_NAME).exists():
        return None
    else:
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
            f"{plan.final_uri}: batch {plan.batch_id!r} is already published with other "
            f"{', '.join(mismatch)}; choose another batch id"
        )
    return manifest


def recover_interrupted_publish(plan: BatchPlan) -> int:
    """Move shards of a publish that crashed half-way back into staging; returns how many.

    Without this a rerun would find the shards neither staged nor published and redo them.
    On object storage nothing moves (the commit copies), so there is nothing to recover.
    """
    if plan.remote:
        return 0
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
    if plan.remote:
        return _publish_remote(plan, shard_results, extra)
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

    files = _checked_files(
        plan,
        shard_results,
        size=lambda i: plan.staged_path(i).stat().st_size,
        exists=lambda i: plan.staged_path(i).exists(),
        sha256=(lambda i: file_sha256(plan.staged_path(i))) if verify_checksums else None,
        where=lambda i: str(plan.staged_path(i)),
    )
    arrow_schema = pq.read_schema(plan.staged_path(plan.shards[0].index))
    manifest = _manifest_data(plan, files, arrow_schema, extra)

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


def _checked_files(
    plan: BatchPlan,
    shard_results: Iterable[ShardResult | dict[str, Any]],
    *,
    size: Any,
    exists: Any,
    sha256: Any,
    where: Any,
) -> list[dict[str, Any]]:
    """The manifest's file entries, after checking every staged shard against its result."""
    parsed = (x if isinstance(x, ShardResult) else ShardResult.from_dict(x) for x in shard_results)
    results = {r.index: r for r in parsed}
    missing = [s.index for s in plan.shards if s.index not in results]
    if missing:
        raise GenerationError(f"batch {plan.batch_id}: no result for shards {missing}")
    files: list[dict[str, Any]] = []
    for spec in plan.shards:
        r = results[spec.index]
        if r.rows != spec.rows or r.first_block != spec.first_block:
            raise GenerationError(
                f"batch {plan.batch_id}: shard {spec.index} result does not match the plan"
            )
        if not exists(spec.index):
            raise GenerationError(f"{where(spec.index)}: staged shard is missing")
        bad_sum = sha256 is not None and sha256(spec.index) != r.sha256
        if size(spec.index) != r.bytes or bad_sum:
            raise GenerationError(
                f"{where(spec.index)}: size or sha256 differs from the shard result"
            )
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
    return files


def _manifest_data(
    plan: BatchPlan,
    files: list[dict[str, Any]],
    arrow_schema: pa.Schema,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    """The content of ``_manifest.json`` (identical for local and object-store batches)."""
    table_schema: Any = None
    try:
        table_schema = json.loads(storage.resolve(plan.synth_dir).child("schema.json").read_text())
    except (OSError, ValueError):
        table_schema = None
    return {
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
        "commit_id": uuid.uuid4().hex,
        "run": dict(extra or {}),
    }


def _publish_remote(
    plan: BatchPlan,
    shard_results: Iterable[ShardResult | dict[str, Any]],
    extra: dict[str, Any] | None,
) -> BatchManifest:
    """Object-store commit: copy staged shards into the batch prefix, then create the manifest
    only if absent. Idempotent, and safe against a concurrent run of the same batch."""
    existing = published_manifest(plan)
    if existing is not None:
        storage.resolve(plan.staging_uri).remove()
        return existing

    def staged(i: int) -> storage.Location:
        return storage.resolve(plan.staged_uri(i))

    sidecars: dict[int, dict[str, Any]] = {}

    def recorded_sha(i: int) -> str | None:
        # the sha256 hashed while the shard streamed out; re-reading every shard from the
        # store would double the commit's traffic
        if i not in sidecars:
            try:
                sidecars[i] = json.loads(storage.resolve(plan.sidecar_uri(i)).read_text())
            except (OSError, ValueError):
                sidecars[i] = {}
        return sidecars[i].get("sha256")

    final = storage.resolve(plan.final_uri)
    try:
        files = _checked_files(
            plan,
            shard_results,
            size=lambda i: staged(i).size(),
            exists=lambda i: staged(i).exists(),
            sha256=recorded_sha,
            where=lambda i: staged(i).uri,
        )
        first = staged(plan.shards[0].index)
        with first.fs.open(first.path, "rb") as fh:
            arrow_schema = pq.read_schema(fh)
        manifest = _manifest_data(plan, files, arrow_schema, extra)
        for spec in plan.shards:
            staged(spec.index).copy_to(final.child(spec.file_name))
    except (GenerationError, FileNotFoundError):
        # a concurrent run committed and removed the staging prefix under us
        existing = published_manifest(plan)
        if existing is None:
            raise
        return existing
    body = json.dumps(manifest, indent=2).encode()
    if not final.child(MANIFEST_NAME).write_bytes(body, exclusive=True):
        existing = published_manifest(plan)  # raises if it describes other content
        if existing is None:
            raise GenerationError(f"{final.uri}: manifest create refused but none found")
        return existing
    storage.resolve(plan.staging_uri).remove()
    return BatchManifest(batch_dir=final.uri, data=manifest)

"""Write one shard: model forward, decode and Parquet write as an overlapped pipeline.

Why a pipeline: on CPU the model forward (torch, releases the GIL) and decode + compression
(numpy/pyarrow, mostly outside the GIL) are of the same order. Run one after the other, the end
to end rate is the harmonic sum of both; overlapped, it approaches the slower of the two. So a
producer thread pushes canonical blocks through the model ahead of the consumer, and a writer
thread compresses row groups while the next blocks decode.

Why idempotent: a Prefect retry, a Dask worker restart or a rerun after a crash calls
``generate_shard`` again; a shard already staged with a matching sidecar and checksum is
returned as is, so only missing work is redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pfcore import __version__, sampling, storage
from pfcore.atomic import atomic_write
from pfcore.errors import GenerationError, PushforwardError
from pfcore.generate.lock import batch_lock, shard_lock
from pfcore.generate.plan import BatchPlan, ShardSpec

__all__ = [
    "ShardResult",
    "generate_shard",
    "load_synthesizer",
    "output_schema",
    "dictionary_columns",
    "file_sha256",
    "shard_blocks",
    "METADATA_PREFIX",
]

METADATA_PREFIX = "pushforward."
_QUEUE_DEPTH = 2
_SENTINEL = object()

# One loaded synthesizer per (directory, device) per process: a worker that runs several shards
# loads the model once.
_SYNTH_CACHE: dict[tuple[str, str], Any] = {}
_SYNTH_LOCK = threading.Lock()


@dataclass(frozen=True)
class ShardResult:
    """What a shard produced; JSON-able so it can travel back from a remote worker."""

    index: int
    file_name: str
    rows: int
    bytes: int
    sha256: str
    first_block: int
    n_blocks: int
    seconds: float
    skipped: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShardResult:
        return cls(**d)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Streamed sha256 of a file (shards are hundreds of MB; never read whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def load_synthesizer(synth_dir: str | os.PathLike[str], device: str = "cpu") -> Any:
    """Load (once per process) the synthesizer a plan points at."""
    from pfcore.paths import pushforward_home
    from pfcore.synthesizer import Synthesizer

    key = (storage.normalise(synth_dir), str(device))
    with _SYNTH_LOCK:
        synth = _SYNTH_CACHE.get(key)
        if synth is None:
            # a worker on another machine reads the plan's copy in the bucket into its own cache
            local = storage.local_copy(key[0], pushforward_home() / "cache" / "synthesizers")
            synth = Synthesizer.load(local, device=device)
            _SYNTH_CACHE[key] = synth
    return synth


def dictionary_columns(schema: pa.Schema, table_schema: Any = None) -> list[str]:
    """Columns worth dictionary encoding: strings and categoricals only.

    Dictionary encoding every column (pyarrow's default) made writing about 2.5x slower and the
    files larger for float columns, whose values rarely repeat.
    """
    names = []
    kinds: dict[str, str] = {}
    for col in getattr(table_schema, "columns", None) or []:
        kinds[col.name] = getattr(col, "kind", "")
    for f in schema:
        t = f.type
        if (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_dictionary(t)
            or kinds.get(f.name) == "categorical"
        ):
            names.append(f.name)
    return names


def output_schema(synth: Any, plan: BatchPlan) -> pa.Schema:
    """The source's exact Arrow schema plus key-value metadata naming model, seed and batch."""
    base: pa.Schema = synth.schema.arrow_schema()
    meta = dict(base.metadata or {})
    # pandas' metadata describes the *source's* index (e.g. a RangeIndex of its length), which
    # synthetic rows do not have: pandas would rebuild a wrong index from it.
    meta.pop(b"pandas", None)
    ours = {
        "model_name": plan.model_name,
        "model_version": plan.model_version,
        "model_fingerprint": plan.model_fingerprint,
        "seed": str(plan.seed),
        "batch_id": plan.batch_id,
        "dataset": plan.dataset,
        "run_date": plan.run_date,
        "rows_total": str(plan.n_rows),
        "block_rows": str(plan.block_rows),
        "package_version": __version__,
    }
    if plan.conditions is not None:
        ours["conditions"] = json.dumps(plan.conditions, sort_keys=True, ensure_ascii=False)
    for k, v in ours.items():
        meta[(METADATA_PREFIX + k).encode()] = str(v).encode()
    return base.with_metadata(meta)


def plan_condition(synth: Any, plan: BatchPlan) -> Any:
    """The plan's conditions compiled against ``synth`` (once per process), or None."""
    if plan.conditions is None:
        return None
    from pfcore.conditions import Conditions

    key = json.dumps(plan.conditions, sort_keys=True)
    with _SYNTH_LOCK:  # kept on the synthesizer itself: shards of one batch compile once
        cache = synth.__dict__.setdefault("_compiled_conditions", {})
        compiled = cache.get(key)
    if compiled is None:
        compiled = synth.compile_conditions(Conditions.from_dict(plan.conditions))
        with _SYNTH_LOCK:
            cache[key] = compiled
    return compiled


def shard_blocks(plan: BatchPlan, spec: ShardSpec) -> Iterator[sampling.Block]:
    """The canonical blocks of one shard (``pfcore.sampling``: the same blocks as ``sample``)."""
    return sampling.blocks(
        plan.n_rows,
        plan.seed,
        block_rows=plan.block_rows,
        first=spec.first_block,
        count=spec.n_blocks,
    )


# ------------------------------------------------------------------------ idempotence
def _shard_identity(plan: BatchPlan, spec: ShardSpec) -> dict[str, Any]:
    """What a staged shard's content depends on: written to its sidecar, compared on resume.

    One definition for both sides, so a new setting cannot be recorded but never checked.
    """
    return {
        "batch_id": plan.batch_id,
        "model_fingerprint": plan.model_fingerprint,
        "seed": plan.seed,
        "n_rows": plan.n_rows,
        "first_block": spec.first_block,
        "n_blocks": spec.n_blocks,
        "rows": spec.rows,
        "compression": plan.compression,
        "row_group_rows": plan.row_group_rows,
        "row_group_bytes": plan.row_group_bytes,
        "noise": plan.noise,
        "conditions": plan.conditions_digest,
    }


def _valid_staged(plan: BatchPlan, spec: ShardSpec, *, verify_checksum: bool) -> ShardResult | None:
    """The staged shard if it is complete and belongs to this plan, else None."""
    path, sidecar = plan.staged_path(spec.index), plan.sidecar_path(spec.index)
    try:
        info = json.loads(sidecar.read_text())
        expected = _shard_identity(plan, spec)
        if any(info.get(k) != v for k, v in expected.items()):
            return None
        if path.stat().st_size != info.get("bytes"):
            return None
        if verify_checksum and file_sha256(path) != info.get("sha256"):
            return None
    except (OSError, ValueError):  # missing (never staged, or published meanwhile), unreadable
        return None
    return _skipped(spec, spec.rows, int(info["bytes"]), str(info["sha256"]))


def _valid_staged_remote(plan: BatchPlan, spec: ShardSpec) -> ShardResult | None:
    """The staged shard on object storage if its sidecar matches this plan, else None.

    The sidecar is written after the shard, and an object appears whole or not at all (a
    multipart upload that never completed leaves nothing), so identity and size suffice; the
    sha256 recorded at write time goes into the manifest.
    """
    try:
        info = json.loads(storage.resolve(plan.sidecar_uri(spec.index)).read_text())
        expected = _shard_identity(plan, spec)
        if any(info.get(k) != v for k, v in expected.items()):
            return None
        if storage.resolve(plan.staged_uri(spec.index)).size() != info.get("bytes"):
            return None
    except (OSError, ValueError):
        return None
    return _skipped(spec, spec.rows, int(info["bytes"]), str(info["sha256"]))


def _from_published(plan: BatchPlan, spec: ShardSpec) -> ShardResult | None:
    """The shard's entry if its batch is already published (a rerun of a finished flow)."""
    try:
        manifest = json.loads(storage.resolve(plan.final_uri).child("_manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if (
        manifest.get("model_fingerprint") != plan.model_fingerprint
        or manifest.get("seed") != plan.seed
        or manifest.get("conditions_digest") != plan.conditions_digest
    ):
        return None  # publish_batch reports the conflict
    for f in manifest.get("files", []):
        if f.get("path") == spec.file_name and f.get("first_block") == spec.first_block:
            return _skipped(spec, int(f["rows"]), int(f["bytes"]), str(f["sha256"]))
    return None


def _skipped(spec: ShardSpec, rows: int, nbytes: int, sha256: str) -> ShardResult:
    """The result of a shard found already written (staged sidecar or published manifest)."""
    return ShardResult(
        index=spec.index,
        file_name=spec.file_name,
        rows=rows,
        bytes=nbytes,
        sha256=sha256,
        first_block=spec.first_block,
        n_blocks=spec.n_blocks,
        seconds=0.0,
        skipped=True,
    )


# ------------------------------------------------------------------------ pipeline
class _Stage(threading.Thread):
    """A daemon thread whose exception is re-raised by the main thread."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc


def _put(q: queue.Queue, item: Any, stop: threading.Event, consumer: threading.Thread) -> bool:
    """Put unless the pipeline stopped or the consumer died (then nobody would ever take it)."""
    while not stop.is_set() and consumer.is_alive():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event, producer: threading.Thread) -> Any:
    """Next item, or the sentinel once the pipeline stopped or the producer is gone."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set() or not producer.is_alive():
                # the producer may have put its last item just before exiting
                try:
                    return q.get_nowait()
                except queue.Empty:
                    return _SENTINEL


def _write_shard_file(
    synth: Any,
    plan: BatchPlan,
    spec: ShardSpec,
    tmp_path: Path | Any,
    progress: Callable[[int], None] | None,
) -> int:
    """Run the forward -> decode -> write pipeline for one shard into ``tmp_path`` (a local
    path, or a writable binary file object)."""
    schema = output_schema(synth, plan)
    plain_schema = schema.remove_metadata()
    condition = plan_condition(synth, plan)
    dict_cols = dictionary_columns(schema, synth.schema)
    stop = threading.Event()
    main = threading.current_thread()
    forward_q: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
    write_q: queue.Queue = queue.Queue(maxsize=1)

    def produce() -> None:
        for block in shard_blocks(plan, spec):
            if stop.is_set():
                return
            x = sampling.forward(synth, block, noise=plan.noise, condition=condition)
            if not _put(forward_q, (block, x), stop, main):
                return
        _put(forward_q, _SENTINEL, stop, main)

    compression = None if plan.compression == "none" else plan.compression
    writer = pq.ParquetWriter(
        tmp_path,
        schema,
        compression=compression,
        compression_level=plan.compression_level,
        use_dictionary=dict_cols if dict_cols else False,
        write_statistics=True,
    )
    written = 0
    # At most one row group is with the writer (queued or being written) while the next one
    # fills: peak memory is two row groups, whatever N is.
    writer_free = threading.Semaphore(1)

    def write() -> None:
        nonlocal written
        while True:
            item = _get(write_q, stop, main)
            if item is _SENTINEL:
                return
            writer.write_table(item, row_group_size=len(item))
            written += item.num_rows
            del item
            writer_free.release()

    def hand_off(table: pa.Table) -> bool:
        while not writer_free.acquire(timeout=0.1):
            if stop.is_set() or not writer_thread.is_alive():
                return False
        return _put(write_q, table, stop, writer_thread)

    producer = _Stage(produce, f"pf-forward-{spec.index}")
    writer_thread = _Stage(write, f"pf-write-{spec.index}")
    producer.start()
    writer_thread.start()
    pending: list[pa.Table] = []
    pending_rows = pending_bytes = 0
    try:
        while True:
            item = _get(forward_q, stop, producer)
            if item is _SENTINEL:
                break
            block, x = item
            table = sampling.decode(synth, block, x, condition=condition)
            del x
            if not table.schema.equals(plain_schema, check_metadata=False):
                raise GenerationError(
                    "decoded block does not match the source schema: "
                    f"got {table.schema.remove_metadata()}, expected {plain_schema}"
                )
            pending.append(table)
            pending_rows += table.num_rows
            pending_bytes += table.nbytes
            if pending_rows >= plan.row_group_rows or pending_bytes >= plan.row_group_bytes:
                if not hand_off(pa.concat_tables(pending)):
                    break
                pending, pending_rows, pending_bytes = [], 0, 0
            if progress is not None:
                progress(block.rows)
            if writer_thread.error is not None:
                break
        if producer.error is None and writer_thread.error is None and pending:
            hand_off(pa.concat_tables(pending))
        pending = []
        _put(write_q, _SENTINEL, stop, writer_thread)
        writer_thread.join()
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        producer.join()
        writer_thread.join()
        writer.close()
    for stage in (producer, writer_thread):
        if stage.error is not None:
            if isinstance(stage.error, PushforwardError):
                raise stage.error
            raise GenerationError(
                f"shard {spec.index}: {stage.name} failed: {stage.error!r}"
            ) from stage.error
    if written != spec.rows:
        raise GenerationError(f"shard {spec.index}: wrote {written} rows, planned {spec.rows}")
    return written


def generate_shard(
    synth: Any,
    plan: BatchPlan | dict[str, Any] | str | os.PathLike[str],
    shard_index: int,
    *,
    progress: Callable[[int], None] | None = None,
    verify_checksum: bool = True,
) -> ShardResult:
    """Write shard ``shard_index`` of ``plan`` into the staging folder; idempotent.

    A shard already staged (sidecar and checksum match) or already published is not redone:
    its result comes back with ``skipped=True``.

    ``synth`` is a loaded synthesizer (any object with ``latent_dim``, ``push(z)``,
    ``transformer.decode(x, seed=, row_offset=)`` and ``schema.arrow_schema()``) or ``None`` /
    a directory, in which case ``plan.synth_dir`` (or that directory) is loaded once per
    process on ``plan.device``. ``progress(rows)`` is called after each decoded block.
    """
    plan = BatchPlan.coerce(plan)
    if not 0 <= shard_index < len(plan.shards):
        raise GenerationError(f"shard index {shard_index} out of range 0..{len(plan.shards) - 1}")
    spec = plan.shards[shard_index]
    done = _from_published(plan, spec)
    if done is not None:
        return done
    if plan.remote:
        # No locks on object storage: two runs writing the same shard put the same bytes
        # (content depends only on model, seed and rows), and each PUT replaces the object
        # whole; the manifest's conditional create decides which run commits.
        done = _valid_staged_remote(plan, spec)
        if done is not None:
            return done
        return _stage_shard_remote(synth, plan, spec, progress)
    # Another run of the same batch may be writing this shard or publishing the batch: wait
    # for it, then reuse what it wrote (see pfcore.generate.lock).
    with batch_lock(plan, shared=True), shard_lock(plan, spec.index):
        done = _from_published(plan, spec) or _valid_staged(
            plan, spec, verify_checksum=verify_checksum
        )
        if done is not None:
            return done
        return _stage_shard(synth, plan, spec, progress)


def _written(spec: ShardSpec, size: int, sha: str, t0: float) -> ShardResult:
    """The result of a shard just written (locally or to the store) since ``t0``."""
    return ShardResult(
        index=spec.index,
        file_name=spec.file_name,
        rows=spec.rows,
        bytes=size,
        sha256=sha,
        first_block=spec.first_block,
        n_blocks=spec.n_blocks,
        seconds=round(time.perf_counter() - t0, 3),
        skipped=False,
    )


def _stage_shard_remote(
    synth: Any, plan: BatchPlan, spec: ShardSpec, progress: Callable[[int], None] | None
) -> ShardResult:
    """Stream the shard straight into the staging prefix, hashing it on the way; then its
    sidecar. Nothing touches local disk, so a worker needs no folder shared with others."""
    if synth is None or isinstance(synth, (str, os.PathLike)):
        synth = load_synthesizer(synth or plan.synth_dir, plan.device)
    t0 = time.perf_counter()
    with storage.hashing_writer(storage.resolve(plan.staged_uri(spec.index))) as fh:
        _write_shard_file(synth, plan, spec, fh, progress)
    size, sha = fh.bytes, fh.sha256
    result = _written(spec, size, sha, t0)
    sidecar = {**_shard_identity(plan, spec), "bytes": size, "sha256": sha}
    storage.resolve(plan.sidecar_uri(spec.index)).write_bytes(
        json.dumps(sidecar, indent=2).encode()
    )
    return result


def _stage_shard(
    synth: Any, plan: BatchPlan, spec: ShardSpec, progress: Callable[[int], None] | None
) -> ShardResult:
    """Write the shard to a private temp name, rename it into staging, then its sidecar."""
    if synth is None or isinstance(synth, (str, os.PathLike)):
        synth = load_synthesizer(synth or plan.synth_dir, plan.device)

    t0 = time.perf_counter()
    plan.shards_dir.mkdir(parents=True, exist_ok=True)
    final = plan.staged_path(spec.index)
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp")
    try:
        _write_shard_file(synth, plan, spec, tmp, progress)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        sha = file_sha256(tmp)
        size = tmp.stat().st_size
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    result = _written(spec, size, sha, t0)
    # The sidecar is written after the file: a shard counts as done only when both exist.
    atomic_write(
        plan.sidecar_path(spec.index),
        json.dumps({**_shard_identity(plan, spec), "bytes": size, "sha256": sha}, indent=2),
    )
    return result

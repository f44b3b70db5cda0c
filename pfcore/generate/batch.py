"""Plan a batch and run it end to end on one machine (local thread or process pool).

Orchestrators that spread shards over many machines (Prefect mapped tasks, a Dask cluster) call
the three steps themselves: :func:`plan_batch` once, :func:`generate_shard` per shard anywhere
that sees ``out_root`` and the synthesizer directory, then :func:`publish_batch` once.
:func:`generate_batch` is the same three steps with a local pool.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pfcore import sampling, storage
from pfcore.atomic import atomic_write
from pfcore.errors import InputError
from pfcore.generate.plan import (
    BatchLayout,
    BatchPlan,
    BatchTarget,
    fingerprint_directory,
    make_plan,
)
from pfcore.generate.progress import GenerationProgress, ProgressTracker
from pfcore.generate.publish import (
    BatchManifest,
    publish_batch,
    published_manifest,
    recover_interrupted_publish,
)
from pfcore.generate.shard import ShardResult, generate_shard, load_synthesizer

__all__ = ["plan_batch", "generate_batch"]

SynthLike = Any  # a pfcore.synthesizer.Synthesizer, or a directory where one is saved


def _synth_info(synth_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((synth_dir / "synthesizer.json").read_text())
    except (OSError, ValueError):
        return {}


def _materialise(synth: SynthLike, out_root: Path) -> tuple[Path, bool]:
    """A directory holding the synthesizer: its own, or a fresh save under ``_staging``.

    Workers in other processes or on other machines load the model from a directory, and the
    directory's fingerprint identifies the model, so an in-memory synthesizer is saved first.
    Returns (directory, whether it is a temporary copy).
    """
    if isinstance(synth, (str, os.PathLike)):
        path = Path(synth)
        if not (path / "synthesizer.json").exists():
            raise InputError("not a saved synthesizer (no synthesizer.json)", path=path)
        return path.resolve(), False
    if not hasattr(synth, "save"):
        raise InputError(f"cannot generate from {type(synth).__name__}: it has no save()")
    incoming = out_root / "_staging" / "_incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="synth-", dir=incoming))
    synth.save(tmp / "synthesizer")
    return tmp / "synthesizer", True


def plan_batch(
    synth: SynthLike,
    n_rows: int | None,
    seed: int,
    target: BatchTarget,
    *,
    layout: BatchLayout = BatchLayout(),
    device: str = "cpu",
    conditions: Any = None,
) -> BatchPlan:
    """Fix the shards of a batch and prepare its staging folder.

    ``synth`` is a saved synthesizer directory (preferred: nothing is copied) or an in-memory
    ``Synthesizer``, which is saved into the batch's staging folder so workers can load it.
    ``target.model_name``/``model_version`` (e.g. the registry's) go into the metadata; by
    default the family and the directory fingerprint are used. The default batch id is derived
    from (model, seed, N), so rerunning the same request resumes its staging instead of
    starting over.
    Writes ``plan.json`` into staging; a publish interrupted by a crash is rolled back into
    staging so its shards are not generated again.

    ``conditions`` (``pfcore.conditions.Conditions``) are checked against the model here,
    before anything is staged (``InputError`` names the column); seed rows fix ``n_rows``
    (pass None) and are copied into staging, so workers read exactly the rows requested.
    """
    if storage.is_remote(target.out_root):
        return _plan_remote(synth, n_rows, seed, target, layout, device, conditions)
    out_root = Path(target.out_root).resolve()
    compiled = _check_conditions(synth, conditions, device)
    if compiled is not None:
        n_rows = sampling.condition_rows(n_rows, compiled)
    synth_dir, temporary = _materialise(synth, out_root)
    try:
        fingerprint = fingerprint_directory(synth_dir)
        plan = _make_named_plan(
            synth_dir, fingerprint, n_rows, seed, replace(target, out_root=out_root), layout,
            device, compiled,
        )  # fmt: skip
        plan.staging_dir.mkdir(parents=True, exist_ok=True)
        if compiled is not None and compiled.conditions.seed_rows is not None:
            copy = compiled.conditions.seed_rows.write_copy(plan.staging_dir / "seed_rows.arrow")
            plan = replace(plan, conditions=replace(compiled.conditions, seed_rows=copy).to_dict())
        if temporary:
            staged = plan.staging_dir / "synthesizer"

            def same() -> bool:
                return staged.exists() and fingerprint_directory(staged) == fingerprint

            if not same():
                if staged.exists():  # another synthesizer staged under this batch id
                    shutil.rmtree(staged, ignore_errors=True)
                try:
                    os.replace(synth_dir, staged)
                except OSError:
                    # A concurrent run of the same batch staged it between the check and the
                    # rename (measured under load: ENOTEMPTY); its copy is this one.
                    if not same():
                        raise
            shutil.rmtree(synth_dir.parent, ignore_errors=True)
            plan = plan.with_synth_dir(staged)
            temporary = False
    finally:
        if temporary:
            shutil.rmtree(synth_dir.parent, ignore_errors=True)
    recover_interrupted_publish(plan)
    atomic_write(plan.staging_dir / "plan.json", json.dumps(plan.to_dict(), indent=2))
    return plan


def _make_named_plan(
    synth_dir: Path,
    fingerprint: str,
    n_rows: int | None,
    seed: int,
    target: BatchTarget,
    layout: BatchLayout,
    device: str,
    compiled: Any,
) -> BatchPlan:
    """The plan for a saved synthesizer, named in the metadata by ``target``'s model name and
    version, else by the model's family and directory fingerprint (local and object store)."""
    info = _synth_info(synth_dir)
    named = replace(
        target,
        model_name=target.model_name or str(info.get("family") or "synthesizer"),
        model_version=target.model_version or f"sha256:{fingerprint[:16]}",
    )
    return make_plan(
        synth_dir=synth_dir,
        n_rows=n_rows,
        seed=seed,
        target=named,
        model_fingerprint=fingerprint,
        layout=layout,
        device=device,
        conditions=None if compiled is None else compiled.conditions.to_dict(),
    )


def _plan_remote(
    synth: SynthLike,
    n_rows: int | None,
    seed: int,
    target: BatchTarget,
    layout: BatchLayout,
    device: str,
    conditions: Any,
) -> BatchPlan:
    """:func:`plan_batch` for an object-store ``out_root``.

    The synthesizer is copied into the batch's staging prefix and the plan points there, so a
    worker on any machine (a Dask worker, a Prefect worker) loads the model from the bucket
    and needs no folder shared with the planner. The copy is removed with the staging prefix
    when the batch commits.
    """
    compiled = _check_conditions(synth, conditions, device)
    if compiled is not None:
        if compiled.conditions.seed_rows is not None:
            raise InputError(
                "seed rows need a local output folder; on object storage use where/rebalance",
                path=str(target.out_root),
            )
        n_rows = sampling.condition_rows(n_rows, compiled)
    scratch = Path(tempfile.mkdtemp(prefix="pf-plan-"))
    try:
        synth_dir, _ = _materialise(synth, scratch)
        fingerprint = fingerprint_directory(synth_dir)
        remote = replace(target, out_root=storage.normalise(target.out_root))
        plan = _make_named_plan(
            synth_dir, fingerprint, n_rows, seed, remote, layout, device, compiled
        )
        copy = storage.resolve(plan.staging_uri).child("synthesizer")
        marker = copy.child(".fingerprint")
        if not (marker.exists() and marker.read_text() == fingerprint):
            copy.upload(synth_dir)
            marker.write_bytes(fingerprint.encode())  # last: the copy is complete
        plan = plan.with_synth_dir(copy.uri)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    body = json.dumps(plan.to_dict(), indent=2).encode()
    storage.resolve(plan.staging_uri).child("plan.json").write_bytes(body)
    return plan


def _check_conditions(synth: SynthLike, conditions: Any, device: str) -> Any:
    """Compile ``conditions`` against the model (None when there are none)."""
    from pfcore.conditions import Conditions

    if conditions is None or (isinstance(conditions, Conditions) and conditions.empty):
        return None
    if not isinstance(conditions, Conditions):
        raise InputError(f"conditions must be a Conditions, got {type(conditions).__name__}")
    loaded = load_synthesizer(synth, device) if isinstance(synth, (str, os.PathLike)) else synth
    return loaded.compile_conditions(conditions)


# ------------------------------------------------------------------------ process workers
_WORKER_PROGRESS: Any = None


def _init_worker(torch_threads: int | None, progress_q: Any) -> None:
    global _WORKER_PROGRESS
    _WORKER_PROGRESS = progress_q
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)


def _worker_shard(plan_dict: dict[str, Any], index: int) -> dict[str, Any]:
    """Process-pool entry point: plain dict in, plain dict out (nothing big is pickled)."""
    q = _WORKER_PROGRESS
    cb = (lambda rows: q.put(rows)) if q is not None else None
    return generate_shard(None, plan_dict, index, progress=cb).to_dict()


def _drain(q: Any, tracker: ProgressTracker, stop: threading.Event) -> None:
    """Feed worker progress reports to the tracker until ``stop`` is set and the queue is dry."""
    while True:
        try:
            rows = q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return
            continue
        except (OSError, ValueError, EOFError):
            return
        tracker.add_rows(int(rows))


@dataclass(frozen=True)
class RunOptions:
    """How the shards of a batch run: speed and placement, never which rows they hold.

    ``workers > 1`` runs shards in a pool: ``"process"`` (each worker loads the saved
    synthesizer once, with ``torch_threads`` threads, default cpu_count // workers) or
    ``"thread"`` (shares an in-memory synthesizer; cheap to start). ``device`` is where the
    model runs. ``progress_interval_s`` throttles progress reports.
    """

    workers: int = 1
    executor: Literal["process", "thread"] = "process"
    device: str = "cpu"
    torch_threads: int | None = None
    progress_interval_s: float = 1.0


def generate_batch(
    synth: SynthLike,
    n_rows: int | None,
    seed: int,
    target: BatchTarget,
    *,
    layout: BatchLayout = BatchLayout(),
    run: RunOptions = RunOptions(),
    progress: Callable[[GenerationProgress], None] | None = None,
    conditions: Any = None,
) -> BatchManifest:
    """Generate ``n_rows`` rows into a published Parquet batch; returns its manifest.

    The rows depend only on (model, ``seed``, ``n_rows``) and ``layout.block_rows``: ``run``
    (workers, executor) and the rest of ``layout`` change speed and file layout, not content.
    ``layout.noise="device"`` draws the latent noise on the model's device (a large saving on a
    GPU, where CPU noise costs more than the forward; the rows then also depend on the device
    kind, and the batch id says so). Restartable: shards
    already staged by an earlier, interrupted run of the same batch id are verified and kept;
    an already published batch is returned as is. ``progress`` may be called from worker or
    helper threads. ``conditions``: see :func:`plan_batch`.
    """
    workers, executor, torch_threads = run.workers, run.executor, run.torch_threads
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be an integer >= 1, got {workers!r}")
    if executor not in ("process", "thread"):
        raise InputError(f"executor must be 'process' or 'thread', got {executor!r}")
    t0 = time.perf_counter()
    plan = plan_batch(
        synth, n_rows, seed, target, layout=layout, device=run.device, conditions=conditions
    )
    done = published_manifest(plan)
    if done is not None:
        publish_batch(plan, [])  # removes staging leftovers, returns the existing manifest
        return done

    in_memory = None if isinstance(synth, (str, os.PathLike)) else synth
    tracker = ProgressTracker(
        plan.n_rows, len(plan.shards), progress, interval_s=run.progress_interval_s
    )
    indices = [s.index for s in plan.shards]
    in_process = workers == 1 or len(indices) == 1 or executor == "thread"
    with _torch_threads(torch_threads if in_process else None):
        results = _run_shards(plan, in_memory, indices, workers, executor, torch_threads, tracker)

    generated = sorted(r.index for r in results if not r.skipped)
    elapsed = time.perf_counter() - t0
    manifest = publish_batch(
        plan,
        results,
        extra={
            "shards_generated": generated,
            "shards_skipped": sorted(r.index for r in results if r.skipped),
            "workers": workers,
            "executor": "inline" if workers == 1 or len(indices) == 1 else executor,
            "device": run.device,
            "seconds": round(elapsed, 3),
            "rows_per_second": round(sum(r.rows for r in results if not r.skipped) / elapsed, 1)
            if elapsed > 0
            else None,
        },
    )
    tracker.finish()
    return manifest


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for this run only (it is a process-wide setting)."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_shards(
    plan: BatchPlan,
    in_memory: Any,
    indices: list[int],
    workers: int,
    executor: str,
    torch_threads: int | None,
    tracker: ProgressTracker,
) -> list[ShardResult]:
    """Run every shard inline, in a thread pool or in a process pool; results in any order."""
    results: list[ShardResult] = []

    def record(r: ShardResult) -> None:
        results.append(r)
        tracker.shard_done(skipped_rows=r.rows if r.skipped else 0)

    if workers == 1 or len(indices) == 1:
        for i in indices:
            record(generate_shard(in_memory, plan, i, progress=tracker.add_rows))
    elif executor == "thread":
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pf-shard") as pool:
            futures = [
                pool.submit(generate_shard, in_memory, plan, i, progress=tracker.add_rows)
                for i in indices
            ]
            _collect(futures, record, pool)
    else:
        threads = torch_threads or max(1, (os.cpu_count() or 1) // workers)
        ctx = mp.get_context("spawn")  # fork after torch initialised its thread pools hangs
        progress_q = ctx.Queue()
        # A thread drains worker progress until every worker has exited: a worker flushes its
        # queued reports on exit, and would hang if nobody read them.
        stop_drain = threading.Event()
        drainer = threading.Thread(
            target=_drain, args=(progress_q, tracker, stop_drain), name="pf-progress", daemon=True
        )
        drainer.start()
        try:
            with ProcessPoolExecutor(
                max_workers=min(workers, len(indices)),
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(threads, progress_q),
            ) as pool:
                futures = [pool.submit(_worker_shard, plan.to_dict(), i) for i in indices]
                _collect(futures, lambda d: record(ShardResult.from_dict(d)), pool)
        finally:
            stop_drain.set()
            drainer.join()
            progress_q.close()
            progress_q.join_thread()

    return results


def _collect(futures: list[Future], record: Callable[[Any], None], pool: Executor) -> None:
    """Wait for all shards; on the first failure cancel the rest and raise it."""
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                record(f.result())
    except BaseException:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        raise

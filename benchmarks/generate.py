"""Benchmark: end-to-end synthetic rows/s into Parquet, beside the two limits that bound it.

For each row count N it records (in ``benchmarks/results/generate.json``, one record per
(dataset, rows, device, workers, noise, decode)):

- ``rows_per_second``: ``pfcore.generate.generate_batch`` end to end (noise, model forward,
  decode, Parquet write, checksums, publish), measured in a fresh child process whose peak RSS
  (``resource.getrusage``) is ``peak_rss_mb``;
- ``model_only_rows_per_second``: the model's forward pass alone on the same device, whole
  canonical blocks, no decoding or I/O;
- ``raw_write_rows_per_second``: pyarrow writing an already-built table (decoded synthetic rows)
  with the same schema, compression, dictionary columns and row groups;
- ``ratio_to_limit``: rows_per_second / min(model_only, raw_write). 1.0 means decode and write
  hide completely behind the slower limit;
- ``decode``: which decode ran (``numpy`` on the host, ``torch`` on the model's device; default
  the device's own, ``pfcore.sampling.decode_backend``). ``--decode numpy torch --repeats 3``
  runs each three times, interleaved, keeps the best run (``runs_rows_per_second`` holds all)
  and gives torch records ``ratio_to_numpy`` from the same run.

The two limits are measured in the same run, in their own child process, so a busy machine
slows all three numbers alike. Usage::

    .venv/bin/python benchmarks/generate.py                        # 1M and 50M rows, CPU
    .venv/bin/python benchmarks/generate.py --rows 1000000 10000000
    .venv/bin/python benchmarks/generate.py --device cuda --workers 8
    .venv/bin/python benchmarks/generate.py --rows 1048576 --decode numpy torch --repeats 3
    .venv/bin/python benchmarks/generate.py --rows 1000000 --output s3://bench/gen --moto
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generate.py --rows 2000000 \
        --dask-workers 1 2 --repeats 3          # a Dask scheduler + N worker processes

``--dask-workers N ...`` runs the shards on a real Dask cluster, as ``--runner dask
--dask-address`` does in production: a ``dask scheduler`` and N ``dask worker`` processes (one
thread each, ``OMP_NUM_THREADS=1``, each in its own folder), started fresh for every run and
not timed (nor the workers' imports of torch and pfcore); the timed part is plan, shards on the
workers (each loads the model once), publish. Counts are interleaved run
by run, so a change of load hits each alike. Records get ``runner: "dask"``, the workers' CPU
seconds during the run (``worker_cpu_seconds``, ``worker_cpu_per_wall_second``) and, beside the
one-worker record of the same run, ``ratio_to_one_worker``.

The synthesizer is trained briefly (``--preset fast``) on the shared dataset the first time and
cached under ``benchmarks/work/``; ``--synth DIR`` uses a saved one instead.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_RESULTS = ROOT / "benchmarks" / "results" / "generate.json"
DEFAULT_WORK = ROOT / "benchmarks" / "work" / "generate"
SHARED = Path(os.environ.get("PUSHFORWARD_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ synthesizer
def ensure_synthesizer(args: argparse.Namespace) -> Path:
    """A saved synthesizer: ``--synth``, or trained once on the dataset and cached."""
    if args.synth:
        return Path(args.synth)
    target = Path(args.work) / f"synth-{args.dataset}-{args.family}-{args.preset}-s{args.seed}"
    if (target / "synthesizer.json").exists():
        _log(f"using cached synthesizer {target}")
        return target
    import pyarrow.parquet as pq

    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer, split_train_holdout

    path = SHARED / f"{args.dataset}.parquet"
    if not path.exists():
        sys.exit(f"{path} not found: the shared datasets live in ../shared/datasets")
    table = pq.read_table(path)
    schema = infer_schema(table)
    train, _ = split_train_holdout(table, 0.2, args.seed, max_train_rows=args.train_rows)
    _log(f"training {args.family}/{args.preset} on {train.num_rows} rows of {args.dataset}")
    t0 = time.perf_counter()
    synth = Synthesizer.fit(
        train, schema, family=args.family, preset=args.preset, seed=args.seed, device=args.device
    )
    _log(f"trained in {time.perf_counter() - t0:.1f}s")
    synth.save(target)
    return target


# ------------------------------------------------------------------------ child: limits
def _set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def child_limits(args: argparse.Namespace) -> dict[str, Any]:
    """Model-only forward rate and raw Parquet write rate, same device/settings as generation."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from pfcore.generate import BLOCK_ROWS, DEFAULT_ROW_GROUP_ROWS, block_seeds
    from pfcore.generate.plan import DEFAULT_ROW_GROUP_BYTES
    from pfcore.generate.shard import dictionary_columns, load_synthesizer

    _set_threads(args.torch_threads)
    synth = load_synthesizer(args.synth_dir, args.device)
    model = synth.model
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    # --- model only: whole canonical blocks, noise already on the device, outputs stay there
    gen = torch.Generator(device=dev).manual_seed(0)
    z = torch.randn(BLOCK_ROWS, synth.latent_dim, generator=gen, device=dev)
    with torch.inference_mode():
        for _ in range(3):
            model.push(z)
        sync()
        rows, t0 = 0, time.perf_counter()
        while rows < args.limit_rows or time.perf_counter() - t0 < args.min_seconds:
            model.push(z)
            rows += BLOCK_ROWS
        sync()
        model_rate = rows / (time.perf_counter() - t0)

    # --- raw write: decoded synthetic rows, same schema/compression/dictionary/row groups
    parts = []
    for b in range(DEFAULT_ROW_GROUP_ROWS // BLOCK_ROWS):
        noise_seed, decode_seed = block_seeds(0, b)
        zb = torch.randn(
            BLOCK_ROWS, synth.latent_dim, generator=torch.Generator().manual_seed(noise_seed)
        )
        with torch.inference_mode():
            x = synth.push(zb)
        parts.append(synth.transformer.decode(x, seed=decode_seed, row_offset=b * BLOCK_ROWS))
    table = pa.concat_tables(parts).combine_chunks()
    schema = synth.schema.arrow_schema()
    dict_cols = dictionary_columns(schema, synth.schema)
    # the generator's row groups: 16 blocks, or fewer once they hold 128 MiB of Arrow data
    block_bytes = table.nbytes / len(parts)
    rg_rows = BLOCK_ROWS * min(len(parts), max(1, -(-DEFAULT_ROW_GROUP_BYTES // int(block_bytes))))
    # as many writers as generation workers, each writing whole files (pyarrow releases the GIL)
    writers = max(1, args.workers)
    tmp = Path(tempfile.mkdtemp(dir=args.work, prefix="rawwrite-"))

    def write_one(i: int) -> int:
        path = tmp / f"t{i}.parquet"
        with pq.ParquetWriter(
            path, schema, compression="zstd", use_dictionary=dict_cols or False
        ) as w:
            w.write_table(table, row_group_size=rg_rows)
        path.unlink()
        return table.num_rows

    try:
        rows, t0, i = 0, time.perf_counter(), 0
        with ThreadPoolExecutor(writers) as pool:
            while rows < args.limit_rows or time.perf_counter() - t0 < args.min_seconds:
                rows += sum(pool.map(write_one, range(i, i + writers)))
                i += writers
        write_rate = rows / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n_params = sum(p.numel() for p in _networks(model))
    return {
        "model_only_rows_per_second": round(model_rate, 1),
        "raw_write_rows_per_second": round(write_rate, 1),
        "columns": len(schema),
        "latent_dim": int(synth.latent_dim),
        "n_features": int(synth.transformer.n_features),
        "model_parameters": n_params,
        "torch_threads": torch.get_num_threads(),
        "raw_write_threads": writers,
        "row_group_rows": rg_rows,
    }


def _networks(model: Any) -> list[Any]:
    """Parameters of the model's networks, whatever the family calls them."""
    import torch

    params: list[Any] = []
    for v in vars(model).values():
        if isinstance(v, torch.nn.Module):
            params.extend(v.parameters())
    return params


# ------------------------------------------------------------------------ child: end to end
def _rows_per_shard(args: argparse.Namespace) -> int:
    from pfcore.generate import BLOCK_ROWS, DEFAULT_ROWS_PER_SHARD

    if args.rows_per_shard:
        return args.rows_per_shard
    if args.workers <= 1:
        return DEFAULT_ROWS_PER_SHARD
    # enough shards to keep every worker busy, at least 4 blocks each
    return min(DEFAULT_ROWS_PER_SHARD, max(4 * BLOCK_ROWS, -(-args.rows // (2 * args.workers))))


def child_e2e(args: argparse.Namespace) -> dict[str, Any]:
    from pfcore import sampling, storage
    from pfcore.generate import BatchLayout, BatchTarget, RunOptions, generate_batch

    _set_threads(args.torch_threads)
    sampling.DECODE = args.decode  # this process only (inline or thread workers)
    if args.output:
        out_root = storage.join(storage.normalise(args.output), f"e2e-{os.getpid()}")
    else:
        out_root = Path(tempfile.mkdtemp(dir=args.work, prefix="e2e-"))
    last = [0.0]
    first: list[tuple[float, int]] = []

    def progress(p: Any) -> None:
        if not first and p.rows_written > 0:
            first.append((time.perf_counter(), p.rows_written))
        if time.perf_counter() - last[0] >= 15 or p.finished:
            last[0] = time.perf_counter()
            eta = "?" if p.eta_s is None else f"{p.eta_s:.0f}s"
            _log(
                f"  {p.rows_written:,}/{p.rows_total:,} rows, {p.rows_per_second:,.0f} rows/s, "
                f"eta {eta}"
            )

    if args.dask_address:
        return _child_e2e_dask(args, out_root)
    try:
        t0 = time.perf_counter()
        manifest = generate_batch(
            args.synth_dir,
            args.rows,
            0,
            BatchTarget(out_root, args.dataset),
            layout=BatchLayout(noise=args.noise, rows_per_shard=_rows_per_shard(args)),
            run=RunOptions(
                workers=args.workers,
                torch_threads=args.torch_threads,
                progress_interval_s=1.0,
                device=args.device,
            ),
            progress=progress,
        )
        t_end = time.perf_counter()
        seconds = t_end - t0
        steady = None
        if first and t_end > first[0][0] and args.rows > first[0][1]:
            steady = round((args.rows - first[0][1]) / (t_end - first[0][0]), 1)
        size = sum(f["bytes"] for f in manifest.files)
        self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        return {
            "rows_per_second": round(args.rows / seconds, 1),
            "seconds": round(seconds, 2),
            "startup_seconds": round(first[0][0] - t0, 2) if first else None,
            "steady_rows_per_second": steady,
            "parquet_bytes": size,
            "files": len(manifest.files),
            "peak_rss_mb": round(max(self_kb, kids_kb) / 1024, 1),
            "peak_rss_parent_mb": round(self_kb / 1024, 1),
            "peak_rss_worker_mb": round(kids_kb / 1024, 1) if args.workers > 1 else None,
        }
    finally:
        if not args.keep_output:
            storage.resolve(out_root).remove()


def _warm_worker() -> None:
    """Imports on a fresh worker, before timing: a long-lived worker has paid them already."""
    import torch

    import pfcore.generate.shard  # noqa: F401

    torch.set_num_threads(1)


def _dask_shard(plan: dict, index: int) -> dict:
    """One shard on a Dask worker (one thread: the workers are the parallelism)."""
    import torch

    from pfcore.generate import generate_shard

    torch.set_num_threads(1)
    return generate_shard(None, plan, index).to_dict()


def _child_e2e_dask(args: argparse.Namespace, out_root: Any) -> dict[str, Any]:
    """Plan, shards on the Dask cluster at ``args.dask_address``, publish: what the flow's
    DaskTaskRunner does, without Prefect's per-task overhead."""
    from distributed import Client

    from pfcore import storage
    from pfcore.generate import (
        BatchLayout,
        BatchTarget,
        ShardResult,
        plan_batch,
        publish_batch,
    )

    try:
        with Client(args.dask_address, timeout=60) as client:
            client.wait_for_workers(args.workers, timeout=120)
            client.run(_warm_worker)
            t0 = time.perf_counter()
            plan = plan_batch(
                args.synth_dir,
                args.rows,
                0,
                BatchTarget(out_root, args.dataset),
                layout=BatchLayout(noise=args.noise, rows_per_shard=_rows_per_shard(args)),
            )
            n = len(plan.shards)
            futures = client.map(_dask_shard, [plan.to_dict()] * n, range(n), pure=False)
            results = [ShardResult.from_dict(d) for d in client.gather(futures)]
            manifest = publish_batch(plan, results)
            seconds = time.perf_counter() - t0
        return {
            "rows_per_second": round(args.rows / seconds, 1),
            "seconds": round(seconds, 2),
            "startup_seconds": None,
            "steady_rows_per_second": None,
            "parquet_bytes": sum(f["bytes"] for f in manifest.files),
            "files": len(manifest.files),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_rss_parent_mb": None,
            "peak_rss_worker_mb": None,
        }
    finally:
        if not args.keep_output:
            storage.resolve(out_root).remove()


# ------------------------------------------------------------------------ Dask cluster
def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _dask_cluster(n_workers: int, work: Path) -> Iterator[tuple[str, list[int]]]:
    """A ``dask scheduler`` and ``n_workers`` ``dask worker`` processes on 127.0.0.1, each in
    its own folder with one thread and OMP_NUM_THREADS=1; yields (address, worker pids)."""
    import signal
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = Path(tempfile.mkdtemp(dir=work, prefix="dask-"))
    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], folder: Path, extra: dict[str, str]) -> subprocess.Popen:
        folder.mkdir(parents=True)
        with open(folder / "log", "wb") as log:
            proc = subprocess.Popen(
                cmd, env={**env, **extra}, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        procs.append(proc)
        return proc

    try:
        start(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port)]
            + ["--dashboard-address", ":0"],
            root / "scheduler",
            {},
        )
        workers = []
        for i in range(n_workers):
            folder = root / f"worker{i}"
            cmd = [dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-nanny"]
            cmd += ["--name", f"w{i}", "--dashboard-address", ":0"]
            cmd += ["--local-directory", str(folder / "dask")]
            workers.append(start(cmd, folder, {"PUSHFORWARD_HOME": str(folder / "home")}))
        yield address, [w.pid for w in workers]
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _dask_run(
    args: argparse.Namespace, synth_dir: Path, n: int, n_workers: int, rows_per_shard: int
) -> dict:
    """One timed end-to-end run on a fresh cluster of ``n_workers``; adds the workers' CPU."""
    with _dask_cluster(n_workers, Path(args.work)) as (address, pids):
        before = sum(_cpu_seconds(p) for p in pids)
        sub = argparse.Namespace(**{**vars(args), "workers": n_workers})
        extra = ["--rows", str(n), "--dask-address", address]
        extra += ["--rows-per-shard", str(rows_per_shard)]
        res = _run_child("e2e", sub, synth_dir, extra)
        cpu = sum(_cpu_seconds(p) for p in pids) - before
    # worker CPU includes importing and loading the model (the run's first task on each)
    res["worker_cpu_seconds"] = round(cpu, 2)
    res["worker_cpu_per_wall_second"] = round(cpu / res["seconds"], 2)
    return res


# ------------------------------------------------------------------------ driver
def _run_child(
    mode: str, args: argparse.Namespace, synth_dir: Path, extra: list[str], *, local: bool = False
) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--synth-dir",
        str(synth_dir),
        "--dataset",
        args.dataset,
        "--device",
        args.device,
        "--work",
        str(args.work),
        "--workers",
        str(args.workers),
        "--limit-rows",
        str(args.limit_rows),
        "--min-seconds",
        str(args.min_seconds),
        "--noise",
        args.noise,
        "--decode",
        args.decode[0] if isinstance(args.decode, list) else args.decode,
        *extra,
    ]
    if args.rows_per_shard and "--rows-per-shard" not in extra:
        cmd += ["--rows-per-shard", str(args.rows_per_shard)]
    if args.output and not local:
        cmd += ["--output", args.output]
    if args.torch_threads:
        cmd += ["--torch-threads", str(args.torch_threads)]
    if args.keep_output:
        cmd.append("--keep-output")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"child {mode} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _sdv_reference(dataset: str) -> tuple[str | None, float | None]:
    """SDV's fastest sampler on this table, from the fidelity benchmark's records.

    Same machine and table, separate run (SDV lives in its own venv; see benchmarks/README.md):
    wall-clock rows/s of ``sample(n_holdout)`` with decoding, as our own figure is.
    """
    path = ROOT / "benchmarks" / "results" / "fidelity.json"
    if not path.exists():
        return None, None
    recs = [
        r
        for r in json.loads(path.read_text())
        if r.get("dataset") == dataset
        and str(r.get("method", "")).startswith("sdv-")
        and r.get("sample_rows_per_second")
    ]
    if not recs:
        return None, None
    best = max(recs, key=lambda r: r["sample_rows_per_second"])
    return best["method"], float(best["sample_rows_per_second"])


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def _save_results(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace records with the same (dataset, rows, device kind, workers, noise); keep others."""
    old: list[dict[str, Any]] = []
    if path.exists():
        try:
            old = json.loads(path.read_text()).get("records", [])
        except ValueError:
            old = []

    def key(r: dict[str, Any]) -> tuple:
        return (
            r.get("dataset"),
            r.get("rows"),
            str(r.get("device", "")).split(" ")[0],
            r.get("workers"),
            r.get("noise", "cpu"),
            r.get("decode", "numpy"),
            r.get("storage", "local"),
            r.get("runner", "local"),
        )

    new_keys = {key(r) for r in records}
    merged = [r for r in old if key(r) not in new_keys] + records
    merged.sort(
        key=lambda r: (str(r.get("device")), r.get("dataset"), str(r.get("noise")), r.get("rows"))
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"benchmark": "generate", "records": merged}, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="credit_default")
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 50_000_000])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--synth", help="saved synthesizer directory (skips training)")
    p.add_argument("--family", default="onestep")
    p.add_argument("--preset", default="fast")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-rows", type=int, default=20_000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument(
        "--noise",
        choices=["cpu", "device"],
        default="cpu",
        help="where latent noise is drawn (device: faster on a GPU)",
    )
    p.add_argument(
        "--decode",
        nargs="+",
        choices=["numpy", "torch"],
        default=None,
        help="decode(s) to measure, each --repeats times, interleaved (default: the device's "
        "own, pfcore.sampling.decode_backend); with both, torch records get ratio_to_numpy",
    )
    p.add_argument("--repeats", type=int, default=1, help="end-to-end runs per decode")
    p.add_argument(
        "--rows-per-shard",
        type=int,
        default=None,
        help="default: pfcore's, or about 2 shards per worker when workers > 1",
    )
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument(
        "--limit-rows",
        type=int,
        default=1_048_576,
        help="at least this many rows when measuring each limit",
    )
    p.add_argument("--min-seconds", type=float, default=3.0)
    p.add_argument("--out", default=str(DEFAULT_RESULTS))
    p.add_argument("--work", default=str(DEFAULT_WORK))
    p.add_argument("--keep-output", action="store_true")
    p.add_argument(
        "--output",
        default=None,
        help="output root, a folder or a URI such as s3://bucket/prefix (default: a temp "
        "folder under --work); recorded as the record's 'storage'",
    )
    p.add_argument(
        "--moto",
        action="store_true",
        help="start a local moto S3 server for --output s3://BUCKET/... (creates the bucket)",
    )
    p.add_argument(
        "--dask-workers",
        type=int,
        nargs="+",
        default=None,
        help="run the shards on a local Dask cluster of each of these worker counts (one "
        "thread per worker), interleaved run by run; records get runner 'dask'",
    )
    p.add_argument("--note", default="", help="free text stored with the records")
    p.add_argument("--child", choices=["limits", "e2e"], help=argparse.SUPPRESS)
    p.add_argument("--dask-address", help=argparse.SUPPRESS)
    p.add_argument("--synth-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    Path(args.work).mkdir(parents=True, exist_ok=True)

    if args.child == "limits":
        print(json.dumps(child_limits(args)))
        return 0
    if args.child == "e2e":
        args.rows = args.rows[0]
        args.decode = args.decode[0]
        print(json.dumps(child_e2e(args)))
        return 0

    with _maybe_moto(args):
        return _drive_dask(args) if args.dask_workers else _drive(args)


def _bound_by(workers: int, cpu_per_wall: float) -> str:
    """What limited a Dask run, from what was measured: CPU the workers got against the cores
    they could have used."""
    cores = os.cpu_count() or 1
    usable = min(workers, cores)
    load = os.getloadavg()[0]
    if cpu_per_wall >= 0.9 * usable:
        return (
            f"CPU: the workers used {cpu_per_wall:.2f} of {usable} usable cores (the shard work "
            "is model forward, decode and Parquet encoding, all CPU)"
        )
    return (
        f"CPU share: the workers got {cpu_per_wall:.2f} CPU-seconds per second of {usable} "
        f"usable cores; the machine ({cores} cores) was shared, load average {load:.1f}"
    )


def _drive_dask(args: argparse.Namespace) -> int:
    """Rows/s of the same batches on Dask clusters of each size in ``--dask-workers``."""
    from pfcore.generate import BLOCK_ROWS

    args.decode = (args.decode or ["numpy"])[0]
    args.torch_threads = args.torch_threads or 1
    synth_dir = ensure_synthesizer(args)
    _log("measuring limits (model-only forward, raw Parquet write), 1 thread")
    limits = _run_child("limits", argparse.Namespace(**{**vars(args), "workers": 1}), synth_dir, [])
    _log(f"limits: {limits}")
    records: list[dict[str, Any]] = []
    counts = sorted(set(args.dask_workers))
    for n in args.rows:
        # one layout for every cluster size: at least 4 shards per worker of the largest
        per_shard = args.rows_per_shard or max(BLOCK_ROWS, n // (4 * max(counts)))
        runs: dict[int, list[dict[str, Any]]] = {w: [] for w in counts}
        for rep in range(args.repeats):
            for w in counts:
                _log(f"dask: {n:,} rows on {w} worker(s), run {rep + 1}/{args.repeats}")
                runs[w].append(_dask_run(args, synth_dir, n, w, per_shard))
                _log(f"  {runs[w][-1]}")
        best = {w: max(r["rows_per_second"] for r in rs) for w, rs in runs.items()}
        for w, rs in runs.items():
            sub = argparse.Namespace(**{**vars(args), "workers": w})
            rec = _record(sub, n, args.decode, rs, {"numpy": best[w]}, limits, synth_dir)
            e2e = max(rs, key=lambda r: r["rows_per_second"])
            rec.update(
                runner="dask",
                storage=_storage_kind(args),
                torch_threads=1,
                ratio_to_numpy=None,
                rows_per_shard=per_shard,
                worker_cpu_seconds=e2e["worker_cpu_seconds"],
                worker_cpu_per_wall_second=e2e["worker_cpu_per_wall_second"],
                runs_worker_cpu_per_wall_second=[r["worker_cpu_per_wall_second"] for r in rs],
                worker_cpu_seconds_per_million_rows=round(e2e["worker_cpu_seconds"] / n * 1e6, 2),
                ratio_to_one_worker=round(best[w] / best[1], 3) if 1 in best else None,
                bound_by=_bound_by(w, e2e["worker_cpu_per_wall_second"]),
            )
            records.append(rec)
        _save_results(Path(args.out), records)
    cols = ["rows", "workers", "rows_per_second", "runs_rows_per_second", "ratio_to_one_worker"]
    cols += ["worker_cpu_per_wall_second", "model_only_rows_per_second", "load_average_1m"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in records:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return 0


def _drive(args: argparse.Namespace) -> int:
    from pfcore.sampling import decode_backend

    own = decode_backend(args.device)
    args.decode = args.decode or [own]
    if args.workers > 1 and set(args.decode) != {own}:
        sys.exit(
            f"--decode other than {own!r} on {args.device} is measured with --workers 1: "
            "worker processes decode with their device's default"
        )
    synth_dir = ensure_synthesizer(args)
    _log("measuring limits (model-only forward, raw Parquet write)")
    limits = _run_child("limits", args, synth_dir, [])
    _log(f"limits: {limits}")
    records: list[dict[str, Any]] = []
    for n in args.rows:
        runs: dict[str, list[dict[str, Any]]] = {d: [] for d in args.decode}
        for rep in range(args.repeats):  # decodes interleaved: load changes hit both alike
            for d in args.decode:
                _log(f"end to end: {n:,} rows, {d} decode, run {rep + 1}/{args.repeats}")
                sub = argparse.Namespace(**{**vars(args), "decode": d})
                runs[d].append(_run_child("e2e", sub, synth_dir, ["--rows", str(n)]))
        best_rate = {d: max(r["rows_per_second"] for r in rs) for d, rs in runs.items()}
        local_rate = None
        if _storage_kind(args) != "local":
            # the same run to local disk, right after: the ratio the storage costs
            _log(f"end to end to local disk, for comparison: {n:,} rows")
            sub = argparse.Namespace(**{**vars(args), "decode": args.decode[0]})
            local = _run_child("e2e", sub, synth_dir, ["--rows", str(n)], local=True)
            local_rate = local["rows_per_second"]
        for d, rs in runs.items():
            rec = _record(args, n, d, rs, best_rate, limits, synth_dir)
            rec["storage"] = _storage_kind(args)
            rec["local_disk_rows_per_second"] = local_rate
            rec["ratio_to_local_disk"] = (
                round(rec["rows_per_second"] / local_rate, 3) if local_rate else None
            )
            records.append(rec)
            _log(json.dumps(records[-1]))
            _save_results(Path(args.out), records)
    cols = [
        "rows",
        "decode",
        "rows_per_second",
        "ratio_to_numpy",
        "model_only_rows_per_second",
        "raw_write_rows_per_second",
        "ratio_to_limit",
        "ratio_to_sdv_fastest",
        "peak_rss_mb",
    ]
    print("| " + " | ".join(["device", *cols]) + " |")
    print("|" + "---|" * (len(cols) + 1))
    for r in records:
        print("| " + " | ".join([r["device"], *(str(r[c]) for c in cols)]) + " |")
    return 0


def _storage_kind(args: argparse.Namespace) -> str:
    if not args.output or "://" not in args.output:
        return "local"
    kind = args.output.split("://", 1)[0]
    return f"{kind} (moto server on 127.0.0.1)" if args.moto else kind


@contextlib.contextmanager
def _maybe_moto(args: argparse.Namespace) -> Iterator[None]:
    """With --moto: a moto S3 server in its own process group, its endpoint exported in the
    standard AWS_* variables the children inherit, the output bucket created."""
    if not args.moto:
        yield
        return
    import signal
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = str(Path(sys.executable).parent / "moto_server")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        from pfcore import storage

        bucket = args.output.split("://", 1)[1].split("/", 1)[0]
        deadline = time.monotonic() + 60
        while True:
            try:
                fs = storage.resolve(f"s3://{bucket}").fs
                if not fs.exists(bucket):
                    fs.mkdir(bucket)
                break
            except Exception:  # noqa: BLE001 - server still starting
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _record(
    args: argparse.Namespace,
    n: int,
    decode: str,
    runs: list[dict[str, Any]],
    best_rate: dict[str, float],
    limits: dict[str, Any],
    synth_dir: Path,
) -> dict[str, Any]:
    """One record: the best of ``runs`` (all rates kept), beside the limits of the same run."""
    e2e = max(runs, key=lambda r: r["rows_per_second"])
    sdv_method, sdv_rate = _sdv_reference(args.dataset)
    limit = min(limits["model_only_rows_per_second"], limits["raw_write_rows_per_second"])
    return {
        "dataset": args.dataset,
        "columns": limits["columns"],
        "rows": n,
        "decode": decode,
        "rows_per_second": e2e["rows_per_second"],
        "runs_rows_per_second": [r["rows_per_second"] for r in runs],
        "ratio_to_numpy": round(e2e["rows_per_second"] / best_rate["numpy"], 3)
        if "numpy" in best_rate
        else None,
        "model_only_rows_per_second": limits["model_only_rows_per_second"],
        "raw_write_rows_per_second": limits["raw_write_rows_per_second"],
        "ratio_to_limit": round(e2e["rows_per_second"] / limit, 3),
        "sdv_fastest_method": sdv_method,
        "sdv_fastest_rows_per_second": sdv_rate,
        "ratio_to_sdv_fastest": round(e2e["rows_per_second"] / sdv_rate, 2) if sdv_rate else None,
        "peak_rss_mb": e2e["peak_rss_mb"],
        "cpu_count": os.cpu_count(),
        "device": _device_name(args.device),
        "family": args.family,
        "preset": args.preset if not args.synth else None,
        "synthesizer": str(synth_dir) if args.synth else None,
        "workers": args.workers,
        "noise": args.noise,
        "torch_threads": limits["torch_threads"],
        "latent_dim": limits["latent_dim"],
        "n_features": limits["n_features"],
        "model_parameters": limits["model_parameters"],
        "seconds": e2e["seconds"],
        "startup_seconds": e2e["startup_seconds"],
        "steady_rows_per_second": e2e["steady_rows_per_second"],
        "raw_write_threads": limits["raw_write_threads"],
        "row_group_rows": limits["row_group_rows"],
        "parquet_bytes": e2e["parquet_bytes"],
        "files": e2e["files"],
        "peak_rss_parent_mb": e2e["peak_rss_parent_mb"],
        "peak_rss_worker_mb": e2e["peak_rss_worker_mb"],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "note": args.note,
    }


if __name__ == "__main__":
    raise SystemExit(main())

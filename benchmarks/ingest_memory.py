"""Benchmark: ingest peak memory against the source's size, files and row groups.

Why: ingest streams, so its peak memory must not grow with the source. A 100M-row source of 13
Parquet files once peaked at 2.5 GB (5x a 1M-row one): the reader held every source file open
(an open ``ParquetFile`` keeps what it decoded) and read each file with one ``iter_batches``
(which keeps memory from every row group it has decoded until the file ends). This builds
Parquet sources of growing size with many files and row groups (8 float columns with 2
decimals, a 52-value integer-like float, a 5-value string: the shape of california_housing),
ingests each in a fresh process and reports its peak RSS (``ru_maxrss``) and the peak of
Arrow's memory pool. Target: the largest within 1.2x of the smallest.

Writes ``benchmarks/results/ingest_memory.json``. Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ingest_memory.py --rows 1000000 4000000 16000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "ingest_memory.json"
CATS = ["<1H OCEAN", "INLAND", "NEAR OCEAN", "NEAR BAY", "ISLAND"]


def build_source(out: Path, rows: int, rows_per_file: int, row_group_rows: int) -> int:
    """Write ``rows`` random rows as Parquet files of ``rows_per_file`` rows; returns files."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cats = np.array(CATS)
    done = files = 0
    while done < rows:
        n = min(rows_per_file, rows - done)
        with pq.ParquetWriter(
            out / f"part-{files:05d}.parquet", _schema(), compression="zstd"
        ) as w:
            k = 0
            while k < n:
                m = min(row_group_rows, n - k)
                cols = {f"f{j}": np.round(rng.normal(size=m) * 1000, 2) for j in range(8)}
                cols["age"] = rng.integers(1, 53, m).astype(float)
                cols["cat"] = pa.array(cats[rng.integers(0, len(cats), m)])
                w.write_table(pa.table(cols, schema=_schema()), row_group_size=m)
                k += m
        done += n
        files += 1
    return files


def _schema():  # noqa: ANN202 - pyarrow imported lazily
    import pyarrow as pa

    return pa.schema(
        [(f"f{j}", pa.float64()) for j in range(8)] + [("age", pa.float64()), ("cat", pa.string())]
    )


def _child(source: str, dataset: str) -> dict:
    import resource
    import time

    import pyarrow as pa

    from pfcore.ingest import ingest

    t0 = time.perf_counter()
    ingest(source, dataset)
    return {
        "seconds": round(time.perf_counter() - t0, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "arrow_pool_peak_mb": round(pa.default_memory_pool().max_memory() / 2**20, 1),
        "arrow_pool_backend": pa.default_memory_pool().backend_name,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000, 16_000_000])
    p.add_argument("--rows-per-file", type=int, default=1_000_000)
    p.add_argument("--row-group-rows", type=int, default=131_072)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(*a.child)))
        return 0
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    records = []
    with tempfile.TemporaryDirectory(prefix="ingest-memory-") as tmp:
        for n in a.rows:
            src, ds = Path(tmp) / f"src-{n}", Path(tmp) / f"ds-{n}"
            files = build_source(src, n, a.rows_per_file, a.row_group_rows)
            res = subprocess.run(
                [sys.executable, __file__, "--child", str(src), str(ds)],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
            )
            if res.returncode != 0:
                raise RuntimeError(res.stderr[-4000:])
            rec = {"rows": n, "files": files, "row_groups": -(-n // a.row_group_rows)}
            rec.update(json.loads(res.stdout.strip().splitlines()[-1]))
            records.append(rec)
            print(json.dumps(rec), flush=True)
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(ds, ignore_errors=True)
    base = records[0]
    head = f"{'rows':>12} {'files':>5} {'groups':>6} {'s':>7} {'RSS MB':>7} {'pool MB':>7}"
    print(f"\n{head} {'x RSS':>6}")
    for r in records:
        print(
            f"{r['rows']:>12,} {r['files']:>5} {r['row_groups']:>6} {r['seconds']:>7.1f} "
            f"{r['peak_rss_mb']:>7.0f} {r['arrow_pool_peak_mb']:>7.0f} "
            f"{r['peak_rss_mb'] / base['peak_rss_mb']:>6.2f}"
        )
    doc = {
        "benchmark": "ingest_memory",
        "rows_per_file": a.rows_per_file,
        "row_group_rows": a.row_group_rows,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "records": records,
    }
    a.results.parent.mkdir(parents=True, exist_ok=True)
    a.results.write_text(json.dumps(doc, indent=2))
    print(f"wrote {a.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

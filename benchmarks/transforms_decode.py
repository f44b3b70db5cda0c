"""Decode throughput benchmark: ``python benchmarks/transforms_decode.py [--rows N] [-v]``.

Decode sits in the generation hot path, so its speed is a product requirement (target: more
than 1M rows/s for a 15-column table on one core). This builds a synthetic 15-column table with
every modelled kind (integers, floats with decimals and nulls, zero-inflated amounts, low- and
mid-cardinality categoricals, a boolean, a tz-aware timestamp, an id), fits the transformer, and
times ``decode`` on noisy encoded rows (raw model output, not snapped), best of three.
Run it with ``OMP_NUM_THREADS=1`` on an otherwise idle core; ``-v`` adds a per-column split.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa

from pfcore.schema import infer_schema
from pfcore.transforms.base import rng_for
from pfcore.transforms.table import TableTransformer


def demo_table(n: int = 50_000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts = np.datetime64("2022-01-01", "s") + rng.integers(0, 86400 * 365, n).astype("timedelta64[s]")
    income = rng.lognormal(10, 1, n).round(2)
    return pa.table(
        {
            "id": np.arange(n),
            "age": rng.integers(18, 90, n),
            "income": pa.array(np.where(rng.random(n) < 0.05, np.nan, income), from_pandas=True),
            "score": rng.normal(600, 80, n).round(1),
            "balance": rng.normal(0, 1e4, n).round(2),
            "visits": rng.poisson(3, n) + rng.integers(0, 40, n),
            "ratio": rng.beta(2, 5, n).round(4),
            "amount": np.where(rng.random(n) < 0.3, 0, rng.integers(1, 10**6, n)),
            "lat": rng.uniform(30, 50, n).round(5),
            "state": rng.choice([f"S{i}" for i in range(50)], n),
            "segment": rng.choice(list("ABCDE"), n),
            "channel": pa.array(rng.choice(["web", "app", "store", None], n).tolist()),
            "tier": rng.integers(1, 8, n),
            "active": rng.random(n) < 0.7,
            "when": pa.array(ts, pa.timestamp("s", tz="UTC")),
        }
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("-v", action="store_true", help="per-column timings")
    args = ap.parse_args(argv)
    t = demo_table()
    s = infer_schema(t)
    tr = TableTransformer.fit(t, s)
    x = tr.encode(t)
    reps = -(-args.rows // len(x))
    rng = np.random.default_rng(1)
    X = np.tile(x, (reps, 1))[: args.rows] + rng.normal(0, 0.05, (args.rows, tr.n_features)).astype(
        np.float32
    )
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        tr.decode(X, seed=1)
        best = min(best, time.perf_counter() - t0)
    rate = args.rows / best
    print(
        f"decode: {rate / 1e6:.2f}M rows/s ({args.rows} rows x {len(s.columns)} columns, "
        f"{tr.n_features} features, {best:.3f} s)"
    )
    if args.v:
        for i, (c, (a, b)) in enumerate(zip(tr.transforms, tr._slices, strict=True)):
            t0 = time.perf_counter()
            c.decode(X[:, a:b], args.rows, rng_for(0, 1, 0, i), 0)
            print(
                f"  {c.column.name:10s} {c.column.kind:12s} width {b - a:3d} "
                f"{1e3 * (time.perf_counter() - t0):7.1f} ms"
            )
    t0 = time.perf_counter()
    tr.encode(tr.decode(X[:200_000], seed=1))
    enc = 200_000 / (time.perf_counter() - t0 - 0.0)
    print(f"decode+encode of 200k rows: {enc / 1e6:.2f}M rows/s")
    return {"decode_rows_per_s": rate}


if __name__ == "__main__":
    main()

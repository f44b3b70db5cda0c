"""Decode throughput, NumPy against torch: ``python benchmarks/transforms_decode.py``.

Decode sits in the generation hot path, so its speed is a product requirement (target: more
than 1M rows/s for a 15-column table on one core). This builds a synthetic 15-column table with
every modelled kind (integers, floats with decimals and nulls, zero-inflated amounts, low- and
mid-cardinality categoricals, a boolean, a tz-aware timestamp, an id), fits the transformer, and
times both decodes on the same noisy encoded rows (raw model output, not snapped), as a tensor
on ``--device`` the way the model leaves it: "numpy" copies it to the host and runs
``TableTransformer.decode`` on the array, "torch" runs ``pfcore.transforms.torch_decode`` on the
device. Both end in the same Arrow table (checked before timing). ``--repeats`` rounds (default
3), the two decodes interleaved in each; rows/s from the best round, with every round's seconds
and ``ratio_to_numpy`` (torch rows/s over NumPy rows/s, same run) in the records written to
``benchmarks/results/transforms_decode.json`` (one per device, decode and row count).

    OMP_NUM_THREADS=1 python benchmarks/transforms_decode.py --rows 1000000
    python benchmarks/transforms_decode.py --device cuda --rows 1000000 10000000

``-v`` adds a per-column split of the NumPy decode.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pfcore.schema import infer_schema  # noqa: E402
from pfcore.transforms.base import rng_for  # noqa: E402
from pfcore.transforms.table import TableTransformer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "transforms_decode.json"


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


def _decoders(tr: TableTransformer, device: str) -> dict[str, Callable[[Any], Any]]:
    """decode name -> (model output as it leaves the model -> decoded Arrow table)."""
    import torch

    from pfcore.transforms.torch_decode import decoder_for

    dec = decoder_for(tr, device)

    def numpy_decode(x: Any) -> pa.Table:  # the host path: one copy of the rows, then NumPy
        return tr.decode(x.cpu().numpy(), seed=1)

    def torch_decode(x: Any) -> pa.Table:
        out = dec.decode(x, seed=1)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        return out

    return {"numpy": numpy_decode, "torch": torch_decode}


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Both decodes on the same model output, interleaved repeat by repeat (a busy machine
    slows both alike); records carry device, decode, best and all timings, and the ratio."""
    import torch

    torch.set_num_threads(args.threads)
    t = demo_table()
    s = infer_schema(t)
    tr = TableTransformer.fit(t, s)
    x = tr.encode(t)
    reps = -(-args.rows // len(x))
    rng = np.random.default_rng(1)
    X = np.tile(x, (reps, 1))[: args.rows] + rng.normal(0, 0.05, (args.rows, tr.n_features)).astype(
        np.float32
    )
    xt = torch.from_numpy(np.ascontiguousarray(X)).to(args.device)  # as the model leaves it
    decoders = _decoders(tr, args.device)
    ref = None
    times: dict[str, list[float]] = {d: [] for d in args.decode}
    for d in args.decode:  # warm-up (device tables, CUDA kernels) and the equality check
        out = decoders[d](xt)
        ref = out if ref is None else ref
        if not out.equals(ref):
            raise SystemExit(f"{d} decode differs from {args.decode[0]}: not a valid comparison")
    for _ in range(args.repeats):
        for d in args.decode:
            t0 = time.perf_counter()
            decoders[d](xt)
            times[d].append(time.perf_counter() - t0)
    records = []
    base = min(times["numpy"]) if "numpy" in times else None
    for d in args.decode:
        best = min(times[d])
        records.append(
            {
                "benchmark": "transforms_decode",
                "device": args.device,
                "decode": d,
                "rows": args.rows,
                "columns": len(s.columns),
                "n_features": tr.n_features,
                "rows_per_second": round(args.rows / best, 1),
                "seconds": [round(v, 4) for v in times[d]],
                "repeats": args.repeats,
                "ratio_to_numpy": round(base / best, 3) if base else None,
                "torch_threads": torch.get_num_threads(),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            }
        )
    return records


def save(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace records of the same (device, decode, rows); keep the others."""
    old: list[dict[str, Any]] = []
    if path.exists():
        old = json.loads(path.read_text()).get("records", [])

    def key(r: dict[str, Any]) -> tuple:
        return (r.get("device"), r.get("decode"), r.get("rows"))

    new = {key(r) for r in records}
    merged = sorted([r for r in old if key(r) not in new] + records, key=lambda r: str(key(r)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"benchmark": "transforms_decode", "records": merged}, indent=2))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--device", default="cpu", help="where the model output lives: cpu or cuda")
    ap.add_argument("--decode", nargs="+", choices=["numpy", "torch"], default=["numpy", "torch"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("-v", action="store_true", help="per-column timings (NumPy decode)")
    args = ap.parse_args(argv)
    records = []
    for rows in args.rows:
        records += measure(argparse.Namespace(**{**vars(args), "rows": rows}))
    print("| device | decode | rows | rows/s | ratio to NumPy | seconds |")
    print("|---|---|---|---|---|---|")
    for r in records:
        print(
            f"| {r['device']} | {r['decode']} | {r['rows']:,} | {r['rows_per_second'] / 1e6:.2f}M "
            f"| {r['ratio_to_numpy']} | {r['seconds']} |"
        )
    save(Path(args.out), records)
    if args.v:
        t = demo_table()
        tr = TableTransformer.fit(t, infer_schema(t))
        n = args.rows[-1]
        X = np.tile(tr.encode(t), (-(-n // t.num_rows), 1))[:n]
        for i, (c, (a, b)) in enumerate(zip(tr.transforms, tr._slices, strict=True)):
            if b == a:
                continue
            t0 = time.perf_counter()
            c.decode(X[:, a:b], n, rng_for(0, 1, 0, i), 0)
            print(
                f"  {c.column.name:10s} {c.column.kind:12s} width {b - a:3d} "
                f"{1e3 * (time.perf_counter() - t0):7.1f} ms"
            )
    return records


if __name__ == "__main__":
    main()

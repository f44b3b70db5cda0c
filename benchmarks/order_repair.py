"""Orders no construction builds, kept by moving one end on broken rows, against the same fit
without.

An order ``low <= high`` that cannot be built as a gap (both ends sometimes missing, one end
built by another rule) is kept last in decode: on a row that breaks it, one end is reflected
across the other onto one of its own training values (``pfcore.rules.repair``). For each
table given (CSV or Parquet): ingest, 80/20 split (seed 0, at most ``--train-rows`` training
rows), fit the default family (``--minutes`` per fit, one thread), then sample 100,000 rows
twice from the same fitted model and latent noise:

- ``repaired``: as shipped;
- ``raw``: the transformer's repairs cleared, which is how these orders decoded before
  (training never reads them).

Per table it records each repaired order's hold rate on the held-out rows and on both
samples, the share of rows the repair moved, the detection AUC of both samples
(``benchmarks.scoring.detection_auc``: 5-fold HistGradientBoosting, real holdout vs synthetic,
0.5 = indistinguishable) and both samplers' rows per second on those 100k rows. One process
per core (``OMP_NUM_THREADS=1``):

    OMP_NUM_THREADS=1 python benchmarks/order_repair.py TABLE... [--minutes 2] [--seed 0]
        [--out benchmarks/results/order_repair.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLE_ROWS = 100_000
SCORE_ROWS = 10_000


def run_table(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.same_fit import fit_default, load_split
    from benchmarks.scoring import detection_auc
    from pfcore.rules.model import hold_rate

    table, schema, train, holdout = load_split(path, seed=args.seed, train_rows=args.train_rows)
    synth = fit_default(train, schema, holdout, seed=args.seed, minutes=args.minutes)
    orders = [r for r in synth.rules.rules if r.active and r.enforcement == "repaired"]
    rec: dict[str, Any] = {
        "table": path.stem,
        "rows": table.num_rows,
        "train_rows": train.num_rows,
        "orders": [r.name for r in orders],
        "moved": {
            r.name: rep.moved
            for r in orders
            for rep in synth.transformer.repairs
            if [rep.low, rep.high] == r.columns
        },
    }
    if not orders:
        return rec
    real = holdout.slice(0, SCORE_ROWS).to_pandas()
    repairs = synth.transformer.repairs
    outs = {}
    for variant in ("repaired", "raw"):
        synth.transformer.repairs = repairs if variant == "repaired" else []
        synth.sample(1000, seed=args.seed + 1)  # warm-up
        t0 = time.perf_counter()
        out = synth.sample(SAMPLE_ROWS, seed=args.seed + 1)
        seconds = time.perf_counter() - t0
        outs[variant] = out
        rec[variant] = {
            "synthetic_hold_rate": {r.name: round(hold_rate(r, out), 5) for r in orders},
            "detection_auc": round(detection_auc(real, out.slice(0, len(real)).to_pandas()), 4),
            "rows_per_second": round(SAMPLE_ROWS / seconds),
        }
    synth.transformer.repairs = repairs
    changed = np.zeros(SAMPLE_ROWS, dtype=bool)
    for name in {rep.moved for rep in repairs} | {c for rep in repairs for c in rep.values}:
        a = outs["repaired"].column(name).to_numpy(zero_copy_only=False)
        b = outs["raw"].column(name).to_numpy(zero_copy_only=False)
        changed |= ~((a == b) | (np.isnan(a.astype(float)) & np.isnan(b.astype(float))))
    rec["rows_moved"] = round(float(changed.mean()), 5)
    rec["holdout_hold_rate"] = {r.name: round(hold_rate(r, holdout), 5) for r in orders}
    return rec


def main(argv: list[str] | None = None) -> int:
    from benchmarks.same_fit import save_records

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("tables", nargs="+", type=Path)
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-rows", type=int, default=20_000)
    p.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "order_repair.json"
    )
    args = p.parse_args(argv)
    records = []
    print(f"{'table':28} {'orders':>6} {'held min':>8} {'repaired min':>12} {'raw min':>8} "
          f"{'rows moved':>10} {'AUC repaired':>12} {'AUC raw':>8} "
          f"{'speed ratio':>11}")  # fmt: skip
    for path in args.tables:
        rec = run_table(path, args)
        records.append(rec)
        if "repaired" in rec:
            m, i = rec["repaired"], rec["raw"]
            print(
                f"{rec['table'][:28]:28} {len(rec['orders']):>6} "
                f"{min(rec['holdout_hold_rate'].values()):>8.4f} "
                f"{min(m['synthetic_hold_rate'].values()):>12.4f} "
                f"{min(i['synthetic_hold_rate'].values()):>8.4f} {rec['rows_moved']:>10.5f} "
                f"{m['detection_auc']:>12.4f} {i['detection_auc']:>8.4f} "
                f"{m['rows_per_second'] / i['rows_per_second']:>11.2f}",
                flush=True,
            )
        else:
            print(f"{rec['table'][:28]:28} {0:>6}  (no repaired order)", flush=True)
    save_records(args.out, records, args.seed, args.minutes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

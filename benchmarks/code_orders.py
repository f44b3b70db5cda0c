"""Orders between two numbered codes: kept by masking classes, against the same fit without.

Counts with few values (bedrooms, rooms, garage places, 0/1 flags beside counts) are
categorical columns drawn by the discrete network. An order between two of them is detected
as a rule and kept by masking the classes the other column rules out (``pfcore.rules.masks``).
For each table given (CSV or Parquet): ingest, 80/20 split (seed 0, at most ``--train-rows``
training rows), fit the default family (``--minutes`` per fit, one thread), then sample
100,000 rows twice from the same fitted networks and latent noise:

- ``masked``: as shipped;
- ``unmasked``: the discrete network's banned pairs cleared, which is how it drew these
  columns before masking existed (training never reads the bans: the discrete network learns
  by teacher forcing on real rows, and the numeric parts see real rows' classes).

Per table it records each such order's hold rate on the held-out rows and on both samples, the
detection AUC of both (``benchmarks.scoring.detection_auc``: 5-fold HistGradientBoosting, real
holdout vs synthetic, 0.5 = indistinguishable) and both samplers' rows per second on those
100k rows. One process per core (``OMP_NUM_THREADS=1``):

    OMP_NUM_THREADS=1 python benchmarks/code_orders.py TABLE... [--minutes 2] [--seed 0]
        [--out benchmarks/results/code_orders.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLE_ROWS = 100_000
SCORE_ROWS = 10_000


def run_table(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.same_fit import fit_default, load_split
    from benchmarks.scoring import detection_auc
    from pfcore.rules.collect import collect_rules
    from pfcore.rules.model import hold_rate, numbered_codes

    table, schema, train, holdout = load_split(path, seed=args.seed, train_rows=args.train_rows)
    found = collect_rules(train, holdout, schema, None, seed=args.seed)
    orders = [
        r
        for r in found
        if r.kind == "inequality" and all(numbered_codes(schema[c]) for c in r.columns)
    ]
    rec: dict[str, Any] = {
        "table": path.stem,
        "rows": table.num_rows,
        "train_rows": train.num_rows,
        "orders": [r.name for r in orders],
    }
    if not orders:
        return rec
    real = holdout.slice(0, SCORE_ROWS).to_pandas()
    synth = fit_default(train, schema, holdout, seed=args.seed, minutes=args.minutes)
    active = {r.name: r.enforcement for r in synth.rules.rules if r.active}
    ar = synth.model.ar
    bans = ar.bans.clone()
    for variant in ("masked", "unmasked"):
        ar.set_bans(bans if variant == "masked" else bans[:0])
        synth.sample(1000, seed=args.seed + 1)  # warm-up
        t0 = time.perf_counter()
        out = synth.sample(SAMPLE_ROWS, seed=args.seed + 1)
        seconds = time.perf_counter() - t0
        rec[variant] = {
            "synthetic_hold_rate": {r.name: round(hold_rate(r, out), 5) for r in orders},
            "detection_auc": round(detection_auc(real, out.slice(0, len(real)).to_pandas()), 4),
            "rows_per_second": round(SAMPLE_ROWS / seconds),
        }
    rec["enforcement"] = {r.name: active.get(r.name, "none") for r in orders}
    rec["bans"] = len(bans)
    rec["holdout_hold_rate"] = {r.name: round(hold_rate(r, holdout), 5) for r in orders}
    return rec


def main(argv: list[str] | None = None) -> int:
    from benchmarks.same_fit import save_records

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("tables", nargs="+", type=Path)
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-rows", type=int, default=20_000)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "code_orders.json")
    args = p.parse_args(argv)
    records = []
    print(f"{'table':28} {'orders':>6} {'held min':>8} {'masked min':>10} {'unmasked min':>12} "
          f"{'AUC masked':>10} {'AUC unmasked':>12} {'speed ratio':>11}")  # fmt: skip
    for path in args.tables:
        rec = run_table(path, args)
        records.append(rec)
        if "masked" in rec:
            m, i = rec["masked"], rec["unmasked"]
            print(
                f"{rec['table'][:28]:28} {len(rec['orders']):>6} "
                f"{min(rec['holdout_hold_rate'].values()):>8.4f} "
                f"{min(m['synthetic_hold_rate'].values()):>10.4f} "
                f"{min(i['synthetic_hold_rate'].values()):>12.4f} "
                f"{m['detection_auc']:>10.4f} {i['detection_auc']:>12.4f} "
                f"{m['rows_per_second'] / i['rows_per_second']:>11.2f}",
                flush=True,
            )
        else:
            print(f"{rec['table'][:28]:28} {0:>6}  (no order between two codes)", flush=True)
    save_records(args.out, records, args.seed, args.minutes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Rules benchmark: which rules each shared dataset carries, and what enforcing them buys.

For every dataset in ../shared/datasets: 80/20 split with seed 0 (``split_train_holdout``, at
most ``--train-rows`` training rows); a few rules are declared per dataset (``DECLARED``), the
rest are detected. The same model (family, preset, step budget, seed) is trained twice:

- ``with``: rules enforced by construction in the transform (the default);
- ``without``: ``enforce_rules=False`` -- the transform as it was before rules (fixed
  combinations from ``transforms.derived`` only).

Each rule is recorded with its hold rate on the training rows, the held-out rows and the
synthetic rows of both models, and each dataset with the detection AUC of both models
(``benchmarks.scoring.detection_auc``: 5-fold HistGradientBoosting real holdout vs synthetic,
0.5 = indistinguishable) on all columns, and on the columns the rules build (``rule_columns``:
those of active gap / computed / conditioned / clock / derived rules) -- a model that is still
far from the data is told apart by every column, so the effect of the rules shows most
clearly on theirs. A 100-column table measures detection time against training time.

Budgets are step counts, not minutes (the machine is shared): ``--quick`` trains
``QUICK_STEPS`` flow steps and ``QUICK_DISTILL`` distillation steps on at most 5,000 rows, which
is far below a production fit, so absolute AUCs are high; the comparison between ``with`` and
``without`` at the same budget is the point.

    python benchmarks/rules.py --quick                       # ~10 min on 2 shared cores
    python benchmarks/rules.py --datasets nyc_flights        # default budget
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("PUSHFORWARD_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = Path(os.environ.get("PUSHFORWARD_BENCH_RESULTS", ROOT / "benchmarks" / "results"))
DATASETS = ["california_housing", "credit_default", "diamonds", "nyc_flights", "penguins"]
SEED = 0
SCORE_ROWS = 10_000
QUICK_STEPS, QUICK_DISTILL, QUICK_TRAIN_ROWS = 400, 300, 5_000
STEPS, DISTILL, TRAIN_ROWS = 2_000, 1_500, 20_000
#: Rules a user of each dataset would write in the overrides file (``rules:``).
DECLARED: dict[str, list[dict[str, Any]]] = {
    "california_housing": [
        {"inequality": "total_bedrooms <= total_rooms"},
        {"range": {"column": "housing_median_age", "min": 1, "max": 52}},
    ],
    "credit_default": [
        {"range": {"column": "AGE", "min": 18, "max": 100}},
        {"inequality": "LIMIT_BAL > 0"},
    ],
    "diamonds": [{"inequality": "price > 0"}, {"range": {"column": "carat", "min": 0}}],
    "nyc_flights": [
        {"clock": "arr_time == sched_arr_time + arr_delay"},
        {"range": {"column": "month", "min": 1, "max": 12}},
    ],
    "penguins": [{"range": {"column": "year", "min": 2007, "max": 2009}}],
}


def _config(steps: int, distill: int, threads: int) -> dict[str, Any]:
    return {
        "max_steps": steps,
        "min_steps": steps,
        "distill_max_steps": distill,
        "max_minutes": 60.0,  # the step counts bind, not the clock (shared machine)
        "threads": threads,
        "device": "cpu",
    }


def run_dataset(name: str, args: argparse.Namespace) -> tuple[dict, list[dict]]:
    import pyarrow.parquet as pq

    from benchmarks.scoring import detection_auc
    from pfcore.errors import InputError
    from pfcore.rules import RuleSet, hold_rate, parse_declared
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer, split_train_holdout

    table = pq.read_table(SHARED / f"{name}.parquet").replace_schema_metadata(None)
    train, holdout = split_train_holdout(table, 0.2, SEED, args.train_rows)
    schema = infer_schema(table)
    declared = RuleSet(rules=parse_declared(DECLARED.get(name, [])))
    cfg = _config(args.steps, args.distill, args.threads)
    n = min(holdout.num_rows, SCORE_ROWS)
    score_holdout = holdout.slice(0, n) if holdout.num_rows > n else holdout
    models: dict[str, Any] = {}
    summary: dict[str, Any] = {"dataset": name, "train_rows": train.num_rows, "scored_rows": n}
    for mode, enforce in (("with", True), ("without", False)):
        print(f"[{time.strftime('%H:%M:%S')}] {name}: training {mode} enforcement", flush=True)
        try:
            synth = Synthesizer.fit(
                train,
                schema,
                family=args.family,
                preset=args.preset,
                config=cfg,
                seed=SEED,
                holdout=holdout,
                rules=declared,
                enforce_rules=enforce,
            )
        except InputError as exc:  # a declared rule the data breaks: report it, keep going
            summary["refused"] = str(exc)
            print(f"  refused: {exc}", flush=True)
            return summary, []
        syn = synth.sample(n, seed=SEED + 1)
        auc = detection_auc(score_holdout.to_pandas(), syn.to_pandas(), SEED)
        models[mode] = (synth, syn)
        if mode == "with":  # the columns whose construction the rules change
            built = ("gap", "computed", "conditioned", "clock", "derived")
            rule_cols = sorted(
                {
                    c
                    for r in synth.rules.rules
                    if r.active and r.enforcement in built
                    for c in r.columns
                }  # fmt: skip
            )
            summary["rule_columns"] = rule_cols
        if summary["rule_columns"]:
            cols = summary["rule_columns"]
            sub = detection_auc(
                score_holdout.select(cols).to_pandas(), syn.select(cols).to_pandas(), SEED
            )
            summary[f"rule_columns_detection_auc_{mode}"] = round(sub, 4)
        summary[f"detection_auc_{mode}"] = round(auc, 4)
        summary[f"fit_seconds_{mode}"] = synth.info["fit_seconds"]
        print(f"  detection AUC {mode} enforcement: {auc:.4f}", flush=True)
    synth, syn = models["with"]
    rules = synth.rules.rules if synth.rules else []
    summary.update(
        rules_seconds=synth.info.get("rules_seconds"),
        rules_detected=sum(r.origin == "detected" for r in rules),
        rules_declared=sum(r.origin == "declared" for r in rules),
        rules_active=sum(r.active for r in rules),
        auc_drop=round(summary["detection_auc_without"] - summary["detection_auc_with"], 4),
    )
    if summary["rule_columns"]:
        summary["rule_columns_auc_drop"] = round(
            summary["rule_columns_detection_auc_without"]
            - summary["rule_columns_detection_auc_with"],
            4,
        )
    records = []
    _, syn_without = models["without"]
    for r in rules:
        records.append(
            {
                "dataset": name,
                "rule": r.name,
                "kind": r.kind,
                "origin": r.origin,
                "active": r.active,
                "enforcement": r.enforcement,
                "note": r.note,
                "train_hold_rate": r.train_hold_rate,
                "holdout_hold_rate": r.holdout_hold_rate,
                "synthetic_hold_rate": hold_rate(r, syn),
                "synthetic_hold_rate_without_enforcement": hold_rate(r, syn_without),
                "detection_auc_with_enforcement": summary["detection_auc_with"],
                "detection_auc_without_enforcement": summary["detection_auc_without"],
            }
        )
    return summary, records


def wide_table(args: argparse.Namespace) -> dict[str, Any]:
    """Detection time on a 100-column table against the time to train on it."""
    import numpy as np
    import pyarrow as pa

    from pfcore.rules.collect import collect_rules
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer, split_train_holdout

    rng = np.random.default_rng(0)
    n = 50_000
    cols: dict[str, Any] = {}
    for i in range(60):
        cols[f"f{i}"] = np.round(rng.normal(i, 1 + i % 5, n), 2)
    for i in range(20):
        cols[f"i{i}"] = rng.integers(0, 1000 * (i + 1), n)
    for i in range(20):
        cols[f"c{i}"] = rng.choice([f"v{j}" for j in range(3 + i)], n)
    cols["f1"] = np.round(cols["f0"] + cols["f2"], 2)  # one planted identity
    cols["i1"] = cols["i0"] + rng.integers(0, 50, n)  # one planted inequality
    table = pa.table(cols)
    schema = infer_schema(table)
    train, holdout = split_train_holdout(table, 0.2, SEED)
    t0 = time.perf_counter()
    found = collect_rules(train, holdout, schema, None, seed=SEED)
    detect_s = time.perf_counter() - t0
    synth = Synthesizer.fit(
        train,
        schema,
        family=args.family,
        preset=args.preset,
        config=_config(args.steps, args.distill, args.threads),
        seed=SEED,
        holdout=holdout,
    )
    fit_s = float(synth.info["fit_seconds"])
    return {
        "columns": table.num_columns,
        "train_rows": train.num_rows,
        "detection_seconds": round(detect_s, 2),
        "fit_seconds": round(fit_s, 2),
        "detection_share_of_fit": round(detect_s / fit_s, 4),
        "rules_found": [r.name for r in found if r.kind != "sign"],
        "sign_rules_found": sum(r.kind == "sign" for r in found),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="*", default=DATASETS)
    p.add_argument("--quick", action="store_true", help="small step budget and training rows")
    p.add_argument("--family", default="onestep")
    p.add_argument("--preset", default="fast")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-wide", action="store_true", help="skip the 100-column timing")
    p.add_argument("--out", default=str(RESULTS / "rules.json"))
    args = p.parse_args(argv)
    args.steps = QUICK_STEPS if args.quick else STEPS
    args.distill = QUICK_DISTILL if args.quick else DISTILL
    args.train_rows = QUICK_TRAIN_ROWS if args.quick else TRAIN_ROWS
    import torch

    torch.set_num_threads(args.threads)
    summaries, records = [], []
    for name in args.datasets:
        if not (SHARED / f"{name}.parquet").exists():
            print(f"skip {name}: {SHARED / name}.parquet not found")
            continue
        s, r = run_dataset(name, args)
        summaries.append(s)
        records.extend(r)
    wide = None if args.no_wide else wide_table(args)
    doc = {
        "meta": {
            "quick": args.quick,
            "family": args.family,
            "preset": args.preset,
            "flow_steps": args.steps,
            "distill_steps": args.distill,
            "max_train_rows": args.train_rows,
            "scored_rows": SCORE_ROWS,
            "threads": args.threads,
            "cpu_count": os.cpu_count(),
            "note": (
                "short step budgets on a shared 2-core machine: absolute detection AUCs are "
                "those of under-trained models; compare with/without at the same budget"
            ),
        },
        "datasets": summaries,
        "wide_table": wide,
        "rules": records,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    os.replace(tmp, out)
    print()
    print(
        f"{'dataset':20} {'rules':>5} {'active':>6} {'AUC with':>9} {'AUC w/o':>8} {'drop':>7}"
        f" {'rule-cols with':>14} {'w/o':>7}"
    )
    for s in summaries:
        if "refused" in s:
            print(f"{s['dataset']:20} refused: {s['refused']}")
            continue
        print(
            f"{s['dataset']:20} {s['rules_detected'] + s['rules_declared']:5d} "
            f"{s['rules_active']:6d} {s['detection_auc_with']:9.4f} "
            f"{s['detection_auc_without']:8.4f} {s['auc_drop']:7.4f}"
            f" {s.get('rule_columns_detection_auc_with', float('nan')):14.4f}"
            f" {s.get('rule_columns_detection_auc_without', float('nan')):7.4f}"
        )
    broken = [r for r in records if r["active"] and r["synthetic_hold_rate"] != 1.0]
    print(f"active rules broken in synthetic rows: {len(broken)}")
    for r in broken:
        print(f"  {r['dataset']}: {r['rule']} holds on {r['synthetic_hold_rate']:.4%}")
    if wide:
        print(
            f"100-column table: detection {wide['detection_seconds']}s, fit "
            f"{wide['fit_seconds']}s ({wide['detection_share_of_fit']:.1%})"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

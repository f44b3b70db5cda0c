"""Speed of the full fidelity report: 100k real x 100k synthetic x 15 columns, budget 60 s.

Data: 15 columns of ../shared/datasets/nyc_flights.parquet (numeric, high-cardinality
categorical, UTC datetime, correlated missing values) split into disjoint real-holdout,
training and synthetic parts of 100k rows each. The "synthetic" part is real rows with
numeric noise and a share of shuffled categories, so the classifier has something to find (a
perfect copy would let early stopping quit at once and flatter the timing). Without the shared
datasets a generated 15-column table of the same size is used instead.

Measured: ``evaluate`` with train and a target (all metrics), ``report.save`` (JSON, Markdown,
two PNGs), and -- in the same run, on the same rows -- sdmetrics' QualityReport, which computes
only column shapes and pair trends.

Wall and CPU seconds are both reported: on a shared machine wall time measures the neighbours;
with ``n_threads=1`` CPU time is close to the wall time on an idle core. The share of
``evaluate`` spent in the pair diagnostic (detection AUC per column pair) is printed and stored:
it must stay a small part of validation.

``--dataset diamonds --rows 10000`` times the same report on every column of diamonds (the size
of a typical validate run) instead of the 15 nyc_flights columns.

Run:  PYTHONPATH=. .venv/bin/python benchmarks/fidelity_speed.py [--rows 100000] [--threads 1]
Writes benchmarks/results/fidelity_speed.json (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pfcore.atomic import atomic_write  # noqa: E402
from pfcore.fidelity import EvalConfig, evaluate, gate  # noqa: E402

BUDGET_S = 60.0
COLUMNS = [
    "month",
    "day",
    "dep_time",
    "sched_dep_time",
    "dep_delay",
    "arr_time",
    "sched_arr_time",
    "arr_delay",
    "carrier",
    "tailnum",
    "origin",
    "dest",
    "air_time",
    "distance",
    "time_hour",
]
SHARED = Path(os.environ.get("PUSHFORWARD_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))


def _generated(n: int, rng: np.random.Generator) -> pd.DataFrame:
    z = rng.normal(size=(n, 10))
    mix = z @ rng.normal(size=(10, 10)) * 0.3 + z
    data = {f"x{i}": mix[:, i] for i in range(10)}
    data["k"] = rng.poisson(3, n)
    data["c1"] = np.array(list("abcdefgh"))[np.clip((mix[:, 0] + 2).astype(int), 0, 7)]
    data["c2"] = rng.choice([f"id{i}" for i in range(2000)], n)
    data["b"] = mix[:, 1] > 0
    data["t"] = pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(
        rng.random(n) * 1e7, unit="s"
    )
    return pd.DataFrame(data)


DATASETS = {"nyc_flights": (COLUMNS, "arr_delay"), "diamonds": (None, "price")}


def load_parts(
    rows: int, seed: int = 0, dataset: str = "nyc_flights"
) -> tuple[str, pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    rng = np.random.default_rng(seed)
    path = SHARED / f"{dataset}.parquet"
    columns, target = DATASETS[dataset]
    n_rows = pd.read_parquet(path, columns=[target]).shape[0] if path.exists() else 0
    if path.exists() and 3 * rows <= n_rows:
        df = pd.read_parquet(path, columns=columns)
        source = f"{dataset} ({df.shape[1]} columns)"
    else:
        df = _generated(3 * rows, rng)
        source, target = "generated (15 columns)", "x0"
    idx = rng.permutation(len(df))
    real = df.iloc[idx[:rows]].reset_index(drop=True)
    train = df.iloc[idx[rows : 2 * rows]].reset_index(drop=True)
    syn = df.iloc[idx[2 * rows : 3 * rows]].reset_index(drop=True)
    for c in syn.columns:
        if pd.api.types.is_float_dtype(syn[c]):
            syn[c] = syn[c] + 0.1 * syn[c].std() * rng.normal(size=len(syn))
        elif pd.api.types.is_object_dtype(syn[c]) or pd.api.types.is_string_dtype(syn[c]):
            pick = rng.random(len(syn)) < 0.2
            vals = syn[c].to_numpy(copy=True)
            vals[pick] = rng.permutation(vals[pick])
            syn[c] = vals
    return source, real, train, syn, target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=1, help="EvalConfig.n_threads")
    ap.add_argument("--no-sdmetrics", action="store_true")
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="nyc_flights")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "fidelity_speed.json"
    )
    args = ap.parse_args()

    source, real, train, syn, target = load_parts(args.rows, dataset=args.dataset)
    cfg = EvalConfig(n_threads=args.threads)
    t, c = time.perf_counter(), time.process_time()
    report = evaluate(real, syn, train=train, target=target, seed=0, config=cfg)
    t_eval, c_eval = time.perf_counter() - t, time.process_time() - c
    result = gate(report)
    report.attach_gate(result)
    with tempfile.TemporaryDirectory() as tmp:
        t, c = time.perf_counter(), time.process_time()
        report.save(tmp)
        t_save, c_save = time.perf_counter() - t, time.process_time() - c
    total, c_total = t_eval + t_save, c_eval + c_save

    sd_time = sd_cpu = sd_scores = None
    if not args.no_sdmetrics:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from sdmetrics.reports.single_table import QualityReport

                meta = {"columns": {}}
                for col in report.columns:
                    meta["columns"][col["name"]] = {
                        "sdtype": {
                            "numeric": "numerical",
                            "datetime": "datetime",
                            "categorical": "categorical",
                            "boolean": "boolean",
                        }[col["role"]]
                    }
                qr = QualityReport()
                t, c = time.perf_counter(), time.process_time()
                qr.generate(real, syn, meta, verbose=False)
                sd_time, sd_cpu = time.perf_counter() - t, time.process_time() - c
                props = qr.get_properties().set_index("Property")["Score"]
                sd_scores = {
                    "quality": float(qr.get_score()),
                    "column_shapes": float(props["Column Shapes"]),
                    "pair_trends": float(props["Column Pair Trends"]),
                }
        except ImportError:
            pass

    rows = [(k, v, report.cpu_s.get(k)) for k, v in report.timings_s.items() if k != "total"]
    rows += [
        ("evaluate total", t_eval, c_eval),
        ("save (json, md, 2 png)", t_save, c_save),
        ("full report", total, c_total),
    ]
    if sd_time is not None:
        rows.append(("sdmetrics QualityReport (shapes + pairs only)", sd_time, sd_cpu))
    print(
        f"data: {source}; real {len(real)} x synthetic {len(syn)} x train {len(train)}; "
        f"{report.rows} ; threads {args.threads}; cpus {os.cpu_count()}"
    )
    print(f"{'section':48s} {'wall s':>8s} {'cpu s':>8s}")
    for k, v, cpu in rows:
        print(f"{k:48s} {v:8.2f} {cpu if cpu is not None else float('nan'):8.2f}")
    pair_s = report.timings_s.get("pair_detection", 0.0)
    pair_cpu = report.cpu_s.get("pair_detection", 0.0)
    print(
        f"pair detection: {pair_s:.2f} s wall ({pair_s / t_eval:.1%} of evaluate), "
        f"{pair_cpu:.2f} s CPU ({pair_cpu / max(c_eval, 1e-9):.1%})"
    )
    verdict = "within" if total <= BUDGET_S else "OVER"
    print(
        f"budget {BUDGET_S:.0f} s: {verdict} on wall time ({total:.1f} s); "
        f"CPU time {c_total:.1f} s "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus)"
    )
    print(
        f"ours: quality {report.scores['quality']:.4f} shapes {report.scores['column_shapes']:.4f} "
        f"pairs {report.scores['pair_trends']:.4f} AUC {report.detection['auc']:.4f}; "
        f"gate passed={result.passed}"
    )
    if sd_scores:
        print(
            f"sdmetrics: quality {sd_scores['quality']:.4f} "
            f"shapes {sd_scores['column_shapes']:.4f} "
            f"pairs {sd_scores['pair_trends']:.4f} "
            "(its contingency tables are an unseeded 50k subsample)"
        )

    payload = {
        "benchmark": "fidelity_speed",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "data": {
            "source": source,
            "rows": report.rows,
            "columns": len(report.columns),
            "target": target,
        },
        "config": cfg.to_dict(),
        "budget_s": BUDGET_S,
        "pair_detection_share_of_evaluate": {
            "wall": pair_s / t_eval,
            "cpu": pair_cpu / max(c_eval, 1e-9),
        },
        "within_budget": total <= BUDGET_S,
        "within_budget_cpu": c_total <= BUDGET_S,
        "seconds": {
            "sections": report.timings_s,
            "evaluate": t_eval,
            "save": t_save,
            "full_report": total,
            "sdmetrics_quality_report": sd_time,
        },
        "cpu_seconds": {
            "sections": report.cpu_s,
            "evaluate": c_eval,
            "save": c_save,
            "full_report": c_total,
            "sdmetrics_quality_report": sd_cpu,
        },
        "scores": {
            "ours": {k: report.scores[k] for k in ("quality", "column_shapes", "pair_trends")},
            "sdmetrics": sd_scores,
            "detection_auc": report.detection["auc"],
            "gate_passed": result.passed,
            "gate_reasons": result.reasons,
        },
    }
    atomic_write(args.out, (json.dumps(payload, indent=2) + "\n").encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

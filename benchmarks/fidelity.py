"""Fidelity benchmark: our push-forward families against SDV and MOSTLY AI, one protocol for all.

Protocol (issue 7): every dataset in ../shared/datasets except penguins; 80/20 split with seed 0
(``pfcore.synthesizer.split_train_holdout``); at most 20,000 training rows; every method fits on
the same training Parquet and is scored on the holdout by the same code:

- sdmetrics QualityReport: overall, Column Shapes, Column Pair Trends;
- detection: 5-fold cross-validated ROC AUC of a HistGradientBoosting classifier separating real
  holdout rows from as many synthetic rows (0.5 = indistinguishable);
- TSTR / TRTR: a HistGradientBoosting model for the dataset's natural target trained on synthetic
  (or real training) rows, scored on the holdout (R^2 for regression, ROC AUC for binary);
- fit seconds and sampling rows/s (wall clock on this machine, recorded with the CPU count).

Scoring uses at most ``SCORE_ROWS`` holdout rows (a seeded subsample) so nyc_flights' 67k-row
holdout costs the same as the others. Peers run in their own venv (``benchmarks/peers.py``).

Stages cache their output under ``benchmarks/work/`` so an interrupted run continues::

    python benchmarks/fidelity.py prepare
    python benchmarks/fidelity.py peers   [--datasets ...] [--methods ...]
    python benchmarks/fidelity.py ours    [--datasets ...] [--families ...] [--preset balanced]
    python benchmarks/fidelity.py frontier [--datasets ...]
    python benchmarks/fidelity.py score   # -> table + benchmarks/results/fidelity.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("PUSHFORWARD_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
WORK = Path(os.environ.get("PUSHFORWARD_BENCH_WORK", ROOT / "benchmarks" / "work"))
RESULTS = Path(os.environ.get("PUSHFORWARD_BENCH_RESULTS", ROOT / "benchmarks" / "results"))
PEERS_PY = Path(os.environ.get("PEERS_PYTHON", "/work/peers-venv/bin/python"))
DATASETS = ["california_housing", "credit_default", "diamonds", "nyc_flights"]
TARGETS = {
    "california_housing": ("median_house_value", "regression"),
    "credit_default": ("default_payment_next_month", "binary"),
    "diamonds": ("price", "regression"),
    "nyc_flights": ("arr_delay", "regression"),
}
MAX_TRAIN_ROWS = 20_000
SCORE_ROWS = 20_000
SEED = 0
PEER_BUDGETS: dict[str, dict[str, Any]] = {
    "sdv-gaussiancopula": {},
    "sdv-ctgan": {"epochs": 25},
    "sdv-tvae": {"epochs": 40},
    "mostly-tabularargn": {"minutes": 5.0},
}


def _write_parquet(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def prepare(datasets: list[str]) -> None:
    """Split each dataset once: ``work/<ds>/train.parquet`` and ``work/<ds>/holdout.parquet``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pfcore.synthesizer import split_train_holdout

    for ds in datasets:
        out = WORK / ds
        if (out / "holdout.parquet").exists():
            continue
        out.mkdir(parents=True, exist_ok=True)
        table = pq.read_table(SHARED / f"{ds}.parquet")
        train, hold = split_train_holdout(table, 0.2, SEED, MAX_TRAIN_ROWS)
        if hold.num_rows > SCORE_ROWS:
            rng = np.random.default_rng(SEED)
            idx = np.sort(rng.choice(hold.num_rows, SCORE_ROWS, replace=False))
            hold = hold.take(pa.array(idx))
        _write_parquet(train, out / "train.parquet")
        _write_parquet(hold, out / "holdout.parquet")
        print(f"{ds}: train {train.num_rows} rows, holdout {hold.num_rows} rows", flush=True)


def run_peers(datasets: list[str], methods: list[str], threads: int) -> None:
    """Each peer as a subprocess in the peers venv; skips runs whose output exists."""
    import pyarrow.parquet as pq

    for ds in datasets:
        n_rows = pq.read_metadata(WORK / ds / "holdout.parquet").num_rows
        for method in methods:
            out = WORK / ds / method
            if (out / "run.json").exists():
                continue
            args = [
                str(PEERS_PY),
                str(ROOT / "benchmarks" / "peers.py"),
                method,
                str(WORK / ds / "train.parquet"),
                str(out),
                str(n_rows),
                "--threads",
                str(threads),
            ]
            budget = PEER_BUDGETS[method]
            if "epochs" in budget:
                args += ["--epochs", str(budget["epochs"])]
            if "minutes" in budget:
                args += ["--minutes", str(budget["minutes"])]
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
            print(f"[{time.strftime('%H:%M:%S')}] {ds} {method} ...", flush=True)
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "log.txt", "w") as log:
                rc = subprocess.call(args, stdout=log, stderr=subprocess.STDOUT, env=env)
            print(f"[{time.strftime('%H:%M:%S')}] {ds} {method} rc={rc}", flush=True)


def _write_run(out: Path, table: Any, info: dict[str, Any]) -> None:
    import pyarrow.parquet as pq  # noqa: F401 - _write_parquet imports it

    out.mkdir(parents=True, exist_ok=True)
    _write_parquet(table, out / "synthetic.parquet")
    tmp = out / ".run.json.tmp"
    tmp.write_text(json.dumps(info, indent=2, default=str))
    os.replace(tmp, out / "run.json")


def _throughput(model: Any, threads: int, n: int = 65_536, repeats: int = 3) -> dict[str, float]:
    """Encoded rows/s of ``model.sample`` vs the bare network forward on the same batch.

    The ratio is the issue's "no overhead beyond the matrix work" check for the one-step sampler.
    """
    import torch

    torch.set_num_threads(threads)
    model.sample(4096, seed=0)  # warm-up
    best_sample = min(_timed(lambda: model.sample(n, seed=1)) for _ in range(repeats))
    out = {"encoded_rows_per_second": n / best_sample}
    net = getattr(model, "student", None) or getattr(model, "generator", None)
    if net is not None:
        z = torch.randn(n, model.latent_dim)
        with torch.inference_mode():
            best_fwd = min(_timed(lambda: net(z)) for _ in range(repeats))
        out["network_rows_per_second"] = n / best_fwd
        out["overhead_ratio"] = out["encoded_rows_per_second"] / out["network_rows_per_second"]
    return out


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_ours(datasets: list[str], families: list[str], preset: str, threads: int) -> None:
    """Fit our families through the product path (``Synthesizer.fit``) with preset defaults.

    The ``onestep`` fit trains a flow teacher first; that teacher is also scored as
    ``pushforward-flow`` (its fit time is the transform plus the teacher phase), which saves a
    separate 4-minute fit per dataset on a shared 2-core machine. Its budget is therefore
    ``teacher_share`` of the onestep budget, less than a standalone ``flow`` fit would get.
    """
    import pyarrow.parquet as pq
    import torch

    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    torch.set_num_threads(threads)
    for ds in datasets:
        train = pq.read_table(WORK / ds / "train.parquet")
        n_rows = pq.read_metadata(WORK / ds / "holdout.parquet").num_rows
        schema = infer_schema(train)
        for family in families:
            out = WORK / ds / f"pushforward-{family}"
            if (out / "run.json").exists():
                continue
            print(f"[{time.strftime('%H:%M:%S')}] {ds} pushforward-{family} ...", flush=True)
            synth = Synthesizer.fit(
                train,
                schema,
                family=family,
                preset=preset,
                seed=SEED,
                config={"threads": threads, "device": "cpu"},
            )
            t0 = time.perf_counter()
            table = synth.sample(n_rows, seed=1)
            sample_s = time.perf_counter() - t0
            info = {
                "method": f"pushforward-{family}",
                "preset": preset,
                "threads": threads,
                "fit_seconds": synth.info["fit_seconds"],
                "sample_seconds": round(sample_s, 3),
                "sample_rows": n_rows,
                "device": "cpu",
                "config": synth.model.config.to_dict(),
                "fit_summary": synth.info["fit_summary"],
                **_throughput(synth.model, threads),
            }
            _write_run(out, table, info)
            print(
                f"[{time.strftime('%H:%M:%S')}] {ds} pushforward-{family} fit "
                f"{info['fit_seconds']:.0f}s",
                flush=True,
            )
            teacher = getattr(synth.model, "teacher", None)
            if family == "onestep" and teacher is not None:
                tsyn = Synthesizer(
                    schema=synth.schema, transformer=synth.transformer, model=teacher
                )
                t0 = time.perf_counter()
                table = tsyn.sample(n_rows, seed=1)
                sample_s = time.perf_counter() - t0
                phase = synth.info["fit_summary"]["teacher"]
                transform_s = synth.info["fit_seconds"] - sum(
                    synth.info["fit_summary"][k]["seconds"] for k in ("teacher", "pairs", "distill")
                )
                finfo = {
                    "method": "pushforward-flow",
                    "preset": preset,
                    "threads": threads,
                    "fit_seconds": round(phase["seconds"] + max(transform_s, 0.0), 3),
                    "sample_seconds": round(sample_s, 3),
                    "sample_rows": n_rows,
                    "device": "cpu",
                    "config": teacher.config.to_dict(),
                    "fit_summary": {"teacher": phase},
                    "note": "teacher of pushforward-onestep (teacher_share of its budget)",
                    **_throughput(teacher, threads, n=16_384, repeats=1),
                }
                _write_run(WORK / ds / "pushforward-flow", table, finfo)


def run_reference(datasets: list[str]) -> None:
    """``real-train-rows``: training rows scored as if synthetic — the ceiling real data reaches.

    As many rows as the holdout (a seeded sample; all of them when the training split is
    smaller), scored by the same code as every method. A target above this is above real data.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    for ds in datasets:
        out = WORK / ds / "real-train-rows"
        if (out / "run.json").exists():
            continue
        train = pq.read_table(WORK / ds / "train.parquet")
        n = min(pq.read_metadata(WORK / ds / "holdout.parquet").num_rows, train.num_rows)
        rng = np.random.default_rng(SEED + 1)
        idx = np.sort(rng.choice(train.num_rows, n, replace=False))
        info = {
            "method": "real-train-rows",
            "fit_seconds": 0.0,
            "sample_seconds": None,
            "sample_rows": n,
            "device": "cpu",
            "threads": None,
            "budget": {},
            "note": "real training rows (reference, not a method)",
        }
        _write_run(out, train.take(pa.array(idx)), info)


FRONTIER_SIZES = [(64, 2), (128, 2), (128, 3), (256, 2), (256, 3), (512, 3), (512, 4)]


def run_frontier(datasets: list[str], threads: int, distill_seconds: float, preset: str) -> None:
    """One teacher per dataset, students of several sizes; scored like every other method."""
    import pandas as pd
    import pyarrow.parquet as pq
    import torch

    from pfcore import models
    from pfcore.models.onestep import make_pairs
    from pfcore.schema import infer_schema
    from pfcore.transforms import TableTransformer

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from scoring import score_all

    torch.set_num_threads(threads)
    for ds in datasets:
        out_file = WORK / ds / "frontier.json"
        if out_file.exists():
            continue
        target, task = TARGETS[ds]
        train_t = pq.read_table(WORK / ds / "train.parquet")
        hold = pd.read_parquet(WORK / ds / "holdout.parquet")
        train = train_t.to_pandas()
        schema = infer_schema(train_t)
        tr = TableTransformer.fit(train_t, schema, seed=SEED)
        x = tr.encode(train_t, seed=SEED)
        rng = __import__("numpy").random.default_rng(SEED)
        perm = rng.permutation(len(x))
        n_valid = len(x) // 10
        valid, xfit = x[perm[:n_valid]], x[perm[n_valid:]]
        print(f"[{time.strftime('%H:%M:%S')}] {ds} frontier: teacher ...", flush=True)
        base = models.build("onestep", {"threads": threads, "device": "cpu"}, preset=preset)
        teacher = models.build(
            "flow",
            {
                **base.config.teacher_config().to_dict(),  # type: ignore[attr-defined]
                "max_minutes": base.config.max_minutes * base.config.teacher_share,
            },
            preset=preset,
        )
        t0 = time.perf_counter()
        teacher.fit(xfit, tr.blocks, valid=valid)
        teacher_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pairs = make_pairs(teacher, base.config.n_pairs, SEED)  # type: ignore[attr-defined]
        pairs_s = time.perf_counter() - t0
        xt, vt = torch.from_numpy(xfit), torch.from_numpy(valid)
        rows = []
        for width, depth in FRONTIER_SIZES:
            cfg = {**base.config.to_dict(), "student_width": width, "student_depth": depth}
            t0 = time.perf_counter()
            student = models.OneStepModel.from_teacher(
                teacher, pairs, xt, vt, cfg, budget_s=distill_seconds
            )
            distill_s = time.perf_counter() - t0
            syn = tr.decode(student.sample(len(hold), seed=1), seed=1).to_pandas()
            scores = score_all(train, hold, syn, target, task, SEED)
            tp = _throughput(student, threads)
            row = {
                "width": width,
                "depth": depth,
                "parameters": student.fit_summary["distill"]["parameters"],
                "distill_steps": student.fit_summary["distill"]["steps"],
                "distill_seconds": round(distill_s, 1),
                **scores,
                **tp,
            }
            rows.append(row)
            print(
                f"  {width}x{depth}: quality {scores['quality']:.3f} auc "
                f"{scores['detection_auc']:.3f} rows/s {tp['encoded_rows_per_second']:.0f}",
                flush=True,
            )
        info = {
            "dataset": ds,
            "teacher_seconds": round(teacher_s, 1),
            "pairs_seconds": round(pairs_s, 1),
            "distill_budget_seconds": distill_seconds,
            "threads": threads,
            "rows": rows,
        }
        out_file.write_text(json.dumps(info, indent=2))


def score(datasets: list[str]) -> list[dict[str, Any]]:
    """Score every finished run (cached in ``scores.json`` next to its Parquet output)."""
    import pandas as pd

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from scoring import score_all

    records = []
    for ds in datasets:
        target, task = TARGETS[ds]
        train = pd.read_parquet(WORK / ds / "train.parquet")
        hold = pd.read_parquet(WORK / ds / "holdout.parquet")
        for run_dir in sorted(p for p in (WORK / ds).iterdir() if (p / "run.json").exists()):
            run = json.loads((run_dir / "run.json").read_text())
            cache = run_dir / "scores.json"
            if cache.exists() and cache.stat().st_mtime >= (run_dir / "run.json").stat().st_mtime:
                scores = json.loads(cache.read_text())
            else:
                syn = pd.read_parquet(run_dir / "synthetic.parquet")
                scores = score_all(train, hold, syn, target, task, SEED)
                cache.write_text(json.dumps(scores))
            rec = {
                "dataset": ds,
                "method": run["method"],
                **{k: round(v, 4) for k, v in scores.items()},
                "fit_seconds": run["fit_seconds"],
                "sample_rows_per_second": (
                    round(run["sample_rows"] / max(run["sample_seconds"], 1e-9), 1)
                    if run["sample_seconds"] is not None
                    else None
                ),
                "rows": int(len(train)),
                "columns": int(train.shape[1]),
                "cpu_count": os.cpu_count(),
                "device": run.get("device", "cpu"),
                "threads": run.get("threads"),
                "budget": run.get("budget")
                or {
                    k: run["config"].get(k)
                    for k in (
                        "max_minutes",
                        "max_steps",
                        "width",
                        "depth",
                        "student_width",
                        "student_depth",
                    )
                    if k in run.get("config", {})
                },
                "target": target,
                "target_metric": "roc_auc" if task == "binary" else "r2",
                "scored_holdout_rows": int(len(hold)),
            }
            for k in (
                "encoded_rows_per_second",
                "network_rows_per_second",
                "overhead_ratio",
                "note",
            ):
                if k in run:
                    rec[k] = round(run[k], 3) if isinstance(run[k], float) else run[k]
            records.append(rec)
            print(
                f"{ds:20s} {rec['method']:26s} Q {rec['quality']:.3f} "
                f"shapes {rec['column_shapes']:.3f} "
                f"pairs {rec['column_pair_trends']:.3f} AUC {rec['detection_auc']:.3f} "
                f"TSTR {rec['tstr']:.3f}/{rec['trtr']:.3f} fit {rec['fit_seconds']:.0f}s "
                f"{rec['sample_rows_per_second'] or 0:.0f} rows/s",
                flush=True,
            )
        for marker in sorted((WORK / ds).glob("*/unfinished.json")):
            info = json.loads(marker.read_text())
            records.append(
                {
                    "dataset": ds,
                    "method": info["method"],
                    "status": info["status"],
                    "reason": info["reason"],
                    "budget": info.get("budget"),
                    "threads": info.get("threads"),
                    "cpu_count": os.cpu_count(),
                    "device": "cpu",
                    **dict.fromkeys(
                        (
                            "quality",
                            "column_shapes",
                            "column_pair_trends",
                            "detection_auc",
                            "tstr",
                            "trtr",
                            "fit_seconds",
                            "sample_rows_per_second",
                        )
                    ),
                }
            )
            print(f"{ds:20s} {info['method']:26s} {info['status']}: {info['reason']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / ".fidelity.json.tmp"
    tmp.write_text(json.dumps(records, indent=2))
    os.replace(tmp, RESULTS / "fidelity.json")
    frontier = [
        json.loads((WORK / ds / "frontier.json").read_text())
        for ds in datasets
        if (WORK / ds / "frontier.json").exists()
    ]
    if frontier:
        tmp = RESULTS / ".frontier.json.tmp"
        tmp.write_text(json.dumps(frontier, indent=2))
        os.replace(tmp, RESULTS / "frontier.json")
        for f in frontier:
            best = min(r["detection_auc"] for r in f["rows"])
            ok = [r for r in f["rows"] if r["detection_auc"] <= best + 0.02]
            pick = min(ok, key=lambda r: r["parameters"])
            print(
                f"frontier {f['dataset']}: best AUC {best:.3f}; smallest within 0.02: "
                f"{pick['width']}x{pick['depth']}"
            )
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="pushforward fidelity benchmark")
    ap.add_argument("stage", choices=["prepare", "peers", "ours", "reference", "frontier", "score"])
    ap.add_argument("--datasets", nargs="*", default=DATASETS)
    ap.add_argument("--methods", nargs="*", default=list(PEER_BUDGETS))
    ap.add_argument("--families", nargs="*", default=["onestep", "energy", "naive_mse"])
    ap.add_argument("--preset", default="balanced")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--distill-seconds", type=float, default=60.0)
    args = ap.parse_args(argv)
    prepare(args.datasets)
    if args.stage == "peers":
        run_peers(args.datasets, args.methods, args.threads)
    elif args.stage == "ours":
        run_ours(args.datasets, args.families, args.preset, args.threads)
    elif args.stage == "frontier":
        run_frontier(args.datasets, args.threads, args.distill_seconds, args.preset)
    elif args.stage == "score":
        score(args.datasets)
    elif args.stage == "reference":
        run_reference(args.datasets)
    return 0


if __name__ == "__main__":
    sys.exit(main())

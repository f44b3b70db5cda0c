"""Hybrid against onestep at equal training steps: detection AUC, shapes, rows/s, s/step.

Each job fits one model (``hybrid`` or ``onestep``, balanced preset, conditional student off)
on one prepared table with step budgets (``--steps`` flow steps, ``--distill-steps`` student
steps, ``--ar-steps`` discrete-network steps for the hybrid) and no time limit, then scores
its teacher-equivalent sampler (onestep: the flow teacher; hybrid: the discrete network with
the conditional flow's ODE for the numbers) and its one-step sampler on the holdout with the
design sweep's scoring (``design_sweep.shapes_score``, ``scoring.detection_auc``). Sampling is
timed on 100,000 rows with one thread: ``push`` alone and ``push`` + decode.

    python benchmarks/hybrid_sweep.py --work /path/to/work \\
        --out benchmarks/results/hybrid_sweep.json --datasets diamonds credit_default \\
        --families hybrid onestep --device cpu --parallel 2

``--students 256x2 512x2 256x2:150 --student-seconds 75`` then distils a fresh student of each
size from the same fitted teacher and the same pairs for that many seconds (or the seconds
after the colon; one thread), and scores each as ``student_<spec>_auc`` beside its steps and
end-to-end rows/s: the student's size and time, with the teacher held fixed.

Inputs are the ``train.parquet`` / ``holdout.parquet`` files that ``fidelity.py prepare`` writes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

FAMILIES = ("hybrid", "onestep")
DATASETS = ["diamonds", "credit_default", "nyc_flights", "california_housing"]
SAMPLE_ROWS = 100_000


def _per_step(phase: dict[str, Any] | None) -> float | None:
    if not phase or not phase.get("steps"):
        return None
    return round(float(phase["seconds"]) / int(phase["steps"]), 4)


def _rows_per_second(model: Any, transformer: Any) -> dict[str, float]:
    """Rows/s of ``push`` alone and of push + decode on ``SAMPLE_ROWS`` rows (one thread)."""
    model.sample(1000, seed=5)  # warm-up
    t0 = time.perf_counter()
    x = model.sample(SAMPLE_ROWS, seed=5)
    push_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    transformer.decode(x, seed=5)
    decode_s = time.perf_counter() - t0
    return {
        "push_rows_per_second": round(SAMPLE_ROWS / push_s),
        "end_to_end_rows_per_second": round(SAMPLE_ROWS / (push_s + decode_s)),
    }


def run_job(
    work: Path, dataset: str, family: str, args: argparse.Namespace, seed: int
) -> dict[str, Any]:
    import torch
    from design_sweep import load_job, score_model

    from pfcore import models

    torch.set_num_threads(1)
    tr, x_train, x_valid, hold = load_job(work, dataset)
    cfg: dict[str, Any] = {
        "device": args.device,
        "max_steps": args.steps,
        "distill_max_steps": args.distill_steps,
        "seed": seed,
        "epochs": None,
        "max_minutes": 60.0,
        "threads": 1,
        "ema_decay": args.ema,
    }
    if family == "onestep":
        cfg["conditional_max_steps"] = 0  # the unconditional sampler is what is scored
    else:
        cfg["ar_max_steps"] = args.ar_steps
    from benchmarks.overrides import parse_overrides

    overrides = parse_overrides(args.set)
    cfg.update(overrides)
    model = models.build(family, cfg, preset="balanced")
    t0 = time.perf_counter()
    summary = model.fit(x_train, tr.blocks, valid=x_valid)
    fit_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "dataset": dataset,
        "family": family,
        "seed": seed,
        "device": args.device,
        "ema_decay": args.ema,
        "n_features": int(x_train.shape[1]),
        "train_rows": len(x_train),
        "fit_seconds": round(fit_s, 1),
        "overrides": overrides,
    }
    for phase in ("ar", "teacher", "distill"):
        if phase in summary:
            out[f"{phase}_steps"] = summary[phase]["steps"]
            out[f"{phase}_seconds_per_step"] = _per_step(summary[phase])
            out[f"{phase}_parameters"] = summary[phase].get("parameters")
    if "ar" in summary:
        out["ar_valid_nll_per_column"] = summary["ar"].get("valid_nll_per_column")
    if "pairs" in summary:
        out["pairs_seconds"] = summary["pairs"]["seconds"]

    def score(name: str, m: Any) -> None:
        keep = None
        if args.keep:  # the scored rows, for per-column-group diagnostics afterwards
            keep = args.out.with_name(f"{args.out.stem}.{dataset}.{family}.s{seed}.{name}.parquet")
        for metric, value in score_model(m, tr, hold, keep).items():
            out[f"{name}_{metric}"] = value

    if family == "onestep":
        score("teacher", model.teacher)
    else:
        model.calibrate_teacher()  # the teacher's sampler with its own marginal map
        model.continuous_sampler = "teacher"
        score("teacher", model)
        model.continuous_sampler = "student"
    score("onestep", model)
    out.update(_rows_per_second(model, tr))
    if family == "hybrid" and args.students:
        for spec in args.students:
            out.update(_student_variant(model, tr, x_train, spec, args.student_seconds, score))
    return out


def _student_variant(
    model: Any, tr: Any, x_train: Any, spec: str, seconds: float, score: Callable
) -> dict[str, Any]:
    """Distil a fresh ``WIDTHxDEPTH`` student from the fitted teacher's pairs for ``seconds``
    (``WIDTHxDEPTH:SECONDS`` sets its own) on one thread and score it as ``student_<spec>``:
    every variant of a job distils from the same teacher and the same pairs, so only the
    student differs."""
    import torch

    from pfcore.models.nets import MLP
    from pfcore.models.phase import PhaseData

    size, _, own_seconds = spec.partition(":")
    width, depth = (int(v) for v in size.split("x"))
    seconds = float(own_seconds) if own_seconds else seconds
    cfg = model.config
    cfg.student_width, cfg.student_depth = width, depth
    cfg.distill_max_steps = 10**9
    xt = torch.from_numpy(x_train)
    _k, d, n_num = model._dims()
    torch.manual_seed(cfg.seed + 3)
    model.student = MLP(n_num + d, n_num, width, depth)
    pairs = model._make_pairs(xt)
    summary = model._distill(PhaseData(xt, None, None), pairs, [], budget_s=seconds)["distill"]
    score(f"student_{spec}", model)
    rates = _rows_per_second(model, tr)
    return {
        f"student_{spec}_steps": summary["steps"],
        f"student_{spec}_final_loss": summary.get("final_loss"),
        f"student_{spec}_rows_per_second": rates["end_to_end_rows_per_second"],
    }


def speed(work: Path, datasets: list[str], repeats: int) -> list[dict[str, Any]]:
    """Sampling rows/s of both families' balanced-preset networks, timed alternately.

    The networks get two training steps per phase: a sampler's cost depends on its sizes, not
    its weights, and timing both families in turn, best of ``repeats``, in one process keeps
    a shared machine's load from favouring either.
    """
    import pyarrow.parquet as pq
    import torch

    from pfcore import models
    from pfcore.schema import infer_schema
    from pfcore.transforms import TableTransformer

    torch.set_num_threads(1)
    records = []
    for ds in datasets:
        train_t = pq.read_table(work / ds / "train.parquet")
        tr = TableTransformer.fit(train_t, infer_schema(train_t), seed=0)
        x = tr.encode(train_t, seed=0)
        fitted = {}
        for fam in FAMILIES:
            cfg = {"max_steps": 2, "distill_max_steps": 2, "n_pairs": 1024, "threads": 1}
            cfg.update(min_steps=1, epochs=None, device="cpu", calibrate=False)
            cfg.update({"ar_max_steps": 2} if fam == "hybrid" else {"conditional_max_steps": 0})
            m = models.build(fam, cfg, preset="balanced")
            m.fit(x, tr.blocks)
            fitted[fam] = m
        best: dict[str, dict[str, float]] = {f: {} for f in FAMILIES}
        for _ in range(repeats):
            for fam, m in fitted.items():
                for key, val in _rows_per_second(m, tr).items():
                    best[fam][key] = max(val, best[fam].get(key, 0))
        for fam in FAMILIES:
            rec = {"dataset": ds, "family": fam, "kind": "speed", "repeats": repeats, **best[fam]}
            rec["n_features"] = int(x.shape[1])
            records.append(rec)
            print("SPEED " + json.dumps(rec), flush=True)
    return records


def log_path(out: Path, ds: str, name: str) -> Path:
    return out.with_name(f"{out.stem}.{ds}.{name}.log")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=3000, help="flow (teacher) steps")
    ap.add_argument("--distill-steps", type=int, default=6000)
    ap.add_argument("--ar-steps", type=int, default=3000, help="hybrid's discrete network")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--datasets", nargs="*", default=DATASETS)
    ap.add_argument("--families", nargs="*", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--parallel", type=int, default=1, help="jobs at a time")
    ap.add_argument("--append", action="store_true", help="keep the records already in --out")
    ap.add_argument("--keep", action="store_true", help="write the scored synthetic rows beside")
    ap.add_argument(
        "--students",
        nargs="*",
        metavar="WxD",
        help="after the fit, distil and score these student sizes from the same teacher",
    )
    ap.add_argument("--student-seconds", type=float, default=75.0)
    ap.add_argument("--job", nargs=3, metavar=("DATASET", "FAMILY", "SEED"))
    ap.add_argument(
        "--set",
        nargs="*",
        metavar="KEY=JSON",
        help="config overrides for every fit, e.g. --set net='\"resmlp\"' depth=2",
    )
    ap.add_argument(
        "--speed", type=int, default=0, metavar="REPEATS", help="only time both samplers"
    )
    args = ap.parse_args()
    if args.speed:
        records = speed(args.work, args.datasets, args.speed)
        old = json.loads(args.out.read_text()) if args.append and args.out.exists() else []
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(old + records, indent=2))
        tmp.replace(args.out)
        return 0
    if args.job:
        ds, fam, seed = args.job
        res = run_job(args.work, ds, fam, args, int(seed))
        print("RESULT " + json.dumps(res), flush=True)
        return 0
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    results: list[dict[str, Any]] = []
    if args.append and args.out.exists():
        results = json.loads(args.out.read_text())
    procs = []
    for ds in args.datasets:
        for fam in args.families:
            for seed in args.seeds:
                cmd = [sys.executable, __file__, "--work", str(args.work), "--out", str(args.out)]
                cmd += ["--device", args.device, "--steps", str(args.steps)]
                cmd += [
                    "--distill-steps",
                    str(args.distill_steps),
                    "--ar-steps",
                    str(args.ar_steps),
                ]
                cmd += ["--ema", str(args.ema), "--job", ds, fam, str(seed)]
                cmd += ["--keep"] if args.keep else []
                cmd += ["--set", *args.set] if args.set else []
                cmd += ["--students", *args.students] if args.students else []
                cmd += ["--student-seconds", str(args.student_seconds)]
                while sum(p.poll() is None for _, p in procs) >= max(1, args.parallel):
                    time.sleep(2)
                name = f"{fam}.s{seed}"
                log = open(log_path(args.out, ds, name), "w")  # noqa: SIM115 - child owns it
                procs.append(
                    (
                        (ds, name),
                        subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                    )
                )
    for (ds, name), p in procs:
        p.wait()
        text = log_path(args.out, ds, name).read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
        if lines:
            results.append(json.loads(lines[-1][7:]))
            print(lines[-1], flush=True)
        else:
            results.append({"dataset": ds, "job": name, "error": text[-2000:]})
            print(f"FAILED {ds} {name}: {text[-1500:]}", flush=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2))
        tmp.replace(args.out)
    _print_table(results)
    return 0


def _print_table(results: list[dict[str, Any]]) -> None:
    cols = [
        "dataset",
        "family",
        "seed",
        "teacher_auc",
        "onestep_auc",
        "onestep_shapes",
        "push_rows_per_second",
        "end_to_end_rows_per_second",
        "teacher_seconds_per_step",
        "distill_seconds_per_step",
        "ar_seconds_per_step",
    ]
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(str(r.get(c, "")) for c in cols))


if __name__ == "__main__":
    sys.exit(main())

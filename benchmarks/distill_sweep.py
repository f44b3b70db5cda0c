"""Distillation sweep: which student design closes the gap to its flow teacher, at equal steps.

One flow teacher per dataset is trained for a fixed number of steps and cached with its
``(z, ODE(z))`` pairs; every variant then distils a student from that same teacher for the same
number of distillation steps (one torch thread), is calibrated as ``fit`` calibrates, and is
scored on the holdout exactly as ``fidelity.py`` scores every method (sdmetrics Quality and
5-fold HistGradientBoosting detection AUC, ``scoring.py``). Time per distillation step and the
student's forward rows/s are recorded separately, so "what fits in the 5-minute budget on an
idle machine" can be read off without trusting wall clocks on a shared one.

    OMP_NUM_THREADS=1 python benchmarks/distill_sweep.py --datasets diamonds credit_default \\
        --variants base match_data_0.1 --seeds 0 1 --parallel 2

Inputs are the ``train.parquet`` / ``holdout.parquet`` that ``fidelity.py prepare`` writes
(run automatically when missing). Output: a table on stdout and
``benchmarks/results/distill_sweep.json`` (records merged by dataset, variant and seed).
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
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fidelity import RESULTS, SEED, TARGETS, WORK, prepare  # noqa: E402

SWEEP = WORK / "distill"
#: Student variants: overrides of the ``balanced`` onestep config (``n_pairs`` slices the cache).
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "pairs150k": {"n_pairs": 150_000},
    "steps8k": {"distill_max_steps": 8000},
    "w384x2": {"student_width": 384, "student_depth": 2},
    "w256x3": {"student_width": 256, "student_depth": 3},
    "w512x2": {"student_width": 512, "student_depth": 2},
    "match_data_0.03": {"distill_match_weight": 0.03},
    "match_data_0.1": {"distill_match_weight": 0.1},
    "match_data_0.3": {"distill_match_weight": 0.3},
    "match_teacher_0.1": {"distill_match_weight": 0.1, "distill_match_ref": "teacher"},
    "mse": {"distill_loss": "mse"},
    # Few-step samplers: k network evaluations (student + k - 1 refiners), see onestep.py.
    "k2_teacher": {"sampler_steps": 2, "refine_input": "teacher"},
    "k2_student": {"sampler_steps": 2, "refine_input": "student"},
    "k3_teacher": {"sampler_steps": 3, "refine_input": "teacher"},
}
#: Rows sampled and decoded for the end-to-end rows/s (the fidelity benchmark's ``SAMPLE_ROWS``).
TIMED_ROWS = 100_000
MAX_PAIRS = 150_000


#: Decode-time value protection, as ``Synthesizer.fit`` uses (it only bounds decoded values).
PROTECT_EXTREMES = 5


def _load_data(ds: str) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Decoding transformer, train/valid matrices (the frontier's split), train and holdout."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from pfcore.schema import infer_schema
    from pfcore.transforms import TableTransformer

    train_t = pq.read_table(WORK / ds / "train.parquet")
    hold = pd.read_parquet(WORK / ds / "holdout.parquet")
    schema = infer_schema(train_t)
    x = TableTransformer.fit(train_t, schema, seed=SEED).encode(train_t, seed=SEED)
    tr = TableTransformer.fit(train_t, schema, seed=SEED, protect_extremes=PROTECT_EXTREMES)
    perm = np.random.default_rng(SEED).permutation(len(x))
    nv = len(x) // 10
    return tr, x[perm[nv:]], x[perm[:nv]], train_t.to_pandas(), hold, schema


def _score(model: Any, tr: Any, train: Any, hold: Any, ds: str) -> dict[str, float]:
    from scoring import score_all

    target, task = TARGETS[ds]
    syn = tr.decode(model.sample(len(hold), seed=1), seed=1).to_pandas()
    scores = {k: round(v, 4) for k, v in score_all(train, hold, syn, target, task, SEED).items()}
    return {**scores, "protect_extremes": PROTECT_EXTREMES}


def _forward_rows_per_second(push: Any, latent_dim: int, n: int = 65_536) -> float:
    """Rows/s of the sampler's networks alone (every evaluation a row needs), best of 3."""
    import torch

    z = torch.randn(n, latent_dim)
    best = float("inf")
    with torch.inference_mode():
        push(z[:4096])
        for _ in range(3):
            t0 = time.perf_counter()
            push(z)
            best = min(best, time.perf_counter() - t0)
    return n / best


def _sample_rows_per_second(model: Any, tr: Any, n: int = TIMED_ROWS) -> float:
    """End-to-end rows/s: ``model.sample`` plus decoding to a table, ``n`` rows, best of 2."""
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        tr.decode(model.sample(n, seed=1), seed=1)
        best = min(best, time.perf_counter() - t0)
    return n / best


def teacher_job(ds: str, teacher_steps: int, n_pairs: int = MAX_PAIRS) -> dict[str, Any]:
    """Train and cache the teacher and ``n_pairs`` pairs; score it (Heun 8, calibrated)."""
    import torch
    from safetensors.torch import save_file

    from pfcore import models
    from pfcore.models.onestep import make_pairs

    torch.set_num_threads(1)
    out = SWEEP / ds
    tr, x, valid, train, hold, _ = _load_data(ds)
    base = models.build("onestep", {"threads": 1, "device": "cpu"}, preset="balanced")
    tcfg = {
        **base.config.teacher_config().to_dict(),  # type: ignore[attr-defined]
        "max_steps": teacher_steps,
        "epochs": None,
        "max_minutes": 60.0,
    }
    teacher = models.build("flow", tcfg, preset="balanced")
    t0 = time.perf_counter()
    summary = teacher.fit(x, tr.blocks, valid=valid)
    teacher_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    z, xe = make_pairs(teacher, n_pairs, SEED)  # type: ignore[arg-type]
    pairs_s = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    teacher.save(out / "teacher")
    save_file({"z": z.contiguous(), "x": xe.contiguous()}, str(out / "pairs.safetensors"))
    info = {
        "dataset": ds,
        "variant": "teacher_heun8",
        "seed": SEED,
        "teacher_steps": summary["flow"]["steps"],
        "teacher_seconds": round(teacher_s, 1),
        "seconds_per_step": round(teacher_s / max(1, summary["flow"]["steps"]), 4),
        "pairs": n_pairs,
        "pairs_seconds_per_60k": round(pairs_s * 60_000 / n_pairs, 1),
        **_score(teacher, tr, train, hold, ds),
    }
    (out / "teacher.json").write_text(json.dumps(info, indent=2))
    return info


def teacher_score_job(ds: str) -> dict[str, Any]:
    """Re-score a cached teacher (after a change of the scoring protocol)."""
    import torch

    from pfcore import models

    torch.set_num_threads(1)
    tr, _x, _v, train, hold, _ = _load_data(ds)
    info = json.loads((SWEEP / ds / "teacher.json").read_text())
    info.update(_score(models.load(SWEEP / ds / "teacher"), tr, train, hold, ds))
    (SWEEP / ds / "teacher.json").write_text(json.dumps(info, indent=2))
    return info


def variant_job(ds: str, variant: str, seed: int, steps: int) -> dict[str, Any]:
    """Distil one student from the cached teacher for ``steps`` steps, calibrate, score."""
    import torch
    from safetensors.torch import load_file

    from pfcore import models

    torch.set_num_threads(1)
    tr, x, valid, train, hold, _ = _load_data(ds)
    teacher = models.load(SWEEP / ds / "teacher")
    pairs = load_file(str(SWEEP / ds / "pairs.safetensors"))
    overrides = dict(VARIANTS[variant])
    n_pairs = int(overrides.get("n_pairs", 60_000))
    cfg = {
        **models.build("onestep", {}, preset="balanced").config.to_dict(),
        "threads": 1,
        "device": "cpu",
        "seed": seed,
        "distill_max_steps": steps,
        **overrides,
    }
    xt, vt = torch.from_numpy(x), torch.from_numpy(valid)
    t0 = time.perf_counter()
    student = models.OneStepModel.from_teacher(
        teacher,  # type: ignore[arg-type]
        (pairs["z"][:n_pairs], pairs["x"][:n_pairs]),
        xt,
        vt,
        cfg,
        budget_s=3600.0,
    )
    distill_s = time.perf_counter() - t0
    student.fit_summary["calibration"] = student._calibrate(xt)
    d = student.fit_summary["distill"]
    assert student.student is not None
    return {
        "dataset": ds,
        "variant": variant,
        "seed": seed,
        "overrides": overrides,
        "distill_steps": d["steps"],
        "seconds_per_step": round(distill_s / max(1, d["steps"]), 4),
        "parameters": d["parameters"],
        "sampler_steps": student.config.sampler_steps,
        "network_rows_per_second": round(
            _forward_rows_per_second(student._push_raw, student.latent_dim)
        ),
        "sample_rows": TIMED_ROWS,
        "sample_rows_per_second": round(_sample_rows_per_second(student, tr)),
        "threads": 1,
        **_score(student, tr, train, hold, ds),
    }


def speed_job(ds: str, threads: int) -> dict[str, Any]:
    """End-to-end sampling rows/s of the 1- and 2-evaluation samplers at ``threads`` threads.

    Speed does not depend on the weights, so the networks are left untrained: this answers
    "does the sampler stay above the rows/s floor on this table's width" in seconds, without a
    teacher. One record per sampler, variant ``speed_k<k>_t<threads>``.
    """
    import numpy as np
    import torch

    from pfcore import models
    from pfcore.models.base import OneHotIndex, normalize_blocks

    torch.set_num_threads(threads)
    tr, x, *_ = _load_data(ds)
    out = []
    for k in (1, 2):
        cfg = {
            **models.build("onestep", {}, preset="balanced").config.to_dict(),
            "threads": threads,
            "device": "cpu",
            "sampler_steps": k,
        }
        m = models.OneStepModel(cfg)
        m.n_features = m.latent_dim = x.shape[1]
        m.blocks = normalize_blocks(tr.blocks, x.shape[1])
        m._index = OneHotIndex(m.blocks)
        m._build_networks()
        for net in m._networks().values():
            net.eval()
        m._fitted = True
        out.append(
            {
                "dataset": ds,
                "variant": f"speed_k{k}_t{threads}",
                "seed": SEED,
                "sampler_steps": k,
                "threads": threads,
                "n_features": int(x.shape[1]),
                "network_rows_per_second": round(_forward_rows_per_second(m._push_raw, x.shape[1])),
                "sample_rows": TIMED_ROWS,
                "sample_rows_per_second": round(_sample_rows_per_second(m, tr)),
                "load_average_1min": round(float(np.round(os.getloadavg()[0], 2)), 2),
            }
        )
    return {"records": out}


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        return subprocess.Popen(
            [sys.executable, __file__, *args], stdout=fh, stderr=subprocess.STDOUT, env=env
        )


def _run_all(jobs: list[tuple[list[str], Path]], parallel: int) -> list[dict[str, Any]]:
    """Run job subprocesses, ``parallel`` at a time; collect each one's ``RESULT`` line."""
    results: list[dict[str, Any]] = []
    running: list[tuple[subprocess.Popen[bytes], Path]] = []
    pending = list(jobs)
    while pending or running:
        while pending and len(running) < parallel:
            args, log = pending.pop(0)
            running.append((_spawn(args, log), log))
        time.sleep(2)
        for p, log in list(running):
            if p.poll() is None:
                continue
            running.remove((p, log))
            lines = [ln for ln in log.read_text().splitlines() if ln.startswith("RESULT ")]
            if lines:
                results.append(json.loads(lines[-1][7:]))
                print(lines[-1][7:], flush=True)
            else:
                print(f"FAILED ({log}):\n{log.read_text()[-2000:]}", flush=True)
    return results


def _merge(path: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    old = json.loads(path.read_text()) if path.exists() else []
    key = lambda r: (r["dataset"], r["variant"], r["seed"])  # noqa: E731
    merged = {key(r): r for r in old}
    merged.update({key(r): r for r in records})
    out = sorted(merged.values(), key=key)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(out, indent=2))
    os.replace(tmp, path)
    return out


def print_table(records: list[dict[str, Any]]) -> None:
    """Mean (± std over seeds) per dataset and variant; cost as parameters and seconds per step.

    Seconds per step are wall clock on whatever machine ran the sweep (noisy when shared); the
    parameter count is the sampler's cost (about 2 x parameters FLOP per row).
    """
    import numpy as np

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        if "detection_auc" in r:
            groups.setdefault((r["dataset"], r["variant"]), []).append(r)
    print(
        "| dataset | variant | seeds | steps | detection AUC | Quality | pair trends | TSTR | "
        "student params | s/step | sampler rows/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (ds, v), rs in sorted(groups.items()):
        auc = [r["detection_auc"] for r in rs]
        spread = f" ± {np.std(auc):.3f}" if len(rs) > 1 else ""
        steps = rs[0].get("distill_steps", rs[0].get("teacher_steps"))
        print(
            f"| {ds} | {v} | {len(rs)} | {steps} | {np.mean(auc):.3f}{spread} | "
            f"{np.mean([r['quality'] for r in rs]):.3f} | "
            f"{np.mean([r['column_pair_trends'] for r in rs]):.3f} | "
            f"{np.mean([r['tstr'] for r in rs]):.3f} | {rs[0].get('parameters', '')} | "
            f"{np.median([r['seconds_per_step'] for r in rs]):.3f} | "
            f"{rs[0].get('sample_rows_per_second', '')} |"
        )
    speed = [r for r in records if r["variant"].startswith("speed_")]
    if speed:
        print(
            "\n| dataset | evaluations | threads | network rows/s | rows/s (100k, decoded) | load |"
        )
        print("|---|---|---|---|---|---|")
        for r in speed:
            print(
                f"| {r['dataset']} | {r['sampler_steps']} | {r['threads']} | "
                f"{r['network_rows_per_second']} | {r['sample_rows_per_second']} | "
                f"{r['load_average_1min']} |"
            )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="*", default=["diamonds", "credit_default"])
    ap.add_argument("--variants", nargs="*", default=["base"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--steps", type=int, default=4000, help="distillation steps per variant")
    ap.add_argument("--teacher-steps", type=int, default=3000)
    ap.add_argument("--pairs", type=int, default=MAX_PAIRS, help="(z, ODE(z)) pairs cached")
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "distill_sweep.json")
    ap.add_argument(
        "--collect", action="store_true", help="merge every finished job's log, print the table"
    )
    ap.add_argument("--job", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.collect:
        found = []
        for log in sorted((SWEEP / "logs").glob("*.log")):
            for ln in log.read_text().splitlines():
                if ln.startswith("RESULT "):
                    res = json.loads(ln[7:])
                    found += res.get("records", [res])
        teachers = [json.loads(p.read_text()) for p in sorted(SWEEP.glob("*/teacher.json"))]
        keep = [r for r in found if "overrides" in r or r["variant"].startswith("speed_")]
        print_table(_merge(args.out, keep + teachers))
        return 0
    if args.job:
        kind, ds, *rest = args.job
        if kind == "teacher":
            res = teacher_job(ds, args.teacher_steps, args.pairs)
        elif kind == "teacher_score":
            res = teacher_score_job(ds)
        elif kind == "speed":
            res = speed_job(ds, int(rest[0]))
        else:
            res = variant_job(ds, rest[0], int(rest[1]), args.steps)
        print("RESULT " + json.dumps(res), flush=True)
        return 0
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    prepare(args.datasets)
    logs = SWEEP / "logs"
    teachers = [
        (
            ["--job", "teacher", ds, "--teacher-steps", str(args.teacher_steps)]
            + ["--pairs", str(args.pairs)],
            logs / f"{ds}.log",
        )
        for ds in args.datasets
        if not (SWEEP / ds / "teacher.json").exists()
    ]
    records = _run_all(teachers, args.parallel)
    rescore = [
        (["--job", "teacher_score", ds], logs / f"{ds}.score.log")
        for ds in args.datasets
        if (SWEEP / ds / "teacher.json").exists()
        and "protect_extremes" not in json.loads((SWEEP / ds / "teacher.json").read_text())
    ]
    _run_all(rescore, args.parallel)
    records += [
        json.loads((SWEEP / ds / "teacher.json").read_text())
        for ds in args.datasets
        if (SWEEP / ds / "teacher.json").exists()
    ]
    jobs = [
        (
            ["--job", "variant", ds, v, str(s), "--steps", str(args.steps)],
            logs / f"{ds}.{v}.{s}.log",
        )
        for v in args.variants
        for s in args.seeds
        for ds in args.datasets
    ]
    records += _run_all(jobs, args.parallel)
    print_table(_merge(args.out, records))
    return 0


if __name__ == "__main__":
    sys.exit(main())

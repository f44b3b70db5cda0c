"""Design sweep: which model choices help, measured at a fixed number of steps.

Each job trains one ``onestep`` model (its flow teacher included) on one dataset with one
variant of the defaults, then scores teacher and student on the holdout with the benchmark's
detection AUC and a Column-Shapes-style score (1 - KS for numbers, 1 - TVD for categories).
Budgets are in steps, not minutes, so variants compare at equal work; run it where there is a
GPU (each job takes about a minute there) or on CPU with patience.

    python benchmarks/design_sweep.py --work benchmarks/work --out results.json [--device cuda]

Inputs are the ``train.parquet`` / ``holdout.parquet`` files that ``fidelity.py prepare`` writes.
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

VARIANTS: dict[str, dict[str, Any]] = {
    "base": {"categorical": "continuous"},
    "softmax": {"categorical": "softmax"},
    "lr2e-3": {"lr": 2e-3},
    "long": {},  # same as base; run with a larger --steps
    # Polyak average of the weights of every phase (teacher and student), see training.py.
    "ema999": {"ema_decay": 0.999},
    "ema9995": {"ema_decay": 0.9995},
    # Velocity-network designs of the teacher (nets.py), against "mlp" = today's default
    # (512x4 plain MLP, 0.83M parameters on a 30-feature table). The residual net is sized to
    # the same parameter count (two blocks of two 384x384 layers plus the t-modulation).
    "mlp": {},
    "resmlp": {"net": "resmlp", "width": 384, "depth": 2},
    "plr": {"num_embedding": "periodic"},
    # lower initial frequencies (periods of about 3 standard deviations instead of 1)
    "plr_s03": {"num_embedding": "periodic", "embedding_sigma": 0.3},
    "resmlp_plr": {"net": "resmlp", "width": 384, "depth": 2, "num_embedding": "periodic"},
    # Equal time instead of equal steps: resmlp_plr's step costs about 1.24x the plain MLP's
    # (interleaved timing, one thread), so 2400 of its steps cost about 3000 of the MLP's.
    "resmlp_plr_2400": {
        "net": "resmlp",
        "width": 384,
        "depth": 2,
        "num_embedding": "periodic",
        "max_steps": 2400,
    },
    "mlp_wide": {"width": 896, "depth": 2},
    "mlp_deep": {"width": 336, "depth": 8},
}
DATASETS = ["california_housing", "credit_default", "diamonds", "nyc_flights"]


def shapes_score(real: Any, syn: Any) -> float:
    """Mean over columns of 1 - KS (numeric, datetime) or 1 - TVD (other); nulls as a category."""
    import numpy as np
    import pandas as pd
    from scipy.stats import ks_2samp

    scores = []
    for c in real.columns:
        r, s = real[c], syn[c]
        if (
            pd.api.types.is_numeric_dtype(r.dtype)
            and not pd.api.types.is_bool_dtype(r.dtype)
            or pd.api.types.is_datetime64_any_dtype(r.dtype)
        ):
            rv = pd.to_numeric(
                r.dropna().astype("int64")
                if pd.api.types.is_datetime64_any_dtype(r.dtype)
                else r.dropna(),
                errors="coerce",
            )
            sv = pd.to_numeric(
                s.dropna().astype("int64")
                if pd.api.types.is_datetime64_any_dtype(s.dtype)
                else s.dropna(),
                errors="coerce",
            )
            if len(rv) and len(sv):
                scores.append(1 - ks_2samp(rv, sv).statistic)
        else:
            rf = r.astype(str).value_counts(normalize=True)
            sf = s.astype(str).value_counts(normalize=True)
            idx = rf.index.union(sf.index)
            scores.append(
                1
                - 0.5 * np.abs(rf.reindex(idx, fill_value=0) - sf.reindex(idx, fill_value=0)).sum()
            )
    return float(np.mean(scores))


def run_job(
    work: Path,
    dataset: str,
    variant: str,
    device: str,
    steps: int,
    distill_steps: int | None = None,
    seed: int = 0,
    mse_student: bool = False,
    save_samples: bool = False,
    teacher_only: bool = False,
) -> dict[str, Any]:
    import torch

    from pfcore import models

    torch.set_num_threads(1)
    tr, x_train, x_valid, hold = load_job(work, dataset)
    cfg = {
        "device": device,
        "max_steps": steps,
        "distill_max_steps": distill_steps or steps,
        "conditional_max_steps": 0,  # the unconditional sampler is what is scored
        "seed": seed,
        "epochs": None,
        "max_minutes": 30.0,
        "threads": 1,
        **VARIANTS[variant],
    }
    if teacher_only:
        # The teacher trains first and alone, so its score does not depend on what follows; a
        # token distillation keeps the fit path unchanged and the student is not scored.
        cfg.update(distill_max_steps=1, n_pairs=256, distill_min_seconds=0.0)
    model = models.build("onestep", cfg, preset="balanced")
    t0 = time.perf_counter()
    summary = model.fit(x_train, tr.blocks, valid=x_valid)
    fit_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "dataset": dataset,
        "variant": variant,
        "seed": seed,
        "device": device,
        "fit_seconds": round(fit_s, 1),
        "teacher_steps": summary["teacher"]["steps"],
        "distill_steps": summary["distill"]["steps"],
        "teacher_seconds": summary["teacher"].get("seconds"),
        "teacher_seconds_per_step": round(
            summary["teacher"]["seconds"] / max(1, summary["teacher"]["steps"]), 4
        ),
        "teacher_parameters": summary["teacher"].get("parameters"),
    }
    students = [] if teacher_only else [("onestep", model)]
    if mse_student and model.teacher is not None:
        # Same teacher, the other distillation loss: isolates the student's categorical loss.
        from pfcore.models.onestep import make_pairs

        xt = torch.from_numpy(x_train).to(model.device)
        vt = torch.from_numpy(x_valid).to(model.device)
        pairs = make_pairs(model.teacher, model.config.n_pairs, model.config.seed)
        alt = models.OneStepModel.from_teacher(
            model.teacher,
            pairs,
            xt,
            vt,
            {**model.config.to_dict(), "distill_loss": "mse"},
            budget_s=1800.0,
        )
        students.append(("onestep_mse", alt))
    for name, m in (("flow", model.teacher), *students):
        # With --save-samples the rows are kept for the per-pair diagnostic after the run.
        keep = work / dataset / f"syn.{variant}.s{seed}.{name}.parquet" if save_samples else None
        for metric, value in score_model(m, tr, hold, keep).items():
            out[f"{name}_{metric}"] = value
    if device.startswith("cuda"):
        z = torch.randn(1_000_000, model.latent_dim, device=device)
        model.push(z[:1000])
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.push(z)
        torch.cuda.synchronize()
        out["gpu_push_rows_per_second"] = round(1_000_000 / (time.perf_counter() - t0))
    return out


def load_job(work: Path, dataset: str) -> tuple[Any, Any, Any, Any]:
    """(transformer, encoded training rows, encoded validation rows, holdout DataFrame).

    The prepared ``train.parquet`` encoded by a transform fitted on it (seed 0) and split 90/10
    by a seeded permutation for the early-stopping proxy: every sweep job of every family
    trains on exactly these rows and is scored against this holdout.
    """
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from pfcore.schema import infer_schema
    from pfcore.transforms import TableTransformer

    train_t = pq.read_table(work / dataset / "train.parquet")
    hold = pd.read_parquet(work / dataset / "holdout.parquet")
    tr = TableTransformer.fit(train_t, infer_schema(train_t), seed=0)
    x = tr.encode(train_t, seed=0)
    perm = np.random.default_rng(0).permutation(len(x))
    nv = len(x) // 10
    return tr, x[perm[nv:]], x[perm[:nv]], hold


def score_model(model: Any, tr: Any, hold: Any, keep: Path | None = None) -> dict[str, float]:
    """Detection AUC and shapes score of as many decoded rows as the holdout (sample seed 1);
    the rows are also written to ``keep`` when given."""
    from scoring import detection_auc

    syn = tr.decode(model.sample(len(hold), seed=1), seed=1).to_pandas()
    if keep is not None:
        syn.to_parquet(keep)
    return {
        "auc": round(detection_auc(hold, syn), 4),
        "shapes": round(shapes_score(hold, syn), 4),
    }


def log_path(out: Path, ds: str, variant: str) -> Path:
    return out.with_name(f"{out.stem}.{ds}.{variant}.log")


def log_file(out: Path, ds: str, variant: str) -> Any:
    return open(log_path(out, ds, variant), "w")  # noqa: SIM115 - closed when the job ends


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--datasets", nargs="*", default=DATASETS)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--distill-steps", type=int, default=None, help="default: --steps")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument(
        "--mse", action="store_true", help="also distil an MSE student from the same teacher"
    )
    ap.add_argument(
        "--save-samples", action="store_true", help="write each sampler's rows beside the data"
    )
    ap.add_argument(
        "--teacher-only", action="store_true", help="score the flow teacher only (no distillation)"
    )
    ap.add_argument("--parallel", type=int, default=0, help="jobs at a time; 0 = all at once")
    ap.add_argument("--sequential", action="store_true", help="one job at a time (CPU)")
    ap.add_argument("--job", nargs=3, metavar=("DATASET", "VARIANT", "SEED"))
    args = ap.parse_args()
    if args.job:
        ds, v, seed = args.job
        res = run_job(
            args.work,
            ds,
            v,
            args.device,
            args.steps,
            args.distill_steps,
            int(seed),
            args.mse,
            args.save_samples,
            args.teacher_only,
        )
        print("RESULT " + json.dumps(res), flush=True)
        return 0
    parallel = 1 if args.sequential else args.parallel
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    procs = []
    for ds in args.datasets:
        for v in args.variants:
            for seed in args.seeds:
                cmd = [sys.executable, __file__, "--work", str(args.work), "--out", str(args.out)]
                cmd += ["--device", args.device, "--steps", str(args.steps)]
                if args.distill_steps:
                    cmd += ["--distill-steps", str(args.distill_steps)]
                if args.mse:
                    cmd.append("--mse")
                if args.save_samples:
                    cmd.append("--save-samples")
                if args.teacher_only:
                    cmd.append("--teacher-only")
                cmd += ["--job", ds, v, str(seed)]
                while parallel and sum(p.poll() is None for _, p in procs) >= parallel:
                    time.sleep(2)
                name = f"{v}.s{seed}"
                log = log_file(args.out, ds, name)
                procs.append(
                    (
                        (ds, name),
                        subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                    )
                )
    results = []
    for (ds, v), p in procs:
        p.wait()
        text = log_path(args.out, ds, v).read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
        if lines:
            results.append(json.loads(lines[-1][7:]))
            print(lines[-1], flush=True)
        else:
            results.append({"dataset": ds, "variant": v, "error": text[-2000:]})
            print(f"FAILED {ds} {v}: {text[-1500:]}", flush=True)
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

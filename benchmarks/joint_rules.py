"""Joint-structure probe: does a model keep a sentinel rule and a chain of categoricals?

A synthetic table where every marginal is easy but the joint is strict:

- ``balance`` is exactly 0 when ``status`` is ``"closed"`` and positive otherwise (a sentinel
  rule that holds on every row, like a count column and an "unknown" category in real tables);
- ``region -> segment -> tier`` is a chain of three categoricals, each a noisy function of the
  previous one (90% follow a fixed map).

For the ``onestep`` default (and the flow teacher inside the same fit, calibrated the same way)
it prints the rule's violation rate and a pair detection AUC per column pair (a small
gradient-boosted classifier that sees only the two columns, real vs synthetic, 3-fold CV;
0.5 = indistinguishable), and writes ``benchmarks/results/joint_rules.json``. Budgets are
step-bound (deterministic), one torch thread.

    OMP_NUM_THREADS=1 python benchmarks/joint_rules.py [--preset fast] [--steps 1500]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = Path(os.environ.get("PUSHFORWARD_BENCH_RESULTS", ROOT / "benchmarks" / "results"))
PAIRS = (("status", "balance"), ("region", "segment"), ("segment", "tier"))
N_ROWS = 4000
STATUS = ["closed", "active", "dormant", "frozen"]
REGIONS = ["north", "south", "east", "west", "centre"]
SEGMENTS = ["s0", "s1", "s2", "s3", "s4"]
TIERS = ["gold", "silver", "bronze", "iron", "tin"]


def rule_table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    status = rng.choice(4, n, p=[0.3, 0.35, 0.2, 0.15])
    scale = np.array([0.0, 3.0, 1.0, 5.0])[status]
    balance = np.where(status == 0, 0.0, np.round(np.exp(rng.normal(scale, 0.5)), 2))
    region = rng.choice(5, n)
    segment = np.where(rng.random(n) < 0.9, (region + 1) % 5, rng.choice(5, n))
    tier = np.where(rng.random(n) < 0.9, (segment * 2) % 5, rng.choice(5, n))
    return pd.DataFrame(
        {
            "status": np.array(STATUS)[status],
            "balance": balance,
            "region": np.array(REGIONS)[region],
            "segment": np.array(SEGMENTS)[segment],
            "tier": np.array(TIERS)[tier],
        }
    )


def pair_auc(real: pd.DataFrame, syn: pd.DataFrame, cols: tuple[str, str]) -> float:
    """3-fold CV ROC AUC of a small gradient-boosted classifier on one column pair."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    n = min(len(real), len(syn))
    frame = pd.concat([real[list(cols)].iloc[:n], syn[list(cols)].iloc[:n]], ignore_index=True)
    feats, is_cat = [], []
    for c in cols:
        if not pd.api.types.is_numeric_dtype(frame[c]):  # object, or pandas 3's str dtype
            feats.append(frame[c].astype("category").cat.codes.to_numpy(np.float64))
            is_cat.append(True)
        else:
            feats.append(frame[c].to_numpy(np.float64))
            is_cat.append(False)
    x = np.stack(feats, axis=1)
    y = np.r_[np.zeros(n), np.ones(n)]
    clf = HistGradientBoostingClassifier(categorical_features=is_cat, max_iter=50, random_state=0)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    return float(np.mean(cross_val_score(clf, x, y, cv=cv, scoring="roc_auc")))


def violations(df: pd.DataFrame) -> float:
    return float(((df["status"] == "closed") != (df["balance"] == 0)).mean())


def run(preset: str, steps: int, seed: int) -> dict[str, Any]:
    import pyarrow as pa
    import torch

    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    torch.set_num_threads(1)
    train = pa.Table.from_pandas(rule_table(N_ROWS, seed=0), preserve_index=False)
    real = rule_table(N_ROWS, seed=1)
    cfg = dict(max_steps=steps, epochs=None, distill_max_steps=steps, max_minutes=60.0, threads=1)
    t0 = time.perf_counter()
    synth = Synthesizer.fit(
        train, infer_schema(train), family="onestep", preset=preset, config=cfg, seed=seed
    )
    fit_s = time.perf_counter() - t0
    teacher = synth.model.teacher  # type: ignore[attr-defined]
    teacher._calibrate(torch.from_numpy(synth.transformer.encode(train, seed=seed)))
    out: dict[str, Any] = {
        "preset": preset,
        "steps": steps,
        "seed": seed,
        "rows": N_ROWS,
        "fit_seconds": round(fit_s, 1),
        "real_vs_real": {
            "-".join(p): round(pair_auc(real, rule_table(N_ROWS, seed=2), p), 3) for p in PAIRS
        },
    }
    for name, model in (("onestep", synth.model), ("flow_teacher", teacher)):
        syn = synth.transformer.decode(model.sample(N_ROWS, seed=1), seed=1).to_pandas()
        out[name] = {
            "rule_violations": round(violations(syn), 4),
            **{"-".join(p): round(pair_auc(real, syn, p), 3) for p in PAIRS},
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    res = run(args.preset, args.steps, args.seed)
    print("| model | rule violations | " + " | ".join("-".join(p) for p in PAIRS) + " |")
    print("|---|---|" + "---|" * len(PAIRS))
    for name in ("onestep", "flow_teacher", "real_vs_real"):
        r = res[name]
        viol = f"{r['rule_violations']:.2%}" if "rule_violations" in r else "0%"
        print(f"| {name} | {viol} | " + " | ".join(f"{r['-'.join(p)]:.3f}" for p in PAIRS) + " |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "joint_rules.json"
    old = json.loads(path.read_text()) if path.exists() else []
    old = [
        r
        for r in old
        if (r["preset"], r["steps"], r["seed"]) != (args.preset, args.steps, args.seed)
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps([*old, res], indent=2))
    os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

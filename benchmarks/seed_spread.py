"""Run-to-run spread of the default synthesizer: refit with other seeds, score like fidelity.py.

Why: detection AUC differences of 0.01-0.02 between methods are only meaningful against our own
seed-to-seed spread (training is time-bounded, so step counts also vary with machine load).
Same protocol as ``fidelity.py`` (its ``work/<dataset>`` splits, ``balanced`` preset, one torch
thread, sampling seed 1, scoring.py); only the fit seed changes. Seed 0 is fidelity.json's record.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/seed_spread.py diamonds --seeds 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work"
OUT = ROOT / "benchmarks" / "results" / "seed_spread.json"


def run(dataset: str, seed: int, preset: str) -> dict:
    import pandas as pd
    import pyarrow.parquet as pq
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scoring

    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    torch.set_num_threads(1)
    train = pq.read_table(WORK / dataset / "train.parquet")
    hold = pd.read_parquet(WORK / dataset / "holdout.parquet")
    synth = Synthesizer.fit(
        train,
        infer_schema(train),
        family="onestep",
        preset=preset,
        seed=seed,
        config={"threads": 1, "device": "cpu"},
    )
    syn = scoring._align(hold, synth.sample(len(hold), seed=1).to_pandas())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = scoring.quality(hold, syn)
        auc = scoring.detection_auc(hold, syn)
    return {
        "dataset": dataset,
        "method": "pushforward-onestep",
        "preset": preset,
        "seed": seed,
        **{k: round(v, 4) for k, v in q.items()},
        "detection_auc": round(auc, 4),
        "fit_seconds": synth.info["fit_seconds"],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _merge(records: list[dict]) -> None:
    old = json.loads(OUT.read_text()) if OUT.exists() else []
    keys = {(r["dataset"], r["preset"], r["seed"]) for r in records}
    merged = [r for r in old if (r["dataset"], r["preset"], r["seed"]) not in keys] + records
    merged.sort(key=lambda r: (r["dataset"], r["preset"], r["seed"]))
    tmp = OUT.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(merged, indent=2) + "\n")
    os.replace(tmp, OUT)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--preset", default="balanced")
    args = ap.parse_args(argv)
    records = [run(args.dataset, s, args.preset) for s in args.seeds]
    _merge(records)
    print("| dataset | seed | Quality | pair trends | detection AUC | fit s |")
    print("|---|---|---|---|---|---|")
    for r in records:
        print(
            f"| {r['dataset']} | {r['seed']} | {r['quality']:.3f} | "
            f"{r['column_pair_trends']:.3f} | {r['detection_auc']:.3f} | {r['fit_seconds']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

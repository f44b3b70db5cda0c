"""Fit one peer synthesizer on a training Parquet file and write its synthetic rows.

Runs in the peers' own virtual environment (``/work/peers-venv``: sdv, mostlyai-engine), never
in the project's: peers are competitors to measure, not dependencies. ``benchmarks/fidelity.py``
calls this as a subprocess and scores the output with the same code as our own models.

Usage::

    /work/peers-venv/bin/python benchmarks/peers.py METHOD TRAIN.parquet OUT_DIR N_ROWS \
        [--epochs E] [--minutes M] [--threads T]

Writes ``OUT_DIR/synthetic.parquet`` and ``OUT_DIR/run.json`` (fit/sample seconds, budgets,
seed, library versions). ``N_ROWS`` are sampled in one timed call; the fidelity benchmark asks
for 100,000 so a fixed start-up cost of a sampler is weighed as it is in real use (TabularARGN's
generate measured 183 rows/s timed on 4k rows, 11k-16k rows/s on 100k). Imports nothing from
pfcore.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

METHODS = ("sdv-gaussiancopula", "sdv-ctgan", "sdv-tvae", "mostly-tabularargn")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("sdv", "ctgan", "mostlyai-engine", "torch", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def run_sdv(method: str, df, n_rows: int, epochs: int | None, seed: int):
    import numpy as np
    import torch
    from sdv.metadata import Metadata
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer

    np.random.seed(seed)
    torch.manual_seed(seed)
    metadata = Metadata.detect_from_dataframes({"table": df})
    if method == "sdv-gaussiancopula":
        synth = GaussianCopulaSynthesizer(metadata)
        budget = {"defaults": True}
    elif method == "sdv-ctgan":
        synth = CTGANSynthesizer(metadata, epochs=epochs or 25)
        budget = {"epochs": epochs or 25}
    else:
        synth = TVAESynthesizer(metadata, epochs=epochs or 40)
        budget = {"epochs": epochs or 40}
    t0 = time.perf_counter()
    synth.fit({"table": df})  # SDV 2.x takes {table_name: DataFrame}
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    syn = synth.sample(num_rows=n_rows)
    if isinstance(syn, dict):
        syn = syn["table"]
    sample_s = time.perf_counter() - t0
    return syn, fit_s, sample_s, budget


def run_argn(df, n_rows: int, minutes: float, work: Path, seed: int):
    import numpy as np
    import pandas as pd
    import torch
    from mostlyai import engine

    np.random.seed(seed)
    torch.manual_seed(seed)
    ws = work / "engine-ws"
    shutil.rmtree(ws, ignore_errors=True)
    t0 = time.perf_counter()
    engine.split(workspace_dir=ws, tgt_data=df, model_type="TABULAR")
    engine.analyze(workspace_dir=ws)
    engine.encode(workspace_dir=ws)
    engine.train(workspace_dir=ws, max_training_time=minutes, device="cpu")
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.generate(workspace_dir=ws, sample_size=n_rows, device="cpu")
    sample_s = time.perf_counter() - t0
    parts = sorted((ws / "SyntheticData").glob("*.parquet"))
    syn = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    shutil.rmtree(ws, ignore_errors=True)
    return syn, fit_s, sample_s, {"max_training_time_minutes": minutes, "max_epochs": 100}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("method", choices=METHODS)
    ap.add_argument("train", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("n_rows", type=int)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    df = pd.read_parquet(args.train)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.method == "mostly-tabularargn":
        syn, fit_s, sample_s, budget = run_argn(df, args.n_rows, args.minutes, args.out, args.seed)
    else:
        syn, fit_s, sample_s, budget = run_sdv(args.method, df, args.n_rows, args.epochs, args.seed)
    syn = syn[list(df.columns)]
    tmp = args.out / ".synthetic.parquet.tmp"
    syn.to_parquet(tmp, index=False)
    os.replace(tmp, args.out / "synthetic.parquet")
    info = {
        "method": args.method,
        "seed": args.seed,
        "budget_minutes": args.minutes if args.method == "mostly-tabularargn" else None,
        "fit_seconds": round(fit_s, 3),
        "sample_seconds": round(sample_s, 3),
        "sample_rows": int(len(syn)),
        "budget": budget,
        "threads": args.threads,
        "versions": _versions(),
        "device": "cpu",
    }
    (args.out / "run.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())

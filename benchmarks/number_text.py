"""Numbers written as text (`$84,835.00 `, `12%`): parsed at ingest against kept as text.

For each CSV the script ingests it twice, as ingest does now (such columns parsed as numbers,
``pfcore.io``) and with those columns declared categorical in the overrides (kept as text, as
ingest did before), fits the product default on each (80/20 split, ``--minutes``, one thread)
and scores the held-out rows of the same representation:

* ``detection_auc``: ``scoring.detection_auc`` on the modelled columns (ids and constants left
  out, as the gate does), per sample seed;
* ``dependence_gap``: for each parsed column, the mean absolute difference between the real
  and the synthetic Spearman correlation with every other numeric column (the text variant's
  synthetic values parsed the same way): whether an amount keeps its relations to the rest of
  the row, which as a category of spellings it cannot.

    OMP_NUM_THREADS=1 python benchmarks/number_text.py marketing_data.csv --minutes 2 \
        --out benchmarks/results/number_text.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.scoring import detection_auc
from pfcore.ingest import ingest
from pfcore.io import read_dataset
from pfcore.schema import infer_schema
from pfcore.synthesizer import Synthesizer, split_train_holdout


def as_number(s: pd.Series) -> pd.Series:
    """A column as numbers: text with currency signs, separators, percent signs parsed."""
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float)
    return pd.to_numeric(s.astype("string").str.replace(r"[$€£,%\s]", "", regex=True))


def dependence_gap(real: pd.DataFrame, syn: pd.DataFrame, col: str) -> float:
    others = [c for c in real.columns if c != col and pd.api.types.is_numeric_dtype(real[c])]
    r = [as_number(real[col]).corr(real[c], method="spearman") for c in others]
    s = [as_number(syn[col]).corr(syn[c], method="spearman") for c in others]
    gaps = [abs(a - b) for a, b in zip(r, s, strict=True) if np.isfinite(a) and np.isfinite(b)]
    return round(float(np.mean(gaps)), 4) if gaps else float("nan")


def run(csv: Path, minutes: float, seeds: list[int]) -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        parsed = ingest(csv, Path(tmp) / "parsed")
        cols = [g.split("'")[1] for g in parsed.manifest["guesses"] if "numbers written as" in g]
        print(csv.name, "parsed as numbers:", cols, flush=True)
        text = ingest(
            csv,
            Path(tmp) / "text",
            overrides={"columns": {c: {"kind": "categorical"} for c in cols}},
        )
        for variant, res in (("parsed", parsed), ("text", text)):
            table = read_dataset(res.out_dir)
            train, hold = split_train_holdout(table, 0.2, 0, 20_000)
            t0 = time.perf_counter()
            synth = Synthesizer.fit(
                train, infer_schema(train), config={"threads": 1, "max_minutes": minutes}
            )
            fit_s = round(time.perf_counter() - t0, 1)
            skipped = [c.name for c in synth.schema.columns if c.kind in ("id", "constant")]
            real = hold.to_pandas().drop(columns=skipped)
            for seed in seeds:
                syn = synth.sample(len(hold), seed=seed).to_pandas().drop(columns=skipped)
                rec = {
                    "dataset": csv.stem,
                    "variant": variant,
                    "seed": seed,
                    "rows": len(hold),
                    "fit_seconds": fit_s,
                    "columns": cols,
                    "detection_auc": round(detection_auc(real, syn, seed=seed), 4),
                    "dependence_gap": {c: dependence_gap(real, syn, c) for c in cols},
                }
                print(json.dumps(rec), flush=True)
                out.append(rec)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", nargs="+", type=Path)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    records = [r for csv in args.csv for r in run(csv, args.minutes, args.seeds)]
    summary = []
    for ds in dict.fromkeys(r["dataset"] for r in records):
        row: dict = {"dataset": ds}
        for variant in ("text", "parsed"):
            mine = [r for r in records if r["dataset"] == ds and r["variant"] == variant]
            row[f"{variant}_detection_auc"] = round(
                float(np.mean([r["detection_auc"] for r in mine])), 4
            )
            gaps = [g for r in mine for g in r["dependence_gap"].values()]
            row[f"{variant}_dependence_gap"] = round(float(np.nanmean(gaps)), 4)
        summary.append(row)
        print(json.dumps(row))
    args.out.write_text(json.dumps({"records": records, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()

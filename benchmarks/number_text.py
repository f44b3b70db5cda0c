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
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.csv_fit import add_arguments, as_text, fit_table, ingest_csv
from benchmarks.scoring import detection_auc


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
    parsed, guesses = ingest_csv(csv)
    cols = [g.split("'")[1] for g in guesses if "numbers written as" in g]
    print(csv.name, "parsed as numbers:", cols, flush=True)
    text, _ = ingest_csv(csv, as_text(cols))
    for variant, table in (("parsed", parsed), ("text", text)):
        fit = fit_table(table, minutes)
        real = fit.frame(fit.hold)
        for seed in seeds:
            syn = fit.frame(fit.synth.sample(len(fit.hold), seed=seed))
            rec = {
                "dataset": csv.stem,
                "variant": variant,
                "seed": seed,
                "rows": len(fit.hold),
                "fit_seconds": fit.fit_seconds,
                "columns": cols,
                "detection_auc": round(detection_auc(real, syn, seed=seed), 4),
                "dependence_gap": {c: dependence_gap(real, syn, c) for c in cols},
            }
            print(json.dumps(rec), flush=True)
            out.append(rec)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap)
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

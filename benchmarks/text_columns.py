"""Free-text columns as ``text`` (new text from their words) against the treatment before
(``categorical``: nearly every value pooled, synthetic rows redraw training values), on the
same split of each CSV, one fit of the product default per treatment.

Per sample seed, against the held-out rows:

* ``detection_auc``: ``scoring.detection_auc`` with the text column read as two numbers, the
  number of training rows that hold the row's value (0: a new value) and its word count, beside
  every other modelled column: the text column as a classifier that knows the training table
  sees it;
* ``detection_auc_rest``: the other modelled columns alone (what the text column's treatment
  does to the model of the rest);
* ``gate_detection_auc``: the fidelity report's own detection (it leaves text columns out, as
  ids; declared categorical, it reads each level's count over training, held-out and synthetic
  rows);
* ``seen_share``: share of non-null values that some training row holds (``real_seen_share``:
  the held-out rows'); ``copied_once``: share of non-null values held by exactly one training
  row (a whole training value copied from a single row: a privacy leak), and the held-out
  rows' ``real_copied_once``.

    OMP_NUM_THREADS=1 python benchmarks/text_columns.py airbnb.csv:name titanic.csv:Name \
        --minutes 2 --out benchmarks/results/text_columns.json
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
from benchmarks.csv_fit import (
    CsvFit,
    column_specs,
    fit_table,
    ingest_csv,
    summarize,
    text_column_arguments,
)
from benchmarks.scoring import detection_auc
from pfcore.fidelity import evaluate


def text_features(values: pd.Series, train_counts: pd.Series) -> pd.DataFrame:
    """A text column as numbers: training rows holding the value, and its word count."""
    present = values.notna()
    held = values.map(train_counts).fillna(0).where(present)
    words = values.where(present).str.split().str.len()
    return pd.DataFrame({"train_count": held.astype(float), "words": words.astype(float)})


def frames(fit: CsvFit, table, column: str, counts: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the modelled columns with the text column as numbers, the other modelled columns)."""
    df = table.to_pandas()
    rest = df.drop(columns=[c for c in fit.skipped if c in df] + [column], errors="ignore")
    feats = text_features(df[column], counts).set_index(rest.index)
    return pd.concat([rest, feats.add_prefix(f"{column}.")], axis=1), rest


def shares(values: pd.Series, counts: pd.Series) -> tuple[float, float]:
    v = values.dropna()
    held = v.map(counts).fillna(0)
    return round(float((held > 0).mean()), 4), round(float((held == 1).mean()), 4)


def run(
    csv: Path, column: str, minutes: float, seeds: list[int], fit_seeds: list[int]
) -> list[dict]:
    table, _ = ingest_csv(csv)
    out = []
    for fit_seed, treatment in [(f, t) for f in fit_seeds for t in ("text", "categorical")]:
        fit = fit_table(table, minutes, {"columns": {column: {"kind": treatment}}}, fit_seed)
        kind = fit.synth.schema[column].kind
        counts = fit.train.column(column).to_pandas().value_counts()
        real, real_rest = frames(fit, fit.hold, column, counts)
        real_seen, real_once = shares(fit.hold.column(column).to_pandas(), counts)
        for seed in seeds:
            drawn = fit.synth.sample(len(fit.hold), seed=seed)
            syn, syn_rest = frames(fit, drawn, column, counts)
            seen, once = shares(drawn.column(column).to_pandas(), counts)
            gate = evaluate(fit.hold, drawn, fit.synth.schema, train=fit.train, seed=seed)
            rec = {
                "dataset": csv.stem,
                "column": column,
                "treatment": kind,
                "fit_seed": fit_seed,
                "seed": seed,
                "rows": len(fit.hold),
                "fit_seconds": fit.fit_seconds,
                "detection_auc": round(detection_auc(real, syn, seed=seed), 4),
                "detection_auc_rest": round(detection_auc(real_rest, syn_rest, seed=seed), 4),
                "gate_detection_auc": round(float(gate.detection["auc"]), 4),
                "seen_share": seen,
                "real_seen_share": real_seen,
                "copied_once": once,
                "real_copied_once": real_once,
                "examples": drawn.column(column).drop_null().slice(0, 5).to_pylist(),
            }
            print(json.dumps(rec, ensure_ascii=False), flush=True)
            out.append(rec)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    text_column_arguments(ap)
    ap.add_argument("--fit-seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    torch.set_num_threads(1)
    records = []
    for path, column in column_specs(args.csv):
        records += run(path, column, args.minutes, args.seeds, args.fit_seeds)
    keys = ("detection_auc", "detection_auc_rest", "gate_detection_auc", "seen_share")
    summary = summarize(
        records,
        "treatment",
        ("text", "categorical"),
        (*keys, "copied_once"),
        ("real_seen_share", "real_copied_once"),
    )
    for row in summary:
        mine = [
            r
            for r in records
            if r["dataset"] == row["dataset"] and r["treatment"] == row["treatment"]
        ]
        fits = sorted({r["fit_seed"] for r in mine})
        row["fit_seeds"] = fits
        row["detection_auc_rest_per_fit"] = [
            round(np.mean([r["detection_auc_rest"] for r in mine if r["fit_seed"] == f]), 4)
            for f in fits
        ]
        print(
            f"{row['dataset']:10s} {row['treatment']:12s} detection {row['detection_auc']:.3f} "
            f"(rest {row['detection_auc_rest']:.3f}, report {row['gate_detection_auc']:.3f}) "
            f"seen {row['seen_share']:.3f} (real {row['real_seen_share']:.3f}) copied from "
            f"one row {row['copied_once']:.3f} (real {row['real_copied_once']:.3f})"
        )
    args.out.write_text(json.dumps({"records": records, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()

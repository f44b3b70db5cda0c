"""Pooled categories redrawn without replacement against independently, on the same fit.

A column of many rare values (free-text titles, ticket numbers, amounts written as text) is
almost all pooled (``pfcore.transforms.categorical``): decode redraws a training value for
each row. This script fits the product default once per CSV (``Synthesizer.fit``, 80/20 split
as ``fidelity.py`` makes it, ``--minutes`` per fit, one thread), then decodes the same model
output both ways for each sample seed: the code's redraws (``categorical.draw_pooled``, a
sample without replacement from the pooled values' counts) and independent draws from the same
frequencies (the redraw before), and scores each against the held-out rows:

* ``detection_auc``: ``scoring.detection_auc`` on the modelled columns (5-fold
  HistGradientBoosting; ids and constants are regenerated, and the gate leaves them out too);
* ``gate_detection_auc``: the fidelity report's own detection AUC (``pfcore.fidelity``, the
  training rows given as the gate gives them: a discrete column of more than 250 levels is
  read by each level's count over the training, held-out and synthetic rows, so a training
  value copied into a synthetic row counts at least 2 where a new held-out value counts 1);
* per pooled column without a parent link: its own detection AUC and ``repeat``, the share of
  rows whose value another row of the same table also holds (``real_repeat`` for the holdout).

    OMP_NUM_THREADS=1 python benchmarks/pooled_repeats.py a.csv b.csv --minutes 2 \
        --text " Income " name --out benchmarks/results/pooled_repeats.json

(``--text``: columns kept as pooled categoricals; free text such as Airbnb's ``name`` is
otherwise ``text`` now, see ``text_columns.py``.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.csv_fit import add_arguments, as_text, fit_table, ingest_csv
from benchmarks.scoring import detection_auc
from pfcore.fidelity import evaluate
from pfcore.transforms import categorical
from pfcore.transforms.categorical import CategoricalTransform

WITHOUT_REPLACEMENT = categorical.draw_pooled


def independent(m: int, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The redraw before: each row's value drawn independently by the pooled frequencies."""
    cdf = np.cumsum(counts) / counts.sum()
    return np.minimum(np.searchsorted(cdf, rng.random(m), side="right"), counts.size - 1)


def repeat_share(values) -> float:
    """Share of rows whose (non-null) value another row also holds."""
    v = values.dropna()
    return round(float(v.duplicated(keep=False).mean()), 4) if len(v) else float("nan")


def run(csv: Path, minutes: float, seeds: list[int], text: list[str]) -> list[dict]:
    table, _ = ingest_csv(csv)
    present = [c for c in text if c in table.column_names]
    if present:  # ingested again with those columns kept as text
        table, _ = ingest_csv(csv, as_text(present))
    fit = fit_table(table, minutes, as_text(present))  # free text too: a pooled categorical
    synth, train, hold, fit_s = fit.synth, fit.train, fit.hold, fit.fit_seconds
    pooled = [
        t.column.name
        for t in synth.transformer.transforms
        if isinstance(t, CategoricalTransform) and t.has_other and t.link is None
    ]
    real = fit.frame(hold)
    out = []
    for draw, fn in (("without_replacement", WITHOUT_REPLACEMENT), ("independent", independent)):
        categorical.draw_pooled = fn
        try:
            for seed in seeds:
                drawn = synth.sample(len(hold), seed=seed)
                syn = fit.frame(drawn)
                gate = evaluate(hold, drawn, synth.schema, train=train, seed=seed)
                rec = {
                    "dataset": csv.stem,
                    "draw": draw,
                    "seed": seed,
                    "rows": len(hold),
                    "fit_seconds": fit_s,
                    "detection_auc": round(detection_auc(real, syn, seed=seed), 4),
                    "gate_detection_auc": round(float(gate.detection["auc"]), 4),
                    "columns": {
                        c: {
                            "detection_auc": round(detection_auc(real[[c]], syn[[c]], seed), 4),
                            "repeat": repeat_share(syn[c]),
                            "real_repeat": repeat_share(real[c]),
                        }
                        for c in pooled
                    },
                }
                print(json.dumps(rec), flush=True)
                out.append(rec)
        finally:
            categorical.draw_pooled = WITHOUT_REPLACEMENT
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap)
    ap.add_argument(
        "--text", nargs="*", default=[], help="columns to keep as text (declared categorical)"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    records = [r for csv in args.csv for r in run(csv, args.minutes, args.seeds, args.text)]
    summary = []
    for ds in dict.fromkeys(r["dataset"] for r in records):
        row = {"dataset": ds}
        for draw in ("independent", "without_replacement"):
            mine = [r for r in records if r["dataset"] == ds and r["draw"] == draw]
            row[draw] = round(float(np.mean([r["detection_auc"] for r in mine])), 4)
            row[f"{draw}_gate"] = round(float(np.mean([r["gate_detection_auc"] for r in mine])), 4)
        summary.append(row)
        print(
            f"{ds:24s} detection AUC independent {row['independent']:.3f} "
            f"without replacement {row['without_replacement']:.3f}; the report's: "
            f"{row['independent_gate']:.3f} / {row['without_replacement_gate']:.3f}"
        )
    args.out.write_text(json.dumps({"records": records, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()

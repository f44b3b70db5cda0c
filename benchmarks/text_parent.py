"""New free text drawn from the chain of its row's class (``TextTransform.parent``) against
the chain of all rows, on the same fit and the same model output.

For each ``CSV:COLUMN`` the default is fitted once (80/20 split, ``--minutes``, one thread),
then each sample seed decodes the same rows twice: as fitted (each new text from the chain of
its row's class of the chosen parent column) and with the parent switched off (every new
text from the chain of all single-row values); only the text column differs. Scores, with a
bag-of-words classifier (TF-IDF of words, or of character 1-3-grams for single words, and a
logistic regression) trained on the real training rows to tell the parent's class from the
text:

* ``agreement``: its accuracy on the synthetic rows' texts against their own class (does a
  text fit the row it is in), beside ``real_agreement`` on the held-out rows;
* ``tstr``: the same classifier trained on the synthetic rows and tested on the held-out rows,
  beside ``trtr`` (trained on the real training rows).

    OMP_NUM_THREADS=1 python benchmarks/text_parent.py titanic.csv:Name cyber.csv:Text \
        --minutes 2 --out benchmarks/results/text_parent.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.csv_fit import (
    column_specs,
    fit_table,
    ingest_csv,
    summarize,
    text_column_arguments,
)
from pfcore.transforms.text import TextTransform


def classifier(unit: str):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    vec = (
        TfidfVectorizer(min_df=2)
        if unit == "word"
        else TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2)
    )
    return make_pipeline(vec, LogisticRegression(max_iter=1000))


def pairs(table, column: str, label: str) -> tuple[list[str], list[str]]:
    """(texts, classes as text) of the rows where both are present."""
    df = table.select([column, label]).to_pandas().dropna()
    return df[column].astype(str).tolist(), df[label].astype(str).tolist()


def run(csv: Path, column: str, minutes: float, seeds: list[int]) -> list[dict]:
    table, _ = ingest_csv(csv)
    fit = fit_table(table, minutes)
    (tt,) = [
        t
        for t in fit.synth.transformer.transforms
        if isinstance(t, TextTransform) and t.column.name == column
    ]
    label = tt.parent
    if label is None:
        print(f"{csv.stem}: no parent chosen for {column!r}", flush=True)
        return []
    x_tr, y_tr = pairs(fit.train, column, label)
    x_ho, y_ho = pairs(fit.hold, column, label)
    real_clf = classifier(tt.chain.unit).fit(x_tr, y_tr)
    real_agreement = float(np.mean(real_clf.predict(x_ho) == np.array(y_ho)))
    out = []
    for seed in seeds:
        for variant in ("parent", "no_parent"):
            saved = tt.parent
            tt.parent = label if variant == "parent" else None
            try:
                drawn = fit.synth.sample(len(fit.hold), seed=seed)
            finally:
                tt.parent = saved
            x_sy, y_sy = pairs(drawn, column, label)
            agreement = float(np.mean(real_clf.predict(x_sy) == np.array(y_sy)))
            syn_clf = classifier(tt.chain.unit).fit(x_sy, y_sy)
            rec = {
                "dataset": csv.stem,
                "column": column,
                "parent": label,
                "variant": variant,
                "seed": seed,
                "rows": len(fit.hold),
                "agreement": round(agreement, 4),
                "real_agreement": round(real_agreement, 4),
                "tstr": round(float(np.mean(syn_clf.predict(x_ho) == np.array(y_ho))), 4),
                "trtr": round(float(np.mean(real_clf.predict(x_ho) == np.array(y_ho))), 4),
                "majority": round(
                    float(np.mean(np.array(y_ho) == max(set(y_tr), key=y_tr.count))), 4
                ),
            }
            print(json.dumps(rec), flush=True)
            out.append(rec)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    text_column_arguments(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    records = []
    for path, column in column_specs(args.csv):
        records += run(path, column, args.minutes, args.seeds)
    summary = summarize(
        records,
        "variant",
        ("parent", "no_parent"),
        ("agreement", "tstr"),
        ("parent", "real_agreement", "trtr", "majority"),
    )
    for row in summary:
        print(
            f"{row['dataset']:10s} {row['variant']:10s} parent {row['parent']!r}: agreement "
            f"{row['agreement']:.3f} (real {row['real_agreement']:.3f}), TSTR "
            f"{row['tstr']:.3f} (TRTR {row['trtr']:.3f}, majority {row['majority']:.3f})"
        )
    args.out.write_text(json.dumps({"records": records, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()

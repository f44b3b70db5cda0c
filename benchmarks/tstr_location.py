"""How much of a saved fit's TSTR shortfall is the target's dependence on exact location.

TSTR (a boosted regressor trained on the synthetic rows, scored on the real holdout) stays
below TRTR on the tables whose target is a house value (california_housing 0.788 against
0.833). This script scores a saved fit's rows as they are, then with each drawn target value
mapped onto the target's training law within its k-means cell of the drawn coordinates (after
sampling, no model change; ``--cells`` sets k): if TSTR rises with finer cells, the shortfall
is location resolved too coarsely. It also prints the detection AUC (mean of three classifier
seeds), which such a map raises: the rows then carry the training rows' values of a few dozen
neighbours. A diagnostic, not a sampler.

    OMP_NUM_THREADS=1 python benchmarks/tstr_location.py --models N/california_housing \\
        --cells 64 256 512 --out tstr_location.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _mapped(syn, train, coords: list[str], target: str, k: int):
    """``syn`` with ``target`` mapped per k-means cell of ``coords`` (fitted on ``train``,
    standardised) onto the training rows' quantiles in that cell, by the synthetic rows' ranks."""
    import pandas as pd
    from sklearn.cluster import KMeans

    mu, sd = train[coords].mean(), train[coords].std()
    km = KMeans(k, n_init=1, random_state=0).fit(((train[coords] - mu) / sd).to_numpy())
    cell_train = km.labels_
    cell_syn = km.predict(((syn[coords] - mu) / sd).to_numpy())
    out = syn.copy()
    values = out[target].to_numpy(dtype=float).copy()
    for c in range(k):
        rows = np.flatnonzero(cell_syn == c)
        real = train.loc[cell_train == c, target].to_numpy(dtype=float)
        if not len(rows) or len(real) < 5:
            continue
        ranks = (pd.Series(values[rows]).rank(method="first").to_numpy() - 0.5) / len(rows)
        values[rows] = np.quantile(real, ranks)
    out[target] = values
    return out


def main(argv: list[str] | None = None) -> None:
    import pyarrow.parquet as pq
    import torch

    from benchmarks.saved_fit import SHARED
    from benchmarks.scoring import detection_auc, tstr_trtr
    from pfcore.synthesizer import Synthesizer, split_train_holdout

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", required=True, help="a saved fit of california_housing")
    ap.add_argument("--dataset", default="california_housing")
    ap.add_argument("--target", default="median_house_value")
    ap.add_argument("--coords", nargs=2, default=["longitude", "latitude"])
    ap.add_argument("--cells", nargs="+", type=int, default=[64, 256, 512])
    ap.add_argument("--out", default="tstr_location.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    train, hold = split_train_holdout(
        pq.read_table(SHARED / f"{args.dataset}.parquet"), 0.2, 0, 20_000
    )
    train, hold = train.to_pandas(), hold.to_pandas()
    syn = Synthesizer.load(args.models).sample(len(train), 3).to_pandas()

    records = []

    def score(label: str, rows) -> None:
        r = tstr_trtr(train, hold, rows, args.target, "regression", 0)
        auc = float(np.mean([detection_auc(hold, rows, seed=k) for k in range(3)]))
        rec = {"rows": label, "tstr": round(r["tstr"], 4), "trtr": round(r["trtr"], 4)}
        rec["detection_auc"] = round(auc, 4)
        records.append(rec)
        print(f"{label:28s} TSTR {rec['tstr']:.4f} (TRTR {rec['trtr']:.4f})  AUC {auc:.4f}")

    score("as sampled", syn)
    for k in args.cells:
        score(f"mapped in {k} cells", _mapped(syn, train, list(args.coords), args.target, k))
    Path(args.out).write_text(
        json.dumps({"models": args.models, "dataset": args.dataset, "records": records}, indent=1)
    )


if __name__ == "__main__":
    main()

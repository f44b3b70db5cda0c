"""Choosing each row among K drawn candidates by a boosted classifier's density ratio.

A question, not a sampler in the product: how much of what a detection classifier still tells
apart would a second look at each row remove, and at what sampling cost? After a fit, a
HistGradientBoosting classifier ``D`` learns the fit's training rows against as many of the
model's own rows (decoded columns; category codes from the training rows); each output row is
then one of ``K`` rows the model draws, chosen with probability proportional to ``D``'s density
ratio ``(1 - p) / p`` (Gumbel-max over ``log((1 - p) / p) + g``: sampling-importance
resampling, so ``K = 1`` is the model as it is and larger ``K`` moves the rows towards the
training rows' law). Every output row stays a function of its candidates' noise and one
Gumbel draw, a push-forward of noise like the model's own rows.

Scored on the fit's real holdout like ``fidelity.py`` (detection AUC of as many rows as the
holdout, mean of three classifier seeds; Quality; TSTR on as many rows as the training rows;
the share of rows nearer a training row than the holdout's 5% quantile of that distance, in
standardised numeric columns: a privacy check, since the rows move towards the training
rows). Sampling is timed on 100,000 output rows: the model's rows/s with ``K = 1`` and the
rows/s of drawing ``K`` candidates, scoring them and choosing, in the same process.

    OMP_NUM_THREADS=1 python benchmarks/select_candidates.py --datasets diamonds \\
        --models M --fit-seeds 0 1 --out select_candidates.json

``--models``: fits saved by this script or by ``conditional.py --models`` (the same split),
loaded when present, else fitted (``--minutes``, default 5, one thread) and saved there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TIMING_ROWS = 100_000


def _codes(train: Any, frames: list[Any]) -> tuple[list[np.ndarray], np.ndarray]:
    """Numeric matrices of ``frames`` as the detection score builds them, with category codes
    from the training rows alone: ``D`` must not read the rows it chooses among to build its
    features."""
    from benchmarks.scoring import _features

    return _features(frames, reference=train)


class Chooser:
    """``D`` and the choice among ``k`` candidates per row (candidate ``j`` of row ``i`` at
    ``i * k + j``)."""

    def __init__(self, train: Any, own: Any, seed: int) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.train = train
        (xt, xo), self.is_cat = _codes(train, [train, own])
        self.clf = HistGradientBoostingClassifier(
            categorical_features=self.is_cat, random_state=seed
        )
        self.clf.fit(np.vstack([xt, xo]), np.r_[np.zeros(len(xt)), np.ones(len(xo))])

    def log_ratio(self, rows: Any) -> np.ndarray:
        (x,), _cat = _codes(self.train, [rows])
        p = np.clip(self.clf.predict_proba(x)[:, 1], 1e-6, 1 - 1e-6)
        return np.log1p(-p) - np.log(p)

    def choose(self, candidates: Any, k: int, seed: int) -> np.ndarray:
        """Index into ``candidates`` of each row's chosen candidate."""
        n = len(candidates) // k
        score = self.log_ratio(candidates).reshape(n, k)
        score = score + np.random.default_rng([seed, 0x5E1EC7]).gumbel(size=(n, k))
        return np.arange(n) * k + score.argmax(1)


def _near_share(train: Any, hold: Any, rows: Any) -> float:
    """Share of ``rows`` nearer a training row than the holdout's 5% quantile of that distance
    (standardised numeric columns; missing as the column's mean)."""
    from sklearn.neighbors import NearestNeighbors

    num = [c for c in train.columns if train[c].dtype.kind in "fiu"]
    (xt, xh, xr), _ = _codes(train[num], [train[num], hold[num], rows[num]])
    mu, sd = np.nanmean(xt, 0), np.nanstd(xt, 0) + 1e-12
    xt, xh, xr = (np.nan_to_num((x - mu) / sd) for x in (xt, xh, xr))
    nn = NearestNeighbors(n_neighbors=1).fit(xt)
    dh = nn.kneighbors(xh)[0][:, 0]
    dr = nn.kneighbors(xr)[0][:, 0]
    return float(np.mean(dr < np.quantile(dh, 0.05)))


def _timing(synth: Any, chooser: Chooser, k: int) -> dict[str, float]:
    """The model's rows/s and the rows/s with ``k`` candidates chosen by ``chooser``, on
    ``TIMING_ROWS`` output rows each, with the seconds of drawing the candidates and of
    choosing among them (the classifier's features and scores)."""
    t0 = time.perf_counter()
    synth.sample(TIMING_ROWS, 21)
    plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    cand = synth.sample(TIMING_ROWS * k, 22)
    t1 = time.perf_counter()
    cand.take(chooser.choose(cand.to_pandas(), k, 22))
    t2 = time.perf_counter()
    return {
        "rows_per_second": round(TIMING_ROWS / (t2 - t0)),
        "model_rows_per_second": round(TIMING_ROWS / plain),
        "candidates_seconds": round(t1 - t0, 3),
        "choose_seconds": round(t2 - t1, 3),
    }


def run(
    datasets: list[str], models: Path, fit_seeds: list[int], ks: list[int], minutes: float
) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    from benchmarks.conditional import _split
    from benchmarks.fidelity import TARGETS
    from benchmarks.saved_fit import SHARED
    from benchmarks.scoring import detection_auc, quality, tstr_trtr
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    records = []
    for ds in datasets:
        train_t, hold_t = _split(pq.read_table(SHARED / f"{ds}.parquet"))
        train, hold = train_t.to_pandas(), hold_t.to_pandas()
        target, task = TARGETS[ds]
        for fit_seed in fit_seeds:
            name = ds if fit_seed == 0 else f"{ds}-seed{fit_seed}"
            path = models / name
            if (path / "synthesizer.json").exists():
                synth, fitted = Synthesizer.load(path), "loaded"
            else:
                cfg = {"threads": 1, "device": "cpu", "max_minutes": minutes, "seed": fit_seed}
                synth = Synthesizer.fit(train_t, infer_schema(train_t), seed=fit_seed, config=cfg)
                synth.save(path)
                fitted = f"fitted ({minutes:g} min)"
            t0 = time.perf_counter()
            chooser = Chooser(train, synth.sample(len(train), 11).to_pandas(), seed=0)
            fit_d = time.perf_counter() - t0
            kmax = max(ks)
            cand = synth.sample(len(train) * kmax, 12).to_pandas()
            for k in ks:
                # the first k of each row's kmax candidates: K = 1 is the model's own rows
                sub = cand.iloc[(np.arange(len(train))[:, None] * kmax + np.arange(k)).ravel()]
                rows = sub.iloc[chooser.choose(sub.reset_index(drop=True), k, 12)]
                rows = rows.reset_index(drop=True)
                head = rows.iloc[: len(hold)]
                aucs = [detection_auc(hold, head, seed=s) for s in range(3)]
                rec = {
                    "dataset": ds,
                    "fit_seed": fit_seed,
                    "fit": fitted,
                    "k": k,
                    "detection_auc": round(float(np.mean(aucs)), 4),
                    "detection_auc_seeds": [round(a, 4) for a in aucs],
                    "quality": round(quality(hold, head)["quality"], 4),
                    "tstr": round(tstr_trtr(train, hold, rows, target, task, 0)["tstr"], 4),
                    "near_share": round(_near_share(train, hold, head), 4),
                    "classifier_fit_seconds": round(fit_d, 2),
                }
                if k > 1:
                    rec.update(_timing(synth, chooser, k))
                records.append(rec)
                print(json.dumps(rec), flush=True)
    return records


def main(argv: list[str] | None = None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", required=True)
    ap.add_argument("--models", required=True, type=Path)
    ap.add_argument("--fit-seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--k", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--out", default="select_candidates.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    records = run(args.datasets, args.models, args.fit_seeds, sorted(set(args.k)), args.minutes)
    Path(args.out).write_text(json.dumps({"records": records}, indent=1))


if __name__ == "__main__":
    main()

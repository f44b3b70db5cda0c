"""What would a perfect generator score? The real-vs-real reference.

Shape and pair scores are estimated from finite samples, so even a perfect generator (one that
draws fresh rows from the real distribution) scores below 1, and how far below depends on the
table: high-cardinality categoricals make contingency tables sparse and noisy (nyc_flights'
4,043 tail numbers: two real halves of 4,000 rows score pair trends 0.68, of 50,000 rows 0.85).
A fixed threshold would then reject a perfect model on one table and wave through a poor one
on another.

The reference scores real rows against other real rows with the same machinery:
- with ``train`` given: the holdout against a subsample of training rows as large as the
  synthetic table (exactly a perfect generator's situation: independent draws, same sizes);
- otherwise: one random half of the holdout against the other (smaller samples, so the
  reference is a little pessimistic, i.e. lenient).

The gate lowers a threshold to ``reference - GateConfig.reference_margin`` when the reference
itself falls below it, never raises it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pfcore.fidelity.pairs import pair_trends
from pfcore.fidelity.prepare import Prepared
from pfcore.fidelity.sampling import subsample_rows
from pfcore.fidelity.shapes import column_shape

__all__ = ["reference_scores"]

_MIN_ROWS = 100


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def reference_scores(
    prep: Prepared,
    *,
    seed: int,
    pairs_max_rows: int,
    bins: int,
    binning: str,
    real_correlation_threshold: float,
    real_association_threshold: float,
) -> dict[str, Any] | None:
    """Column shapes, pair trends and quality of real vs real rows; None if too few rows."""
    n_real, n_syn = prep.n_rows("real"), prep.n_rows("synthetic")
    if "train" in prep.values and prep.n_rows("train") >= _MIN_ROWS:
        n_train = prep.n_rows("train")
        a_table, a_rows = "real", np.arange(n_real)
        b_table, b_rows = (
            "train",
            subsample_rows(n_train, min(n_syn, n_train), seed, "reference", 2),
        )
        source = "holdout vs training rows"
    elif n_real >= 2 * _MIN_ROWS:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 5, 0]))
        perm = rng.permutation(n_real)
        half = n_real // 2
        a_table, a_rows = "real", np.sort(perm[:half])
        b_table, b_rows = "real", np.sort(perm[half : 2 * half])
        source = "holdout half vs holdout half"
    else:
        return None
    view = Prepared(
        columns=prep.columns,
        values={
            "real": {c.name: prep.values[a_table][c.name][a_rows] for c in prep.columns},
            "synthetic": {c.name: prep.values[b_table][c.name][b_rows] for c in prep.columns},
        },
        levels=prep.levels,
    )
    shapes: dict[str, float | None] = {}
    for info in prep.columns:
        _, score = column_shape(
            view.values["real"][info.name],
            view.values["synthetic"][info.name],
            numeric=info.is_numeric,
            n_levels=len(prep.levels.get(info.name, ())),
        )
        shapes[info.name] = score if np.isfinite(score) else None
    pairs = pair_trends(
        view,
        subsample_rows(len(a_rows), pairs_max_rows, seed, "reference", 0),
        subsample_rows(len(b_rows), pairs_max_rows, seed, "reference", 1),
        bins=bins,
        binning=binning,
        real_correlation_threshold=real_correlation_threshold,
        real_association_threshold=real_association_threshold,
    )
    cs = _mean(list(shapes.values()))
    pt = _mean([p.score for p in pairs if p.meets_threshold])
    return {
        "source": source,
        "n_a": int(len(a_rows)),
        "n_b": int(len(b_rows)),
        "column_shapes": cs,
        "pair_trends": pt,
        "quality": _mean([cs, pt]),
        "columns": shapes,
    }

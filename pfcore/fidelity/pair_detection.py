"""Pair detection: which column pairs give synthetic rows away?

Why: the joint detection AUC says *that* a classifier separates synthetic from real rows, and the
single-column AUCs say whether one column does it alone. When every column passes on its own (a
model that reproduces each marginal almost perfectly) the giveaway is a relationship, and a
user needs its name to act on it: "``carat``~``price``", not "the joint structure".

Method, bounded so it stays a small part of ``evaluate`` on any width:

1. Rows: ``max_rows`` per side (balanced classes, a seeded subsample).
2. Screen every pair cheaply (numpy only): a cross-fitted histogram classifier on the two
   columns' joint bins (``screen_bins`` quantile bins or most frequent levels per column, missing
   its own bin), the same estimator as the single-column AUC in ``detection.py`` but on the
   2-D histogram. Cost per pair: one ``bincount`` over ``2 * max_rows`` values (measured: the
   4,950 pairs of a 100-column table, 5,000 rows per side, screen and score in 1.2 s of CPU).
   Tables with more than ``max_candidates`` pairs (5,000: every pair of up to 100 columns)
   screen a seeded random subset of ``max_candidates`` pairs and say so in the result.
3. Score the ``max_pairs`` most suspicious screened pairs with a small classifier two-sample
   test restricted to the two columns: ``HistGradientBoostingClassifier`` with ``max_iter``
   fixed iterations (no early stopping: fewer fits, and the AUC does not depend on a validation
   split), 2-fold out-of-fold ROC AUC. Every column in those pairs also gets its AUC alone,
   from the cross-fitted histogram classifier with ``single_bins`` bins (the single-column AUC
   of ``detection.py``): in one dimension a fine histogram is as strong as boosting, and a
   boosted fit per column would double the cost (measured: 2.1 s of a 5.0 s ``evaluate`` on a
   15-column, 10k-row table with boosted single columns and 10 pairs).

Ranking: by ``lift`` = pair AUC - the larger single-column AUC of its two columns. A pair whose
AUC is high only because one column is off has a lift near 0 (the column table names that
column); ranking by the raw pair AUC would fill the top five with that column paired with every
other one and hide the broken relationship. Half of the scored pairs are picked by screened
lift and half by screened pair AUC, so neither kind of problem is screened out.

Bound: at most ``max_candidates`` screened pairs (numpy) and ``2 * max_pairs`` boosted fits
of ``max_iter`` iterations, each on half of the ``2 * max_rows`` rows. At the defaults (5,000
rows per side, 8 pairs, 20 iterations) that is 16 fits of 20 iterations on 5,000 rows:
measured 0.6 s of CPU on one core for diamonds (10 columns, 45 pairs screened), 14% of
``evaluate`` on 10k rows (``benchmarks/fidelity_speed.py --dataset diamonds --rows 10000``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pfcore.fidelity.detection import _column_codes, feature_matrix, ranked
from pfcore.fidelity.prepare import Prepared

__all__ = ["JOINT_LIFT", "PairDetectionResult", "boosted_auc", "pair_detection"]

# A pair counts as a giveaway of the *relationship* (not of one column) when its AUC exceeds
# the better of its single columns by this much. The out-of-fold AUC on 2 x 5,000 rows has a
# standard error of about 0.006, so a lift below 0.02 is within the noise of two estimates.
JOINT_LIFT = 0.02


@dataclass
class PairDetectionResult:
    """Scored pairs (each a dict, see ``pair_detection``) and how they were chosen."""

    pairs: list[dict[str, Any]] = field(default_factory=list)
    n_real: int = 0
    n_synthetic: int = 0
    n_pairs_total: int = 0
    n_screened: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def worst(self, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` pairs whose relationship gives synthetic rows away most (largest lift)."""
        return sorted(self.pairs, key=_rank_key)[:k]

    def to_dict(self, k: int = 5) -> dict[str, Any]:
        return {
            "worst": self.worst(k),
            "pairs": sorted(self.pairs, key=_rank_key),
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
            "n_pairs_total": self.n_pairs_total,
            "n_screened": self.n_screened,
            "n_scored": len(self.pairs),
            "settings": dict(self.settings),
        }


def _rank_key(p: dict[str, Any]) -> tuple[float, float, str, str]:
    return (-p["lift"], -p["auc"], p["column_1"], p["column_2"])


def _explain(auc_1: float, auc_2: float, lift: float, a: str, b: str) -> str:
    """One phrase a person can act on: the relationship, the column that is off on its own, or
    nothing (both columns alone and together within ``JOINT_LIFT`` of chance)."""
    if lift >= JOINT_LIFT:
        return "relationship"
    if max(auc_1, auc_2) < 0.5 + JOINT_LIFT:
        return "nothing"
    return f"column {a!r} alone" if auc_1 >= auc_2 else f"column {b!r} alone"


def _auc_from_groups(score: np.ndarray, neg: np.ndarray, pos: np.ndarray) -> float:
    """ROC AUC of a score that is constant within groups, from per-group class counts.

    Equal scores are ties (counted one half), as ``roc_auc_score`` counts them; the cost is in
    the number of groups, not of rows.
    """
    n_neg, n_pos = neg.sum(), pos.sum()
    if n_neg == 0 or n_pos == 0:
        return float("nan")
    values, inverse = np.unique(score, return_inverse=True)
    neg_u = np.bincount(inverse, weights=neg, minlength=len(values))
    pos_u = np.bincount(inverse, weights=pos, minlength=len(values))
    neg_below = np.cumsum(neg_u) - neg_u
    return float((pos_u * (neg_below + 0.5 * neg_u)).sum() / (n_neg * n_pos))


def _histogram_auc(cells: np.ndarray, group: np.ndarray, n_cells: int) -> float:
    """Cross-fitted AUC of a per-cell synthetic share (fit on one half, scored on the other).

    ``group`` = ``2 * fold + label`` per row, so one ``bincount`` gives every cell's counts for
    both halves and both classes: the screen's cost per pair is one pass over the rows.
    """
    counts = np.bincount(cells * 4 + group, minlength=4 * n_cells).reshape(n_cells, 4)
    scores, negs, poss = [], [], []
    for f in (0, 1):
        other = 2 * (1 - f)
        syn, tot = counts[:, other + 1], counts[:, other] + counts[:, other + 1]
        scores.append((syn + 0.5) / (tot + 1.0))
        negs.append(counts[:, 2 * f])
        poss.append(counts[:, 2 * f + 1])
    return _auc_from_groups(np.concatenate(scores), np.concatenate(negs), np.concatenate(poss))


def boosted_auc(x: np.ndarray, cat: np.ndarray, y: np.ndarray, max_iter: int, seed: int) -> float:
    """2-fold out-of-fold ROC AUC of a small HistGradientBoosting classifier."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    score = np.empty(len(y))
    splitter = StratifiedKFold(n_splits=2, shuffle=True, random_state=seed)
    for k, (fit_idx, test_idx) in enumerate(splitter.split(x, y)):
        clf = HistGradientBoostingClassifier(
            max_iter=max_iter,
            learning_rate=0.3,
            max_leaf_nodes=15,
            categorical_features=cat if cat.any() else None,
            early_stopping=False,
            random_state=seed + k,
        )
        clf.fit(x[fit_idx], y[fit_idx])
        score[test_idx] = clf.predict_proba(x[test_idx])[:, 1]
    return float(roc_auc_score(y, score))


def _pick(
    screened: list[tuple[str, str, float, float]], max_pairs: int
) -> list[tuple[str, str, float, float]]:
    """Half by screened lift, the rest by screened pair AUC; stable order by names on ties."""
    by_lift = sorted(screened, key=lambda t: (-t[3], -t[2], t[0], t[1]))
    by_auc = sorted(screened, key=lambda t: (-t[2], -t[3], t[0], t[1]))
    chosen: dict[tuple[str, str], tuple[str, str, float, float]] = {}
    for t in by_lift[: (max_pairs + 1) // 2]:
        chosen[(t[0], t[1])] = t
    for t in by_auc:
        if len(chosen) >= max_pairs:
            break
        chosen.setdefault((t[0], t[1]), t)
    for t in by_lift:  # fewer distinct pairs by AUC than asked: fill by lift
        if len(chosen) >= max_pairs:
            break
        chosen.setdefault((t[0], t[1]), t)
    return list(chosen.values())


def pair_detection(
    prep: Prepared,
    real_rows: np.ndarray,
    synthetic_rows: np.ndarray,
    *,
    max_pairs: int = 8,
    max_candidates: int = 5_000,
    max_iter: int = 20,
    screen_bins: int = 10,
    single_bins: int = 32,
    seed: int = 0,
) -> PairDetectionResult:
    """Detection AUC per column pair on the given (already subsampled, balanced) rows.

    Arguments:
        real_rows, synthetic_rows: row indices of equal length (the caller balances them).
        max_pairs: pairs scored by the boosted classifier (the most suspicious screened ones).
        max_candidates: pairs screened; wider tables screen a seeded random subset.
        max_iter: boosting iterations per fit (fixed; no early stopping).
        screen_bins: bins per column in the screening histogram.
        single_bins: bins of the histogram classifier that scores each column alone.
        seed: fold split, subset of pairs and classifier seeds.
    Returns:
        ``PairDetectionResult`` whose ``pairs`` hold, per scored pair: ``column_1``,
        ``column_2``, ``auc`` (the two columns together), ``auc_column_1``, ``auc_column_2``
        (each alone), ``lift`` (``auc`` minus the larger single AUC), ``explained_by``
        (``"relationship"``, ``"column 'x' alone"`` or ``"nothing"``, see ``_explain``) and
        ``screen_auc`` (the histogram screen's pair AUC).
    """
    names = [c.name for c in prep.columns]
    all_pairs = list(itertools.combinations(names, 2))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 61]))
    candidates = all_pairs
    if len(all_pairs) > max_candidates:
        keep = np.sort(rng.choice(len(all_pairs), size=max_candidates, replace=False))
        candidates = [all_pairs[i] for i in keep]
    settings = {
        "max_pairs": max_pairs,
        "max_candidates": max_candidates,
        "max_iter": max_iter,
        "screen_bins": screen_bins,
        "single_bins": single_bins,
    }
    result = PairDetectionResult(
        n_real=len(real_rows),
        n_synthetic=len(synthetic_rows),
        n_pairs_total=len(all_pairs),
        n_screened=len(candidates),
        settings=settings,
    )
    if not candidates:
        return result

    y = np.concatenate([np.zeros(len(real_rows), np.int64), np.ones(len(synthetic_rows), np.int64)])
    group = 2 * (rng.permutation(len(y)) % 2) + y
    used = sorted({c for pair in candidates for c in pair}, key=names.index)

    def column_codes(name: str, bins: int) -> np.ndarray:
        rc, sc = _column_codes(
            ranked(prep, "real", name, real_rows),
            ranked(prep, "synthetic", name, synthetic_rows),
            bins,
        )
        return np.concatenate([rc, sc])

    codes = {name: column_codes(name, screen_bins) for name in used}
    n_levels = screen_bins + 1
    screen_single = {name: _histogram_auc(codes[name], group, n_levels) for name in used}
    screened = []
    for a, b in candidates:
        auc = _histogram_auc(codes[a] * n_levels + codes[b], group, n_levels * n_levels)
        lift = auc - max(screen_single[a], screen_single[b])
        screened.append((a, b, auc, lift))

    chosen = _pick(screened, max_pairs)
    single: dict[str, float] = {}
    for a, b, screen_auc, _ in chosen:
        for name in (a, b):
            if name not in single:
                single[name] = _histogram_auc(
                    column_codes(name, single_bins), group, single_bins + 1
                )
        xr, cat = feature_matrix(prep, "real", real_rows, [a, b])
        xs, _ = feature_matrix(prep, "synthetic", synthetic_rows, [a, b])
        auc = boosted_auc(np.vstack([xr, xs]), cat, y, max_iter, seed)
        lift = auc - max(single[a], single[b])
        result.pairs.append(
            {
                "column_1": a,
                "column_2": b,
                "auc": auc,
                "auc_column_1": single[a],
                "auc_column_2": single[b],
                "lift": lift,
                "explained_by": _explain(single[a], single[b], lift, a, b),
                "screen_auc": screen_auc,
            }
        )
    result.pairs.sort(key=_rank_key)
    return result

"""Column pair trends: does the synthetic table keep how columns move together?

Follows sdmetrics' ``QualityReport`` "Column Pair Trends" property (sdmetrics >= 0.2x):
- numeric/datetime x numeric/datetime: ``CorrelationSimilarity`` = ``1 - |r_real - r_syn| / 2``
  with Pearson r on the rows where both values are present;
- discrete x discrete: ``ContingencySimilarity`` = ``1 - TV`` between the two joint frequency
  tables, missing values counted as their own category;
- numeric x discrete: the numeric column is cut into 10 bins (``np.histogram_bin_edges``) and
  compared with ``ContingencySimilarity``.

Only pairs that are related in the real table contribute to the headline score, as in
sdmetrics' QualityReport: |r_real| > ``real_correlation_threshold`` (0.5) for correlations,
Cramer's V > ``real_association_threshold`` (0.3) for contingency tables. Unrelated pairs score
close to 1 for any generator that gets the marginals right, so averaging them in would hide a
model that breaks the real dependencies. ``pair_trends_all`` (every pair) is kept for reference.

Binning: by default each table's numeric column is cut with its own bin edges, exactly as
sdmetrics does, so scores are comparable with published sdmetrics numbers. That choice hides a
shifted or rescaled column from its pair scores (the column shape catches it instead) and lets a
few outliers in one table squash its bins; ``binning="real"`` (``EvalConfig.pair_binning``) cuts
both tables with the real edges and gives missing values their own bin.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from pfcore.fidelity.prepare import Prepared

__all__ = ["PairScore", "pair_trends", "pearson", "cramers_v", "correlation_matrices"]


@dataclass
class PairScore:
    """One column pair. ``real``/``synthetic`` hold Pearson r (correlation pairs);
    ``association`` holds the real Cramer's V (contingency pairs)."""

    column_1: str
    column_2: str
    metric: str
    score: float
    real: float = float("nan")
    synthetic: float = float("nan")
    association: float = float("nan")
    meets_threshold: bool = True

    def to_dict(self) -> dict:
        return {
            "column_1": self.column_1,
            "column_2": self.column_2,
            "metric": self.metric,
            "score": _clean(self.score),
            "real_correlation": _clean(self.real),
            "synthetic_correlation": _clean(self.synthetic),
            "real_association": _clean(self.association),
            "meets_threshold": bool(self.meets_threshold),
        }


def _clean(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r on rows where both are present; NaN when either side is constant."""
    ok = ~(np.isnan(x) | np.isnan(y))
    if ok.sum() < 2:
        return float("nan")
    a = x[ok] - x[ok].mean()
    b = y[ok] - y[ok].mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    if den == 0 or not np.isfinite(den):
        return float("nan")
    return float(np.clip((a * b).sum() / den, -1.0, 1.0))


def cramers_v(counts: np.ndarray) -> float:
    """Cramer's V of a 2-D count table (empty rows/columns dropped, no continuity correction)."""
    table = counts[counts.sum(axis=1) > 0][:, counts.sum(axis=0) > 0].astype(np.float64)
    r, c = table.shape
    n = table.sum()
    if min(r, c) < 2 or n == 0:
        return float("nan")
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (n * (min(r, c) - 1))))


def _bin_codes(
    real: np.ndarray, synthetic: np.ndarray, bins: int, binning: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """Histogram-bin codes of a numeric column for contingency tables.

    ``binning="sdmetrics"``: each table is cut with its *own* 10-bin edges and ``np.digitize``
    puts a missing value with the maximum (code ``bins + 1``), exactly as sdmetrics'
    QualityReport does. ``binning="real"``: both tables use the real table's edges and missing
    values get their own code, so a shifted or rescaled column also moves its pair scores.
    """
    n_codes = bins + 3  # digitize gives 0..bins+1; one more for missing in "real" mode
    out = []
    real_finite = real[~np.isnan(real)]
    for arr in (real, synthetic):
        finite = arr[~np.isnan(arr)] if binning == "sdmetrics" else real_finite
        if finite.size == 0:
            out.append(np.full(arr.shape, n_codes - 1, dtype=np.int64))
            continue
        edges = np.histogram_bin_edges(finite, bins=bins)
        codes = np.digitize(np.nan_to_num(arr, nan=np.inf), edges)
        if binning != "sdmetrics":
            codes[np.isnan(arr)] = n_codes - 1
        out.append(codes.astype(np.int64))
    return out[0], out[1], n_codes


def _contingency(
    r1: np.ndarray, r2: np.ndarray, s1: np.ndarray, s2: np.ndarray, n1: int, n2: int
) -> tuple[float, float]:
    """(ContingencySimilarity, real Cramer's V) for codes in [0, n1) x [0, n2)."""
    size = n1 * n2
    real_counts = np.bincount(r1 * n2 + r2, minlength=size)
    syn_counts = np.bincount(s1 * n2 + s2, minlength=size)
    p = real_counts / max(real_counts.sum(), 1)
    q = syn_counts / max(syn_counts.sum(), 1)
    score = float(1.0 - 0.5 * np.abs(p - q).sum())
    return score, cramers_v(real_counts.reshape(n1, n2))


def pair_trends(
    prep: Prepared,
    real_rows: np.ndarray,
    synthetic_rows: np.ndarray,
    *,
    bins: int = 10,
    binning: str = "sdmetrics",
    real_correlation_threshold: float = 0.5,
    real_association_threshold: float = 0.3,
) -> list[PairScore]:
    """Score every pair of compared columns on the given row subsets.

    Arguments:
        prep: prepared tables.
        real_rows, synthetic_rows: row indices into the real and synthetic tables (the caller
            subsamples; see ``EvalConfig.pairs_max_rows``).
        bins: bins for a numeric column paired with a discrete one (sdmetrics uses 10).
        binning: ``"sdmetrics"`` (each table binned by its own edges, as the reference) or
            ``"real"`` (both by the real edges); see ``_bin_codes``.
        real_correlation_threshold, real_association_threshold: a pair counts towards the
            headline score only when the real table shows at least this much dependence
            (0 counts every pair).
    Returns:
        One ``PairScore`` per pair, in column order.
    """
    real_v = {c.name: prep.values["real"][c.name][real_rows] for c in prep.columns}
    syn_v = {c.name: prep.values["synthetic"][c.name][synthetic_rows] for c in prep.columns}
    # Discrete views: codes shifted so missing (-1) becomes 0; numeric binned by real edges.
    disc: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}

    def discrete(name: str) -> tuple[np.ndarray, np.ndarray, int]:
        if name not in disc:
            info = prep.column(name)
            if info.is_numeric:
                disc[name] = _bin_codes(real_v[name], syn_v[name], bins, binning)
            else:
                n = len(prep.levels[name]) + 1
                disc[name] = (real_v[name] + 1, syn_v[name] + 1, n)
        return disc[name]

    out: list[PairScore] = []
    for a, b in itertools.combinations(prep.columns, 2):
        if a.is_numeric and b.is_numeric:
            r_real = pearson(real_v[a.name], real_v[b.name])
            r_syn = pearson(syn_v[a.name], syn_v[b.name])
            score = 1.0 - abs(r_real - r_syn) / 2.0
            meets = bool(np.isfinite(r_real) and abs(r_real) > real_correlation_threshold)
            out.append(
                PairScore(
                    a.name,
                    b.name,
                    "CorrelationSimilarity",
                    score,
                    r_real,
                    r_syn,
                    meets_threshold=meets,
                )
            )
        else:
            ra, sa, na = discrete(a.name)
            rb, sb, nb = discrete(b.name)
            score, v = _contingency(ra, rb, sa, sb, na, nb)
            if real_association_threshold > 0:
                meets = bool(np.isfinite(v) and v > real_association_threshold)
            else:
                meets = True
            out.append(
                PairScore(
                    a.name,
                    b.name,
                    "ContingencySimilarity",
                    score,
                    association=v,
                    meets_threshold=meets,
                )
            )
    return out


def correlation_matrices(
    prep: Prepared, real_rows: np.ndarray, synthetic_rows: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Pearson matrices (real, synthetic) over the numeric/datetime columns, for plots."""
    names = [c.name for c in prep.columns if c.is_numeric]
    k = len(names)
    real_m = np.eye(k)
    syn_m = np.eye(k)
    for i, j in itertools.combinations(range(k), 2):
        for m, table, rows in ((real_m, "real", real_rows), (syn_m, "synthetic", synthetic_rows)):
            r = pearson(prep.values[table][names[i]][rows], prep.values[table][names[j]][rows])
            m[i, j] = m[j, i] = r
    return names, real_m, syn_m

"""Per-column shape scores: KS complement (numeric, datetime) and TV complement (discrete).

Both follow sdmetrics' ``KSComplement`` / ``TVComplement`` (the reference our tests compare
against): missing values are dropped before comparing (missing rates are scored separately, by
``missing_rate_diff``); a column with no non-missing values on one side scores NaN.

KS is computed directly from sorted samples with ``searchsorted`` instead of
``scipy.stats.ks_2samp``: the statistic is identical, and we skip the exact p-value that scipy
may compute for small samples (we never use it).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ks_complement", "tv_complement", "missing_rate", "column_shape"]

_DECIMALS = 14  # sdmetrics rounds to sys.float_info.dig - 1 decimals before KS


def ks_complement(real: np.ndarray, synthetic: np.ndarray) -> float:
    """``1 - D`` where D is the two-sample Kolmogorov-Smirnov statistic (NaNs dropped).

    Arguments:
        real, synthetic: 1-D float arrays, NaN for missing.
    Returns:
        A score in [0, 1]; 1 means identical empirical CDFs. NaN when a side has no values.
    """
    a = np.sort(np.round(real[~np.isnan(real)], _DECIMALS))
    b = np.sort(np.round(synthetic[~np.isnan(synthetic)], _DECIMALS))
    if a.size == 0 or b.size == 0:
        return float("nan")
    pooled = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, pooled, side="right") / a.size
    cdf_b = np.searchsorted(b, pooled, side="right") / b.size
    return float(1.0 - np.max(np.abs(cdf_a - cdf_b)))


def _frequencies(codes: np.ndarray, n_levels: int) -> np.ndarray:
    valid = codes[codes >= 0]
    return np.bincount(valid, minlength=n_levels) / max(valid.size, 1)


def tv_complement(real: np.ndarray, synthetic: np.ndarray, n_levels: int) -> float:
    """``1 - TV`` where TV is half the L1 distance between category frequencies.

    Arguments:
        real, synthetic: int64 category codes into the shared level list, -1 for missing.
        n_levels: number of shared levels.
    Returns:
        A score in [0, 1]; NaN when a side has no non-missing values. A synthetic category the
        real table lacks counts fully against the score, as in sdmetrics.
    """
    if not (real >= 0).any() or not (synthetic >= 0).any():
        return float("nan")
    p = _frequencies(real, n_levels)
    q = _frequencies(synthetic, n_levels)
    return float(1.0 - 0.5 * np.abs(p - q).sum())


def missing_rate(values: np.ndarray) -> float:
    """Share of missing cells (NaN for floats, -1 for category codes)."""
    if values.size == 0:
        return 0.0
    miss = np.isnan(values) if values.dtype.kind == "f" else values < 0
    return float(miss.mean())


def column_shape(
    real: np.ndarray, synthetic: np.ndarray, *, numeric: bool, n_levels: int = 0
) -> tuple[str, float]:
    """``(metric name, score)`` for one column, choosing KS or TV by its role."""
    if numeric:
        return "KSComplement", ks_complement(real, synthetic)
    return "TVComplement", tv_complement(real, synthetic, n_levels)

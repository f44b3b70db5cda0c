"""Evaluation settings: how much of each table each metric looks at.

The defaults keep a full report for 100k real x 100k synthetic rows x 15 columns within 60 s on
2 CPU cores (see ``benchmarks/fidelity_speed.py``). Column shapes, missing rates, validity and
exact-copy rates use every row (they are linear or n log n); the rest subsample, drawing rows
without replacement from a generator seeded by ``(seed, metric)`` so a report is a pure
function of its inputs and seed:

- pair trends on at most ``pairs_max_rows`` rows per table (sdmetrics also subsamples its
  contingency tables at 50k rows);
- detection on ``min(n_real, n_synthetic, detection_max_rows)`` rows per side (balanced classes);
- pair detection on ``min(n_real, n_synthetic, pair_detection_max_rows)`` rows per side, at
  most ``pair_detection_max_candidates`` pairs screened and ``pair_detection_max_pairs`` scored
  (see ``pfcore.fidelity.pair_detection`` for the bound);
- DCR on ``dcr_max_synthetic`` synthetic and ``dcr_max_holdout`` holdout rows against at most
  ``dcr_max_train`` training rows;
- efficacy fits on at most ``efficacy_max_rows`` rows and tests on at most
  ``efficacy_max_test_rows`` holdout rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from pfcore.errors import InputError
from pfcore.settings import from_mapping

__all__ = ["EvalConfig"]


@dataclass(frozen=True)
class EvalConfig:
    """Knobs of ``evaluate``; every field has a default that fits the 60 s budget.

    Attributes:
        pairs_max_rows: rows per table for pair trends.
        pair_bins: bins for a numeric column paired with a discrete one (sdmetrics: 10).
        pair_binning: ``"sdmetrics"`` (each table cut by its own bin edges, comparable with
            sdmetrics' QualityReport) or ``"real"`` (both cut by the real edges; stricter).
        real_correlation_threshold: a numeric pair counts towards ``pair_trends`` only when
            |Pearson r| in the real table exceeds this (sdmetrics QualityReport: 0.5).
        real_association_threshold: a contingency pair counts only when the real Cramer's V
            exceeds this (sdmetrics QualityReport: 0.3).
        detection: run the classifier two-sample test.
        detection_max_rows: rows per side for detection.
        detection_folds: cross-validation folds (2: each half of the 2 x 20k rows is scored
            once by a model fitted on the other, so every row gets an out-of-fold score at half
            the cost of 3 folds; the AUC standard error on 20k test rows is ~0.003).
        detection_max_iter: boosting iterations per fold (early stopping may stop sooner).
        pair_detection: name the column pairs that give synthetic rows away (a detection AUC
            per pair; ``pfcore.fidelity.pair_detection``).
        pair_detection_max_rows: rows per side for pair detection (5,000: the per-pair AUC's
            standard error is about 0.006, enough to rank pairs, at a quarter of the joint
            test's rows).
        pair_detection_max_pairs: pairs scored by the small boosted classifier (8), picked
            from the cheaply screened ones; the report shows the worst five.
        pair_detection_max_candidates: pairs screened by the histogram test (5,000, every pair
            of a 100-column table, about 0.8 s of CPU); wider tables screen a seeded random
            subset.
        pair_detection_max_iter: boosting iterations per pair fit (20, fixed).
        privacy: compute DCR / exact copies (needs ``train``).
        dcr_max_synthetic, dcr_max_holdout, dcr_max_train: DCR subsample sizes.
        efficacy_max_rows, efficacy_max_test_rows: ML efficacy subsample sizes.
        plot_max_columns: columns drawn in ``plots/columns.png``.
        n_threads: OpenMP/BLAS threads for the sklearn parts (detection, efficacy, DCR). 1 by
            default: on a shared 2-core machine OpenMP's spin-waiting made a 2-thread
            HistGradientBoosting fit 15-25x *slower* than 1 thread (measured: 13 s vs 0.7 s),
            while on an idle machine 2 threads gain well under 2x.
    """

    pairs_max_rows: int = 50_000
    pair_bins: int = 10
    pair_binning: str = "sdmetrics"
    real_correlation_threshold: float = 0.5
    real_association_threshold: float = 0.3
    detection: bool = True
    detection_max_rows: int = 20_000
    detection_folds: int = 2
    detection_max_iter: int = 100
    pair_detection: bool = True
    pair_detection_max_rows: int = 5_000
    pair_detection_max_pairs: int = 8
    pair_detection_max_candidates: int = 5_000
    pair_detection_max_iter: int = 20
    privacy: bool = True
    dcr_max_synthetic: int = 5_000
    dcr_max_holdout: int = 5_000
    dcr_max_train: int = 50_000
    efficacy_max_rows: int = 20_000
    efficacy_max_test_rows: int = 10_000
    plot_max_columns: int = 36
    n_threads: int = 1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int",) and (not isinstance(value, int) or value < 1):
                raise InputError(f"EvalConfig.{f.name} must be a positive integer, got {value!r}")
        if self.detection_folds < 2:
            raise InputError(
                f"EvalConfig.detection_folds must be at least 2, got {self.detection_folds}"
            )
        if self.pair_binning not in ("sdmetrics", "real"):
            raise InputError(
                f"EvalConfig.pair_binning must be 'sdmetrics' or 'real', got {self.pair_binning!r}"
            )
        for name in ("real_correlation_threshold", "real_association_threshold"):
            value = getattr(self, name)
            if not 0.0 <= float(value) < 1.0:
                raise InputError(f"EvalConfig.{name} must be in [0, 1), got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EvalConfig:
        """Build from JSON/CLI values; unknown keys are an InputError naming the key."""
        return from_mapping(cls, data)

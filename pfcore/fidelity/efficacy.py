"""ML efficacy: is a model trained on synthetic rows as useful on real rows as one trained on real?

Train-synthetic-test-real (TSTR) against train-real-test-real (TRTR): the same
``HistGradientBoosting`` model is fitted once on synthetic rows and once on the real training
rows, and both are scored on the real holdout. Classification (discrete target): accuracy and
macro F1; regression (numeric target): R^2. ``ratio`` = TSTR / TRTR on the headline metric (F1
or R^2), so 1.0 means the synthetic data is as good a training set as the real one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pfcore.fidelity.detection import can_stop_early, feature_matrix
from pfcore.fidelity.prepare import Prepared

__all__ = ["EfficacyResult", "efficacy"]


@dataclass
class EfficacyResult:
    """Train-on-synthetic, test-on-real scores beside train-on-real, for one target column."""

    target: str
    task: str  # "classification" | "regression"
    synthetic: dict[str, float]
    real: dict[str, float]
    headline: str
    ratio: float
    n_train: int
    n_synthetic: int
    n_test: int

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "task": self.task,
            "synthetic": {k: float(v) for k, v in self.synthetic.items()},
            "real": {k: float(v) for k, v in self.real.items()},
            "headline": self.headline,
            "ratio": float(self.ratio) if np.isfinite(self.ratio) else None,
            "n_train": self.n_train,
            "n_synthetic": self.n_synthetic,
            "n_test": self.n_test,
        }


def _xy(
    prep: Prepared, table: str, rows: np.ndarray, target: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    features = [c.name for c in prep.columns if c.name != target]
    x, cat = feature_matrix(prep, table, rows, features)
    y = prep.values[table][target][rows]
    keep = ~np.isnan(y) if y.dtype.kind == "f" else y >= 0
    return x[keep], y[keep], cat


def _score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, r2_score

    if task == "classification":
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }
    return {"r2": float(r2_score(y_true, y_pred))}


def _fit_predict(
    task: str, x: np.ndarray, y: np.ndarray, cat: np.ndarray, x_test: np.ndarray, seed: int
) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    if task == "classification" and np.unique(y).size < 2:
        # A generator that emits one class: the fitted "model" is that constant.
        return np.full(len(x_test), y[0] if len(y) else -1)
    if len(y) == 0:
        return np.full(len(x_test), np.nan)
    cls = (
        HistGradientBoostingClassifier
        if task == "classification"
        else HistGradientBoostingRegressor
    )
    model = cls(
        max_iter=100,
        early_stopping=can_stop_early(y, task == "classification"),
        categorical_features=cat if cat.any() else None,
        random_state=seed,
    )
    model.fit(x, y)
    return model.predict(x_test)


def efficacy(
    prep: Prepared,
    target: str,
    synthetic_rows: np.ndarray,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    *,
    seed: int = 0,
) -> EfficacyResult:
    """TSTR vs TRTR for ``target`` on the given row subsets."""
    info = prep.column(target)
    task = "regression" if info.is_numeric else "classification"
    x_test, y_test, _ = _xy(prep, "real", test_rows, target)
    x_syn, y_syn, cat = _xy(prep, "synthetic", synthetic_rows, target)
    x_tr, y_tr, _ = _xy(prep, "train", train_rows, target)
    syn_pred = _fit_predict(task, x_syn, y_syn, cat, x_test, seed)
    real_pred = _fit_predict(task, x_tr, y_tr, cat, x_test, seed)
    if task == "regression" and np.isnan(syn_pred).any():
        syn_scores = {"r2": float("nan")}
    else:
        syn_scores = _score(task, y_test, syn_pred)
    real_scores = _score(task, y_test, real_pred)
    headline = "f1_macro" if task == "classification" else "r2"
    base = real_scores[headline]
    ratio = syn_scores[headline] / base if base > 0 else float("nan")
    return EfficacyResult(
        target=target,
        task=task,
        synthetic=syn_scores,
        real=real_scores,
        headline=headline,
        ratio=ratio,
        n_train=len(y_tr),
        n_synthetic=len(y_syn),
        n_test=len(y_test),
    )

"""The fidelity benchmark's train-on-synthetic score with a binary target given as two labels.

Why: public tables often spell a binary target as strings (``<=50K`` / ``>50K``, ``no`` / ``yes``);
the score must compare label to label, not fail on ``float('>50K')``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def _scoring():
    pytest.importorskip("sklearn")
    from benchmarks import scoring

    return scoring


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "blue"], size=n)
    y = np.where(x + 0.3 * rng.normal(size=n) > 0, ">50K", "<=50K")
    return pd.DataFrame({"x": x, "colour": colour, "y": y})


def test_tstr_with_string_labels_scores_labels_not_numbers() -> None:
    scoring = _scoring()
    train, holdout = _table(2000, 0), _table(1000, 1)
    same = scoring.tstr_trtr(train, holdout, train.copy(), "y", "binary")
    assert same["trtr"] > 0.9
    assert same["tstr"] == pytest.approx(same["trtr"])
    flipped = train.assign(y=np.where(train["y"] == ">50K", "<=50K", ">50K"))
    assert scoring.tstr_trtr(train, holdout, flipped, "y", "binary")["tstr"] < 0.1


def test_tstr_trains_on_its_own_rows_when_given() -> None:
    """Detection scores as many synthetic rows as the holdout; TSTR, given ``tstr_syn``, trains
    on those (as many as the training rows) and says how many."""
    scoring = _scoring()
    train, holdout = _table(2000, 0), _table(500, 1)
    few = train.iloc[:40].reset_index(drop=True)
    out = scoring.score_all(train, holdout, few, "y", "binary", 0, train.copy())
    assert out["tstr_rows"] == len(train)
    assert out["tstr"] == pytest.approx(out["trtr"])
    assert scoring.score_all(train, holdout, few, "y", "binary", 0)["tstr_rows"] == 40

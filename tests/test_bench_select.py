"""The candidate-choice benchmark's chooser moves rows towards the training rows' law.

Why: ``benchmarks/select_candidates.py`` reports how much a boosted classifier's density ratio,
used to choose each row among K drawn candidates, lowers the detection AUC; a sign error in
the ratio would move the rows away from the data and the benchmark would report a loss as
the method's, so the choice is checked where the right answer is known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def _module():
    pytest.importorskip("sklearn")
    from benchmarks import select_candidates

    return select_candidates


def _rows(n: int, scale: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=scale, size=n)
    kind = np.where(rng.random(n) < (0.5 if scale == 1.0 else 0.8), "a", "b")
    return pd.DataFrame({"x": x, "kind": kind})


def test_choice_moves_a_too_wide_model_towards_the_data() -> None:
    mod = _module()
    train = _rows(4000, 1.0, 0)  # the data: sd 1, half "a"
    own = _rows(4000, 1.6, 1)  # the model: too wide, too many "a"
    chooser = mod.Chooser(train, own, seed=0)
    k = 4
    cand = _rows(3000 * k, 1.6, 2)
    pick = chooser.choose(cand, k, seed=0)
    assert len(pick) == 3000 and np.all(pick // k == np.arange(3000))  # one per row, its own
    chosen = cand.iloc[pick]
    first = cand.iloc[np.arange(3000) * k]  # K = 1: the model's rows as drawn
    assert abs(chosen["x"].std() - 1.0) < abs(first["x"].std() - 1.0) - 0.2
    assert abs((chosen["kind"] == "a").mean() - 0.5) < abs((first["kind"] == "a").mean() - 0.5)
    # the same seed chooses the same rows
    assert np.array_equal(pick, chooser.choose(cand, k, seed=0))

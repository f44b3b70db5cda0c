"""The pair diagnostic: detection AUC per column pair, in the report, the gate and the artifact.

The table: ``a`` and ``b`` strongly dependent, ``cat`` decided by ``d``, ``e`` independent.
The "synthetic" rows are a fresh draw with ``b`` shuffled against ``a`` (both marginals kept,
only their dependence broken) and, in the harder case, ``e`` shifted as well, so that a column
that is off on its own pairs badly with every other column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pfcore.fidelity import EvalConfig, GateConfig, evaluate, gate
from pfcore.fidelity.pair_detection import _auc_from_groups, pair_detection
from pfcore.fidelity.prepare import prepare
from tasks.validate import pair_artifact_rows

FAST = EvalConfig(
    detection_max_rows=2000,
    detection_folds=2,
    detection_max_iter=30,
    pair_detection_max_rows=2000,
    privacy=False,
)


def make_table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = a + 0.3 * rng.normal(size=n)
    d = rng.exponential(size=n)
    cat = np.where(d > 1.0, "long", np.where(d > 0.3, "mid", "short"))
    e = rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": b, "cat": cat, "d": d, "e": e})


def broken(n: int, seed: int, shift_e: float = 0.0) -> pd.DataFrame:
    df = make_table(n, seed)
    df["b"] = np.random.default_rng(seed + 100).permutation(df["b"].to_numpy())
    df["e"] = df["e"] + shift_e
    return df


def _run(real: pd.DataFrame, syn: pd.DataFrame, seed: int = 0, **kwargs):
    """Called directly, one OpenMP thread as ``evaluate`` does: on a shared 2-core machine a
    multi-threaded HistGradientBoosting fit spin-waits and runs many times slower."""
    from threadpoolctl import threadpool_limits

    prep = prepare(real, syn, None)
    rows = np.arange(min(len(real), len(syn)))
    with threadpool_limits(limits=1):
        return pair_detection(prep, rows, rows, seed=seed, **kwargs)


def test_auc_from_groups_matches_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    score = rng.integers(0, 7, size=500).astype(float) / 7  # many ties
    y = (rng.random(500) < 0.3 + 0.4 * score).astype(int)
    values, inv = np.unique(score, return_inverse=True)
    neg = np.bincount(inv, weights=1 - y, minlength=len(values))
    pos = np.bincount(inv, weights=y, minlength=len(values))
    assert _auc_from_groups(values, neg, pos) == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_broken_pair_is_ranked_first_even_next_to_a_shifted_column() -> None:
    real = make_table(3000, 0)
    for shift in (0.0, 2.0):
        res = _run(real, broken(3000, 1, shift_e=shift))
        first = res.worst(1)[0]
        assert (first["column_1"], first["column_2"]) == ("a", "b"), res.pairs
        assert first["explained_by"] == "relationship"
        # Each column alone is indistinguishable; together they are not.
        assert first["auc_column_1"] < 0.56 and first["auc_column_2"] < 0.56
        assert first["auc"] > 0.75 and first["lift"] > 0.2
        others = [p for p in res.pairs if {p["column_1"], p["column_2"]} != {"a", "b"}]
        assert all(p["lift"] < first["lift"] - 0.1 for p in others)
        with_e = [p for p in res.pairs if "e" in (p["column_1"], p["column_2"])]
        if shift:
            # The shifted column gives rows away with any partner, more than the broken pair does
            # (so ranking by the pair AUC alone would hide the broken relationship), and the lift
            # says it is the column, not the relationship.
            assert with_e and all(p["auc"] > first["auc"] for p in with_e)
            assert all(p["explained_by"] == "column 'e' alone" for p in with_e)


def test_same_table_ranks_nothing_as_a_giveaway() -> None:
    res = _run(make_table(3000, 0), make_table(3000, 1))
    assert res.pairs and all(p["auc"] < 0.57 for p in res.pairs)
    assert all(p["explained_by"] != "relationship" for p in res.pairs)


def test_deterministic_and_bounded() -> None:
    real, syn = make_table(2000, 0), broken(2000, 1)
    a, b = _run(real, syn, seed=4).to_dict(), _run(real, syn, seed=4).to_dict()
    assert a == b
    res = _run(real, syn, max_pairs=3, max_candidates=6)
    assert res.n_pairs_total == 10 and res.n_screened == 6 and len(res.pairs) == 3


def test_report_gate_and_artifact_name_the_pair() -> None:
    real, syn = make_table(3000, 0), broken(3000, 1)
    report = evaluate(real, syn, seed=0, config=FAST)
    assert report.timings_s["pair_detection"] >= 0
    worst = report.pair_detection["worst"]
    assert (worst[0]["column_1"], worst[0]["column_2"]) == ("a", "b")
    assert len(worst) == 5
    md = report.to_markdown()
    assert "## Column pairs that give synthetic rows away" in md
    section = md.split("## Column pairs that give synthetic rows away")[1]
    first_row = [line for line in section.splitlines() if line.startswith("| a |")][0]
    assert "| b |" in first_row and "relationship" in first_row
    assert report.summary["pair_detection_auc_max"] == pytest.approx(worst[0]["auc"])
    again = type(report).from_dict(report.to_dict())
    assert again.pair_detection == report.to_dict()["pair_detection"]

    rows = pair_artifact_rows(report)
    assert len(rows) == 5 and rows[0]["column_1"] == "a" and rows[0]["column_2"] == "b"

    result = gate(report, GateConfig(max_detection_auc=0.5, require_privacy=False))
    reason = [r for r in result.reasons if r.startswith("detection AUC")][0]
    assert "'a'~'b'" in reason

    off = evaluate(real, syn, seed=0, config={**FAST.to_dict(), "pair_detection": False})
    assert off.pair_detection is None and pair_artifact_rows(off) == []
    assert "## Column pairs that give synthetic rows away" not in off.to_markdown()

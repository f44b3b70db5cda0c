"""Joint structure of the default family: a sentinel rule and a chain of three categoricals.

Every marginal of this table is easy; the joint is strict. ``balance`` is exactly 0 when
``status`` is "closed" and positive otherwise (a rule that holds on every row), and
``region -> segment -> tier`` is a chain where each follows a fixed map in 90% of rows. Without
rule enforcement the model (and its flow teacher) broke the sentinel on about 10% of rows
(``benchmarks/joint_rules.py``: 10.9% student, 9.9% teacher, status-balance pair AUC 0.69 at
1,500 steps): a continuous map blurs a point mass into its neighbours. The rules layer detects
the rule and rebuilds ``balance`` from ``status`` on decode, so it holds on every row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

N_ROWS = 3000


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    status = rng.choice(4, n, p=[0.3, 0.35, 0.2, 0.15])
    scale = np.array([0.0, 3.0, 1.0, 5.0])[status]
    balance = np.where(status == 0, 0.0, np.round(np.exp(rng.normal(scale, 0.5)), 2))
    region = rng.choice(5, n)
    segment = np.where(rng.random(n) < 0.9, (region + 1) % 5, rng.choice(5, n))
    tier = np.where(rng.random(n) < 0.9, (segment * 2) % 5, rng.choice(5, n))
    names = np.array(["closed", "active", "dormant", "frozen"])
    return pd.DataFrame(
        {
            "status": names[status],
            "balance": balance,
            "region": np.array(["north", "south", "east", "west", "centre"])[region],
            "segment": np.array(["s0", "s1", "s2", "s3", "s4"])[segment],
            "tier": np.array(["gold", "silver", "bronze", "iron", "tin"])[tier],
        }
    )


def _pair_auc(real: pd.DataFrame, syn: pd.DataFrame, cols: tuple[str, str]) -> float:
    """3-fold ROC AUC of a small boosted classifier that sees only the two columns."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    n = min(len(real), len(syn))
    frame = pd.concat([real[list(cols)].iloc[:n], syn[list(cols)].iloc[:n]], ignore_index=True)
    cats = [not pd.api.types.is_numeric_dtype(frame[c]) for c in cols]  # pandas 3: str dtype
    x = np.stack(
        [
            frame[c].astype("category").cat.codes.to_numpy(np.float64)
            if cat
            else frame[c].to_numpy(np.float64)
            for c, cat in zip(cols, cats, strict=True)
        ],
        axis=1,
    )
    y = np.r_[np.zeros(n), np.ones(n)]
    clf = HistGradientBoostingClassifier(categorical_features=cats, max_iter=50, random_state=0)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    return float(np.mean(cross_val_score(clf, x, y, cv=cv, scoring="roc_auc")))


@pytest.mark.timeout(300)
def test_default_family_keeps_the_rule_and_the_category_chain() -> None:
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    train = pa.Table.from_pandas(_table(N_ROWS, seed=0), preserve_index=False)
    real = _table(N_ROWS, seed=1)
    steps = dict(
        max_steps=400, epochs=None, distill_max_steps=400, conditional_max_steps=0, max_minutes=30.0
    )
    synth = Synthesizer.fit(train, infer_schema(train), preset="fast", config=steps, seed=0)
    assert any(
        r.kind == "missing" and set(r.columns) == {"balance", "status"} for r in synth.rules.active
    )
    syn = synth.sample(N_ROWS, seed=1).to_pandas()

    violations = ((syn["status"] == "closed") != (syn["balance"] == 0)).mean()
    assert violations == 0.0
    # the chain's links are reproduced as well as a fresh real sample would be (~0.50-0.53)
    assert _pair_auc(real, syn, ("region", "segment")) <= 0.6
    assert _pair_auc(real, syn, ("segment", "tier")) <= 0.6
    # balance given status: the rule fixes the zeros; what is left is the shape of the positive
    # part per status, which this 400-step budget learns to 0.63 (0.605 at 1,000 steps, 0.69
    # without rules at 1,500): the bound guards against losing the rule, not a tuned value
    assert _pair_auc(real, syn, ("status", "balance")) <= 0.66

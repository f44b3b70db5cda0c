"""Agreement with the reference implementation: sdmetrics' QualityReport.

Column Shapes and Column Pair Trends must agree within 0.01 on every shared dataset, for a
near-perfect synthetic table (another sample of real rows), an independent-columns sampler
(shapes right, dependencies broken) and a distorted one (numeric columns rescaled and shifted).
Both implementations see exactly the same rows; tables stay under sdmetrics' 50k-row
contingency subsample so its unseeded sampling does not enter.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from pfcore.fidelity import EvalConfig, evaluate
from pfcore.fidelity.prepare import prepare
from tests.conftest import SHARED_NAMES, shared_dataset

ROWS = 3000
_SDTYPE = {
    "numeric": "numerical",
    "datetime": "datetime",
    "categorical": "categorical",
    "boolean": "boolean",
}


def _metadata(df: pd.DataFrame) -> dict:
    """sdmetrics metadata with the roles pfcore infers, so both compare the same way."""
    prep = prepare(df, df, None)
    return {"columns": {c.name: {"sdtype": _SDTYPE[c.role]} for c in prep.columns}}


def _variants(df: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    rng = np.random.default_rng(0)
    rows = min(ROWS, len(df) // 2)
    idx = rng.permutation(len(df))[: 2 * rows]
    real = df.iloc[idx[:rows]].reset_index(drop=True)
    other = df.iloc[idx[rows:]].reset_index(drop=True)
    independent = pd.DataFrame(
        {c: other[c].to_numpy()[rng.permutation(len(other))] for c in other.columns}
    )
    distorted = other.copy()
    for c in distorted.columns:
        if pd.api.types.is_float_dtype(distorted[c]):
            distorted[c] = distorted[c] * 1.1 + 0.2 * distorted[c].std()
    return {
        "sample": (real, other),
        "independent": (real, independent),
        "distorted": (real, distorted),
    }


@pytest.mark.shared
@pytest.mark.parametrize("name", SHARED_NAMES)
def test_shapes_and_pair_trends_match_sdmetrics(name: str) -> None:
    pytest.importorskip("sdmetrics")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sdmetrics.reports.single_table import QualityReport

    df = pd.read_parquet(shared_dataset(name))
    for label, (real, syn) in _variants(df).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qr = QualityReport()
            qr.generate(real.copy(), syn.copy(), _metadata(real), verbose=False)
        props = qr.get_properties().set_index("Property")["Score"]
        report = evaluate(real, syn, config=EvalConfig(detection=False))
        ours = report.scores
        assert ours["column_shapes"] == pytest.approx(props["Column Shapes"], abs=0.01), label
        assert ours["pair_trends"] == pytest.approx(props["Column Pair Trends"], abs=0.01), label
        assert ours["quality"] == pytest.approx(qr.get_score(), abs=0.01), label
        # Per column too, not just on average.
        details = qr.get_details("Column Shapes").set_index("Column")["Score"]
        for col in report.columns:
            assert col["shape"] == pytest.approx(details[col["name"]], abs=0.01), (
                label,
                col["name"],
            )

"""Fidelity metrics, report and gate on a generated mixed-type table (no shared data needed).

The table has correlated numerics, a skewed column, an integer column, a categorical and a
boolean that depend on the numerics, a UTC datetime, and missing values -- enough structure
that broken generators (shifted column, copies, mean collapse, independent columns) are
distinguishable from a perfect one (more rows of the same distribution).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pfcore.errors import InputError
from pfcore.fidelity import EvalConfig, FidelityReport, GateConfig, GateResult, evaluate, gate
from pfcore.fidelity.shapes import ks_complement, tv_complement

FAST = EvalConfig(detection_max_rows=3000, detection_folds=3, detection_max_iter=60)


def make_table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    x1 = z[:, 0]
    x2 = 0.8 * x1 + 0.6 * z[:, 1]
    x3 = np.exp(0.5 * z[:, 2] + 0.3 * x1)
    count = rng.poisson(np.exp(1 + 0.4 * x2)).astype("int64")
    cat = np.where(x1 > 0.5, "high", np.where(x1 < -0.5, "low", "mid"))
    flip = rng.random(n) < 0.1
    cat = np.where(flip, rng.choice(["high", "low", "mid"], n), cat)
    flag = (x2 + 0.5 * rng.normal(size=n)) > 0
    when = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        (rng.random(n) * 30 + 10 * (x1 > 0)) * 86400, unit="s"
    )
    x3 = np.where(rng.random(n) < 0.05, np.nan, x3)
    return pd.DataFrame(
        {"x1": x1, "x2": x2, "x3": x3, "count": count, "cat": cat, "flag": flag, "when": when}
    )


@pytest.fixture(scope="module")
def parts() -> dict[str, pd.DataFrame]:
    df = make_table(9000, seed=0)
    return {
        "train": df.iloc[:3000].reset_index(drop=True),
        "real": df.iloc[3000:6000].reset_index(drop=True),
        "fresh": df.iloc[6000:].reset_index(drop=True),  # a perfect generator's output
    }


@pytest.fixture(scope="module")
def perfect(parts: dict[str, pd.DataFrame]) -> FidelityReport:
    return evaluate(
        parts["real"], parts["fresh"], train=parts["train"], target="cat", seed=0, config=FAST
    )


# ---------------------------------------------------------------- metric building blocks
def test_ks_complement_matches_scipy() -> None:
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=700), rng.normal(0.2, 1.3, size=500)
    b[::7] = np.nan
    expected = 1 - ks_2samp(a, b[~np.isnan(b)]).statistic
    assert ks_complement(a, b) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(ks_complement(a, np.full(3, np.nan)))


def test_tv_complement_counts_unseen_synthetic_categories() -> None:
    real = np.array([0, 0, 1, 1, -1])
    assert tv_complement(real, np.array([0, 1, -1, -1]), 3) == pytest.approx(1.0)
    # half the synthetic rows use a category the real table lacks: TV 0.5
    assert tv_complement(real, np.array([0, 1, 2, 2]), 3) == pytest.approx(0.5)


# ---------------------------------------------------------------- scenarios the gate must tell
def test_table_against_itself_scores_near_one_and_passes(perfect: FidelityReport) -> None:
    s = perfect.scores
    assert s["column_shapes"] > 0.95
    # sdmetrics-style pair trends are noisy on 3,000 rows; the real-vs-real reference shows it
    assert s["pair_trends"] > 0.9 and s["pair_trends"] > s["reference_pair_trends"] - 0.03
    assert s["quality"] > 0.94
    assert abs(perfect.detection["auc"] - 0.5) < 0.06
    assert perfect.privacy["dcr_ratio"] > 0.7
    assert perfect.privacy["exact_copy_rate"] == 0.0
    assert perfect.efficacy["task"] == "classification"
    assert perfect.efficacy["ratio"] > 0.9
    result = gate(perfect)
    assert result.passed, result.reasons
    assert result.reasons == []
    assert {c["name"] for c in result.checks} >= {
        "quality",
        "detection_auc",
        "privacy_exact_copies",
        "validity",
    }


@pytest.mark.parametrize(
    ("column", "change"),
    [("x2", lambda v: v + 1.0), ("x1", lambda v: v * 3.0), ("x3", lambda v: v * 2.5 + 1.0)],
    ids=["shifted", "rescaled", "affine-skewed"],
)
def test_shifted_or_rescaled_column_is_caught_and_named(parts, column, change) -> None:
    syn = parts["fresh"].copy()
    syn[column] = change(syn[column])
    report = evaluate(parts["real"], syn, train=parts["train"], config=FAST)
    result = gate(report)
    assert not result.passed
    shape_reason = [r for r in result.reasons if "shape score" in r]
    assert shape_reason and f"'{column}'" in shape_reason[0]
    worst = min(report.columns, key=lambda c: c["shape"])
    assert worst["name"] == column
    assert max(report.detection["column_auc"], key=report.detection["column_auc"].get) == column


def test_rows_copied_from_training_fail_privacy(parts) -> None:
    syn = parts["train"].sample(n=3000, replace=True, random_state=3).reset_index(drop=True)
    report = evaluate(parts["real"], syn, train=parts["train"], config=FAST)
    assert report.privacy["exact_copy_rate"] == 1.0
    assert report.privacy["dcr_ratio"] == 0.0
    result = gate(report)
    assert not result.passed
    privacy = [r for r in result.reasons if r.startswith("privacy")]
    assert len(privacy) == 2 and "exact copies" in privacy[1]
    # Shapes and detection alone would have let it through: it *is* real data.
    assert report.scores["quality"] > 0.95


def test_rows_that_repeat_in_the_table_itself_are_left_to_the_copy_check(parts) -> None:
    """A table whose rows repeat but for float noise in a near-unique number: held-out rows
    sit within 1e-5 of training rows as synthetic ones do, and the ratio of two such
    distances is noise, not memorisation."""
    rng = np.random.default_rng(9)
    train = parts["train"].drop(columns=["x3"])
    train["x1"] = np.round(train["x1"], 2)

    def near_copies(n: int, eps: float) -> pd.DataFrame:
        out = train.sample(n=n, replace=True, random_state=int(rng.integers(1e6)))
        out = out.reset_index(drop=True)
        out["x1"] = out["x1"] + eps * rng.standard_normal(n)
        return out

    report = evaluate(near_copies(1000, 1e-6), near_copies(1000, 3e-7), train=train, config=FAST)
    assert 0 < report.privacy["dcr_holdout_p5"] < 1e-3 and report.privacy["dcr_ratio"] is None
    check = next(c for c in gate(report).checks if c["name"] == "privacy_dcr_ratio")
    assert check["passed"] and "sit on top of training rows too" in check["detail"]


def test_mean_collapsed_generator_fails(parts) -> None:
    real = parts["real"]
    syn = pd.DataFrame(
        {
            c: [
                real[c].mode().iloc[0]
                if not pd.api.types.is_numeric_dtype(real[c]) or real[c].dtype == bool
                else real[c].mean()
            ]
            * len(real)
            for c in real.columns
        }
    )
    syn["count"] = syn["count"].round().astype("int64")
    syn["when"] = pd.Timestamp("2024-01-20", tz="UTC")
    report = evaluate(real, syn, train=parts["train"], config=FAST)
    result = gate(report)
    assert not result.passed
    assert report.scores["quality"] < 0.85
    assert report.detection["auc"] > 0.95
    names = {c["name"] for c in result.checks if not c["passed"]}
    assert {"quality", "detection_auc", "min_column_shape"} <= names


def test_independent_columns_score_shapes_but_fail_gate(parts) -> None:
    real, fresh = parts["real"], parts["fresh"]
    rng = np.random.default_rng(5)
    syn = pd.DataFrame({c: fresh[c].to_numpy()[rng.permutation(len(fresh))] for c in fresh.columns})
    report = evaluate(real, syn, train=parts["train"], config=FAST)
    assert report.scores["column_shapes"] > 0.95
    assert report.detection["auc"] > 0.85
    result = gate(report)
    assert not result.passed
    failed = {c["name"] for c in result.checks if not c["passed"]}
    assert {"detection_auc", "pair_trends"} <= failed
    det_reason = next(r for r in result.reasons if r.startswith("detection"))
    assert "dependence between columns" in det_reason


# ---------------------------------------------------------------- gate behaviour
def test_gate_without_train_fails_loudly_unless_allowed(parts) -> None:
    report = evaluate(parts["real"], parts["fresh"], config=FAST)
    assert report.privacy is None
    result = gate(report)
    assert not result.passed and "train" in result.reasons[0]
    assert gate(report, GateConfig(require_privacy=False)).passed


def test_gate_config_round_trip_and_validation() -> None:
    cfg = GateConfig.from_dict({"min_quality": 0.9, "max_detection_auc": 0.8})
    assert GateConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(InputError, match="unknown GateConfig key 'min_qualty'"):
        GateConfig.from_dict({"min_qualty": 0.9})
    with pytest.raises(InputError, match="min_quality"):
        GateConfig(min_quality=float("nan"))
    with pytest.raises(InputError, match="pair_binning"):
        EvalConfig.from_dict({"pair_binning": "nope"})


def test_thresholds_are_configurable(perfect: FidelityReport) -> None:
    strict = GateConfig(min_quality=0.999, use_reference=False)
    result = gate(perfect, strict)
    assert not result.passed
    assert result.reasons[0].startswith("quality") and "0.999" in result.reasons[0]


# ---------------------------------------------------------------- schema, validity, inputs
def _schema(real: pd.DataFrame) -> SimpleNamespace:
    col = SimpleNamespace
    return SimpleNamespace(
        columns=[
            col(
                name="x1",
                kind="continuous",
                min=-3.0,
                max=3.0,
                categories=None,
                decimals=None,
                arrow_type="double",
            ),
            col(
                name="x2",
                kind="continuous",
                min=None,
                max=None,
                categories=None,
                decimals=None,
                arrow_type="double",
            ),
            col(
                name="x3",
                kind="continuous",
                min=0.0,
                max=100.0,
                categories=None,
                decimals=None,
                arrow_type="double",
            ),
            col(
                name="count",
                kind="integer",
                min=0.0,
                max=60.0,
                categories=None,
                decimals=0,
                arrow_type="int64",
            ),
            col(
                name="cat",
                kind="categorical",
                min=None,
                max=None,
                arrow_type="string",
                decimals=None,
                categories=[
                    {"value": "high", "count": 1},
                    {"value": "low", "count": 1},
                    {"value": "mid", "count": 1},
                ],
            ),
            col(
                name="flag",
                kind="boolean",
                min=None,
                max=None,
                categories=None,
                decimals=None,
                arrow_type="bool",
            ),
            col(
                name="when",
                kind="id",
                min=None,
                max=None,
                categories=None,
                decimals=None,
                arrow_type="timestamp[us, tz=UTC]",
            ),
        ]
    )


def test_schema_roles_and_validity(parts) -> None:
    real, syn = parts["real"], parts["fresh"].copy()
    syn["x1"] = syn["x1"].clip(-2.9, 2.9)
    syn.loc[:9, "x1"] = 10.0  # 10 rows beyond the schema max
    syn["count"] = syn["count"].astype("float64")
    syn.loc[:29, "count"] = 1.5  # 30 non-integral
    syn.loc[:4, "cat"] = "unheard"  # 5 unseen categories
    report = evaluate(real, syn, _schema(real), train=parts["train"], config=FAST)
    assert report.skipped_columns == {
        "when": "schema kind 'id' is regenerated by decode, not modelled"
    }
    v = {c["name"]: c["validity"] for c in report.columns}
    assert v["x1"]["out_of_bounds"] == pytest.approx(10 / 3000)
    assert v["x1"]["bounds_source"] == "schema"
    assert v["count"]["non_integral"] == pytest.approx(30 / 3000)
    assert v["cat"]["unseen"] == pytest.approx(5 / 3000)
    assert v["cat"]["unseen_examples"] == ["unheard"]
    result = gate(report)
    reason = next(r for r in result.reasons if r.startswith("invalid values"))
    assert "'x1'" in reason and "'count'" in reason and "'cat'" in reason and "unheard" in reason


def test_datetime_schema_bounds_use_arrow_unit(parts) -> None:
    real, syn = parts["real"], parts["fresh"].copy()
    lo = pd.Timestamp("2024-01-01", tz="UTC").value // 1000  # microseconds since epoch
    hi = pd.Timestamp("2024-02-15", tz="UTC").value // 1000
    schema = _schema(real)
    schema.columns[-1] = SimpleNamespace(
        name="when",
        kind="datetime",
        min=float(lo),
        max=float(hi),
        categories=None,
        decimals=None,
        arrow_type="timestamp[us, tz=UTC]",
    )
    syn.loc[:2, "when"] = pd.Timestamp("2030-01-01", tz="UTC")
    report = evaluate(real, syn, schema, train=parts["train"], config=FAST)
    when = next(c for c in report.columns if c["name"] == "when")
    assert when["role"] == "datetime" and when["metric"] == "KSComplement"
    assert when["validity"]["out_of_bounds"] == pytest.approx(3 / 3000)


def test_bad_inputs_name_the_problem(parts) -> None:
    real = parts["real"]
    with pytest.raises(InputError, match="column 'x2': missing from the synthetic table"):
        evaluate(real, real.drop(columns=["x2"]))
    with pytest.raises(InputError, match="column 'extra'"):
        evaluate(real, real.assign(extra=1))
    with pytest.raises(InputError, match="column 'nope': target is not a column"):
        evaluate(real, real, target="nope")
    with pytest.raises(InputError, match="pyarrow.Table or pandas.DataFrame"):
        evaluate(real.to_dict(), real)
    with pytest.raises(InputError, match="no rows"):
        evaluate(real, real.iloc[:0])
    with pytest.raises(InputError, match="expected numbers"):
        evaluate(real, real.assign(x1="a"))


def test_arrow_input_and_determinism(parts) -> None:
    cfg = EvalConfig(
        detection_max_rows=1000, detection_folds=2, detection_max_iter=30, pairs_max_rows=2000
    )
    real = parts["real"]
    a = evaluate(
        pa.Table.from_pandas(real),
        pa.Table.from_pandas(parts["fresh"]),
        train=parts["train"],
        seed=7,
        config=cfg,
    ).to_dict()
    b = evaluate(
        real, parts["fresh"], train=pa.Table.from_pandas(parts["train"]), seed=7, config=cfg
    ).to_dict()
    for d in (a, b):
        d.pop("created_at")
        d.pop("timings_s")
        d.pop("cpu_s")
    assert a == b
    c = evaluate(real, parts["fresh"], train=parts["train"], seed=8, config=cfg)
    assert c.detection["auc"] != a["detection"]["auc"]


# ---------------------------------------------------------------- report
def test_report_json_summary_markdown_and_files(perfect: FidelityReport, tmp_path: Path) -> None:
    perfect.attach_gate(gate(perfect))
    d = perfect.to_dict()
    assert d["schema_version"] == 1
    text = json.dumps(d, allow_nan=False)
    again = FidelityReport.from_dict(json.loads(text))
    assert again.to_dict() == d

    summary = perfect.summary
    assert summary["gate_passed"] == 1.0
    for key in (
        "quality",
        "column_shapes",
        "pair_trends",
        "detection_auc",
        "privacy_dcr_ratio",
        "privacy_exact_copy_rate",
        "missing_rate_max_abs_diff",
        "shape/x1",
    ):
        assert key in summary
    for key, value in summary.items():
        assert re.fullmatch(r"[A-Za-z0-9_\-./ ]+", key), key
        assert isinstance(value, float) and np.isfinite(value)

    md = perfect.to_markdown()
    assert "## Gate: PASSED" in md and "## Overall scores" in md and "## Columns" in md
    assert "## Worst column pairs" in md and "| x1 |" in md

    out = perfect.save(tmp_path / "rep")
    for name in ("report.json", "report.md", "plots/columns.png", "plots/correlation_diff.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "plots" / "columns.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded = FidelityReport.load(out)
    assert loaded.summary == summary
    # A loaded report can be re-plotted without the data.
    loaded.save(tmp_path / "again")
    assert not list(out.glob(".*.tmp"))


def test_report_rejects_unknown_schema_version() -> None:
    with pytest.raises(InputError, match="schema_version 2"):
        FidelityReport.from_dict({"schema_version": 2})


def test_gate_result_dict() -> None:
    r = GateResult(passed=False, reasons=["x"], checks=[{"name": "q", "passed": False}])
    assert r.to_dict() == {
        "passed": False,
        "reasons": ["x"],
        "checks": [{"name": "q", "passed": False}],
    }


def test_pfcore_fidelity_never_imports_sdmetrics() -> None:
    pkg = Path(__file__).resolve().parents[1] / "pfcore" / "fidelity"
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "sdmetrics" for n in names), path


def test_truncated_schema_categories_fall_back_to_observed(parts) -> None:
    """Schemas keep only the most frequent levels of a wide column: the rest are not 'unseen'."""
    schema = _schema(parts["real"])
    schema.columns[4] = SimpleNamespace(
        name="cat",
        kind="categorical",
        min=None,
        max=None,
        arrow_type="string",
        decimals=None,
        categories=[{"value": "mid", "count": 9}],
        n_distinct=3,
        distinct_truncated=False,
    )
    syn = parts["fresh"].copy()
    syn.loc[:2, "cat"] = "unheard"
    report = evaluate(parts["real"], syn, schema, train=parts["train"], config=FAST)
    cat = next(c for c in report.columns if c["name"] == "cat")
    assert cat["validity"]["unseen"] == pytest.approx(3 / 3000)


def test_reference_lowers_thresholds_only_when_real_data_scores_lower(perfect) -> None:
    data = perfect.to_dict()
    data["scores"].update(quality=0.79, reference_quality=0.80)
    noisy = FidelityReport.from_dict(data)
    # margin = max(0.02, 0.25 * (1 - 0.80)) = 0.05 -> threshold 0.75
    check = next(c for c in gate(noisy).checks if c["name"] == "quality")
    assert check["passed"] and check["threshold"] == pytest.approx(0.75)
    off = gate(noisy, GateConfig(use_reference=False))
    assert any(r.startswith("quality 0.7900 < 0.85") for r in off.reasons)
    data["scores"].update(quality=0.84, reference_quality=0.99)  # reference never raises it
    check = next(c for c in gate(FidelityReport.from_dict(data)).checks if c["name"] == "quality")
    assert not check["passed"] and check["threshold"] == 0.85


def test_non_string_column_names(parts) -> None:
    real = parts["real"][["x1", "x2"]].set_axis([0, 1], axis=1)
    syn = parts["fresh"][["x1", "x2"]].set_axis([0, 1], axis=1)
    report = evaluate(real, syn, config=EvalConfig(detection=False))
    assert [c["name"] for c in report.columns] == ["0", "1"]


def _with_missing(df: pd.DataFrame, rate: float, seed: int) -> pd.DataFrame:
    out = df.copy()
    k = int(round(rate * len(out)))
    rows = np.random.default_rng(seed).choice(len(out), k, replace=False)
    x3 = out["x3"].to_numpy(copy=True)
    x3[:] = np.where(np.isnan(x3), 1.0, x3)
    x3[rows] = np.nan
    out["x3"] = x3
    return out


def test_missing_rate_tolerance_follows_the_holdout_size(parts) -> None:
    """The same gap in missing rates (8.75% real, 16% synthetic) is holdout noise at 80 held-out
    rows (standard error of the difference ~0.04) and a broken model at 3,000."""
    small = evaluate(
        _with_missing(parts["real"].iloc[:80], 0.0875, 1),
        _with_missing(parts["fresh"].iloc[:320], 0.16, 2),
        train=parts["train"],
        config=FAST,
    )
    check = next(c for c in gate(small).checks if c["name"] == "missing_rate_diff")
    assert check["passed"] and check["value"] > 0.05
    large = evaluate(
        _with_missing(parts["real"], 0.0875, 1),
        _with_missing(parts["fresh"], 0.16, 2),
        train=parts["train"],
        config=FAST,
    )
    result = gate(large)
    check = next(c for c in result.checks if c["name"] == "missing_rate_diff")
    assert not check["passed"]
    reason = next(r for r in result.reasons if r.startswith("missing-rate"))
    assert "'x3' (real 0.087, synthetic 0.160, tolerance 0.050)" in reason
    # with the widening off, the small holdout fails too
    strict = GateConfig(missing_rate_sigmas=0.0)
    assert not next(c for c in gate(small, strict).checks if c["name"] == "missing_rate_diff")[
        "passed"
    ]


def test_a_high_cardinality_column_does_not_tell_tables_apart(parts, monkeypatch) -> None:
    """Fresh real rows against real rows, with a column of 3,000 levels (more than the
    classifier reads natively) most of which only one side holds: detection AUC stays near 0.5.
    Ordered by first appearance (real values first), the position alone gave it away."""
    from pfcore.fidelity.prepare import Prepared

    rng = np.random.default_rng(11)

    def with_code(df: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        out["code"] = [f"c{v}" for v in rng.integers(0, 3000, len(df))]
        return out

    real, fresh = with_code(parts["real"]), with_code(parts["fresh"])
    report = evaluate(real, fresh, config=FAST)
    assert report.detection["auc"] < 0.56
    assert report.detection["column_auc"]["code"] < 0.56
    monkeypatch.setattr(Prepared, "ordinal", lambda self, name: np.arange(len(self.levels[name])))
    assert evaluate(real, fresh, config=FAST).detection["auc"] > 0.6


def test_a_column_of_copied_training_titles_is_named(parts) -> None:
    """Listing titles: every real row's title is its own, the synthetic rows hold training
    titles (each once). Over the training, held-out and synthetic rows a copied title counts 2
    and a new one 1, which the classifier reads; the column's own AUC says so too (its
    histogram bins the count order: pooling every position above the bins hid it, 0.5), and
    the gate's reason names the copying and what to do about it."""

    rng = np.random.default_rng(2)
    titles = [f"title {i}" for i in rng.permutation(9000)]  # unique, in no order

    def titled(df: pd.DataFrame, names: list[str]) -> pd.DataFrame:
        return df.assign(title=names[: len(df)])

    train = titled(parts["train"], titles[:3000])
    real = titled(parts["real"], titles[3000:6000])
    fresh = titled(parts["fresh"], list(rng.permutation(titles[:3000])))  # copied
    report = evaluate(real, fresh, train=train, config=FAST)
    assert report.detection["auc"] > 0.9
    column_auc = report.detection["column_auc"]
    assert max(column_auc, key=column_auc.get) == "title" and column_auc["title"] > 0.9
    assert report.detection["copied"] == {"title": {"synthetic": 1.0, "real": 0.0}}
    (reason,) = [r for r in gate(report).reasons if r.startswith("detection AUC")]
    assert "'title' (100% of synthetic rows hold a training value, 0% of real" in reason
    assert "declare it id" in reason
    # new titles on both sides: nothing to tell
    new = evaluate(real, titled(parts["fresh"], titles[6000:]), train=train, config=FAST)
    assert new.detection["column_auc"]["title"] < 0.56 and not new.detection["copied"]


def test_a_discrete_column_missing_on_every_row_is_scored(parts) -> None:
    """No level at all: detection and the pair diagnostic read it as missing everywhere."""
    real, fresh = parts["real"].copy(), parts["fresh"].copy()
    real["empty"] = pd.Series([None] * len(real), dtype=object)
    fresh["empty"] = pd.Series([None] * len(fresh), dtype=object)
    report = evaluate(real, fresh, config=FAST)
    assert report.detection["auc"] < 0.6
    assert report.pair_detection is not None


def test_tiny_tables_are_scored_without_early_stopping(parts) -> None:
    """A 50-row table holds out 10 rows: a detection fold fits on 10 rows, and a target class
    may have one row. sklearn's stratified early-stopping split cannot be made there; the
    classifiers fit without it instead of stopping the validation."""
    from pfcore.fidelity.detection import can_stop_early

    real, fresh, train = parts["real"].iloc[:10], parts["fresh"].iloc[:40], parts["train"].iloc[:40]
    two_folds = EvalConfig(detection_folds=2, detection_max_iter=60)
    report = evaluate(real, fresh, train=train, target="cat", config=two_folds)
    assert 0.0 <= report.detection["auc"] <= 1.0
    assert report.efficacy is not None
    assert not can_stop_early(np.array([0] * 10 + [1] * 10), True)
    assert not can_stop_early(np.array([0] * 500 + [1] + [2] * 10), True)  # a one-row class
    assert can_stop_early(np.array([0, 1] * 100), True) and can_stop_early(np.zeros(100), False)

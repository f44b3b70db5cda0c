"""The gate: may this model ship? Every check runs; every failure is a reason.

Why several checks: no single score is a usable gate. Column shapes alone pass a sampler that
draws each column independently (shapes ~0.99, classifier AUC ~1.0); detection alone can miss
a narrow column problem; neither sees memorised training rows. So the gate combines quality,
pair trends, per-column shapes, detection, missing rates, validity and privacy. Whether a model
that passes replaces the current champion is decided once, by ``pfcore.promotion.decide``.

Reasons are sentences a person can act on: metric, value, threshold and, for column-level
failures, the worst columns by name.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from pfcore.fidelity.report import FidelityReport
from pfcore.settings import check_non_negative, from_mapping

__all__ = ["GateConfig", "GateResult", "gate"]


@dataclass(frozen=True)
class GateConfig:
    """Gate thresholds. Every default is a documented choice; override any via ``from_dict``.

    Attributes:
        min_quality: Quality (mean of column shapes and pair trends, as sdmetrics) >= this.
            0.85: good push-forward models score 0.97-0.99 on the shared datasets, SDV
            baselines 0.90-0.93.
        min_pair_trends: pair trends over related pairs >= this (0.80). Catches a model that
            gets marginals right but breaks dependencies (an independent-columns sampler scores
            ~0.6 on correlated tables). Not applied when no real pair is related enough.
        min_column_shape: every single column's shape score >= this (0.80). The mean can hide
            one broken column; a column shifted by half a standard deviation scores ~0.80.
        max_detection_auc: classifier two-sample ROC AUC <= this (0.85).
        max_missing_rate_diff: per column |missing rate real - synthetic| <= this (0.05), or
            within ``missing_rate_sigmas`` standard errors of the difference between two
            samples of these sizes at the pooled rate, when that is wider. A small holdout's
            own missing rate is noisy: 80 held-out rows of a column missing on 13% of a
            400-row table came out at 8.7% (standard error 3.8 points), and a 0.05 tolerance
            failed a model whose rate matched the whole table's within 0.02.
        missing_rate_sigmas: see ``max_missing_rate_diff`` (3.5: a generator drawing from the
            real distribution fails a 50-column table by chance about 2% of the time).
        max_invalid_rate: per column share of unseen categories, values outside schema bounds
            and non-integral values in integer columns <= this (0.001).
        max_observed_out_of_bounds_rate: per column share of values outside the range observed
            in the real/train rows, when the schema gives no bounds, <= this (0.01). Looser,
            because fresh real rows also fall outside an observed range now and then.
        min_dcr_ratio: 5th percentile distance-to-closest-training-record of synthetic rows,
            divided by that of real holdout rows, >= this (0.5): a synthetic tail sitting twice
            as close to training rows as fresh real rows do means memorisation. Not applied
            when the holdout's own 5th percentile is below ``privacy.DCR_TOUCHING`` (rows that
            naturally repeat).
        max_copy_excess: exact copies of training rows may exceed the holdout's natural rate
            of equal rows by at most this share (0.01).
        require_privacy: fail when privacy was not evaluated (no ``train`` given). A scheduled
            pipeline must never skip the leak check silently.
        require_detection: fail when detection was switched off.
        min_efficacy_ratio: TSTR/TRTR >= this when efficacy was measured (None: not gated).
        use_reference: let quality, pair-trend and column-shape thresholds drop to what real
            data scores against real data (``report.reference``, see
            ``pfcore.fidelity.reference``) minus ``reference_margin``, when that is lower.
            A perfect generator must pass on noisy (small or high-cardinality) tables too.
        reference_margin: allowance below the real-vs-real reference: the larger of this
            (0.02) and ``reference_margin_fraction`` (0.25) of the reference's own shortfall
            from 1. The shortfall of real-vs-real is sampling noise, and the noise of a second
            draw scales with it (nyc_flights, 10k rows: reference pair trends 0.78, a fresh real
            sample 0.75).
        worst_columns: how many columns to name in a reason (3).
    """

    min_quality: float = 0.85
    min_pair_trends: float = 0.80
    min_column_shape: float = 0.80
    max_detection_auc: float = 0.85
    max_missing_rate_diff: float = 0.05
    missing_rate_sigmas: float = 3.5
    max_invalid_rate: float = 0.001
    max_observed_out_of_bounds_rate: float = 0.01
    min_dcr_ratio: float = 0.5
    max_copy_excess: float = 0.01
    require_privacy: bool = True
    require_detection: bool = True
    min_efficacy_ratio: float | None = None
    use_reference: bool = True
    reference_margin: float = 0.02
    reference_margin_fraction: float = 0.25
    worst_columns: int = 3

    def __post_init__(self) -> None:
        check_non_negative(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GateConfig:
        """Build from JSON/YAML/CLI values; an unknown key is an InputError naming it."""
        return from_mapping(cls, data)


@dataclass
class GateResult:
    """``passed`` is True only when every check passed; ``reasons`` has one line per failure;
    ``checks`` has every check (passed or not) as ``{name, passed, value, threshold, detail}``."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons), "checks": list(self.checks)}


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _pair_blame(pair_det: dict[str, Any] | None, k: int) -> str:
    """Name the relationships that give rows away, from the pair diagnostic (empty without)."""
    worst = [
        p for p in (pair_det or {}).get("worst") or [] if p.get("explained_by") == "relationship"
    ]
    if not worst:
        return ""
    return "; column pairs whose relationship gives it away (pair AUC, lift): " + ", ".join(
        f"'{p['column_1']}'~'{p['column_2']}' ({p['auc']:.3f}, +{p['lift']:.3f})" for p in worst[:k]
    )


class _Checks:
    def __init__(self) -> None:
        self.checks: list[dict[str, Any]] = []
        self.reasons: list[str] = []

    def add(
        self, name: str, passed: bool, value: Any, threshold: Any, reason: str, detail: str = ""
    ) -> None:
        v = (
            None
            if value is None or (isinstance(value, float) and not math.isfinite(value))
            else value
        )
        self.checks.append(
            {
                "name": name,
                "passed": bool(passed),
                "value": v,
                "threshold": threshold,
                "detail": detail,
            }
        )
        if not passed:
            self.reasons.append(reason)


def _copied_blame(copied: dict[str, dict[str, float]]) -> str:
    """What the detection reason says of columns whose synthetic values are copied training
    values (``detection.copied_columns``), and what to do about them."""
    if not copied:
        return ""
    parts = [
        f"'{name}' ({s['synthetic']:.0%} of synthetic rows hold a training value, "
        f"{s['real']:.0%} of real held-out rows do)"
        for name, s in copied.items()
    ]
    return (
        "; near-unique columns redrawn from the training values: "
        + ", ".join(parts)
        + ": new real rows hold new values there, so such a column tells the tables apart by "
        "itself and copies training text; drop it, or declare it id to regenerate it"
    )


def _names(items: list[tuple[str, float]], k: int) -> str:
    return ", ".join(f"'{c}' ({v:.3f})" for c, v in items[:k])


def missing_tolerance(
    cfg: GateConfig, column: dict[str, Any], n_real: int | None, n_syn: int | None
) -> float:
    """The missing-rate difference a column may show: the configured one, widened to
    ``missing_rate_sigmas`` standard errors of the difference of two independent samples of
    ``n_real`` and ``n_syn`` rows at the pooled rate (no widening without both counts)."""
    if not n_real or not n_syn:
        return cfg.max_missing_rate_diff
    mr, ms = _num(column.get("missing_real")), _num(column.get("missing_synthetic"))
    if not (math.isfinite(mr) and math.isfinite(ms)):
        return cfg.max_missing_rate_diff
    p = (mr * n_real + ms * n_syn) / (n_real + n_syn)
    se = math.sqrt(p * (1.0 - p) * (1.0 / n_real + 1.0 / n_syn))
    return max(cfg.max_missing_rate_diff, cfg.missing_rate_sigmas * se)


def gate(report: FidelityReport, config: GateConfig | None = None) -> GateResult:
    """Decide pass/fail for ``report``; see ``GateConfig`` for every threshold.

    Arguments:
        report: from ``evaluate``.
        config: thresholds (defaults: ``GateConfig()``).
    Returns:
        GateResult; the report is not modified (use ``report.attach_gate(result)``).
    """
    cfg = config or GateConfig()
    c = _Checks()
    s = report.scores
    k = cfg.worst_columns
    shapes = sorted(
        ((col["name"], col["shape"]) for col in report.columns if col.get("shape") is not None),
        key=lambda t: t[1],
    )

    def threshold(configured: float, reference: Any) -> tuple[float, str]:
        """Configured threshold, lowered to reference - margin when real data scores lower."""
        ref = _num(reference)
        if not (cfg.use_reference and math.isfinite(ref)):
            return configured, ""
        margin = max(cfg.reference_margin, cfg.reference_margin_fraction * (1.0 - ref))
        if ref - margin < configured:
            eff = round(ref - margin, 4)
            return (
                eff,
                f" (threshold lowered from {configured}: real-vs-real reference {ref:.4f}"
                f" - margin {margin:.4f})",
            )
        return configured, ""

    quality = _num(s.get("quality"))
    q_thr, q_note = threshold(cfg.min_quality, s.get("reference_quality"))
    if s.get("column_shapes") is not None and _num(s.get("column_shapes")) <= _num(
        s.get("pair_trends")
    ):
        blame = f"worst columns: {_names(shapes, k)}"
    else:
        blame = "worst pairs: " + ", ".join(
            f"'{p['column_1']}'~'{p['column_2']}' ({p['score']:.3f})" for p in report.worst_pairs(k)
        )
    c.add(
        "quality",
        quality >= q_thr,
        quality,
        q_thr,
        f"quality {quality:.4f} < {q_thr}{q_note} "
        f"(column shapes {_num(s.get('column_shapes')):.4f}, "
        f"pair trends {_num(s.get('pair_trends')):.4f}); {blame}",
    )

    pt = _num(s.get("pair_trends"))
    if math.isfinite(pt):
        p_thr, p_note = threshold(cfg.min_pair_trends, s.get("reference_pair_trends"))
        worst = report.worst_pairs(k)
        pairs = ", ".join(f"'{p['column_1']}'~'{p['column_2']}' ({p['score']:.3f})" for p in worst)
        c.add(
            "pair_trends",
            pt >= p_thr,
            pt,
            p_thr,
            f"pair trends {pt:.4f} < {p_thr}{p_note}: dependencies between columns are not kept; "
            f"worst pairs: {pairs}",
        )
    else:
        c.add(
            "pair_trends",
            True,
            None,
            cfg.min_pair_trends,
            "",
            "no pair is related in the real table",
        )

    bad_cols = []
    for col in report.columns:
        if col.get("shape") is None:
            continue
        col_thr, _ = threshold(cfg.min_column_shape, col.get("reference_shape"))
        if col["shape"] < col_thr:
            bad_cols.append((col["name"], col["shape"], col_thr))
    bad_cols.sort(key=lambda t: t[1])
    c.add(
        "min_column_shape",
        not bad_cols,
        shapes[0][1] if shapes else None,
        cfg.min_column_shape,
        f"{len(bad_cols)} column(s) with shape score below threshold: "
        + ", ".join(f"'{n}' ({v:.3f} < {thr})" for n, v, thr in bad_cols[: max(k, 5)]),
    )

    det = report.detection
    if det:
        auc = _num(det.get("auc"))
        col_auc = sorted((det.get("column_auc") or {}).items(), key=lambda t: -t[1])
        telling = [(n, a) for n, a in col_auc if a >= 0.6]
        if telling:
            why = (
                f"columns that give it away on their own (single-column AUC): {_names(telling, k)}"
            )
        elif col_auc:
            why = (
                f"no single column gives it away (best single-column AUC: {_names(col_auc, 1)}), "
                "so the dependence between columns differs"
            )
        else:
            why = "no per-column detail"
        why += _copied_blame(det.get("copied") or {})
        why += _pair_blame(report.pair_detection, k)
        c.add(
            "detection_auc",
            auc <= cfg.max_detection_auc,
            auc,
            cfg.max_detection_auc,
            f"detection AUC {auc:.4f} > {cfg.max_detection_auc}: a classifier separates synthetic "
            f"from real rows; {why}",
        )
    else:
        c.add(
            "detection_auc",
            not cfg.require_detection,
            None,
            cfg.max_detection_auc,
            "detection was not evaluated (EvalConfig.detection=False) "
            "but GateConfig.require_detection is set",
        )

    by_name = {col["name"]: col for col in report.columns}
    n_real, n_syn = report.rows.get("real"), report.rows.get("synthetic")
    miss = sorted(
        ((col["name"], abs(_num(col.get("missing_diff")))) for col in report.columns),
        key=lambda t: -t[1],
    )
    tol = {n: missing_tolerance(cfg, by_name[n], n_real, n_syn) for n, _ in miss}
    miss_bad = [(n, v) for n, v in miss if v > tol[n]]
    c.add(
        "missing_rate_diff",
        not miss_bad,
        miss[0][1] if miss else 0.0,
        cfg.max_missing_rate_diff,
        "missing-rate difference above the tolerance in: "
        + ", ".join(
            f"'{n}' (real {by_name[n]['missing_real']:.3f}, "
            f"synthetic {by_name[n]['missing_synthetic']:.3f}, tolerance {tol[n]:.3f})"
            for n, _ in miss_bad[:5]
        ),
    )

    invalid = []
    for col in report.columns:
        v = col.get("validity") or {}
        rate = _num(v.get("invalid_rate", 0.0))
        oob = _num(v.get("out_of_bounds", 0.0))
        if v.get("bounds_source") != "schema" and oob > cfg.max_observed_out_of_bounds_rate:
            invalid.append(
                f"'{col['name']}' (out_of_bounds {oob:.4f} of the observed range "
                f"[{v.get('min')}, {v.get('max')}] > {cfg.max_observed_out_of_bounds_rate})"
            )
        if rate > cfg.max_invalid_rate:
            kinds = [
                f"{kind} {v[kind]:.4f}"
                for kind in ("unseen", "out_of_bounds", "non_integral")
                if v.get(kind)
            ]
            extra = f" e.g. {v['unseen_examples'][:3]}" if v.get("unseen_examples") else ""
            invalid.append(f"'{col['name']}' ({', '.join(kinds)}{extra})")
    max_invalid = _num(s.get("validity_invalid_rate_max", 0.0))
    c.add(
        "validity",
        not invalid,
        max_invalid,
        cfg.max_invalid_rate,
        f"invalid values above rate {cfg.max_invalid_rate} in: " + "; ".join(invalid[:5]),
    )

    broken = [
        r
        for r in (report.rules or [])
        if r.get("active")
        and (r.get("synthetic_hold_rate") is None or r["synthetic_hold_rate"] < 1.0)
    ]
    if report.rules:
        c.add(
            "rules",
            not broken,
            min((_num(r.get("synthetic_hold_rate")) for r in broken), default=1.0),
            1.0,
            "synthetic rows break active rules: "
            + "; ".join(
                f"{r['name']!r} holds on {_num(r.get('synthetic_hold_rate')):.4%} of rows"
                + (f" ({r['error']})" if r.get("error") else "")
                for r in broken[:5]
            ),
        )

    priv = report.privacy
    if priv:
        ratio = _num(priv.get("dcr_ratio"))
        if math.isfinite(ratio):
            c.add(
                "privacy_dcr_ratio",
                ratio >= cfg.min_dcr_ratio,
                ratio,
                cfg.min_dcr_ratio,
                f"privacy: DCR ratio {ratio:.3f} < {cfg.min_dcr_ratio} "
                f"(5th percentile distance to the closest "
                f"training row: synthetic {_num(priv.get('dcr_synthetic_p5')):.4f} vs holdout "
                f"{_num(priv.get('dcr_holdout_p5')):.4f}): "
                "synthetic rows sit on top of training rows",
            )
        else:
            c.add(
                "privacy_dcr_ratio",
                True,
                None,
                cfg.min_dcr_ratio,
                "",
                "held-out rows sit on top of training rows too (5th percentile DCR "
                f"{_num(priv.get('dcr_holdout_p5')):.2g}): the exact-copy check applies",
            )
        copy = _num(priv.get("exact_copy_rate"))
        limit = _num(priv.get("holdout_copy_rate")) + cfg.max_copy_excess
        c.add(
            "privacy_exact_copies",
            copy <= limit,
            copy,
            round(limit, 6),
            f"privacy: {copy:.2%} of synthetic rows are exact copies of training rows "
            f"(limit {limit:.2%} = holdout's natural rate "
            f"{_num(priv.get('holdout_copy_rate')):.2%} + {cfg.max_copy_excess:.2%})",
        )
    else:
        c.add(
            "privacy",
            not cfg.require_privacy,
            None,
            None,
            "privacy was not evaluated: pass the training rows as evaluate(..., train=...) "
            "(GateConfig.require_privacy is set)",
        )

    eff = report.efficacy
    if cfg.min_efficacy_ratio is not None:
        ratio = _num(eff.get("ratio")) if eff else float("nan")
        c.add(
            "efficacy_ratio",
            math.isfinite(ratio) and ratio >= cfg.min_efficacy_ratio,
            ratio,
            cfg.min_efficacy_ratio,
            f"ML efficacy ratio {ratio:.3f} < {cfg.min_efficacy_ratio}"
            if eff
            else "ML efficacy was not evaluated (name a target and pass train) "
            "but min_efficacy_ratio is set",
        )

    return GateResult(passed=not c.reasons, reasons=c.reasons, checks=c.checks)

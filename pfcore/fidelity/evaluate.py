"""``evaluate``: measure a synthetic table against real held-out (and training) rows.

Order of work: prepare every column once, then shapes / missing rates / validity on all rows,
pair trends, detection, pair detection, privacy and efficacy on seeded subsamples (see
``EvalConfig``). Each metric's subsample comes from its own ``SeedSequence([seed, k])`` stream,
so turning one metric off or on never changes another's numbers.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import numpy as np

from pfcore.errors import InputError
from pfcore.fidelity.config import EvalConfig
from pfcore.fidelity.detection import detection as run_detection
from pfcore.fidelity.efficacy import efficacy as run_efficacy
from pfcore.fidelity.formulas import formula_shares
from pfcore.fidelity.pair_detection import pair_detection as run_pair_detection
from pfcore.fidelity.pairs import correlation_matrices, pair_trends
from pfcore.fidelity.plots import distributions
from pfcore.fidelity.prepare import prepare, to_pandas
from pfcore.fidelity.privacy import privacy as run_privacy
from pfcore.fidelity.reference import reference_scores
from pfcore.fidelity.report import FidelityReport
from pfcore.fidelity.sampling import subsample_rows as _rows
from pfcore.fidelity.shapes import column_shape, missing_rate
from pfcore.fidelity.text import text_columns
from pfcore.fidelity.validity import validity as run_validity

__all__ = ["evaluate"]


class _Stopwatch:
    """Wall and CPU seconds per section. CPU time matters on a shared machine: with one
    thread it is close to what the section takes on an idle core."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._t0 = (time.perf_counter(), time.process_time())
        self.start()

    def start(self) -> None:
        self._t = (time.perf_counter(), time.process_time())

    def lap(self, name: str) -> None:
        self.wall[name] = round(time.perf_counter() - self._t[0], 4)
        self.cpu[name] = round(time.process_time() - self._t[1], 4)

    def total(self) -> None:
        self.wall["total"] = round(time.perf_counter() - self._t0[0], 4)
        self.cpu["total"] = round(time.process_time() - self._t0[1], 4)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def evaluate(
    real: Any,
    synthetic: Any,
    schema: Any = None,
    *,
    train: Any = None,
    target: str | None = None,
    seed: int = 0,
    config: EvalConfig | dict | None = None,
    rules: Any = None,
    formulas: Any = None,
) -> FidelityReport:
    """Score ``synthetic`` against ``real`` (held-out rows) and optionally ``train``.

    Arguments:
        real: real rows the model never saw (``pa.Table`` or ``pd.DataFrame``).
        synthetic: decoded synthetic rows with the same columns.
        schema: optional ``pfcore.schema.TableSchema`` (duck-typed: ``columns`` with ``name``,
            ``kind``, ``min``, ``max``, ``categories``, ``decimals``, ``arrow_type``). It decides
            column roles and the bounds/categories validity checks against; without it roles
            come from dtypes and bounds from the observed real (and train) values.
        train: the model's training rows; enables privacy (DCR, exact copies) and efficacy.
        target: a column to predict for ML efficacy (needs ``train``).
        seed: seeds every subsample and classifier; same inputs + seed -> same report.
        config: ``EvalConfig`` or its dict.
        rules: the synthesizer's rules (``Synthesizer.rules``); each is reported with its real
            and synthetic hold rate, and the gate fails an active rule the synthetic rows break.
        formulas: the formulas its columns were modelled by (``TableTransformer.formulas``);
            each is reported with the share of real and synthetic rows that keep it (not gated).
    Returns:
        FidelityReport.
    Raises:
        InputError: tables empty or with different columns, unknown target, bad config.
    """
    cfg = config if isinstance(config, EvalConfig) else EvalConfig.from_dict(config)
    from threadpoolctl import threadpool_limits  # ships with scikit-learn

    with threadpool_limits(limits=cfg.n_threads):
        report = _evaluate(real, synthetic, schema, train, target, seed, cfg, formulas)
    if rules is not None:
        from pfcore.fidelity.validity import rule_validity

        report.rules = rule_validity(rules, real, synthetic)
        active = [r["synthetic_hold_rate"] for r in report.rules if r["active"]]
        report.scores["rules_active_min_synthetic_hold_rate"] = (
            min((1.0 if v is None else v) for v in active) if active else None
        )
    return report


def _evaluate(
    real: Any,
    synthetic: Any,
    schema: Any,
    train: Any,
    target: str | None,
    seed: int,
    cfg: EvalConfig,
    formulas: Any = None,
) -> FidelityReport:
    sw = _Stopwatch()
    notes: list[str] = []
    used: dict[str, dict[str, int]] = {}  # rows each metric used, per table
    real_df = to_pandas(real, "real")
    syn_df = to_pandas(synthetic, "synthetic")
    train_df = to_pandas(train, "train") if train is not None else None
    prep = prepare(real_df, syn_df, train_df, schema)
    n_real, n_syn = prep.n_rows("real"), prep.n_rows("synthetic")
    n_train = prep.n_rows("train") if train_df is not None else None
    if target is not None and target not in {c.name for c in prep.columns}:
        where = (
            "skipped (" + prep.skipped[target] + ")" if target in prep.skipped else "not a column"
        )
        raise InputError(f"target is {where}", column=target)
    sw.lap("prepare")

    # Column shapes, missing rates, validity: every row.
    sw.start()
    valid = run_validity(prep)
    columns: list[dict[str, Any]] = []
    for info in prep.columns:
        r, s = prep.values["real"][info.name], prep.values["synthetic"][info.name]
        metric, score = column_shape(
            r, s, numeric=info.is_numeric, n_levels=len(prep.levels.get(info.name, ()))
        )
        mr, ms = missing_rate(r), missing_rate(s)
        columns.append(
            {
                "name": info.name,
                "role": info.role,
                "metric": metric,
                "shape": score if np.isfinite(score) else None,
                "missing_real": mr,
                "missing_synthetic": ms,
                "missing_diff": ms - mr,
                "validity": valid[info.name],
            }
        )
    column_shapes = _mean([c["shape"] for c in columns])
    used["column_shapes"] = {"real": n_real, "synthetic": n_syn}
    sw.lap("shapes")

    # Pair trends on a subsample.
    sw.start()
    pr_rows = _rows(n_real, cfg.pairs_max_rows, seed, "pairs", 0)
    ps_rows = _rows(n_syn, cfg.pairs_max_rows, seed, "pairs", 1)
    pairs = pair_trends(
        prep,
        pr_rows,
        ps_rows,
        bins=cfg.pair_bins,
        binning=cfg.pair_binning,
        real_correlation_threshold=cfg.real_correlation_threshold,
        real_association_threshold=cfg.real_association_threshold,
    )
    pt = _mean([p.score for p in pairs if p.meets_threshold])
    pt_all = _mean([p.score for p in pairs])
    corr_names, corr_real, corr_syn = correlation_matrices(prep, pr_rows, ps_rows)
    used["pair_trends"] = {"real": len(pr_rows), "synthetic": len(ps_rows)}
    if n_real > cfg.pairs_max_rows or n_syn > cfg.pairs_max_rows:
        notes.append(
            f"pair trends on {len(pr_rows)} real and {len(ps_rows)} synthetic rows "
            "(seeded subsample)"
        )
    if pairs and not np.isfinite(pt):
        notes.append(
            "no column pair is related in the real table above the thresholds "
            f"(|r| > {cfg.real_correlation_threshold}, "
            f"Cramer's V > {cfg.real_association_threshold}); "
            "pair trends not scored and quality = column shapes"
        )
    sw.lap("pairs")
    quality = _mean([column_shapes, pt])

    sw.start()
    ref = reference_scores(
        prep,
        seed=seed,
        pairs_max_rows=cfg.pairs_max_rows,
        bins=cfg.pair_bins,
        binning=cfg.pair_binning,
        real_correlation_threshold=cfg.real_correlation_threshold,
        real_association_threshold=cfg.real_association_threshold,
    )
    if ref is not None:
        for col in columns:
            col["reference_shape"] = ref["columns"].get(col["name"])
    sw.lap("reference")

    det = None
    if cfg.detection:
        sw.start()
        k = min(n_real, n_syn, cfg.detection_max_rows)
        det = run_detection(
            prep,
            _rows(n_real, k, seed, "detection", 0),
            _rows(n_syn, k, seed, "detection", 1),
            folds=cfg.detection_folds,
            max_iter=cfg.detection_max_iter,
            seed=seed,
        )
        used["detection"] = {"real": k, "synthetic": k}
        for col in columns:
            col["detection_auc"] = det.column_auc.get(col["name"])
        sw.lap("detection")
    else:
        notes.append("detection switched off (EvalConfig.detection=False)")

    pair_det = None
    if cfg.pair_detection:
        sw.start()
        k = min(n_real, n_syn, cfg.pair_detection_max_rows)
        used["pair_detection"] = {"real": k, "synthetic": k}
        pair_det = run_pair_detection(
            prep,
            _rows(n_real, k, seed, "pair_detection", 0),
            _rows(n_syn, k, seed, "pair_detection", 1),
            max_pairs=cfg.pair_detection_max_pairs,
            max_candidates=cfg.pair_detection_max_candidates,
            max_iter=cfg.pair_detection_max_iter,
            seed=seed,
        )
        if pair_det.n_screened < pair_det.n_pairs_total:
            notes.append(
                f"pair detection screened {pair_det.n_screened} of {pair_det.n_pairs_total} "
                "column pairs (seeded random subset; EvalConfig.pair_detection_max_candidates)"
            )
        sw.lap("pair_detection")

    priv = None
    if train_df is not None and cfg.privacy:
        sw.start()
        dcr = (
            _rows(n_syn, cfg.dcr_max_synthetic, seed, "privacy", 1),
            _rows(n_real, cfg.dcr_max_holdout, seed, "privacy", 0),
            _rows(n_train, cfg.dcr_max_train, seed, "privacy", 2),
        )
        priv = run_privacy(prep, *dcr)
        used["privacy"] = {"real": len(dcr[1]), "synthetic": len(dcr[0]), "train": len(dcr[2])}
        sw.lap("privacy")
    elif train_df is None:
        notes.append("privacy not evaluated: no training rows given")

    eff = None
    if target is not None:
        if train_df is None:
            notes.append(
                f"ML efficacy for target {target!r} needs the training rows; not evaluated"
            )
        else:
            sw.start()
            eff_rows = (
                _rows(n_syn, cfg.efficacy_max_rows, seed, "efficacy", 1),
                _rows(n_train, cfg.efficacy_max_rows, seed, "efficacy", 2),
                _rows(n_real, cfg.efficacy_max_test_rows, seed, "efficacy", 0),
            )
            eff = run_efficacy(prep, target, *eff_rows, seed=seed)
            used["efficacy"] = {
                "real": len(eff_rows[2]),
                "synthetic": len(eff_rows[0]),
                "train": len(eff_rows[1]),
            }
            sw.lap("efficacy")

    sw.start()
    dists = distributions(prep, cfg.plot_max_columns)
    sw.lap("distributions")
    sw.start()
    texts = text_columns(real_df, syn_df, train_df, schema)
    shares = formula_shares(list(formulas), real_df, syn_df, train_df, schema) if formulas else None
    sw.lap("text")
    sw.total()

    from pfcore import __version__

    invalid = [c["validity"]["invalid_rate"] for c in columns]
    return FidelityReport(
        scores={
            "quality": quality,
            "column_shapes": column_shapes,
            "pair_trends": pt,
            "pair_trends_all": pt_all,
            "missing_rate_max_abs_diff": max(
                (abs(c["missing_diff"]) for c in columns), default=0.0
            ),
            "validity_invalid_rate_max": max(invalid, default=0.0),
            "reference_quality": ref["quality"] if ref else None,
            "reference_column_shapes": ref["column_shapes"] if ref else None,
            "reference_pair_trends": ref["pair_trends"] if ref else None,
        },
        reference={k: v for k, v in ref.items() if k != "columns"} if ref else None,
        columns=columns,
        pairs=[p.to_dict() for p in pairs],
        rows={"real": n_real, "synthetic": n_syn, "train": n_train},
        metric_rows=used,
        config=cfg.to_dict(),
        seed=seed,
        target=target,
        skipped_columns=dict(prep.skipped),
        detection=det.to_dict() if det else None,
        pair_detection=pair_det.to_dict() if pair_det else None,
        text=texts or None,
        formulas=shares,
        privacy=priv.to_dict() if priv else None,
        efficacy=eff.to_dict() if eff else None,
        notes=notes,
        timings_s=sw.wall,
        cpu_s=sw.cpu,
        distributions=dists,
        correlation={
            "columns": corr_names,
            "real": corr_real.tolist(),
            "synthetic": corr_syn.tolist(),
        },
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        package_version=__version__,
    )

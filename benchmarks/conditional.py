"""Conditional generation benchmark: exactness, fidelity under the condition, and speed.

Per dataset one model is fitted through the product path (``Synthesizer.fit``, default family)
on at most ``MAX_TRAIN_ROWS`` training rows (80/20 split, the fidelity benchmark's), then five
requests are answered through ``Synthesizer.sample(..., conditions=...)``:

* ``frequent category``: the most frequent class of the first categorical column;
* ``rare category``: a class seen in under 2% of the training rows (the rarest kept one that
  still has holdout rows to compare against);
* ``numeric range``: the 60th-90th percentile of the first continuous column;
* ``seed rows``: the holdout rows with half of the modelled columns removed (seeded choice),
  completed by the model;
* ``rebalance uniform``: the target (or first categorical) column rebalanced to uniform.

Each record holds ``dataset``, ``condition``, ``rows``, ``match_rate`` (rows that meet the
condition / keep the seed values exactly; for rebalancing rows whose class is a requested one,
with the achieved shares beside it), ``detection_auc_conditional`` (synthetic rows against the
real holdout rows that meet the same condition: for seed rows the full holdout rows, for
rebalancing the holdout resampled to the target shares, against the synthetic rows of the
classes the holdout has, ``classes_compared``; under ``FEW_REAL_ROWS`` real rows the mean
of ``SUBSAMPLES`` classifier subsamples, ``detection_subsamples``),
``detection_auc_unconditional`` (the
same model's unconditional rows against the whole holdout),
``detection_auc_unconditional_matched`` (the same model's unconditional rows that meet the
condition, filtered from ``MATCHED_POOL_ROWS`` draws, against the same real rows as the
conditional ones; for seed rows its unconditional rows against those holdout rows; for
rebalancing its rows resampled to the target shares like the holdout: what the model does on
that part of the table without a conditional sampler, so a condition that selects rows the
model finds hard is not charged to the sampler), ``rows_per_second`` and
``unconditional_rows_per_second`` (``sample`` end to end, decode included, one torch thread,
timed on ``--timing-rows`` rows; seed rows: the holdout's seed rows repeated to that count)
and ``worst_pairs`` (the fidelity report's pair diagnostic on the rows the conditional AUC
compares: the column pairs that give the conditional rows away, also printed) and
``detection_auc_discrete`` (the same score on the columns drawn as classes alone, for the
conditional rows and for the model's own matching rows: whether the classes or the numbers
beside them fall short). Seed-row records add, per removed column, the accuracy
(categorical) or R^2 (numeric) of the generated values against the removed real values,
beside a HistGradientBoosting imputer fitted on the training rows with the kept columns as features.
A generated value is one draw from the conditional law, not its mean, so its R^2 sits below a
regressor's even for a perfect model (for a Gaussian conditional, ``2 R^2_mean - 1``).

Usage (``--quick``: the ``fast`` preset, 2-minute fits, 5k-row fidelity samples and 20k-row
timings, for the shared 2-core CPU; the full protocol times 100k rows)::

    python benchmarks/conditional.py --quick [--datasets ...]
    python benchmarks/conditional.py          # balanced preset, 100k-row timings

``--conditional-method student inpaint`` answers every request with both conditional samplers of
the same model, chosen per request (``Conditions.method``, the option ``pushforward generate``,
the pyfunc and the flow take; ``--samplers`` is its former name); ``--step-budget T D C`` trains
fixed steps per phase (teacher, distillation, conditional student) instead of the time budget,
for a shared machine; ``--timing-rows`` sets the rows timed. ``--models DIR`` saves each fit
under ``DIR/<dataset>`` and loads it when it is there, so another sampler (or another version
of the code) is scored on the same fit::

    python benchmarks/conditional.py --models fits                      # fit, save, score
    python benchmarks/conditional.py --models fits --conditional-method project
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("PUSHFORWARD_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = Path(os.environ.get("PUSHFORWARD_BENCH_RESULTS", ROOT / "benchmarks" / "results"))
DATASETS = ["california_housing", "credit_default", "diamonds", "nyc_flights"]
TARGETS = {
    "california_housing": "ocean_proximity",
    "credit_default": "default_payment_next_month",
    "diamonds": "cut",
    "nyc_flights": "origin",
    # not in ../shared (sources in benchmarks/README): run them with <name>.parquet in a
    # PUSHFORWARD_SHARED_DATASETS folder
    "adult": "class",
    "bank_marketing": "y",
    "telco_churn": "Churn",
    "kc_house": "waterfront",
}
MAX_TRAIN_ROWS = 20_000
INPAINT_TIMING_ROWS = 20_000
#: Unconditional rows drawn once per model and filtered per request: the matched reference.
MATCHED_POOL_ROWS = 200_000
#: The HGB imputer is skipped (NaN) for a removed column with more classes than this
#: (nyc_flights' ``tailnum``, ~4k classes, did not finish in an hour).
MAX_IMPUTER_CLASSES = 200
SEED = 0
#: conditions whose holdout rows are fewer than this average SUBSAMPLES detection scores
FEW_REAL_ROWS = 1_000
SUBSAMPLES = 10


def _categorical(schema: Any, transformer: Any) -> list[str]:
    """Categorical and boolean columns of the dataset's schema (not integer columns the model
    draws as codes), so the category requests stay those of the table whatever the model."""
    from pfcore.transforms.categorical import CategoricalTransform

    return [
        tr.column.name
        for tr in transformer.transforms
        if isinstance(tr, CategoricalTransform)
        and schema[tr.column.name].kind in ("categorical", "boolean")
    ]


def _continuous(schema: Any, transformer: Any) -> list[str]:
    from pfcore.transforms.numeric import NumericTransform

    return [
        tr.column.name
        for tr in transformer.transforms
        if isinstance(tr, NumericTransform) and tr.column.kind == "continuous"
    ]


def _discrete_columns(synth: Any) -> list[str]:
    """The modelled columns the model draws as classes (categorical and boolean columns, and
    numbers drawn as codes): where the discrete part of a conditional draw shows."""
    from pfcore.transforms.categorical import CategoricalTransform

    modelled = {c.name for c in synth.schema.modelled}
    return [
        tr.column.name
        for tr in synth.transformer.transforms
        if isinstance(tr, CategoricalTransform) and tr.column.name in modelled
    ]


def _discrete_auc(real: Any, synthetic: Any, columns: list[str], matched: Any) -> dict | None:
    """Detection AUC on the discrete columns alone, of the conditional rows and of the model's
    own matching rows against the same real rows. Why: a conditional request draws the
    classes with the any-order network and the numbers beside them with the latent move; the
    whole-row score does not say which of the two falls short of the model's own rows. None
    without discrete columns or with under 20 matched or real rows."""
    if not columns or len(matched) < 20 or len(real) < 20:
        return None
    return {
        "conditional": _detect(real[columns], synthetic[columns]),
        "unconditional_matched": _detect(real[columns], matched[columns]),
    }


def _requests(
    synth: Any, schema: Any, train: Any, hold: Any, target: str
) -> list[tuple[str, Any, Any]]:
    """(label, Conditions, predicate over a pandas frame or None) for the five requests."""
    import numpy as np

    from pfcore.conditions import Conditions, Where

    cats = _categorical(schema, synth.transformer)
    tr_df, ho_df = train.to_pandas(), hold.to_pandas()
    out: list[tuple[str, Any, Any]] = []
    col = cats[0]
    freq = tr_df[col].value_counts()
    value = freq.index[0]
    out.append(
        (
            f"frequent category {col}={value} ({freq.iloc[0] / len(tr_df):.1%})",
            Conditions(where=(Where(col, "=", _py(value)),)),
            lambda d, c=col, v=value: d[c] == v,
        )
    )
    rare = None
    for c in cats:
        share = tr_df[c].value_counts(normalize=True)
        for v, s in share.sort_values().items():
            if s < 0.02 and s >= 0.002 and (ho_df[c] == v).sum() >= 20:
                rare = (c, v, s)
                break
        if rare:
            break
    if rare is not None:
        c, v, s = rare
        out.append(
            (
                f"rare category {c}={v} ({s:.2%})",
                Conditions(where=(Where(c, "=", _py(v)),)),
                lambda d, c=c, v=v: d[c] == v,
            )
        )
    nums = _continuous(synth.schema, synth.transformer)
    if nums:
        c = nums[0]
        lo, hi = np.nanquantile(tr_df[c].astype(float), [0.6, 0.9])
        out.append(
            (
                f"numeric range {lo:g}<={c}<={hi:g}",
                Conditions(where=(Where(c, ">=", float(lo)), Where(c, "<=", float(hi)))),
                lambda d, c=c, lo=lo, hi=hi: (d[c] >= lo) & (d[c] <= hi),
            )
        )
    out.append(("seed rows (holdout, half of the columns removed)", None, None))
    out.append(
        (f"rebalance {target} uniform", Conditions.make(rebalance=f"{target}=uniform"), None)
    )
    return out


def _split(table: Any) -> tuple[Any, Any]:
    """(training rows, held-out rows) of a shared table: the fidelity benchmark's 80/20 split
    (at most ``MAX_TRAIN_ROWS`` training rows) and at most 20,000 of the held-out rows (a
    seeded choice), so every conditional script scores the same rows."""
    import numpy as np
    import pyarrow as pa

    from pfcore.synthesizer import split_train_holdout

    train, hold = split_train_holdout(table, 0.2, SEED, MAX_TRAIN_ROWS)
    if hold.num_rows > 20_000:
        idx = np.sort(np.random.default_rng(SEED).choice(hold.num_rows, 20_000, replace=False))
        hold = hold.take(pa.array(idx))
    return train, hold


def _seed_rows(synth: Any, hold: Any) -> tuple[list[str], Any]:
    """(kept columns, the held-out rows to complete): half of the modelled columns (a seeded
    choice) less those the model would refuse as given (:func:`_rule_consistent`), and the
    held-out rows whose kept categories the model has seen (:func:`_seen_rows`)."""
    import numpy as np

    names = [c.name for c in synth.schema.modelled]
    rng = np.random.default_rng(SEED)
    kept = sorted(rng.choice(names, len(names) // 2, replace=False).tolist())
    kept = _rule_consistent(synth, kept)
    return kept, _seen_rows(synth, hold, kept)


def _rule_consistent(synth: Any, kept: list[str]) -> list[str]:
    """Drop kept columns the model refuses as given values (its own check,
    ``condition_plan.check_not_rule_built``): a column a rule rebuilds from columns not kept;
    a user would leave them out."""
    from pfcore.condition_plan import check_not_rule_built
    from pfcore.errors import InputError

    by_name = {tr.column.name: tr for tr in synth.transformer.transforms}
    out = list(kept)
    changed = True
    while changed:
        changed = False
        for name in [n for n in out if n in by_name]:
            try:
                check_not_rule_built(by_name[name], name, set(out))
            except InputError:
                out.remove(name)
                changed = True
    return out


def _seen_rows(synth: Any, hold: Any, kept: list[str]) -> Any:
    """Holdout rows whose kept categorical values occur in training (seed rows with a category
    the model never saw are refused, as a fixed value would be)."""
    import pyarrow.compute as pc

    from pfcore.transforms.categorical import CategoricalTransform

    ok = None
    for tr in synth.transformer.transforms:
        if tr.column.name in kept and isinstance(tr, CategoricalTransform):
            col = hold.column(tr.column.name).cast(tr.type)
            seen = pc.or_(
                pc.or_(pc.is_in(col, value_set=tr.kept), pc.is_in(col, value_set=tr.pooled)),
                pc.is_null(col),
            )
            ok = seen if ok is None else pc.and_(ok, seen)
    return hold if ok is None else hold.filter(ok)


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _subsamples(real: Any) -> int:
    """How many classifier subsamples a condition's detection AUC averages: ``SUBSAMPLES``
    when its real rows are under ``FEW_REAL_ROWS``, else one."""
    return SUBSAMPLES if len(real) < FEW_REAL_ROWS else 1


def _detect(real: Any, synthetic: Any) -> float:
    """Detection AUC of ``synthetic`` against ``real``: the mean over :func:`_subsamples`
    classifier seeds, each its own subsample of the synthetic rows and its own folds. Why: the
    score compares as many synthetic rows as there are real ones, so a rare class's 153 holdout
    rows (diamonds' ``clarity=I1``) meet 153 synthetic ones, and one subsample of the same
    rows moved the score by up to 0.04 between classifier seeds; the mean keeps the estimator
    and shrinks that spread."""
    import numpy as np

    from benchmarks.scoring import detection_auc

    k = _subsamples(real)
    return round(float(np.mean([detection_auc(real, synthetic, seed=s) for s in range(k)])), 4)


def _auc_or_none(real: Any, synthetic: Any) -> float | None:
    """:func:`_detect`, None when either side has under 20 rows."""
    if len(real) < 20 or len(synthetic) < 20:
        return None
    return _detect(real, synthetic)


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _imputer_scores(
    train: Any,
    hold: Any,
    kept: list[str],
    removed: list[str],
    synth_out: Any,
    cache: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Per removed column: our generated values and an HGB imputer, both against the truth.

    ``cache`` keeps the imputer's score per column across samplers (the same seed rows): the
    imputer on a 1,000-class column takes minutes."""
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import accuracy_score, r2_score

    from benchmarks.scoring import _features

    tr, ho = train.to_pandas(), hold.to_pandas()
    (x_tr, x_ho), is_cat = _features([tr[kept], ho[kept]])
    syn = synth_out.to_pandas()
    rows = []
    for c in removed:
        y_tr, y_ho, y_syn = tr[c], ho[c], syn[c]
        ok = y_ho.notna().to_numpy()
        numeric = pd.api.types.is_numeric_dtype(y_tr.dtype) and not pd.api.types.is_bool_dtype(
            y_tr.dtype
        )
        is_num = numeric and y_tr.nunique() > 20
        fit = y_tr.notna().to_numpy()
        cached = None if cache is None else cache.get(c)
        if is_num:
            truth = y_ho[ok].astype(float).to_numpy()
            if cached is None:
                model = HistGradientBoostingRegressor(
                    categorical_features=is_cat, random_state=SEED
                )
                model.fit(x_tr[fit], y_tr[fit].astype(float))
                cached = round(float(r2_score(truth, model.predict(x_ho[ok]))), 4)
            gen = pd.to_numeric(y_syn[ok], errors="coerce").astype(float).to_numpy()
            good = ~np.isnan(gen)
            rows.append(
                {
                    "column": c,
                    "metric": "r2",
                    "generated": round(float(r2_score(truth[good], gen[good])), 4),
                    "hgb_imputer": cached,
                }
            )
        else:
            truth = y_ho[ok].astype(str).to_numpy()
            if cached is None and y_tr.nunique() > MAX_IMPUTER_CLASSES:
                cached = float("nan")  # one tree per class and round: hours on 2 cores
            if cached is None:
                # no early stopping: its stratified split fails on classes seen once
                model = HistGradientBoostingClassifier(
                    categorical_features=is_cat, random_state=SEED, early_stopping=False
                )
                model.fit(x_tr[fit], y_tr[fit].astype(str))
                cached = round(float(accuracy_score(truth, model.predict(x_ho[ok]))), 4)
            rows.append(
                {
                    "column": c,
                    "metric": "accuracy",
                    "generated": round(
                        float(accuracy_score(truth, y_syn[ok].astype(str).to_numpy())), 4
                    ),
                    "hgb_imputer": None if cached != cached else cached,  # NaN: skipped
                }
            )
        if cache is not None:
            cache[c] = cached
    return rows


def _fit_record(synth: Any) -> dict[str, Any]:
    """Fit time and the share each phase took (the conditional student's is the one to watch)."""
    summary = synth.info.get("fit_summary", {})
    out: dict[str, Any] = {"fit_seconds": synth.info.get("fit_seconds")}
    cond_phases = ("conditional", "cond_discrete", "cond_teacher", "cond_numeric")
    for phase in ("ar", "teacher", "distill", *cond_phases):
        p = summary.get(phase)
        if isinstance(p, dict) and p.get("steps"):
            out[phase] = {
                "steps": p.get("steps"),
                "seconds": p.get("seconds"),
                "seconds_per_step": round(float(p["seconds"]) / int(p["steps"]), 5),
            }
    if isinstance(summary.get("masked_pairs"), dict):
        out["masked_pairs"] = summary["masked_pairs"]
    cond_s = sum(float(out[p]["seconds"]) for p in cond_phases if p in out)
    cond_s += float(out.get("masked_pairs", {}).get("seconds", 0.0))
    if cond_s and out["fit_seconds"]:
        out["conditional_share_of_fit"] = round(cond_s / float(out["fit_seconds"]), 3)
    return out


def run(
    datasets: list[str],
    family: str,
    preset: str,
    config: dict[str, Any],
    fid_rows: int,
    timing_rows: int,
    save: Any = None,
    samplers: tuple[str, ...] = ("auto",),
    models: Path | None = None,
    fit_seeds: tuple[int, ...] = (SEED,),
) -> list[dict]:
    import dataclasses

    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.fidelity import _pairs_text, _worst_pairs
    from benchmarks.scoring import detection_auc
    from pfcore.conditions import Conditions
    from pfcore.models.conditional import conditional_method
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    records: list[dict] = []
    for ds, fit_seed in [(d, k) for d in datasets for k in fit_seeds]:
        path = SHARED / f"{ds}.parquet"
        if not path.exists():
            print(f"{ds}: {path} not found, skipped", flush=True)
            continue
        train, hold = _split(pq.read_table(path))
        print(
            f"[{time.strftime('%H:%M:%S')}] {ds}: fitting ({family}, {preset}, {config})",
            flush=True,
        )
        # the first fit seed's folder is the dataset's name (fits saved before seeds existed)
        name = ds if fit_seed == SEED else f"{ds}-seed{fit_seed}"
        saved = None if models is None else models / name
        if saved is not None and (saved / "synthesizer.json").exists():
            synth = Synthesizer.load(saved)  # the same fit, scored again (another sampler)
        else:
            synth = Synthesizer.fit(
                train,
                infer_schema(train),
                family=family,
                preset=preset,
                seed=fit_seed,
                config={**config, "seed": fit_seed},
            )
            if saved is not None:
                synth.save(saved)
        fit = _fit_record(synth)
        print(f"{'':20s}   fit: {json.dumps(fit)}", flush=True)
        ho_df = hold.to_pandas()
        uncond = synth.sample(fid_rows, 1).to_pandas()
        auc_uncond = detection_auc(ho_df, uncond, seed=SEED)
        # a pool of unconditional rows to filter: the matched reference of each request
        pool = synth.sample(MATCHED_POOL_ROWS, 5).to_pandas()
        _, t_unc = _timed(lambda s=synth: s.sample(timing_rows, 2))
        unc_rps = timing_rows / t_unc
        schema = infer_schema(train)  # the table's own kinds (the model may draw codes)
        target = TARGETS.get(ds) or _categorical(schema, synth.transformer)[0]
        runs = [
            (sampler, label, cond, pred)
            for sampler in samplers
            for label, cond, pred in _requests(synth, schema, train, hold, target)
        ]
        imputer: dict[str, float] = {}  # the HGB imputer's scores, shared by the samplers
        discrete = _discrete_columns(synth)
        for sampler, label, cond, pred in runs:
            if cond is not None:
                cond = dataclasses.replace(cond, method=sampler)
            # inpainting runs ~2k rows/s here: 20k rows time it as well as 100k would
            timed = min(timing_rows, INPAINT_TIMING_ROWS) if sampler == "inpaint" else timing_rows
            rec: dict[str, Any] = {
                "dataset": ds,
                "fit_seed": fit_seed,
                "condition": label,
                "family": family,
                "sampler": conditional_method(synth.model, sampler),
                "preset": preset,
                "fit": fit,
                "detection_auc_unconditional": round(auc_uncond, 4),
                "unconditional_rows_per_second": round(unc_rps, 1),
                "timing_rows": timed,
            }
            if cond is None:  # seed rows from the holdout, half of the columns removed
                kept, hold_s = _seed_rows(synth, hold)
                removed = [c.name for c in synth.schema.modelled if c.name not in kept]
                rec["seed_rows_dropped_unseen_category"] = hold.num_rows - hold_s.num_rows
                given = hold_s.select(kept)
                cond = Conditions.make(seed_rows=given, method=sampler)
                out = synth.sample(None, 3, conditions=cond)
                # timed on the seed rows repeated to the timed count: on the holdout alone
                # (1.4k rows on telco_churn) the call's fixed costs were half of the time
                tiled = pa.concat_tables([given] * -(-timed // given.num_rows)).slice(0, timed)
                tiled_cond = Conditions.make(seed_rows=tiled, method=sampler)
                _, secs = _timed(lambda c=tiled_cond, s=synth: s.sample(None, 4, conditions=c))
                same = all(out.column(c).equals(given.column(c)) for c in kept)
                match = float(
                    np.mean(
                        np.all(
                            [
                                (
                                    out.column(c).to_pandas().fillna("<null>").astype(str)
                                    == given.column(c).to_pandas().fillna("<null>").astype(str)
                                ).to_numpy()
                                for c in kept
                            ],
                            axis=0,
                        )
                    )
                )
                real_s, out_s = hold_s.to_pandas(), out.to_pandas()
                rec.update(
                    detection_auc_unconditional_matched=_auc_or_none(
                        real_s, pool.iloc[: out.num_rows]
                    ),
                    rows=out.num_rows,
                    match_rate=match if not same else 1.0,
                    detection_auc_conditional=_detect(real_s, out_s),
                    detection_auc_discrete=_discrete_auc(
                        real_s, out_s, discrete, pool.iloc[: out.num_rows]
                    ),
                    detection_subsamples=_subsamples(hold_s),
                    worst_pairs=_worst_pairs(real_s, out_s),
                    rows_per_second=round(tiled.num_rows / secs, 1),
                    timing_rows=tiled.num_rows,
                    kept_columns=kept,
                    removed_columns=removed,
                    imputation=_imputer_scores(train, hold_s, kept, removed, out, imputer),
                )
            elif cond.rebalance is not None:
                out = synth.sample(fid_rows, 3, conditions=cond).to_pandas()
                requested = synth.compile_conditions(cond).rebalance.values.to_pylist()
                shares = out[target].value_counts(normalize=True)
                # the holdout at the target shares, without repeating a row (repeats would let
                # the classifier spot real rows): as many rows per present class as the rarest
                present = [v for v in requested if (ho_df[target] == v).any()]
                per = int(min((ho_df[target] == v).sum() for v in present))
                real = pd.concat(
                    [ho_df[ho_df[target] == v].sample(per, random_state=SEED) for v in present]
                )
                want = pd.Series(1 / len(requested), index=requested)
                err = (shares.reindex(requested).fillna(0.0) - want).abs().max()
                _, secs = _timed(lambda c=cond, s=synth, t=timed: s.sample(t, 4, conditions=c))
                # the unconditional rows at the requested shares, as the holdout rows were taken
                n_per = min([int((pool[target] == v).sum()) for v in present] + [fid_rows])
                matched = pd.concat(
                    [pool[pool[target] == v].iloc[:n_per] for v in present if n_per]
                )
                # a requested class the holdout lacks has no real rows to compare with: its
                # synthetic rows would be told apart by their class alone
                compared = out[out[target].isin(present)]
                rec.update(
                    detection_auc_unconditional_matched=_auc_or_none(real, matched),
                    rows=len(out),
                    match_rate=float(out[target].isin(requested).mean()),
                    achieved_shares={str(k): round(float(v), 4) for k, v in shares.items()},
                    max_share_error=round(float(err), 4),
                    holdout_rows_meeting=int(len(real)),
                    classes_compared=[str(v) for v in present],
                    detection_auc_conditional=_detect(real, compared),
                    detection_auc_discrete=_discrete_auc(real, compared, discrete, matched),
                    detection_subsamples=_subsamples(real),
                    worst_pairs=_worst_pairs(real, compared),
                    rows_per_second=round(timed / secs, 1),
                )
            else:
                out = synth.sample(fid_rows, 3, conditions=cond).to_pandas()
                real = ho_df[pred(ho_df)]
                _, secs = _timed(lambda c=cond, s=synth, t=timed: s.sample(t, 4, conditions=c))
                meeting = pool[pred(pool)].iloc[:fid_rows]
                rec.update(
                    rows=len(out),
                    match_rate=float(pred(out).mean()),
                    holdout_rows_meeting=int(len(real)),
                    detection_auc_conditional=_detect(real, out),
                    detection_auc_discrete=_discrete_auc(real, out, discrete, meeting),
                    detection_subsamples=_subsamples(real),
                    worst_pairs=_worst_pairs(real, out),
                    unconditional_rows_meeting=int(len(meeting)),
                    detection_auc_unconditional_matched=_auc_or_none(real, meeting),
                    rows_per_second=round(timed / secs, 1),
                )
            rec["speed_ratio"] = round(rec["rows_per_second"] / unc_rps, 4)
            records.append(rec)
            if save is not None:
                save(records)
            print(
                f"[{time.strftime('%H:%M:%S')}] {ds:18s} {rec['sampler']:8s} {label[:40]:40s} "
                f"match {rec['match_rate']:.3f}  AUC {rec['detection_auc_conditional']:.3f} "
                f"(uncond {auc_uncond:.3f}, "
                f"matched {rec.get('detection_auc_unconditional_matched')})"
                f"  {rec['rows_per_second']:>9.0f} rows/s "
                f"({rec['speed_ratio']:.1%} of {unc_rps:.0f})",
                flush=True,
            )
            print(f"{'':20s}   worst pairs: {_pairs_text(rec['worst_pairs'])}", flush=True)
            if rec.get("detection_auc_discrete"):
                dd = rec["detection_auc_discrete"]
                print(
                    f"{'':20s}   discrete columns alone: AUC {dd['conditional']:.3f} "
                    f"(the model's own matching rows {dd['unconditional_matched']:.3f})",
                    flush=True,
                )
            for imp in rec.get("imputation", []):
                print(
                    f"{'':20s}   {imp['column']:28s} {imp['metric']:8s} generated "
                    f"{imp['generated']:.3f}  HGB imputer {imp['hgb_imputer'] or float('nan'):.3f}",
                    flush=True,
                )
    return records


def main(argv: list[str] | None = None) -> int:
    from pfcore.defaults import CONDITIONAL_METHODS, DEFAULT_FAMILY

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--quick", action="store_true", help="fast preset, short fits, 20k timings")
    ap.add_argument("--out", default=str(RESULTS / "conditional.json"))
    ap.add_argument(
        "--conditional-method",
        "--samplers",
        dest="samplers",
        nargs="+",
        default=["auto"],
        choices=list(CONDITIONAL_METHODS),
        help="conditional samplers to score, each on every request of the same model (auto: "
        "the student when the model has one)",
    )
    ap.add_argument("--timing-rows", type=int, default=None, help="rows timed per request")
    ap.add_argument("--family", default=None, help="model family (default: the product default)")
    ap.add_argument(
        "--step-budget",
        type=int,
        nargs=3,
        metavar=("TEACHER", "DISTILL", "CONDITIONAL"),
        help="train for these steps per phase (time budget lifted to 60 minutes): on a shared "
        "machine a time budget gives whatever steps the other jobs leave",
    )
    ap.add_argument(
        "--set",
        nargs="*",
        metavar="KEY=JSON",
        help="model config overrides for every fit, e.g. --set calibrate_numbers=false",
    )
    ap.add_argument(
        "--fit-seeds",
        type=int,
        nargs="+",
        default=[SEED],
        help="one fit per seed (the split stays seed 0): records carry fit_seed, and the "
        "summary gives each request's mean and spread over them",
    )
    ap.add_argument(
        "--models",
        help="folder of fitted synthesizers, one per dataset: loaded when present, else fitted "
        "and saved there (score several samplers or versions on the same fits)",
    )
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.quick:
        preset, minutes, fid_rows, timing_rows = "fast", 2.0, 5_000, 20_000
    else:
        preset, minutes, fid_rows, timing_rows = "balanced", 4.0, 20_000, 100_000
    timing_rows = args.timing_rows or timing_rows
    config: dict[str, Any] = {"threads": 1, "device": "cpu", "max_minutes": minutes}
    family = args.family or DEFAULT_FAMILY
    if args.step_budget:
        teacher, distill, conditional = args.step_budget
        config.update(
            max_minutes=60.0,
            max_steps=teacher,
            epochs=None,
            distill_max_steps=distill,
            conditional_max_steps=conditional,
        )
    from benchmarks.overrides import parse_overrides

    config.update(parse_overrides(args.set))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from pfcore.models.conditional import DEFAULT_CHURN, DEFAULT_STEPS

    protocol = {
        "quick": bool(args.quick),
        "samplers": list(args.samplers),
        "inpainting": {"steps": DEFAULT_STEPS, "churn": DEFAULT_CHURN},
        "family": family,
        "preset": preset,
        "fit_config": config,
        "fidelity_rows": fid_rows,
        "timing_rows": timing_rows,
        "torch_threads": 1,
        "machine": "shared 2-core CPU" if args.quick else "see README",
        "models": args.models,
    }

    def save(records: list[dict]) -> None:  # after every record: a crash keeps what ran
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(
            json.dumps({"protocol": protocol, "records": records}, indent=2, default=str)
        )
        os.replace(tmp, out)

    records = run(
        args.datasets,
        family,
        preset,
        config,
        fid_rows,
        timing_rows,
        save,
        tuple(args.samplers),
        Path(args.models) if args.models else None,
        tuple(args.fit_seeds),
    )
    save(records)
    for line in summarize(records):
        print(line)
    print(f"wrote {out}")
    return 0


def summarize(records: list[dict]) -> list[str]:
    """Per (dataset, request): the conditional AUC's mean and sample spread over fit seeds,
    beside the tolerance (the unconditional AUC's mean + 0.05) and the speed ratio's range."""
    import numpy as np

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["condition"]), []).append(r)
    out = []
    for (ds, cond), rs in groups.items():
        auc = np.array([r["detection_auc_conditional"] for r in rs], dtype=float)
        unc = np.array([r["detection_auc_unconditional"] for r in rs], dtype=float)
        speed = [r["speed_ratio"] for r in rs]
        sd = float(auc.std(ddof=1)) if len(auc) > 1 else 0.0
        ok = "within" if auc.mean() <= unc.mean() + 0.05 else "over"
        out.append(
            f"{ds:18s} {cond[:44]:44s} {auc.mean():.3f} +- {sd:.3f} (n={len(auc)}; "
            f"unconditional {unc.mean():.3f}: {ok}) speed {min(speed):.2f}-{max(speed):.2f}"
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())

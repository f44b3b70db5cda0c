"""Train task: fit a push-forward synthesizer on an ingested dataset."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task

from pfcore.defaults import DEFAULT_FAMILY, DEFAULT_PRESET, PROTECT_EXTREMES
from tasks._common import ThrottledProgress, logger


@task(name="train")
def train_task(
    dataset_dir: str,
    work_dir: str,
    *,
    family: str = DEFAULT_FAMILY,
    preset: str = DEFAULT_PRESET,
    seed: int = 0,
    holdout_fraction: float = 0.2,
    max_train_rows: int | None = None,
    max_minutes: float | None = None,
    device: str = "auto",
    protect_extremes: int = PROTECT_EXTREMES,
    sample_rows: int | None = None,
    max_memory_gb: float | None = None,
) -> dict:
    """Fits on the training split only, recorded in the synthesizer for validation.

    A table larger than the training sample is sampled while streaming (``Split.plan``), so
    memory is bounded by the sample, whatever the table's size.
    """
    from pfcore.memory import plan_training
    from pfcore.rules import RuleSet
    from pfcore.schema import TableSchema
    from pfcore.synthesizer import Synthesizer
    from pfcore.tablestats import stats_for_fit
    from pfcore.validation import MAX_HOLDOUT_ROWS

    schema = TableSchema.load(Path(dataset_dir) / "schema.json")
    config: dict = {}
    if max_minutes is not None:
        config["max_minutes"] = max_minutes
    split, memory = plan_training(
        dataset_dir,
        holdout_fraction=holdout_fraction,
        seed=seed,
        family=family,
        preset=preset,
        config=config,
        max_train_rows=max_train_rows,
        sample_rows=sample_rows,
        max_memory_gb=max_memory_gb,
    )
    rows = split.read(dataset_dir, holdout_rows=MAX_HOLDOUT_ROWS)
    train, holdout = rows.train, rows.holdout
    rules_path = Path(dataset_dir) / "rules.json"
    rules = RuleSet.load(rules_path) if rules_path.exists() else None
    table_stats = stats_for_fit(dataset_dir, split)
    if split.method == "hash" and table_stats is None:
        logger().warning(
            "%s has no stats.json (ingested by an older version): categories and value "
            "protection are counted on the training sample; ingest again to count them on "
            "the whole table",
            dataset_dir,
        )
    logger().info(
        "training %s/%s on %d of %d rows (%s split; holdout %d, %d read) device=%s; "
        "estimated peak %.2f GiB of %.2f GiB budget",
        family,
        preset,
        train.num_rows,
        split.dataset_rows,
        split.method,
        rows.holdout_total,
        holdout.num_rows,
        device,
        memory.train_bytes / 2**30,
        memory.budget_bytes / 2**30,
    )
    progress = ThrottledProgress()
    synth = Synthesizer.fit(
        train,
        schema,
        family=family,
        preset=preset,
        config=config,
        seed=seed,
        protect_extremes=protect_extremes,
        device=None if device == "auto" else device,
        callbacks=[progress],
        split=split,
        holdout=holdout,
        rules=rules,
        table_stats=table_stats,
    )
    synth.info["memory_plan"] = memory.to_dict()
    out = Path(work_dir)
    synth_dir = synth.save(out / "synthesizer")
    curve = out / "training_curve.json"
    curve.write_text(json.dumps(progress.history))
    logger().info("trained in %.1fs; saved %s", synth.info.get("fit_seconds", 0.0), synth_dir)
    return {"synth_dir": str(synth_dir), "training_curve": str(curve), "info": synth.info}

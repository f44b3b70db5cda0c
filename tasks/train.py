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
) -> dict:
    """Fits on the training split only, recorded in the synthesizer for validation."""
    from pfcore.ingest import read_dataset
    from pfcore.rules import RuleSet
    from pfcore.schema import TableSchema
    from pfcore.synthesizer import Split, Synthesizer

    table = read_dataset(dataset_dir)
    schema = TableSchema.load(Path(dataset_dir) / "schema.json")
    split = Split(holdout_fraction, seed, max_train_rows)
    train, holdout = split.apply(table)
    rules_path = Path(dataset_dir) / "rules.json"
    rules = RuleSet.load(rules_path) if rules_path.exists() else None
    logger().info(
        "training %s/%s on %d rows (holdout %d) device=%s",
        family,
        preset,
        train.num_rows,
        holdout.num_rows,
        device,
    )
    progress = ThrottledProgress()
    config: dict = {}
    if max_minutes is not None:
        config["max_minutes"] = max_minutes
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
    )
    out = Path(work_dir)
    synth_dir = synth.save(out / "synthesizer")
    curve = out / "training_curve.json"
    curve.write_text(json.dumps(progress.history))
    logger().info("trained in %.1fs; saved %s", synth.info.get("fit_seconds", 0.0), synth_dir)
    return {"synth_dir": str(synth_dir), "training_curve": str(curve), "info": synth.info}

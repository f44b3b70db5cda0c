"""Generation tasks: resolve the model by alias, plan a batch, write shards, publish."""

from __future__ import annotations

import json

from prefect import task

from tasks._common import logger, retry_if_transient


@task(
    name="resolve-model",
    retries=2,
    retry_delay_seconds=[5, 10],
    retry_condition_fn=retry_if_transient,
)
def resolve_model_task(model_name: str, alias: str = "champion") -> dict:
    """Local folder of the aliased version (downloaded once into the cache) and its version.

    A missing model or alias is not transient: it raises a clear error at once (no retries help).
    """
    from pfcore.registry import resolve_alias
    from pfcore.registry.register import download_version

    info = resolve_alias(model_name, alias)  # ModelNotFound says to train a champion first
    path = download_version(info)
    logger().info("using %s version %s (@%s) from %s", model_name, info.version, alias, path)
    return {"synth_dir": str(path), "version": str(info.version), "run_id": info.run_id}


@task(name="plan-batch")
def plan_task(
    synth_dir: str,
    rows: int,
    seed: int,
    out_root: str,
    dataset_name: str,
    *,
    rows_per_shard: int,
    run_date: str,
    model_name: str,
    model_version: str,
    batch_id: str | None = None,
    where: list[str] | None = None,
    rebalance: str | None = None,
    seed_rows: str | None = None,
    conditional_method: str = "auto",
) -> dict:
    """Fix the batch's shards and staging folder; returns the plan as JSON for the shard tasks.

    Conditions are checked against the model here, before any shard is written; the plan
    records the conditional sampler that will run (``conditional_method`` "auto" resolved).
    """
    from pfcore.conditions import Conditions
    from pfcore.generate import BatchLayout, BatchTarget, plan_batch

    conditions = Conditions.make(
        where=where or None, rebalance=rebalance, seed_rows=seed_rows, method=conditional_method
    )
    target = BatchTarget(out_root, dataset_name, run_date, batch_id, model_name, model_version)
    plan = plan_batch(
        synth_dir,
        None if conditions.seed_rows is not None else rows,
        seed,
        target,
        layout=BatchLayout(rows_per_shard=rows_per_shard),
        conditions=conditions,
    )
    logger().info(
        "batch %s: %d rows in %d shards -> %s%s",
        plan.batch_id,
        plan.n_rows,
        len(plan.shards),
        plan.final_uri,
        "" if plan.conditions is None else f" (conditions {json.dumps(plan.conditions)})",
    )
    return plan.to_dict()


@task(name="generate-shard", retries=1, retry_delay_seconds=5, task_run_name="shard-{index}")
def shard_task(plan: dict, index: int) -> dict:
    """Idempotent per shard: a retried or resumed shard already staged is skipped."""
    import torch

    from pfcore.generate import generate_shard
    from pfcore.models.training import default_threads

    # Process-wide; shards already run in parallel, and oversubscribed OpenMP threads spin.
    torch.set_num_threads(default_threads())
    res = generate_shard(None, plan, index)
    logger().info(
        "shard %d: %d rows in %.1fs%s",
        index,
        res.rows,
        res.seconds,
        " (already staged)" if res.skipped else "",
    )
    return res.to_dict()


@task(name="publish-batch", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_if_transient)
def publish_task(plan: dict, results: list[dict]) -> dict:
    """Commit the staged shards as one batch (manifest written last) and link it as an artifact."""
    from pfcore.generate import publish_batch

    manifest = publish_batch(plan, results)
    logger().info("published %d rows to %s", manifest.rows, manifest.batch_dir)
    conditions = manifest.data.get("conditions")
    conditional = (
        ""
        if not conditions
        else f"- conditional sampler: {conditions.get('method')}\n"
        f"- conditions: `{json.dumps(conditions, sort_keys=True)}`\n"
    )
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(
            f"## Published batch\n\n- location: `{manifest.batch_dir}`\n"
            f"- rows: {manifest.rows:,}\n- files: {len(manifest.files)}\n"
            f"- seed: {manifest.seed}\n- batch id: `{manifest.batch_id}`\n{conditional}",
            key="published-batch",
            description="Synthetic batch written to Parquet",
        )
    except Exception as exc:  # noqa: BLE001 - no API outside a run
        logger().debug("no Prefect artifact: %s", exc)
    return {
        "path": str(manifest.batch_dir),
        "rows": manifest.rows,
        "files": len(manifest.files),
        "batch_id": manifest.batch_id,
        "seed": manifest.seed,
    }


@task(name="append-delta", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_if_transient)
def delta_task(batch_dir: str, table_uri: str) -> dict:
    """Append the committed batch to a Delta table, at most once per batch id."""
    from pfcore.generate import read_manifest
    from pfcore.generate.delta import append_batch

    appended = append_batch(read_manifest(batch_dir), table_uri)
    verdict = "appended to" if appended else "already in (nothing appended)"
    logger().info("batch %s Delta table %s", verdict, table_uri)
    return {"table": table_uri, "appended": appended}

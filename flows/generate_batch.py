"""generate_batch: load the model by alias → generate shards in parallel → publish atomically."""

from __future__ import annotations

import datetime as dt

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from flows.params import GenerateParams
from tasks._common import logger
from tasks.generate import (
    delta_task,
    plan_task,
    publish_task,
    resolve_model_task,
    shard_task,
)


@flow(name="generate-shards")
def _generate_shards(plan: dict) -> list[dict]:
    """Mapped shard tasks; the task runner (threads or Dask) is chosen by the parent flow."""
    futures = shard_task.map(unmapped(plan), list(range(len(plan["shards"]))))
    return [f.result() for f in futures]


def _runner(params: GenerateParams):
    if params.runner == "dask":
        from prefect_dask import DaskTaskRunner

        if params.dask_address:
            return DaskTaskRunner(address=params.dask_address)
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": params.workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    return ThreadPoolTaskRunner(max_workers=params.workers)


@flow(name="generate-batch", log_prints=True)
def generate_batch(params: GenerateParams = GenerateParams()) -> dict:
    """Publish ``params.rows`` synthetic rows from ``models:/<model_name>@<alias>``.

    The batch id is derived from (model version, seed, rows, conditions), so a rerun of a failed
    run resumes its staged shards instead of starting over; a different seed or day gets its own
    batch. ``where`` / ``rebalance`` / ``seed_rows`` make it a conditional batch (checked against
    the model before any shard runs; recorded in the manifest and the Parquet metadata, with the
    conditional sampler that ran: ``conditional_method``, "auto" resolved).
    """
    params.preflight()  # seconds: output folder, registry, model and alias
    today = params.run_date or dt.datetime.now(dt.timezone.utc).date()
    seed = params.resolved_seed(today)
    model = resolve_model_task(params.model_name, params.alias)
    out_root = params.resolved_output()
    plan = plan_task(
        model["synth_dir"],
        params.rows,
        seed,
        out_root,
        params.dataset_name or params.model_name,
        rows_per_shard=params.rows_per_shard,
        run_date=today.isoformat(),
        model_name=params.model_name,
        model_version=model["version"],
        where=params.where,
        rebalance=params.rebalance,
        seed_rows=params.seed_rows,
        conditional_method=params.conditional_method,
    )
    results = _generate_shards.with_options(task_runner=_runner(params))(plan)
    published = publish_task(plan, results)
    if params.format == "delta":
        from pfcore import storage

        table = storage.join(out_root, "delta", params.dataset_name or params.model_name)
        published["delta"] = delta_task(published["path"], table)
    logger().info(
        "batch %s: %s rows at %s", published["batch_id"], published["rows"], published["path"]
    )
    return {**published, "model_name": params.model_name, "model_version": model["version"]}

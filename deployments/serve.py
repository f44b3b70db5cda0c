"""Single-machine mode: serve the flows as deployments without a work pool or worker.

``pushforward serve`` (or ``python -m deployments.serve``) registers three deployments with the
Prefect API in PREFECT_API_URL and runs their flow runs in this process: trigger them from the
UI's Run button or ``prefect deployment run``. Stopping it pauses the generation schedule.
"""

from __future__ import annotations

from prefect import serve

from flows.generate_batch import generate_batch
from flows.params import GenerateParams, PipelineParams, TrainParams
from flows.pipeline import pipeline
from flows.train_pipeline import train_pipeline

DEFAULT_CRON = "0 3 * * *"


def build_deployments(
    cron: str | None = DEFAULT_CRON,
    model_name: str = "pushforward-california_housing",
    rows: int = 1_000_000,
) -> list:
    """The deployments served locally; one generation run at a time so batches never collide."""
    return [
        train_pipeline.to_deployment(
            name="train",
            parameters={"params": TrainParams().model_dump(mode="json")},
            concurrency_limit=1,
            tags=["pushforward", "train"],
        ),
        generate_batch.to_deployment(
            name="generate-daily",
            cron=cron,
            # a daily schedule wants a new batch each day: the seed follows the run date
            parameters={
                "params": GenerateParams(
                    model_name=model_name, rows=rows, seed_policy="run_date"
                ).model_dump(mode="json")
            },
            concurrency_limit=1,
            tags=["pushforward", "generate"],
        ),
        pipeline.to_deployment(
            name="pipeline",
            parameters={"params": PipelineParams().model_dump(mode="json")},
            concurrency_limit=1,
            tags=["pushforward"],
        ),
    ]


def serve_all(
    cron: str | None = DEFAULT_CRON,
    model_name: str = "pushforward-california_housing",
    rows: int = 1_000_000,
) -> None:
    """Serve every deployment from this process until interrupted (no worker needed)."""
    serve(*build_deployments(cron, model_name, rows))


if __name__ == "__main__":
    serve_all()

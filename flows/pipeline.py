"""pipeline: train-pipeline, then generate-batch from the model it registered."""

from __future__ import annotations

from prefect import flow

from flows.generate_batch import generate_batch
from flows.params import GenerateParams, PipelineParams
from flows.train_pipeline import train_pipeline


@flow(name="pipeline", log_prints=True)
def pipeline(params: PipelineParams = PipelineParams()) -> dict:
    """End to end. Generation uses the version just registered when it became champion, and
    the current champion otherwise (a challenger never feeds downstream batches)."""
    trained = train_pipeline(params.train)
    gen = GenerateParams(
        model_name=trained["model_name"],
        alias="champion",
        rows=params.rows,
        seed_policy="fixed",
        seed=params.generate_seed,
        output=params.output,
        dataset_name=params.train.resolved_dataset_name(),
    )
    generated = generate_batch(gen)
    return {"train": trained, "generate": generated}

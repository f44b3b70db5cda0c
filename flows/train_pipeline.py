"""train_pipeline: ingest → train → validate → register."""

from __future__ import annotations

from prefect import flow

from flows.params import TrainParams
from pfcore.errors import GateFailed
from tasks._common import run_dir
from tasks.ingest import ingest_task
from tasks.register import register_task
from tasks.train import train_task
from tasks.validate import validate_task


@flow(name="train-pipeline", log_prints=True)
def train_pipeline(params: TrainParams = TrainParams()) -> dict:
    """Train a synthesizer on ``params.source`` and register it in MLflow.

    A model that fails the absolute gate (quality, detection, privacy, validity) is not
    registered and the run fails with every reason. A model that passes it but does not beat the
    current champion is registered under the ``challenger`` alias.
    """
    from pfcore import storage
    from pfcore.ingest import local_dataset
    from pfcore.preflight import check_dataset

    params.preflight()  # seconds: source, rows, overrides, folders, registry
    name = params.resolved_dataset_name()
    model_name = params.resolved_model_name()
    dataset_dir = params.resolved_dataset_dir()
    ingested = ingest_task(
        params.source, dataset_dir, params.overrides, read_options=params.read_options()
    )
    # training reads a local copy of a dataset kept in an object store (cached by listing)
    dataset_dir = str(local_dataset(ingested["dataset_dir"]))
    check_dataset(dataset_dir, holdout_fraction=params.holdout_fraction, target=params.target)
    params.memory_plan(dataset_dir)  # refuses a run that cannot fit in memory
    work = run_dir("runs", name)
    trained = train_task(
        dataset_dir,
        str(work),
        family=params.family,
        preset=params.preset,
        seed=params.seed,
        holdout_fraction=params.holdout_fraction,
        max_train_rows=params.max_train_rows,
        sample_rows=params.sample_rows,
        max_memory_gb=params.max_memory_gb,
        max_minutes=params.max_minutes,
        device=params.device,
        protect_extremes=params.protect_extremes,
    )
    validated = validate_task(
        dataset_dir,
        trained["synth_dir"],
        str(work),
        target=params.target,
        gate_config=params.gate.gate_config(),
    )
    artifacts = None
    if params.artifacts:
        # before the gate's verdict: a rejected model's report is what one needs to read
        artifacts = storage.join(storage.normalise(params.artifacts), name, work.name)
        storage.resolve(artifacts).upload(work)
    if not validated["passed"]:
        raise GateFailed(validated["reasons"])
    registered = register_task(
        synth_dir=trained["synth_dir"],
        model_name=model_name,
        report_dir=validated["report_dir"],
        summary=validated["summary"],
        passed=True,
        reasons=[],
        seed=params.seed,
        promotion=params.gate.promotion_policy(),
        training_curve=trained["training_curve"],
        dataset_checksum=ingested["checksum"],
        params={
            **params.model_dump(exclude={"gate"}),
            **{f"gate_{k}": v for k, v in params.gate.model_dump().items()},
            "train_rows": trained["info"].get("train_rows"),
            "n_features": trained["info"].get("n_features"),
        },
    )
    return {
        "dataset_dir": ingested["dataset_dir"],
        "synth_dir": trained["synth_dir"],
        "report_dir": validated["report_dir"],
        "summary": validated["summary"],
        "artifacts": artifacts,
        **registered,
    }

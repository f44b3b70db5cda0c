"""Flows under prefect_test_harness: the real tasks, a temporary Prefect API, embedded MLflow."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pytest

from tests.conftest import TEST_DATA

PENGUINS = str(TEST_DATA / "penguins.parquet")


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory):
    """One temporary Prefect server for the module (its start costs 15-30 s on 2 cores)."""
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("pf-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("PUSHFORWARD_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    with prefect_test_harness(server_startup_timeout=180):
        yield home
    mp.undo()


def _loose_train_params(**kw):
    from flows.params import GateParams, TrainParams

    base = dict(
        source=PENGUINS,
        dataset_name="penguins",
        model_name="pf-test-penguins",
        # onestep, not the default hybrid: this module also runs the form's second conditional
        # sampler (flow inpainting), which only onestep and flow models carry
        family="onestep",
        preset="tiny",
        holdout_fraction=0.25,
        # Orchestration is under test here, not model quality: a loose gate.
        gate=GateParams(
            min_quality=0.5,
            min_pair_trends=0.3,
            min_column_shape=0.3,
            max_detection_auc=1.0,
            max_missing_rate_diff=0.2,
        ),
    )
    base.update(kw)
    return TrainParams(**base)


def test_pipeline_trains_registers_and_publishes(harness: Path) -> None:
    from flows.params import PipelineParams
    from flows.pipeline import pipeline

    out = harness / "batches"
    res = pipeline(PipelineParams(train=_loose_train_params(), rows=3000, output=str(out)))
    train, gen = res["train"], res["generate"]
    assert train["alias"] == "champion"
    assert gen["rows"] == 3000
    table = ds.dataset(gen["path"], format="parquet").to_table()
    assert table.num_rows == 3000
    src = ds.dataset(PENGUINS).schema
    assert table.schema.names == src.names
    assert all(table.schema.field(n).type == src.field(n).type for n in src.names)
    _assert_fidelity_artifacts()

    # Threads and a local Dask cluster (2 worker processes) publish exactly the same rows across
    # several shards: content depends on (model, seed, rows) only, not on where shards ran.
    from flows.generate_batch import generate_batch
    from flows.params import GenerateParams

    tables = []
    for runner in ("threads", "dask"):
        res = generate_batch(
            GenerateParams(
                model_name=train["model_name"],
                rows=150_000,
                seed_policy="fixed",
                seed=3,
                output=str(harness / f"batches-{runner}"),
                dataset_name="penguins",
                rows_per_shard=65_536,
                runner=runner,
                workers=2,
            )
        )
        assert res["files"] == 3 and res["rows"] == 150_000
        tables.append(ds.dataset(res["path"], format="parquet").to_table())
    assert tables[0].equals(tables[1])

    # A conditional batch through the same flow: every row meets the condition, and the
    # manifest records it.
    import json

    res = generate_batch(
        GenerateParams(
            model_name=train["model_name"],
            rows=2000,
            output=str(harness / "batches-conditional"),
            dataset_name="penguins",
            where=["species=Adelie", "body_mass_g>=4000"],
            rebalance="sex=uniform",
        )
    )
    got = ds.dataset(res["path"], format="parquet").to_table().to_pandas()
    assert len(got) == 2000 and (got.species == "Adelie").all()
    assert (got.body_mass_g >= 4000).all()
    manifest = json.loads((Path(res["path"]) / "_manifest.json").read_text())
    assert [w["column"] for w in manifest["conditions"]["where"]] == ["species", "body_mass_g"]
    assert manifest["conditions"]["method"] == "student"  # "auto" resolved: the model has one

    # The other conditional sampler, chosen in the form: other rows for the same seed, under
    # their own batch id, and the manifest says which sampler made them.
    res_inpaint = generate_batch(
        GenerateParams(
            model_name=train["model_name"],
            rows=2000,
            output=str(harness / "batches-conditional"),
            dataset_name="penguins",
            where=["species=Adelie", "body_mass_g>=4000"],
            rebalance="sex=uniform",
            conditional_method="inpaint",
        )
    )
    inpainted = ds.dataset(res_inpaint["path"], format="parquet").to_table()
    manifest = json.loads((Path(res_inpaint["path"]) / "_manifest.json").read_text())
    assert manifest["conditions"]["method"] == "inpaint"
    assert res_inpaint["batch_id"] != res["batch_id"]
    meta = ds.dataset(res_inpaint["path"], format="parquet").schema.metadata
    assert json.loads(meta[b"pushforward.conditions"])["method"] == "inpaint"
    df = inpainted.to_pandas()
    assert len(df) == 2000 and (df.species == "Adelie").all() and (df.body_mass_g >= 4000).all()
    assert not df.equals(got)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        published = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["published-batch"]))
        )
    assert any("conditional sampler: inpaint" in str(a.data) for a in published)


def test_cli_generates_with_the_chosen_conditional_method(
    harness: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pushforward generate --conditional-method inpaint`` runs the flow with that sampler
    and the batch records it (the champion registered by the pipeline test above)."""
    import json

    from flows.cli import main

    for key, value in {  # what the CLI would set in os.environ, undone after the test
        "PREFECT_HOME": str(harness / "prefect-cli"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }.items():
        monkeypatch.setenv(key, value)
    out = harness / "batches-cli"
    argv = ["generate", "--model-name", "pf-test-penguins", "--rows", "300", "--seed", "4"]
    argv += ["--output", str(out), "--where", "species=Gentoo"]
    assert main([*argv, "--conditional-method", "inpaint"]) == 0
    assert main(argv) == 0  # "auto"
    manifests = [json.loads(p.read_text()) for p in sorted(out.rglob("_manifest.json"))]
    assert sorted(m["conditions"]["method"] for m in manifests) == ["inpaint", "student"]
    tables = [
        ds.dataset(p.parent, format="parquet").to_table() for p in out.rglob("_manifest.json")
    ]
    assert all(set(t.column("species").to_pylist()) == {"Gentoo"} for t in tables)
    assert not tables[0].equals(tables[1])


def _assert_fidelity_artifacts() -> None:
    """The validate task published the pair diagnostic: a table of the worst column pairs and
    its section in the Markdown report."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    keys = ["fidelity-pairs", "fidelity-report"]
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )
    by_key = {a.key: a.data for a in arts}
    rows = by_key["fidelity-pairs"]
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert 1 <= len(rows) <= 5
    assert {"column_1", "column_2", "pair_auc", "lift", "explained_by"} <= set(rows[0])
    assert "## Column pairs that give synthetic rows away" in by_key["fidelity-report"]


def test_failing_gate_fails_the_run_and_registers_nothing(harness: Path) -> None:
    from flows.params import GateParams
    from flows.train_pipeline import train_pipeline
    from pfcore.errors import GateFailed

    params = _loose_train_params(
        model_name="pf-test-rejected", gate=GateParams(min_quality=0.999, max_detection_auc=0.5)
    )
    state = train_pipeline(params, return_state=True)
    assert state.is_failed()
    with pytest.raises(GateFailed) as err:
        state.result()
    assert "quality" in str(err.value) or "detection" in str(err.value)

    import mlflow

    from pfcore.registry.tracking import configure

    configure(probe=False)
    assert not mlflow.MlflowClient().search_model_versions("name='pf-test-rejected'")


def test_generate_without_champion_fails_clearly(harness: Path) -> None:
    from flows.generate_batch import generate_batch
    from flows.params import GenerateParams

    state = generate_batch(
        GenerateParams(model_name="pf-test-no-such-model", rows=10), return_state=True
    )
    assert state.is_failed()
    with pytest.raises(Exception) as err:
        state.result()
    assert "pf-test-no-such-model" in str(err.value) and "champion" in str(err.value)


def test_invalid_parameters_are_rejected_with_the_field_named() -> None:
    from pydantic import ValidationError

    from flows.params import GenerateParams, TrainParams

    with pytest.raises(ValidationError, match="rows"):
        GenerateParams(rows=0)
    with pytest.raises(ValidationError, match="does not exist"):
        TrainParams(source="/no/such/file.csv")
    with pytest.raises(ValidationError, match="preset"):
        TrainParams(source=PENGUINS, preset="huge")

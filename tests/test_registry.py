"""Registry against the embedded store (SQLite + local artifacts under PUSHFORWARD_HOME).

Every test gets its own project home, so stores never leak between tests; the tiny synthesizer
is trained once per module (a few seconds).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from pfcore.errors import InputError, RegistryError
from tests.servers import free_port
from tests.test_registry_support import fake_report, files_under, train_tiny

SUMMARY = {"quality": 0.90, "detection_auc": 0.70, "privacy_dcr_ratio": 1.05}
PASSED = {"passed": True, "reasons": [], "checks": [{"name": "quality", "passed": True}]}
FAILED = {"passed": False, "reasons": ["quality 0.41 < 0.85"], "checks": []}


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("synth") / "synthesizer", seed=0)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty SQLite store: creating one runs MLflow's migrations (seconds), so
    each test copies this file instead."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> Path:
    """Fresh embedded store; cwd moved to a scratch folder to catch stray ./mlruns or mlflow.db."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PUSHFORWARD_HOME", str(tmp_path / "pf-home"))
    (tmp_path / "pf-home").mkdir()
    shutil.copyfile(empty_store, tmp_path / "pf-home" / "mlflow.db")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path / "pf-home"


def _log(synth_dir: Path, name: str, *, summary=SUMMARY, gate=PASSED, dataset="ds-1", **kw):
    from pfcore.registry import Registration, log_synthesizer

    return log_synthesizer(
        synth_dir,
        Registration(
            name,
            params={"family": "flow", "preset": "fast", "model": {"max_steps": 30}},
            metrics=summary,
            gate_result=gate,
            dataset_checksum=dataset,
            **kw,
        ),
    )


def _expected(synth_dir: Path, n: int, seed: int) -> pd.DataFrame:
    from pfcore.registry.frames import to_pandas
    from pfcore.synthesizer import Synthesizer

    synth = Synthesizer.load(synth_dir)
    return to_pandas(synth.sample(n, seed), synth.schema)


def test_round_trip_embedded_store(synth_dir: Path, home: Path, tmp_path: Path) -> None:
    import mlflow

    from pfcore.registry import champion_summary, load_champion, resolve_alias
    from pfcore.registry.frames import to_pandas

    report = fake_report(tmp_path / "report", SUMMARY)
    curve = [
        {"phase": "flow", "step": s, "total_steps": 30, "loss": 1.0 / (s + 1)}
        for s in range(0, 31, 10)
    ]
    logged = _log(
        synth_dir, "tiny", report_dir=report, training_curve=curve, tags={"dataset_name": "tiny"}
    )
    assert (logged.version, logged.alias, logged.reused) == (1, "champion", False)

    # The store is under the project home, not wherever the process started.
    assert (home / "mlflow.db").is_file() and (home / "mlartifacts").is_dir()
    assert not (Path.cwd() / "mlruns").exists() and not (Path.cwd() / "mlflow.db").exists()

    model = mlflow.pyfunc.load_model("models:/tiny@champion")
    got = model.predict(pd.DataFrame({"n_rows": [100], "seed": [7]}))
    again = model.predict(pd.DataFrame({"n_rows": [100], "seed": [7]}))
    expected = _expected(synth_dir, 100, 7)
    pd.testing.assert_frame_equal(got, expected)
    pd.testing.assert_frame_equal(got, again)
    assert list(got.columns) == ["age", "income", "city", "member", "children"]
    assert {c: str(t) for c, t in got.dtypes.items() if c != "city"} == {
        "age": "int64",
        "income": "float64",
        "member": "bool",
        "children": "Int64",
    }
    assert not got.equals(model.predict(pd.DataFrame({"n_rows": [100], "seed": [8]})))
    # Several requests: concatenated in order, each independent of the others.
    both = model.predict(pd.DataFrame({"n_rows": [30, 20], "seed": [7, 9]}))
    assert len(both) == 50
    pd.testing.assert_frame_equal(both.iloc[:30], _expected(synth_dir, 30, 7))
    pd.testing.assert_frame_equal(
        both.iloc[30:].reset_index(drop=True), _expected(synth_dir, 20, 9)
    )

    # Run contents: params, metrics = summary, provenance tags, report + curve artifacts.
    run = mlflow.get_run(logged.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["family"] == "flow" and run.data.params["model.max_steps"] == "30"
    assert {k: v for k, v in run.data.metrics.items() if not k.startswith("pf.")} == SUMMARY
    assert run.data.metrics["pf.gate_passed"] == 1.0
    tags = run.data.tags
    assert tags["pushforward.dataset_checksum"] == "ds-1"
    assert tags["pushforward.package_version"]
    assert len(tags["pushforward.config_fingerprint"]) == 16
    assert tags["dataset_name"] == "tiny"
    client = mlflow.MlflowClient()
    history = client.get_metric_history(logged.run_id, "pf.train.flow.loss")
    assert [m.step for m in history] == [0, 10, 20, 30]
    local = Path(
        mlflow.artifacts.download_artifacts(run_id=logged.run_id, dst_path=str(tmp_path / "run"))
    )
    names = {p.relative_to(local).as_posix() for p in files_under(local)}
    assert {
        "fidelity/report.json",
        "fidelity/report.md",
        "fidelity/plots/age.png",
        "fidelity/gate.json",
        "training/curve.csv",
        "config/params.json",
    } <= names

    # Nothing pickled: the model is code + JSON + safetensors.
    model_dir = Path(
        mlflow.artifacts.download_artifacts("models:/tiny/1", dst_path=str(tmp_path / "m"))
    )
    suffixes = {p.suffix for p in files_under(model_dir)}
    assert not suffixes & {".pkl", ".pickle", ".joblib", ".pt", ".pth"}
    mlmodel = (model_dir / "MLmodel").read_text()
    assert "loader_module: mlflow.pyfunc.loaders.code_model" in mlmodel
    assert "python_model.pkl" not in mlmodel
    assert any(p.suffix == ".safetensors" for p in files_under(model_dir / "artifacts"))
    assert (model_dir / "code" / "pfcore" / "synthesizer.py").is_file()

    # Generator entry point: the real Synthesizer, cached under the home, same rows.
    synth, info = load_champion("tiny")
    assert info.version == 1 and "champion" in info.aliases
    assert (home / "cache" / "models" / "tiny" / "v1" / ".pushforward-source.json").is_file()
    pd.testing.assert_frame_equal(to_pandas(synth.sample(100, 7), synth.schema), expected)
    assert resolve_alias("tiny", "champion").run_id == logged.run_id
    assert champion_summary("tiny") == SUMMARY


def test_gate_and_regression_decide_alias(synth_dir: Path, home: Path) -> None:
    from pfcore.registry import resolve_alias

    first = _log(synth_dir, "m")
    assert first.alias == "champion" and first.reasons == ()
    assert "first champion" in first.decision

    from pfcore.fidelity import GateResult  # the real object, not only a mapping

    failed = _log(synth_dir, "m", gate=GateResult(False, FAILED["reasons"]), dataset="ds-2")
    assert (failed.version, failed.alias) == (2, "challenger")
    assert "quality 0.41 < 0.85" in failed.reasons[0]
    assert resolve_alias("m", "champion").version == 1

    worse = _log(synth_dir, "m", summary={**SUMMARY, "quality": 0.80}, dataset="ds-3")
    assert worse.alias == "challenger" and "quality" in worse.reasons[0]
    assert resolve_alias("m", "champion").version == 1

    no_gate = _log(synth_dir, "m", gate=None, dataset="ds-4")
    assert no_gate.alias == "challenger"

    better = _log(
        synth_dir, "m", summary={**SUMMARY, "quality": 0.95, "detection_auc": 0.6}, dataset="ds-5"
    )
    assert better.alias == "champion"
    assert resolve_alias("m", "champion").version == better.version == 5
    assert resolve_alias("m", "challenger").version == 4

    # the policy's check_regression=False lets any gate-passing model take over
    from pfcore.promotion import PromotionPolicy

    forced = _log(
        synth_dir,
        "m",
        summary={**SUMMARY, "quality": 0.5},
        dataset="ds-6",
        policy=PromotionPolicy(check_regression=False),
    )
    assert forced.alias == "champion" and resolve_alias("m", "champion").version == 6


def test_registering_twice_is_idempotent(synth_dir: Path, home: Path) -> None:
    import mlflow

    first = _log(synth_dir, "idem")
    again = _log(synth_dir, "idem")
    assert again.reused and (again.version, again.run_id, again.alias) == (
        1,
        first.run_id,
        "champion",
    )
    client = mlflow.MlflowClient()
    assert len(client.search_model_versions("name = 'idem'")) == 1
    exp = client.get_experiment_by_name("pushforward")
    assert len(client.search_runs([exp.experiment_id])) == 1
    # A different seed is a different model.
    other = _log(synth_dir, "idem", seed=123)
    assert not other.reused and other.version == 2


@pytest.mark.parametrize("fail_at", ["set_registered_model_alias", "set_tags"])
def test_failure_midway_leaves_nothing_registered(
    synth_dir: Path, home: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    import mlflow

    from pfcore.registry import resolve_alias

    _log(synth_dir, "atomic")

    def boom(*args, **kwargs):
        raise RuntimeError("injected failure")

    with monkeypatch.context() as patch:
        if fail_at == "set_tags":  # after the alias moved: it must move back
            patch.setattr(mlflow, "set_tags", boom)
        else:
            patch.setattr(mlflow.MlflowClient, fail_at, boom)
        with pytest.raises(RegistryError, match="injected failure"):
            _log(synth_dir, "atomic", summary={**SUMMARY, "quality": 0.99}, dataset="ds-2")

    client = mlflow.MlflowClient()
    assert [int(v.version) for v in client.search_model_versions("name = 'atomic'")] == [1]
    assert resolve_alias("atomic", "champion").version == 1
    exp = client.get_experiment_by_name("pushforward")
    statuses = sorted(r.info.status for r in client.search_runs([exp.experiment_id]))
    assert statuses == ["FAILED", "FINISHED"]


def test_unreachable_server_fails_fast_with_the_uri(
    synth_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pfcore.registry import Registration, champion_summary, load_champion, log_synthesizer

    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PUSHFORWARD_HOME", str(tmp_path / "home"))
    t0 = time.monotonic()
    with pytest.raises(RegistryError, match="unreachable") as info:
        log_synthesizer(synth_dir, Registration("x", metrics=SUMMARY, gate_result=PASSED))
    assert uri in str(info.value) and "after 3 attempts" in str(info.value)
    assert time.monotonic() - t0 < 15
    monkeypatch.setattr("pfcore.registry.tracking.PROBE_ATTEMPTS", 1)  # same path, less waiting
    with pytest.raises(RegistryError, match=uri):
        champion_summary("x")
    with pytest.raises(RegistryError, match=uri):
        load_champion("x")


def test_missing_champion_is_a_clear_error(home: Path) -> None:
    from pfcore.registry import champion_summary, load_champion

    assert champion_summary("nobody") is None
    with pytest.raises(RegistryError, match="no version with alias 'champion'"):
        load_champion("nobody")


def test_bad_inputs_are_rejected(synth_dir: Path, home: Path, tmp_path: Path) -> None:
    from pfcore.registry import Registration, log_synthesizer

    with pytest.raises(InputError, match="synthesizer.json"):
        log_synthesizer(tmp_path, Registration("x"))
    with pytest.raises(InputError, match="report"):
        log_synthesizer(synth_dir, Registration("x", report_dir=tmp_path / "nope"))
    with pytest.raises(InputError, match="must not contain"):
        log_synthesizer(synth_dir, Registration("it's"))
    with pytest.raises(InputError, match="training curve"):
        log_synthesizer(synth_dir, Registration("x", training_curve=tmp_path / "c.csv"))
    assert not (home / "mlartifacts").exists()  # validation happens before touching the store


def test_pyfunc_input_contract(synth_dir: Path) -> None:
    from pfcore.registry.frames import predict_frame, signature_for
    from pfcore.synthesizer import Synthesizer

    synth = Synthesizer.load(synth_dir)
    with pytest.raises(InputError, match="n_rows"):
        predict_frame(synth, pd.DataFrame({"n_rows": [-1], "seed": [0]}))
    with pytest.raises(InputError, match="seed"):
        predict_frame(synth, pd.DataFrame({"n_rows": [3], "seed": [-5]}))
    with pytest.raises(InputError, match="missing"):
        predict_frame(synth, pd.DataFrame({"rows": [3]}))
    empty = predict_frame(synth, pd.DataFrame({"n_rows": [0], "seed": [0]}))
    full = predict_frame(synth, pd.DataFrame({"n_rows": [5], "seed": [0]}))
    assert len(empty) == 0 and list(empty.columns) == list(full.columns)
    assert dict(empty.dtypes) == dict(full.dtypes)

    sig = signature_for(synth.schema)
    assert [(c.name, c.type.name) for c in sig.inputs.inputs][:5] == [
        ("n_rows", "long"),
        ("seed", "long"),
        ("where", "string"),
        ("rebalance", "string"),
        ("conditional_method", "string"),
    ]
    assert {c.name for c in sig.inputs.inputs[5:]} == {c.name for c in synth.schema.columns}
    params = {p.name: (p.dtype.name, p.default) for p in sig.params.params}
    assert params == {"seed": ("long", 0), "conditional_method": ("string", "auto")}
    outputs = {c.name: (c.type.name, c.required) for c in sig.outputs.inputs}
    assert outputs["age"] == ("long", True) and outputs["children"] == ("long", False)
    assert outputs["member"] == ("boolean", True) and outputs["city"] == ("string", True)


def test_predict_reproduces_the_published_batch(synth_dir: Path, tmp_path: Path) -> None:
    """predict(N, seed) == the rows pfcore.generate publishes for (model, N, seed), across a
    block boundary, so a batch can be reproduced from the model version and the seed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pfcore.generate import BLOCK_ROWS, BatchTarget, RunOptions, generate_batch
    from pfcore.registry.frames import predict_frame
    from pfcore.synthesizer import Synthesizer

    synth = Synthesizer.load(synth_dir)
    n = BLOCK_ROWS + 100
    manifest = generate_batch(
        synth,
        n,
        11,
        BatchTarget(tmp_path / "out", "tiny"),
        run=RunOptions(workers=1, executor="thread"),
    )
    published = pa.concat_tables([pq.read_table(p) for p in manifest.file_paths])
    got = predict_frame(synth, pd.DataFrame({"n_rows": [n], "seed": [11]}))
    assert len(got) == n
    want = published.to_pandas()
    pd.testing.assert_frame_equal(
        got, want[list(got.columns)], check_dtype=False, check_categorical=False
    )


def test_home_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pfcore.paths import pushforward_home
    from pfcore.registry import resolve_tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PUSHFORWARD_HOME", str(tmp_path / "h"))
    assert pushforward_home() == (tmp_path / "h").resolve()
    cfg = resolve_tracking()
    assert cfg.uri == f"sqlite:///{(tmp_path / 'h' / 'mlflow.db').resolve().as_posix()}"
    assert cfg.artifact_root == (tmp_path / "h" / "mlartifacts").resolve() and not cfg.remote

    monkeypatch.delenv("PUSHFORWARD_HOME")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(repo / "a" / "b")
    assert pushforward_home() == repo.resolve() / ".pushforward"
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.chdir(outside)
    if not any((p / ".git").exists() for p in (outside.resolve(), *outside.resolve().parents)):
        assert pushforward_home() == outside.resolve() / ".pushforward"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    cfg = resolve_tracking()
    assert cfg.remote and cfg.artifact_root is None and cfg.uri == "http://mlflow.example:5000"


@pytest.mark.gpu
def test_gpu_trained_model_loads_and_samples_on_cpu(home: Path, tmp_path: Path) -> None:
    """Train on CUDA, register, then load by alias in a fresh process that sees no GPU."""
    import json
    import subprocess
    import sys

    import torch

    from pfcore.registry import Registration, log_synthesizer

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    synth_dir = train_tiny(tmp_path / "gpu-synth", seed=5, extra={"device": "cuda"})
    log_synthesizer(synth_dir, Registration("gpu", metrics=SUMMARY, gate_result=PASSED))
    child = (
        "import json, mlflow, pandas as pd, torch; "
        "m = mlflow.pyfunc.load_model('models:/gpu@champion'); "
        "df = m.predict(pd.DataFrame({'n_rows': [200], 'seed': [3]})); "
        "df.to_parquet(__import__('sys').argv[1]); "
        "print(json.dumps({'cuda': torch.cuda.is_available()}))"
    )
    out = tmp_path / "rows.parquet"
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
    }
    res = subprocess.run(
        [sys.executable, "-c", child, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"cuda": False}
    got = pd.read_parquet(out)
    pd.testing.assert_frame_equal(got, _expected(synth_dir, 200, 3), check_dtype=False)

"""End to end against a real Prefect server, exactly as a user clicks Run in the UI.

Starts ``prefect server start`` on 127.0.0.1 (free port, temporary PREFECT_HOME), serves the
project's deployments in a second process (``python -m deployments.serve``), creates a flow run
from the ``pipeline`` deployment with custom parameters through the same REST endpoint the UI's
Run button calls, waits for it, then checks the MLflow registry and the published Parquet batch.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from tests.conftest import ROOT, TEST_DATA
from tests.servers import PYTHON, api_request, background, free_port, prefect_env, wait_http

pytestmark = pytest.mark.slow

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
_request = api_request


def _wait_deployment(api: str, name: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = _request("GET", f"{api}/deployments/name/{name}", timeout=10)
        if r.status_code == 200:
            return r.json()
        time.sleep(1)
    raise TimeoutError(f"deployment {name} was not registered within {timeout_s}s")


def _wait_run(api: str, run_id: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = _request("GET", f"{api}/flow_runs/{run_id}", timeout=10)
        r.raise_for_status()
        run = r.json()
        if run["state"]["type"] in TERMINAL:
            return run
        time.sleep(2)
    raise TimeoutError(f"flow run {run_id} did not finish within {timeout_s}s")


def test_ui_style_run_of_served_pipeline(tmp_path: Path) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = prefect_env(tmp_path, api_url=api)
    env.pop("MLFLOW_TRACKING_URI", None)
    server_cmd = [
        PYTHON,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with background(server_cmd, env, tmp_path / "server.log") as server:
        wait_http(f"{api}/health", 240, server, tmp_path / "server.log")
        serve_log = tmp_path / "serve.log"
        with background([PYTHON, "-m", "deployments.serve"], env, serve_log, cwd=ROOT) as served:
            dep = _wait_deployment(api, "pipeline/pipeline", 180)

            # The form rejects invalid input before a run exists (the field is named).
            bad = _request(
                "POST",
                f"{api}/deployments/{dep['id']}/create_flow_run",
                json={"parameters": {"params": {"rows": 0}}},
                timeout=30,
            )
            assert bad.status_code >= 400 and "rows" in bad.text

            out = tmp_path / "batches"
            params = {
                "params": {
                    "train": {
                        "source": str(TEST_DATA / "penguins.parquet"),
                        "dataset_name": "penguins",
                        "model_name": "e2e-penguins",
                        "preset": "tiny",
                        "gate": {
                            "min_quality": 0.5,
                            "min_pair_trends": 0.3,
                            "min_column_shape": 0.3,
                            "max_detection_auc": 1.0,
                            "max_missing_rate_diff": 0.2,
                        },
                    },
                    "rows": 2500,
                    "output": str(out),
                }
            }
            r = _request(
                "POST",
                f"{api}/deployments/{dep['id']}/create_flow_run",
                json={"parameters": params},
                timeout=30,
            )
            assert r.status_code == 201, r.text
            run = _wait_run(api, r.json()["id"], 420)
            assert served.poll() is None, serve_log.read_text()[-3000:]
            assert run["state"]["type"] == "COMPLETED", (
                run["state"],
                serve_log.read_text()[-4000:],
            )

    # The MLflow registry entry, read from the embedded store the run wrote to.
    import mlflow

    home = tmp_path / "pf"
    client = mlflow.MlflowClient(
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        registry_uri=f"sqlite:///{home / 'mlflow.db'}",
    )
    champion = client.get_model_version_by_alias("e2e-penguins", "champion")
    assert int(champion.version) >= 1

    # The published batch: complete, with its manifest, readable as one dataset.
    manifests = list(out.glob("dataset=penguins/run_date=*/batch=*/_manifest.json"))
    assert len(manifests) == 1
    table = ds.dataset(manifests[0].parent, format="parquet").to_table()
    assert table.num_rows == 2500
    assert table.schema.names == ds.dataset(TEST_DATA / "penguins.parquet").schema.names

"""End to end against a real ``mlflow server`` on 127.0.0.1: register, then load by alias in a
fresh Python process and get the same rows for the same seed.

The server runs in its own process group (it forks workers) and is killed as a group at
teardown. ``--workers 1`` and no job execution bring its start from ~70 s to ~25 s on 2 cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.servers import background, free_port, wait_http
from tests.test_registry_support import train_tiny

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model("models:/served@champion")
df = model.predict(pd.DataFrame({"n_rows": [100], "seed": [7]}))
df.to_parquet(sys.argv[1])
import pfcore
print(json.dumps({"dtypes": {c: str(t) for c, t in df.dtypes.items()}, "pfcore": pfcore.__file__}))
"""


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]
    with background(cmd, env, root / "server.log", cwd=root) as proc:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/health", timeout_s=150, proc=proc, log=root / "server.log")
            yield url
        finally:
            # Nothing to flush in a throw-away store: kill the whole group now instead of
            # waiting seconds for uvicorn's graceful SIGINT shutdown (stop_group then reaps).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_register_on_server_and_load_by_alias_in_fresh_process(
    mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pfcore.registry import Registration, load_champion, log_synthesizer
    from pfcore.registry.frames import to_pandas
    from pfcore.synthesizer import Synthesizer

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("PUSHFORWARD_HOME", str(tmp_path / "home"))
    synth_dir = train_tiny(tmp_path / "synthesizer", seed=1)
    logged = log_synthesizer(
        synth_dir,
        Registration(
            "served",
            metrics={"quality": 0.9},
            gate_result={"passed": True, "reasons": []},
            dataset_checksum="ds-server",
        ),
    )
    assert (logged.version, logged.alias) == (1, "champion")
    assert not (tmp_path / "home" / "mlflow.db").exists()  # the server holds the store

    synth = Synthesizer.load(synth_dir)
    expected = to_pandas(synth.sample(100, 7), synth.schema)

    out = tmp_path / "rows.parquet"
    child_env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(out)],
        env=child_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    child = json.loads(res.stdout.strip().splitlines()[-1])
    assert child["dtypes"] == {c: str(t) for c, t in expected.dtypes.items()}
    # The model ships its own pfcore (code_paths): the fresh process imported that copy.
    assert not child["pfcore"].startswith(str(ROOT / "pfcore")), child["pfcore"]
    got = pd.read_parquet(out)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)

    # The generator path against the server: same rows again.
    loaded, info = load_champion("served")
    assert info.version == 1
    pd.testing.assert_frame_equal(to_pandas(loaded.sample(100, 7), loaded.schema), expected)

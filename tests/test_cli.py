"""The command line: help, exit codes and messages (in-process, no Prefect server needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import EXIT_INPUT, EXIT_OK, main
from tests.conftest import ROOT, TEST_DATA


def test_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    for cmd in ("ingest", "train", "validate", "generate", "run", "serve"):
        assert cmd in out.stdout


def test_ingest_prints_schema_and_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["ingest", str(TEST_DATA / "penguins.parquet"), "--out", str(tmp_path / "ds")])
    assert rc == EXIT_OK
    res = json.loads(capsys.readouterr().out)
    assert res["rows"] == 344 and res["columns"]["species"] == "categorical"
    assert (tmp_path / "ds" / "schema.json").exists()


def test_missing_source_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["ingest", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "ds")])
    assert rc == EXIT_INPUT
    err = capsys.readouterr().err
    assert "nope.csv" in err
    assert not (tmp_path / "ds").exists()


def test_invalid_flow_parameters_are_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # The CLI sets Prefect defaults in os.environ; keep them from leaking into other tests.
    for key, value in {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PUSHFORWARD_HOME", str(tmp_path))
    rc = main(["generate", "--rows", "0"])
    assert rc == EXIT_INPUT
    assert "rows" in capsys.readouterr().err

"""The command line: help, exit codes and messages (in-process, no Prefect server needed)."""

from __future__ import annotations

import argparse
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


@pytest.mark.parametrize(
    ("command", "model_name"),
    [("train", "TrainParams"), ("generate", "GenerateParams"), ("run", "PipelineParams")],
)
def test_options_are_the_flow_parameters_with_their_descriptions(
    command: str, model_name: str
) -> None:
    """One source of options: every flow parameter is a CLI option whose help is its
    description, and no description loses text in the Prefect form (rendered as HTML)."""
    import flows.params
    from flows.cli import build_parser
    from flows.options import _flat_fields

    model = getattr(flows.params, model_name)
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = {a.dest: a for a in sub.choices[command]._actions}
    for path, info in _flat_fields(model):
        assert info.description, f"{model_name}.{'.'.join(path)} has no description"
        assert "<" not in info.description and ">" not in info.description, path
        action = actions["__".join(path)]
        assert action.help.startswith(info.description.strip()), path


def test_parsed_options_build_the_flow_parameters() -> None:
    from flows.cli import build_parser
    from flows.options import model_values
    from flows.params import GenerateParams, PipelineParams, TrainParams

    parser = build_parser()
    args = parser.parse_args(["train", "t.csv", "--family", "flow", "--min-quality", "0.9"])
    values = model_values(args, TrainParams)
    assert values == {"source": "t.csv", "family": "flow", "gate": {"min_quality": 0.9}}
    args = parser.parse_args(["run", "--no-check-regression", "--rows", "10", "--seed", "3"])
    values = model_values(args, PipelineParams)
    assert values == {"train": {"seed": 3, "gate": {"check_regression": False}}, "rows": 10}
    assert not PipelineParams(**values).train.gate.check_regression
    # nothing given: exactly the model's defaults (no second list of defaults in the CLI)
    assert GenerateParams(**model_values(parser.parse_args(["generate"]), GenerateParams)) == (
        GenerateParams()
    )


def test_choices_come_from_the_library() -> None:
    from flows.params import TrainParams
    from pfcore import models
    from pfcore.defaults import FAMILY_CHOICES, PRESET_CHOICES

    assert set(FAMILY_CHOICES) <= set(models.FAMILIES)
    assert PRESET_CHOICES == models.PRESET_NAMES
    with pytest.raises(ValueError, match="family"):
        TrainParams(family="naive_mse")


# ---- the exit-code contract (flows.guard) ---------------------------------------------------


def _errors():
    from pydantic import BaseModel

    from pfcore import errors as e

    class P(BaseModel):
        n: int

    try:
        P(n="x")
    except Exception as exc:  # noqa: BLE001 - the pydantic ValidationError instance
        invalid = exc
    return [
        (e.GateFailed(["quality 0.5 < 0.85"]), 1),
        (e.InputError("bad", path="f.csv", column="c"), 2),
        (e.SchemaError("override names column 'x', which is not in the table"), 2),
        (e.ModelError("config.lr must be > 0"), 2),
        (invalid, 2),
        (e.RegistryUnreachable("http://x unreachable"), 3),
        (e.ModelNotFound("no champion"), 3),
        (e.StorageError("not writable"), 3),
        (e.GenerationError("already published"), 3),
        (PermissionError(13, "Permission denied"), 3),
        (ValueError("boom"), 4),
        (NotADirectoryError(20, "Not a directory"), 4),
    ]


@pytest.mark.parametrize("index", range(12))
def test_exit_code_is_decided_by_the_error_type(index: int) -> None:
    from flows.guard import exit_code_for

    exc, code = _errors()[index]
    assert exit_code_for(exc) == code, type(exc).__name__


def test_unexpected_error_prints_one_line_and_logs_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import flows.cli as cli

    monkeypatch.setenv("PUSHFORWARD_HOME", str(tmp_path))
    monkeypatch.delenv("PUSHFORWARD_DEBUG", raising=False)

    def boom(args):
        raise ZeroDivisionError("value \x1b[2J\x00 from the input")

    monkeypatch.setattr(cli, "_dispatch", boom)
    assert cli.main(["ingest", "x.csv", "--out", str(tmp_path / "o")]) == 4
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "pushforward: unexpected error: ZeroDivisionError"
    )
    assert "\x1b" not in err and "\x00" not in err and "\\x1b[2J" in err
    logs = list((tmp_path / "logs").glob("error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err
    assert "Traceback" in logs[0].read_text() and "Traceback" not in err

    assert cli.main(["--debug", "ingest", "x.csv", "--out", str(tmp_path / "o")]) == 4
    assert "Traceback" in capsys.readouterr().err


def test_expected_error_message_is_sanitised(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import flows.cli as cli
    from pfcore.errors import InputError

    def bad(args):
        raise InputError("CSV parse error: row 3 holds '\x1b]0;pwned\x07'", path="b.csv")

    monkeypatch.setattr(cli, "_dispatch", bad)
    assert cli.main(["ingest", "b.csv", "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pushforward: bad input: b.csv: CSV parse error")
    assert not any(ord(ch) < 32 and ch != "\n" for ch in err)


_SLEEPER = """
import sys, time
import flows.guard as g
g.TERM_GRACE_S = 3.0
stubborn = sys.argv[1] == "stubborn"

def cmd():
    print("ready", flush=True)
    try:
        time.sleep(120)
    except BaseException:
        if stubborn:  # cleanup that hangs: the watchdog must still end the process
            time.sleep(120)
        raise
    return 0

sys.exit(g.run_guarded(cmd))
"""


@pytest.mark.parametrize("mode", ["orderly", "stubborn"])
def test_sigterm_ends_the_command_within_the_grace_period(mode: str) -> None:
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-c", _SLEEPER, mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 143, err
    assert elapsed < (2.0 if mode == "orderly" else 6.0), elapsed
    assert "Traceback" not in err


def test_terminal_log_lines_lose_their_tracebacks_unless_debug() -> None:
    import io
    import logging

    from flows import guard

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        guard.quiet_tracebacks()
        log = logging.getLogger("pf-test-guard")

        def task() -> int:
            try:
                raise KeyError("k")
            except KeyError:
                log.error("Task run failed with exception", exc_info=True)
            return 0

        assert guard.run_guarded(task) == 0
        assert "Task run failed" in stream.getvalue() and "Traceback" not in stream.getvalue()
        assert guard.run_guarded(task, debug=True) == 0
        assert "Traceback" in stream.getvalue()
    finally:
        root.removeHandler(handler)

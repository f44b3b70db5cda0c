"""Preflight checks: each fails in seconds with the error type that sets the exit code."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from pfcore.errors import InputError, RegistryUnreachable, SchemaError
from pfcore.preflight import (
    MIN_ROWS,
    check_dataset,
    check_registry,
    check_rows,
    check_source,
    check_train_inputs,
    check_writable_dir,
    min_rows,
)
from tests.conftest import TEST_DATA


def test_minimum_rows_is_stated_and_holds_for_the_split() -> None:
    from pfcore.synthesizer import split_train_holdout

    assert min_rows(0.2) == MIN_ROWS == 50
    for fraction in (0.05, 0.1, 0.2, 0.33, 0.5):
        n = min_rows(fraction)
        import pyarrow as pa

        train, hold = split_train_holdout(pa.table({"a": list(range(n))}), fraction, 0)
        assert hold.num_rows >= 10 and train.num_rows >= 40, fraction
        with pytest.raises(InputError, match=f"at least {n}"):
            check_rows(n - 1, holdout_fraction=fraction, path="t.csv")
        check_rows(n, holdout_fraction=fraction, path="t.csv")


def test_source_counting_stops_early(tmp_path: Path) -> None:
    p = tmp_path / "big.csv"
    p.write_text("a,b\n" + "1,2\n" * 200_000)
    names, rows = check_source(p, count_up_to=50)
    assert names == ["a", "b"] and 50 <= rows <= 200_000
    names, rows = check_source(TEST_DATA / "penguins.parquet")
    assert rows == 344 and "species" in names


def test_output_folder_checks(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        check_writable_dir(f, "the output folder")
    with pytest.raises(InputError, match="parent .* is a file"):
        check_writable_dir(f / "sub", "the output folder")
    assert check_writable_dir(tmp_path / "new" / "deeper", "x") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_train_inputs_name_the_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHFORWARD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    src = TEST_DATA / "penguins.parquet"
    assert "island" in check_train_inputs(src)
    with pytest.raises(InputError, match="target column 'nope'"):
        check_train_inputs(src, target="nope")
    ov = tmp_path / "ov.yaml"
    ov.write_text("drop: [nope]\n")
    with pytest.raises(SchemaError, match="'nope'"):
        check_train_inputs(src, overrides=str(ov))


def test_dataset_without_a_modelled_column(tmp_path: Path) -> None:
    from pfcore.ingest import ingest

    src = tmp_path / "ids.csv"
    src.write_text("id,c\n" + "".join(f"u{i},same\n" for i in range(60)))
    res = ingest(src, tmp_path / "ds")
    with pytest.raises(InputError, match="no column to model") as info:
        check_dataset(res.out_dir)
    assert "ids.csv" in str(info.value)
    # the Python API refuses it the same way, before any model is built
    from pfcore.ingest import read_dataset
    from pfcore.schema import TableSchema
    from pfcore.synthesizer import Synthesizer

    schema = TableSchema.load(Path(res.out_dir) / "schema.json")
    with pytest.raises(InputError, match=r"no column to model \('id': id, 'c': constant\)"):
        Synthesizer.fit(read_dataset(res.out_dir), schema)


@pytest.fixture
def hanging_server():
    """Accepts connections and never answers: the slowest way a registry can be down."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


def test_registry_that_does_not_answer_is_reported_within_the_budget(
    hanging_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PUSHFORWARD_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", hanging_server)
    t0 = time.monotonic()
    with pytest.raises(RegistryUnreachable, match=hanging_server):
        check_registry(budget_s=5.0)
    assert time.monotonic() - t0 < 5.0


def test_unreadable_source_is_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Permission denied on the source (simulated: the tests may run as root, whom file modes
    do not stop) is bad input naming the file, not a traceback."""
    import builtins

    from flows.cli import main

    src = tmp_path / "secret.csv"
    src.write_text("a,b\n" + "1,2\n" * 80)
    real_open = builtins.open

    def deny(file, *args, **kwargs):
        if str(file) == str(src):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    monkeypatch.setenv("PUSHFORWARD_HOME", str(tmp_path / "home"))
    assert main(["train", str(src), "--preset", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "secret.csv: cannot be read (Permission denied)" in err
    assert not (tmp_path / "home" / "runs").exists()

    real_exists = Path.exists

    def no_entry(self):
        if self == src:
            raise PermissionError(13, "Permission denied", str(self))
        return real_exists(self)

    monkeypatch.setattr(Path, "exists", no_entry)
    assert main(["train", str(src), "--preset", "tiny"]) == 2
    assert "cannot be read (Permission denied)" in capsys.readouterr().err

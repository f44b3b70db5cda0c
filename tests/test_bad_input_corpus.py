"""The bad-input corpus: awkward inputs and failure conditions, tried through the command line
as a user would, each checked the same way by one parametrised test:

* the exit code (``pfcore.errors``: 0 ok, 1 gate, 2 bad input, 3 environment, 4 bug);
* the message names the file, column or row, holds no control character and no traceback;
* nothing partial is written (no temp folder, no half dataset, no staging, no batch);
* a failure that preflight can see happens before training: no run folder exists and no
  training line was logged (the absence of training, not a timing).

Cases that used to be silently wrong now succeed and check the schema they produce (a
semicolon file has its columns, ``-`` is null, mixed offsets are UTC timestamps). Every table is
tiny and every failing train command fails in preflight, before Prefect starts, so the whole
corpus runs in seconds (the no-champion case creates an MLflow store: about 10 s).
"""

from __future__ import annotations

import decimal
import json
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import TEST_DATA

PENGUINS = TEST_DATA / "penguins.parquet"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _csv(rows: int = 80, sep: str = ",") -> str:
    return f"x{sep}y{sep}k\n" + "".join(
        f"{i * 0.5:.1f}{sep}{(i * 7) % 13}{sep}{'abc'[i % 3]}\n" for i in range(rows)
    )


@dataclass
class Case:
    """``build(tmp) -> argv`` (files it needs are written under ``tmp``)."""

    id: str
    build: Callable[[Path], list[str]]
    code: int
    names: list[str] = field(default_factory=list)  # substrings the message must contain
    env: dict[str, str] = field(default_factory=dict)
    check: Callable[[Path, str], None] | None = None  # extra checks of a successful run
    root_skip: bool = False  # permission cases: root reads everything


def _write(tmp: Path, name: str, data: str | bytes) -> Path:
    p = tmp / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


def _train(p: Path | str, *extra: str) -> list[str]:
    return ["train", str(p), "--preset", "tiny", *extra]


def _ingest(p: Path | str, tmp: Path, *extra: str) -> list[str]:
    return ["ingest", str(p), "--out", str(tmp / "ds"), *extra]


def _kinds(tmp: Path) -> dict[str, tuple[str, str]]:
    schema = json.loads((tmp / "ds" / "schema.json").read_text())
    return {c["name"]: (c["kind"], c["arrow_type"]) for c in schema["columns"]}


# ---- builders --------------------------------------------------------------------------------
def _semicolon(tmp):
    return _ingest(_write(tmp, "semi.csv", _csv(sep=";")), tmp)


def _check_semicolon(tmp, out):
    kinds = _kinds(tmp)
    assert kinds == {
        "x": ("continuous", "double"),
        "y": ("categorical", "int64"),
        "k": ("categorical", "string"),
    }
    assert "';'" in out


def _dash_late(tmp):
    body = "".join(f"{(i % 997) * 0.25},{i % 5}\n" for i in range(400_000))
    return _ingest(_write(tmp, "dash.csv", "v,k\n" + body + "-,1\n?,2\n"), tmp)


def _check_dash(tmp, out):
    assert _kinds(tmp)["v"] == ("continuous", "double")
    schema = json.loads((tmp / "ds" / "schema.json").read_text())
    assert schema["columns"][0]["n_missing"] == 2


def _mixed_tz(tmp):
    rows = "".join(
        f"2024-05-0{1 + i % 9}T1{i % 10}:00:00{['+02:00', 'Z', '-05:30'][i % 3]},{i}\n"
        for i in range(90)
    )
    return _ingest(_write(tmp, "tz.csv", "t,v\n2024-05-01 08:00:00,0\n" + rows), tmp)


def _check_tz(tmp, out):
    assert _kinds(tmp)["t"] == ("datetime", "timestamp[us, tz=UTC]")
    assert "UTC" in out


def _decimal(tmp):
    vals = [decimal.Decimal(f"{i * 1.37:.2f}") for i in range(120)]
    p = tmp / "dec.parquet"
    pq.write_table(pa.table({"d": pa.array(vals, pa.decimal128(9, 2)), "n": list(range(120))}), p)
    return _ingest(p, tmp)


def _check_decimal(tmp, out):
    assert _kinds(tmp)["d"] == ("continuous", "decimal128(9, 2)")


def _latin1_ok(tmp):
    data = "city;n\n" + "".join(f"Zürich{i % 4};{i}\n" for i in range(60))
    return _ingest(_write(tmp, "lat.csv", data.encode("latin-1")), tmp, "--encoding", "latin-1")


def _check_latin1(tmp, out):
    assert _kinds(tmp)["city"] == ("categorical", "string")


def _bom_pipe(tmp):
    return _ingest(_write(tmp, "bom.csv", "\ufeff" + _csv(sep="|")), tmp)


def _check_bom(tmp, out):
    assert set(_kinds(tmp)) == {"x", "y", "k"}


def _mixed_as_text(tmp):
    body = "".join(f"{i},{i % 5}\n" for i in range(500_000))
    return _ingest(_write(tmp, "mixed.csv", "n,code\n" + body + "7,A7\n"), tmp)


def _check_mixed(tmp, out):
    assert _kinds(tmp)["code"] == ("categorical", "string") and "several types" in out


def _unicode_names(tmp):
    names = ["first name", "日付", " padded "]
    rows = "".join(f"n{i % 4},2024-01-{1 + i % 28:02d},{i % 2}\n" for i in range(60))
    return _ingest(_write(tmp, "names.csv", ",".join(f'"{n}"' for n in names) + "\n" + rows), tmp)


def _check_unicode(tmp, out):
    assert list(_kinds(tmp)) == ["first name", "日付", " padded "]


def _all_null_col(tmp):
    rows = "".join(f"{i},,{i % 3}\n" for i in range(60))
    return _ingest(_write(tmp, "nulls.csv", "a,empty,b\n" + rows), tmp)


def _check_all_null(tmp, out):
    assert _kinds(tmp)["empty"][0] == "constant"


def _nested(tmp):
    p = tmp / "nested.parquet"
    pq.write_table(pa.table({"ok": list(range(60)), "tags": [[1, 2]] * 60}), p)
    return _train(p)


def _inf_parquet(tmp):
    p = tmp / "inf.parquet"
    pq.write_table(pa.table({"ok": [1.0] * 60, "x y": [1.0] * 59 + [float("inf")]}), p)
    return _train(p)


def _corrupt_parquet(tmp):
    good = tmp / "g.parquet"
    pq.write_table(pa.table({"a": list(range(100))}), good)
    bad = _write(tmp, "bad.parquet", good.read_bytes()[: good.stat().st_size // 2])
    good.unlink()
    return _train(bad)


def _corrupt_in_dir(tmp):
    d = tmp / "src"
    d.mkdir()
    pq.write_table(pa.table({"a": list(range(60))}), d / "a.parquet")
    (d / "b.parquet").write_bytes(b"PAR1 garbage")
    return _train(d)


def _dir_no_parquet(tmp):
    d = tmp / "folder.csv"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    return _train(d)


def _override(tmp, text: str, name: str = "ov.yaml"):
    return _train(PENGUINS, "--overrides", str(_write(tmp, name, text)))


def _unreachable_env() -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}"}


def _unreadable(tmp):
    p = _write(tmp, "secret.csv", _csv())
    p.chmod(0)
    return _train(p)


def _home_is_file(tmp):
    return _train(PENGUINS)


def _not_a_synth(tmp):
    from pfcore.ingest import ingest

    (tmp / "nosynth").mkdir()
    ingest(PENGUINS, tmp / "pds")
    return ["validate", str(tmp / "nosynth"), str(tmp / "pds"), "--out", str(tmp / "rep")]


CASES = [
    # -- silently wrong before: now right, exit 0 -----------------------------------------
    Case("semicolon-delimiter", _semicolon, 0, check=_check_semicolon),
    Case("dash-null-token-after-first-block", _dash_late, 0, check=_check_dash),
    Case("mixed-utc-offsets", _mixed_tz, 0, check=_check_tz),
    Case("decimal128-column", _decimal, 0, check=_check_decimal),
    Case("latin1-with-encoding-option", _latin1_ok, 0, check=_check_latin1),
    Case("bom-and-pipe-delimiter", _bom_pipe, 0, check=_check_bom),
    Case("numbers-then-text-read-as-text", _mixed_as_text, 0, check=_check_mixed),
    Case("unicode-and-padded-names", _unicode_names, 0, check=_check_unicode),
    Case("all-null-column", _all_null_col, 0, check=_check_all_null),
    # -- bad input: exit 2, in preflight ---------------------------------------------------
    Case(
        "empty-header-name",
        lambda t: _train(_write(t, "e.csv", "a,,b\n1,2,3\n")),
        2,
        ["e.csv", "column #2"],
    ),
    Case(
        "blank-header-name",
        lambda t: _train(_write(t, "b.csv", "a, ,b\n" + "1,2,3\n" * 60)),
        2,
        ["b.csv", "column #2"],
    ),
    Case(
        "duplicate-names",
        lambda t: _train(_write(t, "d.csv", "a,b,a\n1,2,3\n")),
        2,
        ["d.csv", "'a'"],
    ),
    Case(
        "three-rows",
        lambda t: _train(_write(t, "three.csv", "a,b\n1,2\n3,4\n5,6\n")),
        2,
        ["three.csv", "3 rows", "at least 50"],
    ),
    Case(
        "one-row-below-minimum",
        lambda t: _train(_write(t, "r49.csv", _csv(49))),
        2,
        ["r49.csv", "49 rows"],
    ),
    Case(
        "header-only", lambda t: _train(_write(t, "h.csv", "a,b,c\n")), 2, ["h.csv", "no data rows"]
    ),
    Case("empty-csv", lambda t: _train(_write(t, "empty.csv", b"")), 2, ["empty.csv", "empty"]),
    Case(
        "empty-jsonl", lambda t: _train(_write(t, "empty.jsonl", b"")), 2, ["empty.jsonl", "empty"]
    ),
    Case(
        "binary-file-as-csv",
        lambda t: _train(_write(t, "bin.csv", b"\x00\x1b[31mPK\x03\x04\x1b]0;x\x07\n" * 9)),
        2,
        ["bin.csv", "binary"],
    ),
    Case(
        "ragged-csv-row",
        lambda t: _train(_write(t, "rag.csv", _csv(60) + "1,2,3,4,5\n")),
        2,
        ["rag.csv", "1,2,3,4,5"],
    ),
    Case(
        "non-utf8-bytes",
        lambda t: _train(_write(t, "lat.csv", ("city,n\n" + "Zürich,1\n" * 60).encode("latin-1"))),
        2,
        ["lat.csv", "column 'city'", "latin-1"],
    ),
    Case(
        "non-utf8-after-first-block",
        lambda t: _ingest(
            _write(t, "late.csv", b"s,n\n" + b"plain,1\n" * 600_000 + b"caf\xe9,2\n"), t
        ),
        2,
        ["late.csv", "column 's'"],
    ),
    Case(
        "infinite-in-csv",
        lambda t: _train(_write(t, "inf.csv", "v\n" + "1.5\n" * 60 + "inf\n")),
        2,
        ["inf.csv", "column 'v'", "infinite"],
    ),
    Case("infinite-in-parquet", _inf_parquet, 2, ["inf.parquet", "column 'x y'"]),
    Case(
        "jsonl-mixed-types",
        lambda t: _train(
            _write(t, "m.jsonl", '{"a": 1, "b": "x"}\n' * 60 + '{"a": "oops", "b": "y"}\n')
        ),
        2,
        ["m.jsonl", "column 'a'"],
    ),
    Case(
        "jsonl-not-json",
        lambda t: _train(_write(t, "bad.jsonl", "{not json\n" * 3)),
        2,
        ["bad.jsonl"],
    ),
    Case("nested-column", _nested, 2, ["nested.parquet", "column 'tags'"]),
    Case("corrupt-parquet", _corrupt_parquet, 2, ["bad.parquet", "not a valid Parquet"]),
    Case("corrupt-parquet-in-folder", _corrupt_in_dir, 2, ["b.parquet", "not a valid Parquet"]),
    Case("folder-without-parquet", _dir_no_parquet, 2, ["folder.csv", "no Parquet"]),
    Case(
        "unknown-extension",
        lambda t: _train(_write(t, "t.xlsx", b"PK")),
        2,
        ["t.xlsx", "unknown file type"],
    ),
    Case("missing-source", lambda t: _ingest(t / "nope.csv", t), 2, ["nope.csv", "not exist"]),
    Case("unreadable-source", _unreadable, 2, ["secret.csv", "cannot be read"], root_skip=True),
    Case(
        "override-unknown-column",
        lambda t: _override(t, "columns:\n  nope: {kind: integer}\n"),
        2,
        ["'nope'", "not in the table"],
    ),
    Case(
        "override-impossible-kind",
        lambda t: _override(t, "columns:\n  species: {kind: continuous}\n"),
        2,
        ["'species'", "continuous"],
    ),
    Case(
        "override-not-yaml",
        lambda t: _override(t, "columns: [unclosed\n", "bad.yaml"),
        2,
        ["bad.yaml"],
    ),
    Case(
        "target-not-a-column",
        lambda t: _train(PENGUINS, "--target", "nope"),
        2,
        ["penguins.parquet", "'nope'"],
    ),
    Case(
        "nothing-to-model",
        lambda t: _train(
            _write(t, "ids.csv", "id,c\n" + "".join(f"u{i},same\n" for i in range(80)))
        ),
        2,
        ["ids.csv", "no column to model"],
    ),
    Case(
        "two-char-delimiter",
        lambda t: _ingest(_write(t, "x.csv", _csv()), t, "--delimiter", ";;"),
        2,
        ["x.csv", "delimiter"],
    ),
    Case(
        "holdout-out-of-range",
        lambda t: _train(PENGUINS, "--holdout-fraction", "0.9"),
        2,
        ["holdout_fraction"],
    ),
    Case("generate-zero-rows", lambda t: ["generate", "--rows", "0"], 2, ["rows"]),
    Case(
        "generate-output-is-a-file",
        lambda t: ["generate", "--model-name", "m", "--output", str(_write(t, "afile", "x"))],
        2,
        ["afile", "is a file"],
    ),
    Case(
        "generate-output-under-a-file",
        lambda t: ["generate", "--model-name", "m", "--output", str(_write(t, "f2", "x") / "sub")],
        2,
        ["f2", "is a file"],
    ),
    Case(
        "home-is-a-file",
        _home_is_file,
        2,
        ["pf-home-file", "is a file"],
        env={"PUSHFORWARD_HOME": "{tmp}/pf-home-file"},
    ),
    Case("validate-not-a-synthesizer", _not_a_synth, 2, ["nosynth", "synthesizer"]),
    # -- environment: exit 3 ---------------------------------------------------------------
    Case(
        "train-registry-unreachable",
        lambda t: _train(PENGUINS),
        3,
        ["http://127.0.0.1:", "unreachable"],
        env={"MLFLOW_TRACKING_URI": "unreachable"},
    ),
    Case(
        "generate-registry-unreachable",
        lambda t: ["generate", "--model-name", "m"],
        3,
        ["http://127.0.0.1:", "unreachable"],
        env={"MLFLOW_TRACKING_URI": "unreachable"},
    ),
    Case(
        "generate-no-champion",
        lambda t: ["generate", "--model-name", "pf-nobody"],
        3,
        ["'pf-nobody'", "'champion'"],
    ),
]


#: What the train task logs when training starts (tasks/train.py).
_TRAINING_LOG = re.compile(r"training \w+/\w+ on \d+ rows")


def _no_partial_output(tmp: Path, home: Path) -> None:
    for p in [*tmp.rglob(".*tmp*"), *tmp.rglob("*.tmp")]:
        pytest.fail(f"temporary file left behind: {p}")
    assert not (home / "runs").exists(), "training started"
    assert not (home / "synthetic").exists() and not list(tmp.rglob("_staging"))
    datasets = home / "datasets"
    if datasets.exists():  # ingest is atomic: a dataset is complete or absent
        for d in datasets.iterdir():
            assert (d / "manifest.json").exists(), f"half-written dataset {d}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_corpus(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    from flows.cli import main

    if case.root_skip and os.geteuid() == 0:
        pytest.skip("running as root: file permissions do not stop root from reading")
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "pf-home"
    monkeypatch.setenv("PUSHFORWARD_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PUSHFORWARD_DEBUG", raising=False)
    for key, value in case.env.items():
        if value == "unreachable":
            value = _unreachable_env()["MLFLOW_TRACKING_URI"]
        value = value.replace("{tmp}", str(tmp_path))
        if key == "PUSHFORWARD_HOME":
            Path(value).write_text("not a folder")
            home = Path(value)
        monkeypatch.setenv(key, value)
    argv = case.build(work)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capfd.readouterr()
    assert code == case.code, f"exit {code}, expected {case.code}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in err
    assert not any(ord(ch) < 32 and ch not in "\n\t" for ch in err), repr(err)
    assert not _TRAINING_LOG.search(err + out), "training started before the failure"
    if case.code:
        last = err.strip().splitlines()[-1]
        assert last.startswith("pushforward: ") or "usage:" in err
        for name in case.names:
            assert name in err, f"{name!r} not in the message: {err}"
        if home.is_dir():
            _no_partial_output(work, home)
        assert not (work / "ds").exists()
    else:
        assert case.check is not None
        case.check(work, out + err)


def test_corpus_covers_the_required_cases() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)

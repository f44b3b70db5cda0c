"""One validation path: the task and ``pushforward validate`` score the recorded holdout alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import EXIT_GATE, EXIT_INPUT, EXIT_OK, main
from tests.conftest import TEST_DATA


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset dir, synthesizer dir): penguins ingested, a tiny model fitted on a 30% holdout
    split with a row cap, so a re-derived default split would differ from the recorded one."""
    from pfcore.ingest import ingest, read_dataset
    from pfcore.schema import TableSchema
    from pfcore.synthesizer import Split, Synthesizer

    root = tmp_path_factory.mktemp("validation")
    dataset = ingest(TEST_DATA / "penguins.parquet", root / "ds").out_dir
    table = read_dataset(dataset)
    split = Split(holdout_fraction=0.3, seed=4, max_train_rows=150)
    train, _ = split.apply(table)
    config = {"max_steps": 2, "min_steps": 1, "eval_every": 2, "n_eval": 64, "n_pairs": 256}
    config["distill_max_steps"] = 2
    synth = Synthesizer.fit(
        train,
        TableSchema.load(Path(dataset) / "schema.json"),
        family="onestep",
        preset="tiny",
        config=config,
        seed=4,
        split=split,
    )
    return Path(dataset), synth.save(root / "synth")


def test_split_is_recorded_and_read_back(trained: tuple[Path, Path]) -> None:
    from pfcore.synthesizer import Split, Synthesizer

    _, synth_dir = trained
    meta = json.loads((synth_dir / "synthesizer.json").read_text())
    assert meta["split"] == {"holdout_fraction": 0.3, "seed": 4, "max_train_rows": 150}
    assert Synthesizer.load(synth_dir).split == Split(0.3, 4, 150)


def test_cli_and_task_give_the_same_report(
    trained: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tasks.validate
    from pfcore.validation import validate_synthesizer
    from tasks.validate import validate_task

    # outside a flow run, publishing artifacts would start a temporary Prefect server (~25 s)
    monkeypatch.setattr(tasks.validate, "_publish_artifacts", lambda report, result: None)

    dataset, synth_dir = trained
    direct = validate_synthesizer(dataset, synth_dir)
    assert direct.split.holdout_fraction == 0.3 and direct.sample_seed == 5
    # the recorded split (30% holdout, 150 training rows), not the default 20% one
    assert direct.report.rows == {"real": 103, "synthetic": 150, "train": 150}
    task = validate_task.fn(str(dataset), str(synth_dir), str(tmp_path / "work"))
    rc = main(["validate", str(synth_dir), str(dataset), "--out", str(tmp_path / "cli")])
    assert rc in (EXIT_OK, EXIT_GATE)
    cli = json.loads(capsys.readouterr().out)
    assert cli["summary"] == task["summary"] == direct.report.summary
    assert cli["passed"] == task["passed"] == direct.result.passed


def test_conflicting_split_is_refused(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dataset, synth_dir = trained
    rc = main(
        ["validate", str(synth_dir), str(dataset), "--out", str(tmp_path / "r"), "--seed", "0"]
    )
    assert rc == EXIT_INPUT
    assert "training rows in the holdout" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_csv_date_column_is_fitted_and_scored(tmp_path: Path) -> None:
    """Arrow reads ``2020-01-31`` in a CSV as a date (``date32``), which pandas turns into
    Python objects: the default family's fit (its map-space choice scores decoded rows) and the
    validation report both score it as the datetime it is, instead of refusing the column."""
    import numpy as np
    import pyarrow as pa

    from pfcore.ingest import ingest, read_dataset
    from pfcore.schema import TableSchema
    from pfcore.synthesizer import Split, Synthesizer
    from pfcore.validation import validate_synthesizer

    rng = np.random.default_rng(0)
    n = 400
    days = rng.integers(0, 700, n)
    lines = ["opened,kind,amount"] + [
        f"{np.datetime64('2020-01-01') + d},{'ab'[d % 2]},{d * 0.1 + rng.normal():.3f}"
        for d in days
    ]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    dataset = ingest(tmp_path / "t.csv", tmp_path / "ds").out_dir
    table = read_dataset(dataset)
    assert table.schema.field("opened").type == pa.date32()
    split = Split(holdout_fraction=0.25, seed=1)
    train, _ = split.apply(table)
    config = {"max_steps": 20, "min_steps": 1, "eval_every": 10, "n_eval": 64, "n_pairs": 256}
    config.update(distill_max_steps=20, ar_max_steps=20, conditional_max_steps=0)
    synth = Synthesizer.fit(
        train,
        TableSchema.load(Path(dataset) / "schema.json"),
        preset="tiny",
        config=config,
        seed=1,
        split=split,
    )
    out = synth.sample(50, seed=2)
    assert out.schema.field("opened").type == pa.date32()
    report = validate_synthesizer(dataset, synth).report.to_dict()
    opened = next(c for c in report["columns"] if c["name"] == "opened")
    assert opened["role"] == "datetime" and opened["shape"] is not None
    assert "opened" not in report["skipped_columns"]

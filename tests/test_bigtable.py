"""Tables larger than memory: the streamed training sample, the bounded validation read and the
memory preflight."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import TEST_DATA


def _dataset(tmp_path: Path, table: pa.Table, *, batch_rows: int, rows_per_file: int) -> Path:
    from pfcore.ingest import ingest

    src = tmp_path / "src.parquet"
    pq.write_table(table, src)
    return Path(
        ingest(src, tmp_path / "ds", batch_rows=batch_rows, rows_per_file=rows_per_file).out_dir
    )


def _chi2_uniform_p(counts: np.ndarray, expected: np.ndarray) -> float:
    from scipy.stats import chisquare

    return float(chisquare(counts, expected * counts.sum() / expected.sum()).pvalue)


@pytest.fixture(scope="module")
def sorted_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60k rows sorted by ``g`` (20 groups of 3k rows), written as 15 row groups in 5 part
    files: a sample that favoured some row groups or files would skew ``g``."""
    n = 60_000
    rng = np.random.default_rng(1)
    table = pa.table(
        {
            "g": np.repeat(np.arange(20), n // 20),
            "x": rng.normal(size=n),
            "c": rng.choice(np.array(["a", "b", "c"]), size=n, p=[0.5, 0.3, 0.2]),
        }
    )
    return _dataset(tmp_path_factory.mktemp("sorted"), table, batch_rows=4096, rows_per_file=12_288)


def test_sample_is_uniform_on_a_sorted_table(sorted_dataset: Path) -> None:
    from pfcore.synthesizer import Split

    split = Split.plan(sorted_dataset, 0.2, seed=7, sample_rows=6000)
    assert split.method == "hash" and split.dataset_rows == 60_000
    assert len(list((sorted_dataset / "data").glob("part-*.parquet"))) == 5
    rows = split.read(sorted_dataset, holdout_rows=3000)
    train, holdout = rows.train, rows.holdout
    assert train.num_rows == 6000 and holdout.num_rows == 3000
    # the sort column: every group equally likely, in the sample and in the holdout sample
    for t in (train, holdout):
        counts = np.bincount(np.asarray(t["g"]), minlength=20)
        assert _chi2_uniform_p(counts, np.ones(20)) > 1e-3, counts
    # a known categorical column keeps its frequencies
    vals, counts = np.unique(np.asarray(train["c"]), return_counts=True)
    assert list(vals) == ["a", "b", "c"]
    assert _chi2_uniform_p(counts, np.array([0.5, 0.3, 0.2])) > 1e-3, counts
    # the held-out share is the fraction asked for, within sampling noise (sd 0.0016)
    assert abs(rows.holdout_total / 60_000 - 0.2) < 0.01
    assert rows.train_total == 6000


def test_sample_is_reproducible_and_disjoint_from_the_holdout(sorted_dataset: Path) -> None:
    from pfcore.io import read_dataset
    from pfcore.synthesizer import Split

    table = read_dataset(sorted_dataset)
    ids = pa.array(np.arange(table.num_rows))
    table = table.append_column("row", ids)
    split = Split.plan(sorted_dataset, 0.2, seed=3, sample_rows=5000)
    a = split.read(sorted_dataset, holdout_rows=None)
    b = split.read(sorted_dataset, holdout_rows=None)
    assert a.train.equals(b.train) and a.holdout.equals(b.holdout)
    # the streamed read equals the in-memory split of the same table (row ids identify rows)
    mem_train, mem_hold = split.apply(table)
    assert mem_train.drop_columns(["row"]).equals(a.train)
    assert mem_hold.drop_columns(["row"]).equals(a.holdout)
    train_ids = set(np.asarray(mem_train["row"]).tolist())
    hold_ids = set(np.asarray(mem_hold["row"]).tolist())
    assert not train_ids & hold_ids
    assert len(hold_ids) == a.holdout_total
    # a bigger sample contains the smaller one; another seed draws other rows
    bigger = Split.plan(sorted_dataset, 0.2, seed=3, sample_rows=9000)
    big_ids = set(np.asarray(bigger.apply(table)[0]["row"]).tolist())
    assert train_ids < big_ids and not big_ids & hold_ids
    other = Split.plan(sorted_dataset, 0.2, seed=4, sample_rows=5000)
    assert not other.read(sorted_dataset, holdout_rows=0).train.equals(a.train)
    # validation's bounded read is a subset of the training sample
    sub = split.read(sorted_dataset, holdout_rows=100, train_rows=700)
    assert sub.train.num_rows == 700 and sub.holdout.num_rows == 100
    assert sub.train_total == 5000


def test_split_record_round_trips_and_refuses_a_changed_dataset(sorted_dataset: Path) -> None:
    from pfcore.errors import InputError
    from pfcore.synthesizer import Split

    split = Split.plan(sorted_dataset, 0.25, seed=2, max_train_rows=4000, sample_rows=8000)
    d = split.to_dict()
    assert d["method"] == "hash" and d["sample_rows"] == 8000 and d["dataset_rows"] == 60_000
    assert Split.from_dict(d) == split and split.train_rows_cap == 4000
    moved = Split.from_dict({**d, "dataset_rows": 59_999})
    with pytest.raises(InputError, match="planned on 59999"):
        moved.read(sorted_dataset)


def test_several_part_files_train_the_same_model_as_before(tmp_path: Path) -> None:
    """A table that fits the sample is read whole and split by the old permutation: the rows,
    and so the fitted model, are exactly what one in-memory table gave."""
    from pfcore.io import read_dataset
    from pfcore.memory import plan_training
    from pfcore.schema import TableSchema
    from pfcore.synthesizer import Split, Synthesizer

    table = pq.read_table(TEST_DATA / "penguins.parquet")
    ds = _dataset(tmp_path, table, batch_rows=64, rows_per_file=128)
    assert len(list((ds / "data").glob("part-*.parquet"))) >= 3
    split, plan = plan_training(
        ds, holdout_fraction=0.2, seed=5, family="onestep", preset="tiny", max_memory_gb=64
    )
    assert split.method == "permutation" and plan.read_rows == table.num_rows
    rows = split.read(ds)
    old_train, old_hold = Split(0.2, 5).apply(read_dataset(ds))
    assert rows.train.equals(old_train) and rows.holdout.equals(old_hold)
    schema = TableSchema.load(ds / "schema.json")
    cfg = {"max_steps": 3, "min_steps": 1, "eval_every": 3, "n_eval": 64, "n_pairs": 256}
    cfg["distill_max_steps"] = 3
    fits = [
        Synthesizer.fit(t, schema, preset="tiny", config=cfg, seed=5)
        for t in (rows.train, old_train)
    ]
    a, b = (f.sample(200, seed=1) for f in fits)
    assert a.equals(b)


def test_memory_preflight_refuses_an_impossible_configuration(tmp_path: Path) -> None:
    """A run that cannot fit is refused from the schema alone, in seconds, naming the fix."""
    import time

    from pfcore.errors import InputError
    from pfcore.memory import check_memory, plan_training
    from pfcore.schema import TableSchema

    table = pq.read_table(TEST_DATA / "penguins.parquet")
    ds = _dataset(tmp_path, table, batch_rows=64, rows_per_file=1024)
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="raise --max-memory-gb"):
        plan_training(
            ds, holdout_fraction=0.2, seed=0, family="onestep", preset="tiny", max_memory_gb=0.1
        )
    schema = TableSchema.load(ds / "schema.json")
    with pytest.raises(InputError, match=r"lower --sample-rows to [\d,]+ or less"):
        check_memory(
            schema,
            read_rows=10**10,
            validation_rows=10_000,
            validation_read_rows=0,
            budget_bytes=8 << 30,
        )
    assert time.perf_counter() - t0 < 10


def test_cli_refuses_a_run_over_the_memory_budget(
    tmp_project: Path, capsys: pytest.CaptureFixture
) -> None:
    from flows.cli import EXIT_INPUT, main

    rc = main(["train", str(TEST_DATA / "penguins.parquet"), "--max-memory-gb", "0.05"])
    assert rc == EXIT_INPUT
    err = capsys.readouterr().err
    assert "memory budget" in err and "--max-memory-gb" in err
    assert not list((tmp_project / "pf-home").glob("runs/*"))


def test_sample_size_follows_the_training_budget_and_memory() -> None:
    from pfcore.memory import MIN_SAMPLE_ROWS, budget_rows, sample_rows_for, training_bytes
    from pfcore.schema import TableSchema, infer_schema

    schema: TableSchema = infer_schema(pq.read_table(TEST_DATA / "penguins.parquet"))
    big = 1 << 40
    assert sample_rows_for(schema, family="onestep", preset="tiny", budget_bytes=big) == (
        MIN_SAMPLE_ROWS
    )
    best = budget_rows("onestep", "best")
    assert best > MIN_SAMPLE_ROWS
    assert sample_rows_for(schema, family="onestep", preset="best", budget_bytes=big) == best
    tight = training_bytes(schema, 50_000)
    rows = sample_rows_for(schema, family="onestep", preset="best", budget_bytes=tight)
    assert 49_000 <= rows <= 50_000


def test_validation_reads_a_bounded_holdout_and_reports_rows_per_metric(
    sorted_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pfcore.validation as validation
    from pfcore.schema import TableSchema
    from pfcore.synthesizer import Split, Synthesizer

    split = Split.plan(sorted_dataset, 0.2, seed=1, sample_rows=2000)
    rows = split.read(sorted_dataset, holdout_rows=0)
    cfg = {"max_steps": 2, "min_steps": 1, "eval_every": 2, "n_eval": 64, "n_pairs": 256}
    cfg["distill_max_steps"] = 2
    schema = TableSchema.load(sorted_dataset / "schema.json")
    synth = Synthesizer.fit(rows.train, schema, preset="tiny", config=cfg, seed=1, split=split)
    monkeypatch.setattr(validation, "MAX_HOLDOUT_ROWS", 1500)
    monkeypatch.setattr(validation, "MAX_SCORED_TRAIN_ROWS", 800)
    report = validation.validate_synthesizer(sorted_dataset, synth).report
    assert report.rows == {"real": 1500, "synthetic": 1500, "train": 800}
    assert report.source_rows == {
        "dataset": 60_000,
        "holdout_available": rows.holdout_total,
        "train_available": 2000,
    }
    used = report.metric_rows
    assert used["column_shapes"] == {"real": 1500, "synthetic": 1500}
    assert used["detection"] == {"real": 1500, "synthetic": 1500}
    assert used["privacy"]["train"] == 800
    assert "Rows each metric used: column_shapes: real 1500" in report.to_markdown()


def test_parquet_source_holds_one_file_open_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An open ParquetFile keeps what it decoded until released, so a reader that held every
    source file open grew with the number of files (2.5 GB ingesting 100M rows in 13 files)."""
    import pfcore.io as pio

    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        pq.write_table(pa.table({"x": np.arange(i * 100, i * 100 + 100)}), src / f"p{i}.parquet")
    real = pq.ParquetFile
    live: list[object] = []
    peak = [0]

    class Tracked(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, **k)
            live.append(self)
            peak[0] = max(peak[0], len(live))

        def close(self, force: bool = False) -> None:
            if self in live:
                live.remove(self)
            super().close(force=force)

    monkeypatch.setattr(pq, "ParquetFile", Tracked)
    reader = pio.open_source(src, batch_rows=50)
    got = np.concatenate([np.asarray(b["x"]) for b in reader.batches()])
    assert np.array_equal(got, np.arange(600))
    assert peak[0] == 1 and not live


@pytest.fixture(scope="module")
def grouped_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 24k rows in 48 row groups of 500, once shuffled and once sorted by ``g``."""
    n = 24_000
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(12), n // 12)
    c = rng.choice(np.array(["a", "b", "c"]), size=n, p=[0.5, 0.3, 0.2])
    table = pa.table({"g": g, "c": c, "row": np.arange(n)})
    shuffled = table.take(pa.array(rng.permutation(n))).drop_columns(["row"])
    return {
        name: _dataset(tmp_path_factory.mktemp(name), t, batch_rows=500, rows_per_file=4000)
        for name, t in (("shuffled", shuffled), ("sorted", table.drop_columns(["row"])))
    }


def test_row_groups_are_sampled_only_when_they_look_alike(
    grouped_tables: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shuffled table is sampled from a seeded subset of its row groups (the read does not
    grow with the table); one sorted by a column is detected from the footers and read whole,
    so the sort column keeps its frequencies either way."""
    import pfcore.rowsample as rs
    from pfcore.synthesizer import Split

    monkeypatch.setattr(rs, "MIN_SAMPLED_GROUPS", 16)
    shuffled, ordered = grouped_tables["shuffled"], grouped_tables["sorted"]
    assert len(rs.row_group_spans(shuffled)) == 48
    assert rs.clustered_column(shuffled) is None
    assert "column 'g'" in (rs.clustered_column(ordered) or "")

    s = Split.plan(ordered, 0.2, seed=4, sample_rows=1000)
    assert s.row_spans is None and "column 'g'" in (s.read_note or "")
    s = Split.plan(shuffled, 0.2, seed=4, sample_rows=1000)
    assert s.row_spans is not None and len(s.row_spans) == 16
    assert s.read_note.startswith("16 of 48 row groups")
    assert Split.from_dict(s.to_dict()) == s

    read: list[int] = []
    real_batches = rs._batches

    def counting(*a: object, **k: object):  # type: ignore[no-untyped-def]
        for off, b in real_batches(*a, **k):
            read.append(b.num_rows)
            yield off, b

    monkeypatch.setattr(rs, "_batches", counting)
    rows = s.read(shuffled, holdout_rows=800)
    assert sum(read) == 16 * 500  # only the chosen groups were decoded
    assert rows.train.num_rows == 1000 and rows.holdout.num_rows == 800
    for t in (rows.train, rows.holdout):
        counts = np.bincount(np.asarray(t["g"]), minlength=12)
        assert _chi2_uniform_p(counts, np.ones(12)) > 1e-3, counts
    vals, counts = np.unique(np.asarray(rows.train["c"]), return_counts=True)
    assert _chi2_uniform_p(counts, np.array([0.5, 0.3, 0.2])) > 1e-3, counts
    # reproducible, disjoint from the holdout, equal to the in-memory split of the same rows
    from pfcore.io import read_dataset

    again = Split.plan(shuffled, 0.2, seed=4, sample_rows=1000).read(shuffled, holdout_rows=800)
    assert again.train.equals(rows.train) and again.holdout.equals(rows.holdout)
    table = read_dataset(shuffled)
    table = table.append_column("row", pa.array(np.arange(table.num_rows)))
    mem_train, mem_hold = s.apply(table)
    assert mem_train.drop_columns(["row"]).equals(rows.train)
    assert not set(mem_train["row"].to_pylist()) & set(mem_hold["row"].to_pylist())
    assert Split.plan(shuffled, 0.2, seed=5, sample_rows=1000).row_spans != s.row_spans


def test_parquet_batches_reads_the_chosen_row_groups_in_order(tmp_path: Path) -> None:
    """One reader per row group (a reader over a whole file kept every decoded group's memory
    until the file ended) gives the rows and columns a whole-file read gives."""
    from pfcore.io import parquet_batches

    path = tmp_path / "t.parquet"
    table = pa.table({"x": np.arange(1000), "y": np.arange(1000) * 2.0})
    pq.write_table(table, path, row_group_size=300)
    with pq.ParquetFile(path) as pf:
        whole = pa.Table.from_batches(list(parquet_batches(pf, 128)))
        some = pa.Table.from_batches(
            list(parquet_batches(pf, 128, columns=["y"], row_groups=[1, 3]))
        )
    assert whole.equals(table)
    assert some.column_names == ["y"]
    assert np.array_equal(
        np.asarray(some["y"]), np.r_[np.arange(300, 600), np.arange(900, 1000)] * 2.0
    )

"""Ingest: formats, outputs, atomic publish, idempotency, streaming layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pfcore import ingest as ingest_mod
from pfcore.errors import InputError
from pfcore.ingest import ingest, load_ingested, read_dataset
from pfcore.io import read_table
from pfcore.schema import TableSchema
from tests.conftest import TEST_DATA, shared_dataset


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    "name", ["penguins.parquet", "credit_default_sample.csv", "diamonds_sample.jsonl"]
)
def test_ingest_formats(tmp_path, name):
    res = ingest(TEST_DATA / name, tmp_path / "ds")
    out = tmp_path / "ds"
    assert res.out_dir == out and res.data_dir == out / "data"
    assert sorted(p.name for p in out.iterdir()) == [
        "data",
        "manifest.json",
        "schema.json",
        "stats.json",
    ]
    m = json.loads((out / "manifest.json").read_text())
    src = read_table(TEST_DATA / name)
    assert m["rows"] == src.num_rows == res.schema.n_rows
    assert len(m["source_sha256"]) == 64 and m["created_at"] and m["source"].endswith(name)
    assert m["arrow_schema"] == str(res.schema.arrow_schema())
    assert TableSchema.load(out / "schema.json").to_dict() == res.schema.to_dict()
    back = read_dataset(out)
    assert back.equals(src)
    assert back.schema.equals(res.schema.arrow_schema())
    assert leftovers(tmp_path) == []


def test_csv_types_normalised(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(
        "when,day,x,s\n2024-01-01T10:00:00Z,2024-01-01,1.5,a\n2024-01-02T11:30:00Z,2024-02-03,,\n"
        "2024-01-03T00:00:00Z,2024-03-01,NaN,b\n"
    )
    res = ingest(p, tmp_path / "ds")
    t = read_dataset(res.out_dir)
    when = t.schema.field("when").type
    assert pa.types.is_timestamp(when) and when.tz == "UTC"  # unit: Arrow's inference (s or ms)
    assert t.schema.field("day").type == pa.date32()
    assert t.column("x").to_pylist() == [1.5, None, None]  # empty and NaN -> null
    assert t.column("s").to_pylist() == ["a", None, "b"]


def test_parquet_directory_and_large_types(tmp_path):
    d = tmp_path / "src"
    (d / "_staging").mkdir(parents=True)
    t = pa.table(
        {
            "s": pa.array(["a", "b", "a"], pa.large_string()),
            "c": pa.array(["x", "y", "x"]).dictionary_encode(),
            "h": pa.array([1.0, 2.0, 3.0], pa.float16()),
        }
    )
    pq.write_table(t, d / "b.parquet")
    pq.write_table(t, d / "a.parquet")
    pq.write_table(t, d / "_staging" / "ignored.parquet")
    res = ingest(d, tmp_path / "ds")
    back = read_dataset(res.out_dir)
    assert back.num_rows == 6
    assert back.schema == pa.schema([("s", pa.string()), ("c", pa.string()), ("h", pa.float32())])


def test_idempotent_and_byte_identical(tmp_path):
    src = TEST_DATA / "credit_default_sample.csv"
    a = ingest(src, tmp_path / "a", batch_rows=64)
    again = ingest(src, tmp_path / "a", batch_rows=64)
    assert again.reused and again.manifest == a.manifest
    b = ingest(src, tmp_path / "b", batch_rows=64)
    assert not b.reused
    files_a = sorted((tmp_path / "a" / "data").iterdir())
    assert len(files_a) == 1
    for fa in files_a:
        assert fa.read_bytes() == (tmp_path / "b" / "data" / fa.name).read_bytes()
    assert (tmp_path / "a" / "schema.json").read_bytes() == (
        tmp_path / "b" / "schema.json"
    ).read_bytes()
    assert pq.ParquetFile(files_a[0]).num_row_groups == 7  # 400 rows in fixed groups of 64


def test_changed_source_or_options_reingests(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("a,b\n1,x\n2,y\n")
    r1 = ingest(src, tmp_path / "ds")
    src.write_text("a,b\n1,x\n2,y\n3,z\n")
    r2 = ingest(src, tmp_path / "ds")
    assert (
        not r2.reused
        and r2.manifest["rows"] == 3
        and r1.manifest["source_sha256"] != r2.manifest["source_sha256"]
    )
    r3 = ingest(src, tmp_path / "ds", overrides={"drop": ["b"]})
    assert not r3.reused and read_dataset(r3.out_dir).column_names == ["a"]
    assert r3.manifest["dropped_columns"] == ["b"]
    assert leftovers(tmp_path) == []


def test_failure_leaves_previous_output_intact(tmp_path, monkeypatch):
    src = tmp_path / "t.csv"
    src.write_text("a,b\n1,x\n2,y\n")
    ingest(src, tmp_path / "ds")
    before = {p.name: p.read_bytes() for p in (tmp_path / "ds").rglob("*") if p.is_file()}
    src.write_text("a,b\n1,x\n2,y\n3,z\n")

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ingest_mod, "_publish", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        ingest(src, tmp_path / "ds")
    after = {p.name: p.read_bytes() for p in (tmp_path / "ds").rglob("*") if p.is_file()}
    assert after == before
    assert leftovers(tmp_path) == []


def test_refuses_to_overwrite_foreign_directory(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="refusing to overwrite"):
        ingest(TEST_DATA / "penguins.parquet", tmp_path / "ds")
    assert (tmp_path / "ds" / "precious.txt").read_text() == "keep me"


def test_streams_in_batches_and_splits_files(tmp_path):
    rows = 5000
    p = tmp_path / "big.csv"
    p.write_text("i,f,s\n" + "".join(f"{i},{i / 7:.3f},k{i % 13}\n" for i in range(rows)))
    res = ingest(p, tmp_path / "ds", batch_rows=512, rows_per_file=2048, csv_block_bytes=8192)
    files = sorted((tmp_path / "ds" / "data").glob("part-*.parquet"))
    assert [f.name for f in files] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert [m["rows"] for m in res.manifest["files"]] == [2048, 2048, 904]
    assert read_dataset(res.out_dir).equals(read_table(p))
    assert res.schema["i"].kind == "id" and res.schema["s"].kind == "categorical"


def test_load_ingested_detects_damage(tmp_path):
    res = ingest(TEST_DATA / "penguins.parquet", tmp_path / "ds")
    assert load_ingested(res.out_dir).manifest == res.manifest
    f = next((tmp_path / "ds" / "data").iterdir())
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(InputError, match="wrong size"):
        load_ingested(res.out_dir)
    again = ingest(TEST_DATA / "penguins.parquet", tmp_path / "ds")  # damaged output is rebuilt
    assert not again.reused and read_dataset(again.out_dir).num_rows == 344


def test_overrides_file_applied(tmp_path):
    ov = tmp_path / "ov.yaml"
    ov.write_text("columns:\n  year: {kind: integer}\n  sex: {drop: true}\n")
    res = ingest(TEST_DATA / "penguins.parquet", tmp_path / "ds", overrides=ov)
    assert res.schema["year"].kind == "integer" and "sex" not in res.schema.names
    assert "sex" not in read_dataset(res.out_dir).column_names


@pytest.mark.shared
def test_ingest_shared_nyc_flights(tmp_path):
    src = shared_dataset("nyc_flights")
    res = ingest(src, tmp_path / "ds")
    t = read_dataset(res.out_dir)
    assert t.equals(pq.read_table(src).replace_schema_metadata(None))
    assert res.schema["time_hour"].kind == "datetime"
    shutil.rmtree(tmp_path / "ds")


def test_near_unique_text_is_named_at_ingest(tmp_path):
    """Listing titles (mostly distinct) get a guess saying synthetic rows will copy them and
    what to do; a text column of few values, and the titles declared id, get none."""
    src = tmp_path / "listings.csv"
    rows = [f'"cosy flat {i % 300} by the canal",{["a", "b", "c"][i % 3]}' for i in range(400)]
    src.write_text("title,area\n" + "\n".join(rows) + "\n")
    res = ingest(src, tmp_path / "out")
    (guess,) = [g for g in res.manifest["guesses"] if "near-unique" in g]
    assert guess.startswith("column 'title': 300 distinct texts in 400 rows")
    assert "declare it id" in guess
    declared = ingest(src, tmp_path / "out2", overrides={"columns": {"title": {"kind": "id"}}})
    assert not [g for g in declared.manifest["guesses"] if "near-unique" in g]

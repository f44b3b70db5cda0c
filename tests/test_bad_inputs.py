"""Bad inputs: a clear InputError naming file / column / problem, or a documented handling —
and never a partial output.

Documented handling (see pfcore.io and pfcore.ingest docstrings):
- empty file, header only, corrupted Parquet, non-UTF-8 text, duplicate names, infinities,
  JSON fields of mixed types, missing path: InputError, nothing written.
- all-null column: kept; kind ``constant`` with value null; decode gives nulls.
- one row: ingests; every column is ``constant``; decode reproduces the row.
- CSV column of numbers then text: re-read as string -> categorical; listed in the manifest.
- names with spaces / unicode: kept exactly.
- NaN in floats: null. 100k categories: works, rare ones pooled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pfcore.errors import InputError
from pfcore.ingest import ingest, read_dataset
from pfcore.transforms import TableTransformer


def assert_nothing_written(tmp_path: Path, out: Path) -> None:
    assert not out.exists(), f"{out} was created"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def expect_error(
    tmp_path: Path, src: Path, *, match: str, column: str | None = None, **kw
) -> InputError:
    out = tmp_path / "out"
    with pytest.raises(InputError, match=match) as info:
        ingest(src, out, **kw)
    err = info.value
    assert err.path is not None and Path(err.path).name == src.name, str(err)
    assert str(src.name) in str(err)
    if column is not None:
        assert err.column == column and f"column {column!r}" in str(err)
    assert_nothing_written(tmp_path, out)
    return err


def test_path_does_not_exist(tmp_path):
    expect_error(tmp_path, tmp_path / "nope.csv", match="does not exist")


def test_empty_csv(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    expect_error(tmp_path, p, match="is empty")


def test_empty_jsonl(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_bytes(b"")
    expect_error(tmp_path, p, match="is empty")


def test_header_only(tmp_path):
    p = tmp_path / "header.csv"
    p.write_text("a,b,c\n")
    expect_error(tmp_path, p, match="header but no data rows")


def test_corrupted_parquet(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"a": list(range(100))}), good)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    good.unlink()
    expect_error(tmp_path, bad, match="not a valid Parquet file")


def test_corrupted_parquet_in_directory_names_the_file(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    pq.write_table(pa.table({"a": [1, 2]}), d / "a.parquet")
    (d / "b.parquet").write_bytes(b"PAR1 garbage")
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"b\.parquet.*not a valid Parquet file"):
        ingest(d, out)
    assert_nothing_written(tmp_path, out)


def test_duplicate_column_names(tmp_path):
    p = tmp_path / "dupes.csv"
    p.write_text("a,b,a\n1,2,3\n")
    expect_error(tmp_path, p, match=r"duplicate column names \['a'\]", column="a")


def test_non_utf8_bytes(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("city,n\nZürich,1\nSão Paulo,2\n".encode("latin-1"))
    expect_error(tmp_path, p, match="not valid UTF-8", column="city")
    res = ingest(p, tmp_path / "ok", encoding="latin-1")  # the documented fix
    assert read_dataset(res.out_dir).column("city").to_pylist() == ["Zürich", "São Paulo"]


def test_non_utf8_bytes_in_a_later_block(tmp_path):
    p = tmp_path / "late.csv"
    p.write_bytes(b"s\n" + b"plain\n" * 3000 + b"caf\xe9\n")
    expect_error(tmp_path, p, match="not valid UTF-8", column="s", csv_block_bytes=4096)


def test_infinite_float(tmp_path):
    p = tmp_path / "inf.parquet"
    pq.write_table(pa.table({"ok": [1.0, 2.0, 3.0], "x y": [1.0, float("inf"), 2.0]}), p)
    expect_error(tmp_path, p, match="infinite", column="x y")


def test_infinite_float_in_csv(tmp_path):
    p = tmp_path / "inf.csv"
    p.write_text("v\n1.5\ninf\n")
    expect_error(tmp_path, p, match="infinite", column="v")


def test_jsonl_mixed_types(tmp_path):
    p = tmp_path / "mixed.jsonl"
    p.write_text('{"a": 1, "b": "x"}\n' * 5 + '{"a": "oops", "b": "y"}\n')
    expect_error(tmp_path, p, match="mixed types", column="a")


def test_unsupported_nested_column(tmp_path):
    p = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"ok": [1, 2], "tags": [[1, 2], [3]]}), p)
    expect_error(tmp_path, p, match="unsupported type", column="tags")


def test_unknown_extension(tmp_path):
    p = tmp_path / "table.xlsx"
    p.write_bytes(b"PK")
    expect_error(tmp_path, p, match="unknown file type")


# ---- documented handling (no error) --------------------------------------------------------


def test_nan_becomes_null(tmp_path):
    p = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"x": [1.0, float("nan"), 3.0, None]}), p)
    res = ingest(p, tmp_path / "out")
    assert read_dataset(res.out_dir).column("x").to_pylist() == [1.0, None, 3.0, None]
    assert res.schema["x"].n_missing == 2


def test_all_null_column(tmp_path):
    p = tmp_path / "nulls.csv"
    p.write_text("a,empty,b\n" + "".join(f"{i},,{i % 3}\n" for i in range(30)))
    res = ingest(p, tmp_path / "out")
    col = res.schema["empty"]
    assert col.kind == "constant" and col.value is None and col.missing_rate == 1.0
    t = read_dataset(res.out_dir)
    tr = TableTransformer.fit(t, res.schema)
    d = tr.decode(tr.encode(t))
    assert d.column("empty").null_count == 30 and d.schema.equals(res.schema.arrow_schema())


def test_one_row(tmp_path):
    p = tmp_path / "one.csv"
    p.write_text("a,b,c\n1,x,2.5\n")
    res = ingest(p, tmp_path / "out")
    assert {c.kind for c in res.schema.columns} == {"constant"}
    t = read_dataset(res.out_dir)
    tr = TableTransformer.fit(t, res.schema)
    assert tr.n_features == 0
    assert tr.decode(np.zeros((1, 0), np.float32)).equals(t)


def test_csv_mixed_types_read_as_string(tmp_path):
    p = tmp_path / "mixed.csv"
    p.write_text("n,code\n" + "".join(f"{i},{i % 5}\n" for i in range(2000)) + "2000,A7\n")
    res = ingest(p, tmp_path / "out", csv_block_bytes=4096)
    assert res.manifest["string_fallback_columns"] == ["code"]
    t = read_dataset(res.out_dir)
    assert t.schema.field("code").type == pa.string() and t.schema.field("n").type == pa.int64()
    assert t.column("code").to_pylist()[-2:] == ["4", "A7"]
    assert res.schema["code"].kind == "categorical"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_names_with_spaces_and_unicode(tmp_path):
    p = tmp_path / "names.csv"
    names = ["first name", "prix (€)", "日付", " padded "]
    p.write_text(
        ",".join(f'"{n}"' for n in names)
        + "\n"
        + "".join(f"n{i % 4},{i * 1.5},2024-01-{1 + i % 28:02d},{i % 2}\n" for i in range(60))
    )
    res = ingest(p, tmp_path / "out")
    t = read_dataset(res.out_dir)
    assert t.column_names == names == res.schema.names
    tr = TableTransformer.fit(t, res.schema)
    assert tr.decode(tr.encode(t)).equals(t)
    assert {b.column for b in tr.blocks} >= set(names)


def test_hundred_thousand_categories(tmp_path):
    rng = np.random.default_rng(0)
    n = 150_000
    vals = np.char.add("c", rng.integers(0, 100_000, n).astype(str))
    vals[: n // 3] = "common"
    p = tmp_path / "wide.parquet"
    pq.write_table(pa.table({"cat": vals, "x": rng.normal(size=n).round(2)}), p)
    res = ingest(p, tmp_path / "out")
    col = res.schema["cat"]
    assert col.kind == "categorical" and col.n_distinct > 60_000
    t = read_dataset(res.out_dir)
    tr = TableTransformer.fit(t, res.schema)
    onehot = next(b for b in tr.blocks if b.column == "cat")
    assert onehot.width <= 101
    d = tr.decode(tr.encode(t), seed=1)
    assert d.column("cat").to_pylist()[: n // 3] == ["common"] * (n // 3)

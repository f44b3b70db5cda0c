"""Input dialects: CSV delimiters, quotes, encodings, null tokens over the whole file, ISO
timestamps with mixed offsets, decimals, and what ingest reports when it had to guess."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pfcore.errors import InputError
from pfcore.ingest import ingest, read_dataset
from pfcore.io import detect_delimiter

UTC = dt.timezone.utc


def _rows(sep: str, n: int = 60) -> str:
    return f"id{sep}price{sep}city\n" + "".join(
        f"{i}{sep}{i * 1.25:.2f}{sep}c{i % 3}\n" for i in range(n)
    )


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimiter_is_detected_and_reported(tmp_path: Path, sep: str) -> None:
    src = tmp_path / "t.csv"
    src.write_text(_rows(sep))
    res = ingest(src, tmp_path / "out")
    assert res.schema.names == ["id", "price", "city"]
    assert res.schema["price"].kind == "continuous"
    assert res.manifest["dialect"]["delimiter"] == sep
    assert res.manifest["dialect"]["delimiter_detected"] is True
    saved = json.loads((res.out_dir / "schema.json").read_text())
    assert any(repr(sep) in g for g in saved["source_dialect"]["guesses"])


def test_explicit_delimiter_and_quote_char(tmp_path: Path) -> None:
    src = tmp_path / "q.csv"
    src.write_text("a;b\n" + "".join(f"'x;{i}';{i % 4}\n" for i in range(30)))
    res = ingest(src, tmp_path / "out", delimiter=";", quote_char="'")
    t = read_dataset(res.out_dir)
    assert t.column("a").to_pylist()[:2] == ["x;0", "x;1"]
    assert res.manifest["guesses"] == []


def test_detection_ignores_delimiters_inside_quotes() -> None:
    text = 'name,note\n"Smith; John","a;b;c"\n"Doe; Jane","d;e;f"\n'
    assert detect_delimiter(text)[0] == ","


def test_utf8_bom_and_latin1(tmp_path: Path) -> None:
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffcity,n\nZürich,1\nBern,2\n".encode())
    t = read_dataset(ingest(bom, tmp_path / "o1").out_dir)
    assert t.column_names == ["city", "n"] and t.column("city").to_pylist()[0] == "Zürich"
    lat = tmp_path / "lat.csv"
    lat.write_bytes("city;n\nZürich;1\nSão Paulo;2\n".encode("latin-1"))
    t = read_dataset(ingest(lat, tmp_path / "o2", encoding="latin-1").out_dir)
    assert t.column("city").to_pylist() == ["Zürich", "São Paulo"]


def test_null_tokens_apply_to_every_block(tmp_path: Path) -> None:
    src = tmp_path / "late.csv"
    body = "".join(f"{i * 0.5},{i % 7}\n" for i in range(5000))
    src.write_text("x,k\n" + body + "-,1\n?,2\nN/A,3\nNA,4\nnull,5\n")
    res = ingest(src, tmp_path / "out", csv_block_bytes=4096)
    assert res.schema["x"].kind == "continuous" and res.schema["x"].arrow_type == "double"
    assert res.schema["x"].n_missing == 5
    assert res.manifest["string_fallback_columns"] == []
    # A configured set replaces the default: '-' is then a value, and the column is text.
    res2 = ingest(src, tmp_path / "out2", csv_block_bytes=4096, null_tokens=["", "NA"])
    assert res2.schema["x"].kind == "categorical"
    assert any("several types" in g for g in res2.manifest["guesses"])


def test_mixed_offsets_become_utc(tmp_path: Path) -> None:
    src = tmp_path / "tz.csv"
    head = "".join(f"2024-03-01T10:{i % 60:02d}:00+02:00,{i}\n" for i in range(3000))
    tail = "2024-03-01T10:00:00.25-03:00,1\n2024-03-01 10:00:00 Z,2\n2024-03-02T10:00:00,3\n,4\n"
    src.write_text("t,v\n" + head + tail)
    res = ingest(src, tmp_path / "out", csv_block_bytes=4096)
    col = res.schema["t"]
    assert col.kind == "datetime" and col.arrow_type == "timestamp[us, tz=UTC]"
    got = read_dataset(res.out_dir).column("t").to_pylist()
    assert got[0] == dt.datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    assert got[-4:] == [
        dt.datetime(2024, 3, 1, 13, 0, 0, 250000, tzinfo=UTC),
        dt.datetime(2024, 3, 1, 10, 0, tzinfo=UTC),
        dt.datetime(2024, 3, 2, 10, 0, tzinfo=UTC),  # no offset: read as UTC, and said so
        None,
    ]
    assert any("UTC" in g and "'t'" in g for g in res.manifest["guesses"])


@pytest.mark.parametrize(
    "row",
    [
        lambda i: f"2024-01-01T10:00:{i % 60:02d}+01:00",  # ISO with offsets
        lambda i: f"{1 + i % 12}/{1 + i % 28}/2020",  # a month-first layout
    ],
    ids=["iso", "layout"],
)
def test_text_that_is_not_a_timestamp_stays_text(tmp_path: Path, row) -> None:
    """Date-times in the first block, then a later value the first block's reading does not
    parse: the column is text again, every value kept."""
    src = tmp_path / "t.csv"
    src.write_text("t\n" + "".join(f"{row(i)}\n" for i in range(3000)) + "soon\n")
    res = ingest(src, tmp_path / "out", csv_block_bytes=4096)
    assert res.schema["t"].arrow_type == "string"
    assert read_dataset(res.out_dir).column("t").to_pylist()[-1] == "soon"


def test_decimal_column_round_trips_and_scores(tmp_path: Path) -> None:
    from pfcore.fidelity import evaluate
    from pfcore.transforms import TableTransformer

    rng = np.random.default_rng(0)
    vals = [decimal.Decimal(f"{v:.2f}") for v in rng.normal(100, 20, 400)]
    src = tmp_path / "dec.parquet"
    pq.write_table(
        pa.table({"d": pa.array(vals, pa.decimal128(10, 2)), "x": rng.normal(size=400)}), src
    )
    res = ingest(src, tmp_path / "out")
    col = res.schema["d"]
    assert col.kind == "continuous" and col.arrow_type == "decimal128(10, 2)" and col.decimals == 2
    t = read_dataset(res.out_dir)
    tr = TableTransformer.fit(t, res.schema)
    back = tr.decode(tr.encode(t))
    assert back.schema.field("d").type == pa.decimal128(10, 2) and back.equals(t)
    report = evaluate(t, back, res.schema)  # used to fail: decimals reached pandas as objects
    assert report.summary["quality"] > 0.9


def test_mlflow_metric_names_are_made_valid() -> None:
    from mlflow.utils.validation import _validate_metric_name

    from pfcore.registry.log import _metric_names

    names = _metric_names({"shape/prix (€)": 1.0, "shape/prix _€_": 2.0, "shape/..": 3.0, "q": 4})
    assert list(names.values()) == [1.0, 2.0, 3.0, 4]
    for name in names:
        _validate_metric_name(name)
    assert len(set(names)) == 4 and "q" in names


def test_cli_read_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from flows.cli import main

    src = tmp_path / "t.txt"
    src.write_text("a\tb\n" + "".join(f"{i}\t{'x' if i % 9 == 0 else i % 4}\n" for i in range(40)))
    argv = ["ingest", str(src), "--out", str(tmp_path / "o"), "--delimiter", "tab"]
    assert main([*argv, "--null-tokens", ",x"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["columns"] == {"a": "id", "b": "categorical"} and res["guesses"] == []
    assert read_dataset(tmp_path / "o").column("b").null_count == 5


def test_jsonl_iso_strings_with_mixed_offsets(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    src.write_text(
        '{"t": "2024-03-01T10:00:00+02:00", "v": 1}\n'
        '{"t": "2024-03-01T10:00:00.5Z", "v": 2}\n'
        '{"t": "2024-03-01 10:00:00-01:00", "v": 3}\n'
    )
    res = ingest(src, tmp_path / "out")
    assert res.schema["t"].arrow_type == "timestamp[us, tz=UTC]"
    assert read_dataset(res.out_dir).column("t").to_pylist() == [
        dt.datetime(2024, 3, 1, 8, 0, tzinfo=UTC),
        dt.datetime(2024, 3, 1, 10, 0, 0, 500000, tzinfo=UTC),
        dt.datetime(2024, 3, 1, 11, 0, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("values", "layout", "first"),
    [
        (["10/19/2013", "3/4/2014", None], "%m/%d/%Y", dt.datetime(2013, 10, 19)),
        (["24/11/2020 11:14:15", "03/01/2021 08:00:00"], "%d/%m/%Y %H:%M:%S", None),
        (["14-02-2020", "01-12-2019"], "%d-%m-%Y", dt.datetime(2020, 2, 14)),
        (["Dec-2018", "Jan-2019"], "%b-%Y", dt.datetime(2018, 12, 1)),
        (["1/2/2015 12:05:00 PM", "1/3/2015 1:00:00 AM"], "%m/%d/%Y %I:%M:%S %p", None),
    ],
)
def test_common_date_layouts_become_timestamps(
    tmp_path: Path, values: list, layout: str, first: dt.datetime | None
) -> None:
    src = tmp_path / "d.csv"
    src.write_text(
        "d,v\n" + "".join(f"{'' if v is None else v},{i}\n" for i, v in enumerate(values))
    )
    res = ingest(src, tmp_path / "out")
    assert res.schema["d"].kind == "datetime" and res.schema["d"].arrow_type == "timestamp[us]"
    got = read_dataset(res.out_dir).column("d").to_pylist()
    assert [g is None for g in got] == [v is None for v in values]
    if first is not None:
        assert got[0] == first
    assert any(f"'d': dates in the layout {layout!r}" in g for g in res.manifest["guesses"])


def test_date_layouts_that_mix_stay_text_and_ambiguous_ones_are_said(tmp_path: Path) -> None:
    # month-first and day-first rows in one column: no single layout reads both
    src = tmp_path / "mixed.csv"
    src.write_text("d\n10/19/2013\n19/10/2013\n")
    assert ingest(src, tmp_path / "o1").schema["d"].arrow_type == "string"
    # (a later block the first block's layout does not read: the "layout" case of
    # test_text_that_is_not_a_timestamp_stays_text)
    # both readings fit every value: month first, and said so
    src = tmp_path / "ambiguous.csv"
    src.write_text("d\n03/04/2021\n05/06/2021\n")
    res = ingest(src, tmp_path / "o3")
    assert read_dataset(res.out_dir).column("d").to_pylist()[0] == dt.datetime(2021, 3, 4)
    assert any("read month first" in g for g in res.manifest["guesses"])

    # declared categorical: kept as the source's text
    res = ingest(src, tmp_path / "o4", overrides={"columns": {"d": {"kind": "categorical"}}})
    assert res.schema["d"].arrow_type == "string"
    assert read_dataset(res.out_dir).column("d").to_pylist() == ["03/04/2021", "05/06/2021"]


def test_a_column_mixing_layouts_is_read_in_one_order_of_day_and_month(tmp_path: Path) -> None:
    """A startups table's funding dates: ``01-01-07`` beside ``2/14/2005``. Each layout reads
    its own values, all in one order of day and month; a layout whose values decide the order
    (a day above 12) sets it for the others; orders that disagree keep the column text."""
    src = tmp_path / "funding.csv"
    src.write_text("d,v\n01-01-07,1\n2/14/2005,2\n12/28/2009,3\n04-01-09,4\n,5\n")
    res = ingest(src, tmp_path / "o1")
    assert res.schema["d"].arrow_type == "timestamp[us]"
    assert read_dataset(res.out_dir).column("d").to_pylist() == [
        dt.datetime(2007, 1, 1), dt.datetime(2005, 2, 14), dt.datetime(2009, 12, 28),
        dt.datetime(2009, 4, 1), None,
    ]  # fmt: skip
    assert any(
        "dates in the layouts '%m/%d/%Y' and '%m-%d-%y'" in g for g in res.manifest["guesses"]
    )
    src.write_text("d\n13-01-07\n2/12/2005\n")  # the first decides: day first for both
    res = ingest(src, tmp_path / "o2")
    got = read_dataset(res.out_dir).column("d").to_pylist()
    assert got == [dt.datetime(2007, 1, 13), dt.datetime(2005, 12, 2)]
    src.write_text("d\n13-01-07\n2/14/2005\n")  # day first, then month first: text
    assert ingest(src, tmp_path / "o3").schema["d"].arrow_type == "string"


def test_text_that_is_almost_all_numbers_is_kept_and_the_culprits_named(tmp_path: Path) -> None:
    src = tmp_path / "sqft.csv"
    body = "".join(f"{1000 + 7 * i},{i}\n" for i in range(60))
    src.write_text("sqft,v\n" + body + "2100 - 2850,1\n\t43,2\n")
    res = ingest(src, tmp_path / "out")
    assert res.schema["sqft"].arrow_type == "string"  # nothing turned into a null silently
    (guess,) = [g for g in res.manifest["guesses"] if "'sqft'" in g]
    assert "98.4% of its values" in guess and "'2100 - 2850'" in guess
    assert "spaces or tabs" in guess
    # a column of plain words, or of numbers only, gets no such guess
    assert not [g for g in res.manifest["guesses"] if "'v'" in g]


def test_numbers_written_as_amounts_are_read_as_numbers(tmp_path: Path) -> None:
    """Spreadsheet exports: `$84,835.00 ` (a currency sign, thousands separators, a space) and
    `12%` become float64 numbers (12% is 12), each reading said in a guess; declared
    categorical, a column stays text; a later value that is not such a number sends the whole
    column back to text with nothing lost."""
    src = tmp_path / "income.csv"
    rows = [
        f'"${1000 + 37 * i:,}.00 ",{i % 90}%," {i}",{1 + i % 12}-{1 + i % 28}-07' for i in range(60)
    ]
    src.write_text("income,share,padded,d\n" + "\n".join(rows) + "\n")
    res = ingest(src, tmp_path / "out")
    guesses = res.manifest["guesses"]
    assert res.schema["padded"].arrow_type == "int64"  # Arrow reads a padded number itself
    for col in ("income", "share"):
        assert res.schema[col].arrow_type == "double", col
        assert res.schema[col].kind in ("continuous", "integer"), col
    got = read_dataset(res.out_dir)
    assert got.column("income").to_pylist()[:3] == [1000.0, 1037.0, 1074.0]
    assert got.column("income").to_pylist()[-1] == 1000.0 + 37 * 59
    assert got.column("share").to_pylist()[:2] == [0.0, 1.0]
    assert got.column("padded").to_pylist()[:2] == [0.0, 1.0]
    assert any("'income'" in g and "'$1,000.00 '" in g and "1000.0" in g for g in guesses)
    assert res.schema["d"].kind == "datetime"  # month-day-year with a two-digit year

    kept = ingest(
        src, tmp_path / "kept", overrides={"columns": {"income": {"kind": "categorical"}}}
    )
    assert kept.schema["income"].arrow_type == "string"
    assert read_dataset(kept.out_dir).column("income").to_pylist()[0] == "$1,000.00 "

    late = tmp_path / "late.csv"  # the first block reads as amounts, a later one does not
    body = "".join(f'"${i:,}.50"\n' for i in range(30_000)) + '"ask us"\n'
    late.write_text("price\n" + body)
    res = ingest(late, tmp_path / "late_out", csv_block_bytes=1 << 16)
    col = read_dataset(res.out_dir).column("price")
    assert res.schema["price"].arrow_type == "string"
    assert col.to_pylist()[:2] == ["$0.50", "$1.50"] and col.to_pylist()[-1] == "ask us"


def test_a_nameless_first_column_is_a_row_index_named_as_pandas_names_it(tmp_path: Path) -> None:
    src = tmp_path / "crime.csv"
    src.write_text(
        '"","Murder","when"\n'
        + "".join(f'"S{i}",{i * 0.5},{1 + i % 12}/{1 + i % 28}/1975\n' for i in range(50))
    )
    res = ingest(src, tmp_path / "out")
    assert res.schema.names == ["Unnamed: 0", "Murder", "when"]
    assert res.schema["when"].kind == "datetime"
    assert read_dataset(res.out_dir).column("Unnamed: 0").to_pylist()[:2] == ["S0", "S1"]
    assert any("column #1 has no name" in g for g in res.manifest["guesses"])
    # elsewhere an empty name is still refused
    bad = tmp_path / "bad.csv"
    bad.write_text("a,,b\n1,2,3\n")
    with pytest.raises(InputError, match="column #2"):
        ingest(bad, tmp_path / "out2")


def test_a_header_with_a_trailing_delimiter_is_read(tmp_path: Path) -> None:
    """The Wisconsin breast cancer CSV: its header ends with a comma, its rows do not. Read as
    the named columns, said in a guess; a trailing comma on every line is still a column with
    no name, refused by name."""
    src = tmp_path / "cancer.csv"
    src.write_text(
        '"id","diagnosis","radius",\n' + "".join(f"{i},M,{i / 3:.2f}\n" for i in range(60))
    )
    res = ingest(src, tmp_path / "out")
    assert res.schema.names == ["id", "diagnosis", "radius"]
    assert read_dataset(res.out_dir).column("radius").to_pylist()[:2] == [0.0, 0.33]
    assert any("trailing ','" in g for g in res.manifest["guesses"])
    both = tmp_path / "both.csv"
    both.write_text("a,b,\n" + "".join(f"{i},{i % 3},\n" for i in range(60)))
    with pytest.raises(InputError, match="column #3"):
        ingest(both, tmp_path / "out2")


def test_blank_cells_in_a_column_of_numbers_are_missing(tmp_path: Path) -> None:
    """Telco churn's `TotalCharges`: decimals, and `' '` on the rows of new customers. The
    spaces made the whole column text (a class per amount); they are now missing numbers."""
    src = tmp_path / "telco.csv"
    rows = [f"{i},{' ' if i % 20 == 0 else f'{18.8 + 3.1 * i:.2f}'}" for i in range(200)]
    src.write_text("tenure,TotalCharges\n" + "\n".join(rows) + "\n")
    res = ingest(src, tmp_path / "out")
    assert res.schema["TotalCharges"].arrow_type == "double"
    got = read_dataset(res.out_dir).column("TotalCharges").to_pylist()
    assert got[0] is None and got[20] is None and got[1] == 21.9
    assert res.schema["TotalCharges"].n_missing == 10
    (guess,) = [g for g in res.manifest["guesses"] if "'TotalCharges'" in g]
    assert "values of spaces only read as missing" in guess

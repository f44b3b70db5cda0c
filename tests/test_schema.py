"""Schema inference, JSON round trip, streaming and overrides."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pfcore import schema as schema_mod
from pfcore.errors import InputError, SchemaError
from pfcore.io import read_table
from pfcore.schema import TableSchema, apply_overrides, infer_schema, type_from_string
from tests.conftest import TEST_DATA, shared_dataset


def _kinds(s: TableSchema) -> dict[str, str]:
    return {c.name: c.kind for c in s.columns}


def mixed_table(n: int = 200) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table(
        {
            "row_id": pa.array(np.arange(1000, 1000 + n), pa.int64()),
            "user": pa.array([f"u{i:05d}" for i in range(n)]),
            "city": pa.array(rng.choice(["Oslo", "Lima", None], n).tolist(), pa.string()),
            "price": pa.array(np.round(rng.lognormal(3, 1, n), 2)),
            "count": pa.array(rng.integers(0, 500, n)),
            "code": pa.array(rng.integers(1, 5, n), pa.int32()),
            "flag": pa.array(rng.random(n) < 0.3),
            "when": pa.array(
                (
                    np.datetime64("2024-01-01T00:00")
                    + rng.integers(0, 10_000, n).astype("timedelta64[m]")
                ).astype("datetime64[us]"),
                pa.timestamp("us", tz="Europe/Oslo"),
            ),
            "site": pa.array(["A"] * n),
            "empty": pa.nulls(n, pa.float64()),
        }
    )


def test_kinds_and_statistics():
    t = mixed_table()
    s = infer_schema(t)
    assert _kinds(s) == {
        "row_id": "id",
        "user": "id",
        "city": "categorical",
        "price": "continuous",
        "count": "integer",
        "code": "categorical",
        "flag": "boolean",
        "when": "datetime",
        "site": "constant",
        "empty": "constant",
    }
    assert s.n_rows == 200
    city = s["city"]
    assert city.nullable and 0 < city.missing_rate < 1
    assert sum(c["count"] for c in city.categories) + city.n_missing == 200
    assert s["price"].decimals == 2 and s["count"].decimals == 0
    assert s["row_id"].id_start == 1000 and s["row_id"].id_step == 1
    assert s["user"].id_prefix == "u" and s["user"].id_width == 5
    assert s["when"].step is not None and s["when"].step % 60_000_000 == 0  # whole minutes, in us
    assert s["site"].value == "A" and s["empty"].value is None
    assert s["empty"].missing_rate == 1.0
    assert s["count"].min == float(pc_min(t["count"]))
    assert [c.name for c in s.modelled] == ["city", "price", "count", "code", "flag", "when"]


def pc_min(col: pa.ChunkedArray) -> int:
    import pyarrow.compute as pc

    return pc.min(col).as_py()


def test_arrow_schema_is_exact_and_json_round_trips(tmp_path):
    t = mixed_table()
    s = infer_schema(t)
    assert s.arrow_schema().equals(t.schema)
    again = TableSchema.from_json(s.to_json())
    assert again.to_json() == s.to_json()
    assert again.arrow_schema().equals(t.schema)
    s.save(tmp_path / "schema.json")
    assert TableSchema.load(tmp_path / "schema.json").to_dict() == s.to_dict()
    json.loads((tmp_path / "schema.json").read_text())  # plain JSON


def test_deterministic_and_batch_size_independent(tmp_path):
    t = mixed_table(500)
    a = infer_schema(t).to_json()
    assert infer_schema(t).to_json() == a
    pq.write_table(t, tmp_path / "t.parquet", row_group_size=37)
    streamed = infer_schema(ds.dataset(tmp_path / "t.parquet"))
    assert streamed.to_json() == a
    small = infer_schema(pa.Table.from_batches(t.to_batches(max_chunksize=7)))
    assert small.to_json() == a


def test_streaming_category_cap_bounds_memory(monkeypatch):
    monkeypatch.setattr(schema_mod, "MAX_TRACKED_DISTINCT", 50)
    n = 5000
    vals = [f"v{i % 400}" for i in range(n)]
    t = pa.Table.from_batches(pa.table({"c": vals}).to_batches(max_chunksize=100))
    s = infer_schema(t)
    c = s["c"]
    assert c.kind == "categorical" and c.distinct_truncated and c.n_distinct == 50


def test_type_strings_round_trip():
    for t in [
        pa.int8(),
        pa.uint32(),
        pa.float32(),
        pa.float64(),
        pa.string(),
        pa.bool_(),
        pa.date32(),
        pa.timestamp("ns", tz="UTC"),
        pa.timestamp("s"),
        pa.decimal128(10, 3),
        pa.null(),
    ]:
        assert type_from_string(str(t)) == t
    with pytest.raises(SchemaError):
        type_from_string("list<item: int64>")


def test_credit_sample_integer_codes_are_categorical():
    s = infer_schema(read_table(TEST_DATA / "credit_default_sample.csv"))
    k = _kinds(s)
    for col in ["SEX", "EDUCATION", "MARRIAGE", "PAY_0", "PAY_6", "default_payment_next_month"]:
        assert k[col] == "categorical", col
    assert k["LIMIT_BAL"] == "integer" and k["AGE"] == "integer" and k["BILL_AMT1"] == "integer"


@pytest.mark.shared
def test_shared_credit_default_kinds():
    s = infer_schema(pq.read_table(shared_dataset("credit_default")))
    k = _kinds(s)
    assert all(
        k[c] == "categorical" for c in ["SEX", "EDUCATION", "MARRIAGE", "PAY_0", "PAY_2", "PAY_6"]
    )
    assert k["AGE"] == "integer" and k["LIMIT_BAL"] == "integer"


@pytest.mark.shared
def test_shared_nyc_flights_kinds():
    t = pq.read_table(shared_dataset("nyc_flights"))
    s = infer_schema(t)
    k = _kinds(s)
    assert (
        k["year"] == "constant" and k["time_hour"] == "datetime" and k["tailnum"] == "categorical"
    )
    assert k["dep_delay"] == "continuous" and s["dep_delay"].nullable
    assert s["time_hour"].step == 3_600 * 10**9  # whole hours in ns
    assert s.arrow_schema().equals(t.schema.remove_metadata())


def test_non_finite_floats_rejected_with_column():
    t = pa.table({"x": [1.0, float("inf")]})
    with pytest.raises(InputError, match="'x'.*infinite"):
        infer_schema(t)


# ---- overrides ---------------------------------------------------------------------------


def test_overrides_force_drop_bounds(tmp_path):
    s = infer_schema(mixed_table())
    path = tmp_path / "ov.yaml"
    path.write_text(
        "drop: [site]\n"
        "columns:\n"
        "  count: {kind: categorical}\n"
        "  price: {min: 0, max: 100}\n"
        "  user: {drop: true}\n"
        "  when: {min: '2024-01-02T00:00:00+01:00'}\n"
    )
    o = apply_overrides(s, path)
    assert "site" not in o.names and "user" not in o.names
    assert o["count"].kind == "categorical"
    assert (o["price"].min, o["price"].max) == (0.0, 100.0)
    expect = dt.datetime(2024, 1, 1, 23, 0, tzinfo=dt.timezone.utc).timestamp() * 1e6
    assert o["when"].min == expect
    assert o.arrow_schema().names == o.names
    assert s["site"].kind == "constant"  # the input schema is not modified
    j = tmp_path / "ov.json"
    j.write_text(json.dumps({"columns": {"code": {"kind": "integer"}}}))
    assert apply_overrides(s, j)["code"].kind == "integer"


@pytest.mark.parametrize(
    "ov, match",
    [
        ({"columns": {"nope": {"kind": "integer"}}}, "nope"),
        ({"drop": ["nope"]}, "nope"),
        ({"columns": {"city": {"kind": "continuous"}}}, "'city'.*continuous"),
        ({"columns": {"price": {"kind": "weird"}}}, "'price'.*unknown kind"),
        ({"columns": {"price": {"colour": 1}}}, "'price'.*unknown override keys"),
        ({"columns": {"price": {"min": 5, "max": 1}}}, "'price'.*above max"),
        ({"rename": {}}, "unknown override keys"),
    ],
)
def test_bad_overrides(ov, match):
    with pytest.raises(SchemaError, match=match):
        apply_overrides(infer_schema(mixed_table()), ov)


def test_overrides_file_missing(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        apply_overrides(infer_schema(mixed_table()), tmp_path / "missing.yaml")


def test_the_python_api_takes_a_pandas_categorical_as_ingest_does() -> None:
    """A pandas categorical becomes an Arrow dictionary column; ingest decodes it, and so do
    ``infer_schema`` and ``Synthesizer.fit`` on an in-memory table (they refused the type)."""
    import pandas as pd

    from pfcore.synthesizer import Synthesizer

    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"c": pd.Categorical(rng.choice(["x", "y", "z"], 300)), "u": rng.normal(size=300)}
    )
    table = pa.Table.from_pandas(df, preserve_index=False)
    assert pa.types.is_dictionary(table.schema.field("c").type)
    sch = infer_schema(table)
    assert sch["c"].kind == "categorical" and sch.arrow_schema().field("c").type == pa.string()
    config = {"max_steps": 5, "min_steps": 1, "eval_every": 5, "n_eval": 32, "n_pairs": 128}
    config.update(distill_max_steps=5, ar_max_steps=5, conditional_max_steps=0)
    out = Synthesizer.fit(table, sch, preset="tiny", config=config).sample(50, 1)
    assert out.schema.field("c").type == pa.string()
    assert set(out.column("c").to_pylist()) <= {"x", "y", "z"}

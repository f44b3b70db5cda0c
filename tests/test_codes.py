"""Numeric columns drawn as codes at training time (``pfcore.codes``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pfcore import codes
from pfcore.rules.model import Rule
from pfcore.schema import infer_schema


def _days(n: int, seed: int) -> pa.Table:
    """Calls happen on six days of each month, three days apart (28 days in all, each on
    the call list of two months): the day is a spike train given the month that a smooth
    density of the day misses."""
    rng = np.random.default_rng(seed)
    month = rng.integers(1, 13, n)
    slot = rng.integers(0, 6, n)
    day = 1 + (month + slot * 3) % 28
    amount = np.round(rng.lognormal(3 + 0.1 * month, 0.4), 2)
    return pa.table({"month": month, "day": day, "amount": amount})


@pytest.mark.parametrize(
    ("levels", "rows", "kind"),
    [
        (31, 31 * 50, "categorical"),  # a day of the month, 50 rows per day
        (31, 31 * 50 - 1, "integer"),  # one row short of 50 per value
        (100, 100 * 60, "categorical"),
        (101, 101 * 60, "integer"),  # above 100 values: a quantity
    ],
)
def test_an_integer_column_is_a_code_when_every_value_is_common(levels, rows, kind) -> None:
    t = pa.table({"x": pa.array(np.arange(rows) % levels + 1, pa.int64())})
    schema = infer_schema(t)
    assert schema["x"].kind == "integer"  # the dataset's schema keeps it a quantity
    fit = codes.numeric_codes(schema, t, [])
    assert fit["x"].kind == kind and fit["x"].arrow_type == schema["x"].arrow_type
    assert schema["x"].kind == "integer"  # not changed in place


def _floats(levels: int, rows: int, spiky: bool) -> pa.Table:
    """``levels`` values in quarters, as common as their neighbours (a smooth hump) or with
    every whole value six times as common as the quarters beside it (bathrooms)."""
    values = 1.0 + np.arange(levels) / 4
    weight = np.exp(-(((np.arange(levels) - levels / 2) / (levels / 3)) ** 2))
    if spiky:
        weight = weight * np.where(np.arange(levels) % 4 == 0, 6.0, 1.0)
    rng = np.random.default_rng(0)
    x = np.concatenate([values, rng.choice(values, rows - levels, p=weight / weight.sum())])
    return pa.table({"x": pa.array(x, pa.float64())})


@pytest.mark.parametrize(
    ("levels", "rows", "spiky", "kind"),
    [
        (6, 6 * 50, False, "categorical"),  # floors: few values are a code whatever their law
        (6, 6 * 50 - 1, False, "continuous"),  # one row short of 50 per value
        (40, 40 * 60, True, "categorical"),  # bathrooms in quarters: spikes
        (40, 40 * 60, False, "continuous"),  # a smooth quantity on a grid stays a number
        (101, 101 * 60, True, "continuous"),  # above 100 values: a quantity
    ],
)
def test_a_float_column_is_a_code_when_few_valued_or_spiky(levels, rows, spiky, kind) -> None:
    t = _floats(levels, rows, spiky)
    schema = infer_schema(t)
    assert schema["x"].kind == "continuous"
    fit = codes.numeric_codes(schema, t, [])
    assert fit["x"].kind == kind and fit["x"].arrow_type == schema["x"].arrow_type


def test_a_spiky_float_column_of_mostly_rare_values_stays_a_number() -> None:
    """Whole percentages held by many rows plus a tail of 80 rare tenths (diamonds' table):
    spikes, enough rows per value on average, but half of the values are held by 2 rows."""
    rng = np.random.default_rng(1)
    common = rng.choice(np.arange(53.0, 63.0), 8000)
    rare = np.repeat(53.05 + np.arange(80) / 10, 2)
    t = pa.table({"x": pa.array(np.concatenate([common, rare]), pa.float64())})
    assert codes.spike_nats(t.column("x")) > codes.MIN_SPIKE_NATS
    schema = infer_schema(t)
    assert codes.numeric_codes(schema, t, [])["x"].kind == "continuous"


def test_spike_nats_tells_spikes_from_a_smooth_law() -> None:
    spikes = codes.spike_nats(_floats(40, 4000, True).column("x"))
    smooth = codes.spike_nats(_floats(40, 4000, False).column("x"))
    assert spikes > codes.MIN_SPIKE_NATS > smooth
    assert codes.spike_nats(pa.chunked_array([pa.array([1.0, None, float("nan")])])) == 0.0


def test_a_float_code_decodes_to_its_values_and_takes_conditions() -> None:
    """Drawn as a code, a fractional column comes back as the same floats, only values seen in
    training, and a range or an exact value on it is met on every row."""
    from pfcore.conditions import Conditions
    from pfcore.errors import InputError
    from pfcore.synthesizer import Synthesizer

    rng = np.random.default_rng(0)
    floors = rng.choice([1.0, 1.5, 2.0, 2.5, 3.0], 3000)
    area = np.round(floors * 800 + rng.normal(0, 150, 3000), 0)
    table = pa.table({"floors": floors, "area": area})
    config = {"max_steps": 200, "distill_max_steps": 200}
    synth = Synthesizer.fit(table, infer_schema(table), preset="tiny", config=config)
    assert synth.schema["floors"].kind == "categorical"
    out = synth.sample(2000, seed=1)
    assert out.schema.field("floors").type == pa.float64()
    assert set(out.column("floors").to_pylist()) <= {1.0, 1.5, 2.0, 2.5, 3.0}
    ranged = synth.sample(1000, seed=2, conditions=Conditions.make(where=["floors>=2"]))
    assert set(ranged.column("floors").to_pylist()) == {2.0, 2.5, 3.0}
    fixed = synth.sample(500, seed=3, conditions=Conditions.make(where=["floors=1.5"]))
    assert set(fixed.column("floors").to_pylist()) == {1.5}
    with pytest.raises(InputError, match="1.25 never occurs"):
        synth.sample(10, seed=3, conditions=Conditions.make(where=["floors=1.25"]))


def test_a_column_a_rule_reads_as_a_number_stays_a_quantity() -> None:
    n = 3000
    rooms = np.arange(n) % 30 + 2
    t = pa.table({"rooms": rooms, "beds": rooms - 1 - np.arange(n) % 2})
    schema = infer_schema(t)
    order = Rule("inequality", ["beds", "rooms"], {"strict": True})
    bound = Rule("sign", ["rooms"], {"min": 0.0, "min_strict": True, "max": None})
    assert codes.numeric_codes(schema, t, [order]) is schema
    both = codes.numeric_codes(schema, t, [bound])  # a bound holds for a code by construction
    assert both["rooms"].kind == "categorical" and both["beds"].kind == "categorical"


def _seen_pairs(real: pa.Table, syn: pa.Table) -> float:
    """Share of synthetic rows whose (month, day) occurs in the real rows."""
    seen = set(zip(real["month"].to_pylist(), real["day"].to_pylist(), strict=True))
    pairs = zip(syn["month"].to_pylist(), syn["day"].to_pylist(), strict=True)
    return float(np.mean([p in seen for p in pairs]))


def test_the_default_family_draws_a_day_code_on_its_months_days(monkeypatch) -> None:
    """As a code, 27 days over 2,800 rows come out on their month's six days (as they do in
    every real row) in 97% of rows; drawn as a number, the flow spreads the day between them
    and a third of the rows keep it (without the numbers' maps per class, which move the drawn
    days onto each month's law and so bring most of them back: 0.956)."""
    from pfcore.synthesizer import Synthesizer

    table = _days(2800, 0)
    config = {"max_steps": 600, "distill_max_steps": 600}
    synth = Synthesizer.fit(table, infer_schema(table), preset="tiny", config=config)
    assert synth.schema["day"].kind == "categorical" and synth.schema["month"].kind == "categorical"
    out = synth.sample(3000, seed=1)
    assert out.schema.field("day").type == pa.int64()
    as_code = _seen_pairs(table, out)
    assert as_code > 0.9  # 0.97 at seeds 0 and 1

    monkeypatch.setattr(codes, "MAX_CODE_LEVELS", 20)
    config = {**config, "class_numbers": False}
    numbers = Synthesizer.fit(table, infer_schema(table), preset="tiny", config=config)
    assert numbers.schema["day"].kind == "integer"
    assert _seen_pairs(table, numbers.sample(3000, seed=1)) < 0.6  # 0.32-0.33

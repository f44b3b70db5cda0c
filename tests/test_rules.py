"""Rules: detected on tables built with them, not on near misses, enforced in every sampled row,
declared rules refused when the data breaks them or when malformed, and rules.json round trips."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pfcore.errors import InputError, SchemaError
from pfcore.rules import (
    Rule,
    RuleSet,
    detect_rules,
    hold_rate,
    parse_declared,
    resolve_declared,
)
from pfcore.rules.expr import ExprError, parse
from pfcore.schema import infer_schema
from pfcore.synthesizer import split_train_holdout

N = 3000
TINY = {
    "max_steps": 3,
    "min_steps": 1,
    "eval_every": 2,
    "n_eval": 64,
    "n_pairs": 256,
    "distill_max_steps": 2,
}


def _base(n: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 100, n)
    return {
        "a": a,
        "b": a + rng.integers(0, 50, n),  # a <= b
        "x": rng.integers(-500, 500, n),
        "y": np.round(rng.normal(0, 10, n), 2),
        "cnt": rng.integers(0, 5, n),
        "grp": rng.choice(np.array(["g1", "g2", "g3", "g4", "g5"]), n),
    }


def _train_rows(n: int = N) -> np.ndarray:
    """Indices of the rows ``split_train_holdout(..., 0.2, 0)`` trains on."""
    train, _ = split_train_holdout(pa.table({"i": np.arange(n)}), 0.2, 0)
    return np.asarray(train.column("i"))


T = _train_rows()


def _table(**cols) -> pa.Table:
    return pa.table(cols)


def _rule_table(kind: str, near_miss: bool) -> tuple[pa.Table, str]:
    """A table built with one rule of ``kind`` (the name the detector gives it), optionally
    broken in exactly one training row."""
    d = _base()
    rng = np.random.default_rng(1)
    if kind == "inequality":
        if near_miss:
            d["b"][T[0]] = d["a"][T[0]] - 1
        return _table(**d), "a <= b"
    if kind == "identity":
        d["c"] = 2 * d["x"] + 0.5 * d["y"] - 3  # decimals: y has 2, c has 3
        d["c"] = np.round(d["c"], 3)
        if near_miss:
            d["c"][T[1]] += 1.0
        return _table(**d), "c == 2*x + 0.5*y - 3"
    if kind == "missing":
        s = np.round(rng.normal(size=N), 2)
        mask = d["cnt"] == 0
        if near_miss:
            mask[T[2]] = not mask[T[2]]
        d["s"] = pa.array(s, mask=mask)
        return _table(**d), "s null exactly when cnt == 0"
    if kind == "sentinel":
        v = rng.integers(10, 1000, N)
        v = np.where(d["cnt"] == 1, -1, v)
        if near_miss:
            i = int(T[np.flatnonzero(d["cnt"][T] != 1)[0]])
            v[i] = -1
        d["v"] = v
        return _table(**d), "v == -1 exactly when cnt == 1"
    if kind == "implication":
        v = rng.integers(1, 1000, N)
        v = np.where((d["grp"] == "g1") | (rng.random(N) < 0.2), 0, v)
        if near_miss:
            v[T[np.flatnonzero(d["grp"][T] == "g1")[0]]] = 5
        d["v"] = v
        return _table(**d), "v == 0 whenever grp == 'g1'"
    if kind == "fixed":
        region = {"g1": "north", "g2": "north", "g3": "south", "g4": "south", "g5": "east"}
        reg = np.array([region[g] for g in d["grp"]])
        if near_miss:
            reg[T[3]] = "west"
        d["region"] = reg
        return _table(**d), "grp determines region"
    if kind == "key":
        days = np.repeat(np.arange(N // 3), 3)
        ent = np.tile(np.array(["e1", "e2", "e3"]), N // 3)
        d = {k: v[: len(days)] for k, v in d.items()}
        d["entity"] = ent
        d["period"] = days * 1000 + rng.integers(0, 5, len(days))  # not arithmetic: not an id
        if near_miss:  # two training rows share a key
            i, j = T[T < len(days)][:2]
            d["period"][j], d["entity"][j] = d["period"][i], d["entity"][i]
        return _table(**d), "unique (entity, period)"
    if kind == "sign":
        d["p"] = rng.integers(0, 1000, N)
        if near_miss:
            d["p"][T[4]] = -1
        return _table(**d), "p >= 0"
    raise AssertionError(kind)


KINDS = ["inequality", "identity", "missing", "sentinel", "implication", "fixed", "key", "sign"]


def _detect(table: pa.Table) -> dict[str, Rule]:
    train, holdout = split_train_holdout(table, 0.2, 0)
    return {r.name: r for r in detect_rules(train, holdout, infer_schema(table))}


@pytest.mark.parametrize("kind", KINDS)
def test_rule_detected_and_not_on_near_miss(kind: str) -> None:
    table, name = _rule_table(kind, near_miss=False)
    found = _detect(table)
    assert name in found, sorted(found)
    assert found[name].train_hold_rate == 1.0 and found[name].holdout_hold_rate == 1.0
    miss_table, _ = _rule_table(kind, near_miss=True)
    # The violating row must be a training row for the test to mean anything.
    train, _ = split_train_holdout(miss_table, 0.2, 0)
    assert hold_rate(found[name], train) < 1.0
    assert name not in _detect(miss_table)


def test_identity_coefficients_are_exact() -> None:
    table, name = _rule_table("identity", near_miss=False)
    r = _detect(table)[name]
    assert r.columns == ["c", "x", "y"]
    assert r.params["coefficients"] == [2.0, 0.5] and r.params["intercept"] == -3.0


def test_a_duration_between_two_datetimes_is_an_identity() -> None:
    """A startups table's age at first funding: (funded - founded) in years of 365 days,
    rounded to 4 decimals. Its coefficient is snapped in days (1/365), and decode computes it
    from the decoded dates on every row; a number from a single datetime is no identity."""
    from pfcore.transforms import TableTransformer
    from pfcore.transforms.ruled import ComputedTransform

    rng = np.random.default_rng(4)
    n = 2000
    day = np.timedelta64(1, "D")
    founded = np.datetime64("1990-01-01", "us") + rng.integers(0, 9000, n) * day
    funded = founded + rng.integers(0, 3000, n) * day
    years = np.round((funded - founded) / np.timedelta64(1, "D") / 365, 4)
    table = pa.table({"founded": founded, "funded": funded, "age": years,
                      "v": rng.normal(size=n)})  # fmt: skip
    found = [r for r in _detect(table).values() if r.kind == "identity"]
    assert [r.columns for r in found] == [["age", "founded", "funded"]]
    per_day = [k * 86_400e6 for k in found[0].params["coefficients"]]
    assert per_day == pytest.approx([-1 / 365, 1 / 365], rel=1e-12)
    tr = TableTransformer.fit(table, infer_schema(table), rules=found)
    assert isinstance(tr.transforms[2], ComputedTransform)
    x = np.random.default_rng(1).standard_normal((3000, tr.n_features)).astype(np.float32)
    rows = tr.decode(x, seed=0)
    gap = (rows.column("funded").to_numpy() - rows.column("founded").to_numpy()) / day / 365
    np.testing.assert_allclose(rows.column("age").to_numpy(), np.round(gap, 4), atol=1e-9)


def _all_rules_table(n: int = 4000) -> pa.Table:
    d = _base(n)
    rng = np.random.default_rng(2)
    d["c"] = np.round(2 * d["x"] + 0.5 * d["y"] - 3, 3)
    d["s"] = pa.array(np.round(rng.normal(size=n), 2), mask=d["cnt"] == 0)
    d["v"] = np.where(d["cnt"] == 1, -1, rng.integers(10, 1000, n))
    region = {"g1": "north", "g2": "north", "g3": "south", "g4": "south", "g5": "east"}
    d["region"] = np.array([region[g] for g in d["grp"]])
    d["order_no"] = rng.permutation(10 * n)[:n]  # unique, not an arithmetic sequence
    d["rooms"] = rng.integers(5, 5000, n)
    d["beds"] = np.maximum(1, np.rint(d["rooms"] * rng.uniform(0.1, 0.3, n))).astype(np.int64)
    # a number (grp, cnt) pins: one value per pair, two for one pair
    km = np.round(np.random.default_rng(7).uniform(200, 400, (5, 5)), 1)
    g = np.searchsorted(np.array(["g1", "g2", "g3", "g4", "g5"]), d["grp"])
    d["route_km"] = km[g, d["cnt"]] + 0.5 * ((g == 0) & (d["cnt"] == 0) & (rng.random(n) < 0.5))
    return pa.table(d)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained for 3 steps: its rows are poor, the rules must hold anyway."""
    from pfcore.synthesizer import Synthesizer

    table = _all_rules_table()
    train, holdout = split_train_holdout(table, 0.2, 0)
    declared = RuleSet(rules=parse_declared([{"unique": "order_no"}, {"range": {
        "column": "y", "min": -100, "max": 100}}]))  # fmt: skip
    synth = Synthesizer.fit(
        train,
        infer_schema(table),
        family="onestep",
        preset="tiny",
        config=TINY,
        holdout=holdout,
        rules=declared,
    )
    path = synth.save(tmp_path_factory.mktemp("synth") / "s")
    return synth, path


def test_every_rule_kind_is_active(trained) -> None:
    synth, _ = trained
    active = {r.name: r.enforcement for r in synth.rules.rules if r.active}
    assert active["a <= b"] == "gap"
    assert active["c == 2*x + 0.5*y - 3"] == "computed"
    assert active["s null exactly when cnt == 0"] == "conditioned"
    assert active["v == -1 exactly when cnt == 1"] == "conditioned"
    assert active["grp determines region"] == "derived"
    assert active["unique (order_no)"] == "regenerated"
    assert active["y >= -100 and y <= 100"] == "support"
    assert active["beds < rooms"] == "gap"
    assert active["route_km takes only the values seen with its (cnt, grp)"] == "pinned"
    modes = {t.column.name: getattr(t, "mode", None) for t in synth.transformer.transforms}
    assert modes["b"] == "diff"  # b - a does not depend on a
    # beds are a share of rooms: the ratio, not the gap, is nearly independent of the parent
    assert "ratio" in (modes["beds"], modes["rooms"])


def test_enforced_on_100k_rows_any_seed_and_batch(trained) -> None:
    from pfcore.synthesizer import Synthesizer

    synth, path = trained
    loaded = Synthesizer.load(path)
    assert [r.name for r in loaded.rules.rules] == [r.name for r in synth.rules.rules]
    rows = loaded.sample(100_000, seed=5)
    # Another seed, decoded in uneven blocks with their row offsets (the generator's path).
    x = loaded.model.sample(30_000, 9)
    parts = [
        loaded.transformer.decode(x[i : i + 7_001], seed=9, row_offset=i)
        for i in range(0, 30_000, 7_001)
    ]
    blocks = pa.concat_tables(parts)
    for r in loaded.rules.active:
        assert hold_rate(r, rows) == 1.0, r.name
        assert hold_rate(r, blocks) == 1.0, r.name
    assert rows.column("order_no").unique().__len__() == rows.num_rows


def test_rules_json_round_trip(tmp_path, trained) -> None:
    synth, path = trained
    loaded = RuleSet.load(path / "rules.json")
    assert loaded.to_dict() == synth.rules.to_dict()
    # Users delete a rule through "ignore" and add one in the declared shorthand.
    doc = loaded.to_dict()
    doc["ignore"] = ["a <= b"]
    doc["rules"].append({"inequality": "x <= c"})
    import json

    (tmp_path / "rules.json").write_text(json.dumps(doc))
    edited = RuleSet.load(tmp_path / "rules.json")
    assert edited.ignore == ["a <= b"]
    assert edited.rules[-1].name == "x <= c" and edited.rules[-1].origin == "declared"


def test_declared_rule_broken_by_training_data_is_refused() -> None:
    from pfcore.synthesizer import Synthesizer

    table = _all_rules_table(500)
    rules = RuleSet(rules=parse_declared([{"inequality": "b <= a"}]))
    with pytest.raises(InputError, match=r"declared rule 'b <= a'.*first violating row \d+"):
        Synthesizer.fit(table, infer_schema(table), preset="tiny", config=TINY, rules=rules)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"inequality": "a <=> b"}, "unexpected"),
        ({"inequality": "a == b"}, "compares with"),
        ({"identity": "c == x * y"}, "linear form"),
        ({"expression": "__import__('os').system('true')"}, "cannot read"),
        ({"expression": "open('x') == 1"}, "unknown function 'open'"),
        ({"fixed": "grp"}, "list of two column names"),
        ({"values": ["distance"]}, "list of column names"),
        ({"range": {"column": "y"}}, "min"),
        ({"unknown": "a"}, "unknown rule form"),
        ({"missing": {"column": "v", "whenever": {"grp": "g1"}}}, "needs 'column' and 'sentinel'"),
        ({"missing": {"column": "v", "sentinel": 0, "whenever": "grp"}}, "map each trigger"),
        ({"missing": {"column": "v", "sentinel": None, "whenever": {"g": 1}}}, "cannot be null"),
        ({"missing": {"column": "v", "sentinel": 0, "whenever": {"v": 1}}}, "trigger itself"),
        ({"missing": {"column": "v", "sentinel": 0, "trigger": "g", "whenever": {"g": 1}}}, "keys"),
    ],
)
def test_malformed_declared_rule_is_refused(entry, message) -> None:
    with pytest.raises(SchemaError, match=message):
        parse_declared([entry])


def test_declared_rule_on_unknown_column_is_refused() -> None:
    schema = infer_schema(_all_rules_table(100))
    with pytest.raises(SchemaError, match="'nope' is not in the table"):
        resolve_declared(parse_declared([{"inequality": "a <= nope"}]), schema)


def test_malformed_rule_fails_ingest_before_writing(tmp_path) -> None:
    import pyarrow.csv as pcsv

    from pfcore.ingest import ingest

    src = tmp_path / "t.csv"
    pcsv.write_csv(_all_rules_table(50), src)
    out = tmp_path / "ds"
    with pytest.raises(SchemaError, match="rule #1"):
        ingest(src, out, overrides={"rules": [{"inequality": "a <"}]})
    assert not out.exists()
    res = ingest(src, out, overrides={"rules": [{"inequality": "a <= b"}]})
    assert RuleSet.load(res.out_dir / "rules.json").rules[0].name == "a <= b"


def test_expression_rule_is_parsed_not_executed() -> None:
    table = _all_rules_table(200)
    r = parse_declared([{"expression": "abs(y) <= 100 and (is_null(s) or cnt > 0)"}])[0]
    assert r.columns == ["y", "s", "cnt"]
    assert hold_rate(r, table) == 1.0
    with pytest.raises(ExprError):
        parse("a; b")


def test_gate_fails_a_model_that_breaks_an_active_rule() -> None:
    from pfcore.fidelity import evaluate, gate

    table = _all_rules_table(400)
    broken = table.set_column(1, "b", pa.array(np.zeros(400, dtype=np.int64)))
    rule = Rule("inequality", ["a", "b"], {"strict": False}, enforcement="gap")
    cfg = {"detection": False, "privacy": False}
    report = evaluate(table, broken, rules=[rule], config=cfg)
    entry = report.rules[0]
    assert entry["real_hold_rate"] == 1.0 and entry["synthetic_hold_rate"] < 1.0
    result = gate(report)
    assert not result.passed and any("a <= b" in reason for reason in result.reasons)
    ok = gate(evaluate(table, table, rules=[rule], config=cfg))
    assert not any("rules" in reason for reason in ok.reasons)


def _clock_table(n: int = 3000, near_miss: bool = False) -> pa.Table:
    """Scheduled HHMM times, delays in minutes, and the actual time on the 24-hour clock."""
    rng = np.random.default_rng(4)
    sched_min = rng.integers(300, 1440, n)
    delay = rng.integers(-20, 300, n)
    actual_min = np.mod(sched_min + delay, 1440)

    def hhmm(m):
        v = (m // 60) * 100 + m % 60
        return np.where(v == 0, 2400, v)

    actual = hhmm(actual_min).astype(np.float64)
    if near_miss:
        actual[T[0]] = hhmm(actual_min[T[0]] + 1)
    return pa.table({"sched": hhmm(sched_min), "delay": delay.astype(np.float64), "actual": actual})


def test_clock_arithmetic_detected_not_on_near_miss_and_enforced() -> None:
    from pfcore.synthesizer import Synthesizer

    name = "actual == sched + delay minutes (HHMM clock, modulo 24h)"
    table = _clock_table()
    found = _detect(table)
    assert name in found and "sched is an HHMM clock time" in found
    assert name not in _detect(_clock_table(near_miss=True))
    train, holdout = split_train_holdout(table, 0.2, 0)
    synth = Synthesizer.fit(train, infer_schema(table), preset="tiny", config=TINY, holdout=holdout)
    active = {r.name: r for r in synth.rules.active}
    assert active[name].enforcement == "computed"
    assert active["sched is an HHMM clock time"].enforcement == "clock"
    rows = synth.sample(100_000, seed=1)
    for r in synth.rules.active:
        assert hold_rate(r, rows) == 1.0, r.name


def _schedule_table(n: int = N) -> pa.Table:
    """A departure and an arrival on the 24-hour HHMM clock, the arrival a route's duration
    (+- 5 minutes) after the departure, some past midnight; and a clock unrelated to both."""
    rng = np.random.default_rng(6)

    def hhmm(m):
        m = np.mod(m, 1440)
        v = (m // 60) * 100 + m % 60
        return np.where(v == 0, 2400, v)

    route = rng.choice(np.array(["short", "mid", "long"]), n)
    duration = np.select([route == "short", route == "mid"], [90, 180], 300)
    dep = rng.integers(60, 288, n) * 5
    arr = dep + duration + rng.integers(-5, 6, n)
    return pa.table(
        {
            "route": route,
            "dep": hhmm(dep),
            "arr": hhmm(arr),
            "other": hhmm(rng.integers(0, 1440, n)),
        }
    )


def test_a_clock_is_modelled_after_the_clock_it_follows(monkeypatch) -> None:
    """The arrival is modelled as the minutes after the departure (modulo a day), so every
    decoded duration lies in the training durations' range, past midnight too; the unrelated
    clock stays a time of day. Drawn as a time of day, the same tiny model's arrivals fall
    outside that range (before their departure, or far after it)."""
    import pfcore.rules.plan as plan_module
    from pfcore.synthesizer import Synthesizer
    from pfcore.transforms.ruled import ClockTransform

    table = _schedule_table()
    train, holdout = split_train_holdout(table, 0.2, 0)

    def minutes(t: pa.Table, c: str) -> np.ndarray:
        v = np.asarray(t.column(c), dtype=np.int64)
        return (v // 100) * 60 + v % 100

    def durations(t: pa.Table) -> np.ndarray:
        return np.mod(minutes(t, "arr") - minutes(t, "dep"), 1440)

    lo, hi = durations(train).min(), durations(train).max()
    shares = {}
    for bases in (True, False):
        if not bases:
            monkeypatch.setattr(plan_module, "MIN_CLOCK_BASE_NATS", np.inf)
        synth = Synthesizer.fit(
            train, infer_schema(table), preset="tiny", config=TINY, holdout=holdout
        )
        clocks = {
            t.column.name: t.base
            for t in synth.transformer.transforms
            if isinstance(t, ClockTransform)
        }
        assert clocks == ({"arr": "dep", "dep": None, "other": None} if bases else dict.fromkeys(
            ("arr", "dep", "other")))  # fmt: skip
        if bases:
            notes = {r.name: r.note for r in synth.rules.active}
            assert "minutes after 'dep'" in notes["arr is an HHMM clock time"]
            x = synth.transformer.encode(train, seed=0)
            back = synth.transformer.decode(x, seed=0)
            assert back.column("arr").equals(train.column("arr"))  # exact, midnight included
        rows = synth.sample(20_000, seed=1)
        d = durations(rows)
        shares[bases] = float(np.mean((d >= lo) & (d <= hi)))
        for r in synth.rules.active:
            assert hold_rate(r, rows) == 1.0, r.name
    assert shares[True] == 1.0 and shares[False] < 0.9, shares


def _parts_table(n: int = N, near_miss: bool = False) -> pa.Table:
    """A floor area that is the sum of three parts, one of them zero on most rows (and on every
    one of the first rows, where the exact fit starts), beside unrelated numbers."""
    rng = np.random.default_rng(5)
    first = rng.integers(300, 2000, n)
    second = np.where(rng.random(n) < 0.4, rng.integers(200, 1500, n), 0)
    low = np.where(rng.random(n) < 0.03, rng.integers(50, 500, n), 0)
    low[:200] = 0
    total = first + second + low
    if near_miss:
        total[T[0]] += 1
    return pa.table(
        {
            "first": first,
            "second": second,
            "low": low,
            "age": rng.integers(0, 100, n),
            "total": total,
            "price": np.round(rng.lognormal(12, 0.4, n), 2),
        }
    )


def test_a_total_of_three_parts_is_detected_as_the_total_and_enforced() -> None:
    from pfcore.synthesizer import Synthesizer

    name = "total == first + second + low"
    found = _detect(_parts_table())
    assert name in found, sorted(found)
    assert found[name].params["coefficients"] == [1.0, 1.0, 1.0]
    # The same columns written as a part from the total are not kept beside it.
    assert not [r for r in found.values() if r.kind == "identity" and r.name != name]
    assert name not in _detect(_parts_table(near_miss=True))
    table = _parts_table()
    train, holdout = split_train_holdout(table, 0.2, 0)
    synth = Synthesizer.fit(train, infer_schema(table), preset="tiny", config=TINY, holdout=holdout)
    active = {r.name: r for r in synth.rules.active}
    assert active[name].enforcement == "computed"
    rows = synth.sample(20_000, seed=1)
    assert hold_rate(active[name], rows) == 1.0
    assert pc.min(rows.column("low")).as_py() >= 0  # a part keeps its own range


def test_declared_clock_rule_parses() -> None:
    r = parse_declared([{"clock": "actual == sched + delay"}])[0]
    assert r.kind == "clock" and r.columns == ["actual", "sched", "delay"]
    with pytest.raises(SchemaError, match="clock rule reads"):
        parse_declared([{"clock": "actual == sched - delay"}])


@pytest.mark.shared
def test_nyc_flights_time_arithmetic_is_detected_and_enforced() -> None:
    import pyarrow.parquet as pq

    from pfcore.synthesizer import Synthesizer
    from tests.conftest import shared_dataset

    table = pq.read_table(shared_dataset("nyc_flights"))
    train, holdout = split_train_holdout(table, 0.2, 0, max_train_rows=20_000)
    synth = Synthesizer.fit(train, infer_schema(table), preset="tiny", config=TINY, holdout=holdout)
    active = {r.name: r.enforcement for r in synth.rules.active}
    assert active["sched_dep_time == 100*hour + minute"] == "computed"
    assert active["dep_time == sched_dep_time + dep_delay minutes (HHMM clock, modulo 24h)"] == (
        "computed"
    )
    rows = synth.sample(100_000, seed=2)
    for r in synth.rules.active:
        assert hold_rate(r, rows) == 1.0, r.name


def test_synthesizer_saved_without_rules_still_loads(tmp_path, trained) -> None:
    """Synthesizers saved before rules existed have no rules.json: they load and sample."""
    import shutil

    from pfcore.synthesizer import Synthesizer

    _, path = trained
    old = tmp_path / "old"
    shutil.copytree(path, old)
    (old / "rules.json").unlink()
    synth = Synthesizer.load(old)
    assert synth.rules is None
    assert synth.sample(100, seed=0).num_rows == 100


def test_rules_hold_for_any_model_output() -> None:
    """Decode of pure noise (the worst model there is) still meets every active rule; a float
    column above an integer one is rebuilt as the integer plus a gap."""
    from pfcore.rules import collect_rules
    from pfcore.transforms import TableTransformer

    table = _all_rules_table()
    rng = np.random.default_rng(3)
    bf = table.column("a").to_numpy() + np.round(rng.uniform(0, 5, table.num_rows), 1)
    table = table.append_column("bf", pa.array(bf))
    train, holdout = split_train_holdout(table, 0.2, 0)
    schema = infer_schema(table)
    rules = collect_rules(train, holdout, schema, None)
    tr = TableTransformer.fit(train, schema, rules=rules)
    assert {r.name: r.enforcement for r in rules if r.active}["a <= bf"] == "gap"
    x = 3.0 * rng.standard_normal((100_000, tr.n_features)).astype(np.float32)
    rows = tr.decode(x, seed=1)
    for r in rules:
        if r.active:
            assert hold_rate(r, rows) == 1.0, r.name


def _calendar_table(n: int = 3000, near_miss: bool = False, zone: str | None = "Europe/Paris"):
    """Year/month/day/hour columns and the instant they name in ``zone`` (UTC-stored), or the
    naive local time when ``zone`` is None."""
    import pandas as pd

    rng = np.random.default_rng(5)
    local = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 2 * 365 * 24, n), "h")
    stamp = local.tz_localize(zone, ambiguous=True, nonexistent="shift_forward") if zone else local
    if zone:
        stamp = stamp.tz_convert("UTC")
    ns = stamp.as_unit("ns").asi8.copy()  # pandas 3 builds these in microseconds
    if near_miss:
        ns[T[0]] += 3_600 * 10**9
    return pa.table(
        {
            "year": np.asarray(local.year, dtype=np.int64),
            "month": np.asarray(local.month, dtype=np.int64),
            "day": np.asarray(local.day, dtype=np.int64),
            "hour": np.asarray(local.hour, dtype=np.int64),
            "load": np.round(rng.gamma(2.0, 3.0, n), 1),
            "at": pa.array(ns, type=pa.timestamp("ns", tz="UTC" if zone else None)),
        }
    )


@pytest.mark.parametrize("zone", ["Europe/Paris", None])
def test_calendar_timestamp_detected_in_its_zone_and_not_on_near_miss(zone) -> None:
    found = [r for r in _detect(_calendar_table(zone=zone)).values() if r.kind == "calendar"]
    assert len(found) == 1, found
    r = found[0]
    assert r.columns == ["at", "year", "month", "day", "hour"]
    assert r.params["timezone"] == zone
    assert r.params["constants"] == {"minute": 0, "second": 0}
    miss = _detect(_calendar_table(near_miss=True, zone=zone))
    assert not any(r.kind == "calendar" for r in miss.values())


def test_calendar_value_handles_daylight_saving_and_impossible_dates() -> None:
    from pfcore.rules.model import calendar_fields, calendar_value

    # 2021-03-28 02:30 does not exist in Paris (clocks jump 02:00 -> 03:00): moved forward;
    # 2021-10-31 02:30 happens twice: first (CEST, 00:30 UTC) or second (CET, 01:30 UTC);
    # 2021-04-31 names no date: clamped to April 30 and marked invalid.
    f = calendar_fields(
        ["year", "month", "day", "hour", "minute"],
        [np.array(v) for v in ([2021] * 3, [3, 10, 4], [28, 31, 31], [2, 2, 12], [30, 30, 0])],
        {},
        3,
    )
    first, valid = calendar_value(f, "Europe/Paris", "s")
    second, _ = calendar_value(f, "Europe/Paris", "s", first_of_repeated=False)
    utc = [str(np.datetime64(int(v), "s")) for v in first]
    assert utc == ["2021-03-28T01:00:00", "2021-10-31T00:30:00", "2021-04-30T10:00:00"]
    assert str(np.datetime64(int(second[1]), "s")) == "2021-10-31T01:30:00"
    assert valid.tolist() == [True, True, False]


def test_calendar_rule_enforced_with_real_dates_for_any_model_output() -> None:
    """The timestamp is computed from its parts and the day is built within its month, so even
    decoded noise names real dates and matches its parts on every row."""
    from pfcore.rules import collect_rules
    from pfcore.synthesizer import Synthesizer
    from pfcore.transforms import TableTransformer

    table = _calendar_table()
    train, holdout = split_train_holdout(table, 0.2, 0)
    schema = infer_schema(table)
    rules = collect_rules(train, holdout, schema, None)
    tr = TableTransformer.fit(train, schema, rules=rules)
    cal = next(r for r in rules if r.kind == "calendar")
    assert cal.active and cal.enforcement == "computed", cal.note
    assert {t.column.name: t.kind for t in tr.transforms}["day"] == "month_day"
    # real rows round-trip exactly through encode -> decode
    back = tr.decode(tr.encode(train, seed=0), seed=0)
    for c in ("day", "at"):
        assert back.column(c).equals(train.column(c)), c
    rng = np.random.default_rng(3)
    x = 3.0 * rng.standard_normal((50_000, tr.n_features)).astype(np.float32)
    rows = tr.decode(x, seed=1)
    for r in rules:
        if r.active:
            assert hold_rate(r, rows) == 1.0, r.name
    synth = Synthesizer.fit(train, schema, preset="tiny", config=TINY, holdout=holdout)
    sampled = synth.sample(20_000, seed=4)
    assert hold_rate(cal, sampled) == 1.0


def _dated_table(n: int = 3000, near_miss: bool = False, as_date: bool = False) -> pa.Table:
    """A date (a timestamp or a date32 column) beside its month, year offset, weekday (Sunday
    is 0) and a season that turns on the 21st of March, June, September and December; a load
    and a group that no part of the date determines."""
    import pandas as pd

    rng = np.random.default_rng(7)
    day = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 730, n), "D")
    md = np.asarray(day.month * 100 + day.day)
    season = np.select([md < 321, md < 621, md < 921, md < 1221], [1, 2, 3, 4], 1)
    month = np.asarray(day.month, dtype=np.int64)
    if near_miss:
        month[T[0]] = month[T[0]] % 12 + 1
    stamp = day.values.astype("datetime64[ns]")
    return pa.table(
        {
            "date": pa.array(stamp).cast(pa.date32()) if as_date else pa.array(stamp),
            "mnth": month,
            "yr": np.asarray(day.year - 2021, dtype=np.int64),
            "wd": np.asarray((day.dayofweek + 1) % 7, dtype=np.int64),
            "season": season.astype(np.int64),
            "load": np.round(rng.gamma(2.0, 3.0, n), 1),
            "grp": rng.choice(np.array(["a", "b", "c"]), n),
        }
    )


DATE_LINKS = {
    "month(date) determines mnth",
    "year(date) determines yr",
    "weekday(date) determines wd",
    "monthday(date) determines season",
}


@pytest.mark.parametrize("as_date", [False, True])
def test_a_column_a_calendar_part_of_a_date_determines_is_detected(as_date) -> None:
    """The coarsest part that determines a column is its source (the month, not the day of
    the year); a column broken in one training row is not linked; nothing links the load or
    the group."""
    found = _detect(_dated_table(as_date=as_date))
    fixed = {n for n, r in found.items() if r.kind == "fixed"}
    assert fixed == DATE_LINKS
    assert found["month(date) determines mnth"].params["part"] == "month"
    broken = _detect(_dated_table(near_miss=True, as_date=as_date))
    assert {n for n, r in broken.items() if r.kind == "fixed"} == DATE_LINKS - {
        "month(date) determines mnth"
    }


def _date_slice(tr, name: str = "date") -> slice:
    a, b = tr._slices[[t.column.name for t in tr.transforms].index(name)]
    return slice(a, b)


@pytest.mark.parametrize("as_date", [False, True])
def test_calendar_part_links_are_enforced_by_moving_the_date(as_date) -> None:
    """The part columns stay modelled and the date moves to a day whose parts give them: with
    every row's date encoding taken from another row, each link still holds on every row, the
    time of day is kept, no date leaves the fit rows' range, and real rows round-trip exactly.
    The rules round-trip through ``rules.json``'s form and their hold rate measures a broken
    link; an unknown part is refused."""
    import torch

    from pfcore.rules import collect_rules
    from pfcore.transforms import TableTransformer

    table = _dated_table(as_date=as_date)
    if not as_date:  # a time of day too, which moving by whole days keeps
        hours = pa.array(np.random.default_rng(3).integers(0, 24, table.num_rows) * 3_600 * 10**9)
        stamps = pc.add(table.column("date").cast(pa.int64()), hours).cast(pa.timestamp("ns"))
        table = table.set_column(0, "date", stamps)
    train, holdout = split_train_holdout(table, 0.2, 0)
    schema = infer_schema(table)
    rules = collect_rules(train, holdout, schema, None)
    tr = TableTransformer.fit(train, schema, rules=rules)
    by_name = {r.name: r for r in rules}
    for name in DATE_LINKS:
        rule = by_name[name]
        assert rule.active and rule.enforcement == "snapped", (name, rule.note)
        assert rule.train_hold_rate == 1.0 and rule.holdout_hold_rate == 1.0
        back = Rule.from_dict(rule.to_dict())
        assert back.name == name and back.params == rule.params
    kinds = {t.column.name: t.kind for t in tr.transforms}
    assert kinds["date"] == "date_snap" and kinds["mnth"] == kinds["wd"] == "onehot"
    x = tr.encode(train)
    decoded = tr.decode(x).column("date").combine_chunks()
    assert decoded.equals(train.column("date").combine_chunks())
    other = np.random.default_rng(0).permutation(train.num_rows)
    mixed_x = x.copy()
    mixed_x[:, _date_slice(tr)] = x[other, _date_slice(tr)]
    mixed = tr.decode(mixed_x)
    for name in DATE_LINKS:
        assert hold_rate(by_name[name], mixed) == 1.0, name
    assert tr.decode(torch.from_numpy(mixed_x)).equals(mixed)  # the torch decode path
    storage = pa.int32() if as_date else pa.int64()
    got = np.asarray(mixed.column("date").cast(storage), dtype=np.int64)
    real = np.asarray(train.column("date").cast(storage), dtype=np.int64)
    assert real.min() <= got.min() and got.max() <= real.max()
    if not as_date:
        day = 86_400 * 10**9
        np.testing.assert_array_equal(got % day, real[other] % day)
    month = by_name["month(date) determines mnth"]
    i = train.column_names.index("mnth")
    shifted = train.set_column(i, "mnth", pa.array(np.roll(train.column("mnth").to_numpy(), 1)))
    assert hold_rate(month, shifted) < 0.5
    with pytest.raises(SchemaError, match="part must be one of"):
        Rule("fixed", ["date", "mnth"], {"part": "fortnight"})


def test_sampled_rows_keep_their_dates_on_the_drawn_parts(tmp_path) -> None:
    """Every (year, month, weekday) the model draws has days, so those links hold on every
    sampled row; a season the model draws against its month moves the date to the drawn
    month and weekday instead (the coarser links first), so only the season link can break,
    on the rows where the model drew it so. A saved model samples the same rows."""
    from pfcore.synthesizer import Synthesizer

    table = _dated_table()
    train, holdout = split_train_holdout(table, 0.2, 0)
    synth = Synthesizer.fit(train, infer_schema(table), preset="tiny", config=TINY, holdout=holdout)
    rows = synth.sample(20_000, seed=4)
    by_name = {r.name: r for r in synth.rules.rules}
    for name in DATE_LINKS - {"monthday(date) determines season"}:
        assert hold_rate(by_name[name], rows) == 1.0, name
    assert hold_rate(by_name["monthday(date) determines season"], rows) >= 0.9
    synth.save(tmp_path / "s")
    again = Synthesizer.load(tmp_path / "s").sample(3_000, seed=4)
    assert again.equals(synth.sample(3_000, seed=4))


def test_conditions_on_a_snapped_date_and_on_its_parts() -> None:
    """A part given (``mnth=6``) puts every date in that month; a range on the date is kept on
    every row; seed rows may give the date without its parts and keep it exactly. In each,
    every link holds on every row: the date moves to the given parts, or the parts not given
    are rebuilt from a given date."""
    from pfcore.conditions import Conditions
    from pfcore.synthesizer import Synthesizer

    table = _dated_table()
    train, holdout = split_train_holdout(table, 0.2, 0)
    config = dict(TINY, conditional_max_steps=300)
    synth = Synthesizer.fit(train, infer_schema(table), preset="tiny", config=config)
    links = [r for r in synth.rules.rules if r.name in DATE_LINKS]
    assert len(links) == len(DATE_LINKS)

    def sample(**request) -> pa.Table:
        rows = synth.sample(request.pop("n", 2_000), seed=1, conditions=Conditions.make(**request))
        for rule in links:
            assert hold_rate(rule, rows) == 1.0, (request, rule.name)
        return rows

    june = sample(where=["mnth=6"])
    assert set(pc.month(june.column("date")).to_pylist()) == {6}
    assert set(june.column("mnth").to_pylist()) == {6}
    winter = sample(where=["season=1", "wd=3"])
    assert set(winter.column("season").to_pylist()) == {1}
    assert {(d + 1) % 7 for d in pc.day_of_week(winter.column("date")).to_pylist()} == {3}
    spring = sample(where={"date": ("2021-03-01", "2021-04-15")})
    lo = pa.scalar(np.datetime64("2021-03-01", "ns"), pa.timestamp("ns"))
    hi = pa.scalar(np.datetime64("2021-04-15", "ns"), pa.timestamp("ns"))
    d = spring.column("date")
    assert pc.min(d).as_py() >= lo.as_py() and pc.max(d).as_py() <= hi.as_py()
    seeds = holdout.select(["date", "load"]).slice(0, 300)
    given = sample(n=None, seed_rows=seeds)
    assert given.column("date").equals(seeds.column("date"))


def _stamped_table(n: int = 3000) -> pa.Table:
    """A timestamp with hours, minutes and seconds beside its hour and month, and the same
    instants as a zoned timestamp beside their local month and minute."""
    rng = np.random.default_rng(5)
    seconds = rng.integers(0, 730, n) * 86_400 + rng.integers(0, 86_400, n)
    stamp = pa.array((seconds + 1_609_459_200) * 10**9, type=pa.timestamp("ns"))
    zoned = stamp.cast(pa.timestamp("ns", tz="Europe/Paris"))
    return pa.table(
        {
            "at": stamp,
            "hr": np.asarray(pc.hour(stamp), dtype=np.int64),
            "mo": np.asarray(pc.month(stamp), dtype=np.int64),
            "zoned": zoned,
            "mnth_paris": np.asarray(pc.month(zoned), dtype=np.int64),
            "minute_paris": np.asarray(pc.minute(zoned), dtype=np.int64),
        }
    )


def test_an_hour_link_moves_a_timestamp_by_whole_hours_a_zoned_one_in_local_time() -> None:
    """With an hour linked the timestamp moves by whole hours (keeping minutes and seconds) to
    one whose hour and month give the drawn columns; a zoned timestamp moves by local days to
    one whose local month gives its column, keeping its local time of day (but where a clock
    change skips it); a minute stays modelled and reported, with why."""
    from pfcore.rules import collect_rules
    from pfcore.transforms import TableTransformer

    table = _stamped_table()
    schema = infer_schema(table)
    rules = collect_rules(table, None, schema, None)
    tr = TableTransformer.fit(table, schema, rules=rules)
    by_name = {r.name: r for r in rules if r.kind == "fixed"}
    links = (
        "hour(at) determines hr",
        "month(at) determines mo",
        "month(zoned) determines mnth_paris",
    )
    for name in links:
        assert by_name[name].active and by_name[name].enforcement == "snapped", by_name[name].note
    minute = by_name["minute(zoned) determines minute_paris"]
    assert not minute.active and "whole hours" in minute.note
    x = tr.encode(table)
    assert tr.decode(x).equals(table)
    other = np.random.default_rng(1).permutation(table.num_rows)
    mixed_x = x.copy()
    for col in ("at", "zoned"):
        mixed_x[:, _date_slice(tr, col)] = x[other, _date_slice(tr, col)]
    mixed = tr.decode(mixed_x)
    for name in links:
        assert hold_rate(by_name[name], mixed) == 1.0, name
    hour, day = 3_600 * 10**9, 86_400 * 10**9
    got = np.asarray(mixed.column("at").cast(pa.int64()))
    real = np.asarray(table.column("at").cast(pa.int64()))
    np.testing.assert_array_equal(got % hour, real[other] % hour)
    local = [
        np.asarray(pc.local_timestamp(t.column("zoned")).cast(pa.int64())) for t in (mixed, table)
    ]
    kept = local[0] % day == local[1][other] % day
    assert kept.mean() > 0.99  # all but local times a clock change skips on the new day


def test_an_implication_holds_on_every_decoded_row_and_leaves_the_value_elsewhere() -> None:
    """ "v == 0 whenever grp == 'g1'" (v is also 0 on a fifth of the other rows): enforced by
    the transform, it holds on every row decoded from noise, the other rows still take 0 and
    other values, and the training rows round-trip exactly; without the rules the same noise
    breaks it. A rare class whose few rows share a common value by chance is no rule."""
    from pfcore.rules.collect import collect_rules
    from pfcore.transforms.table import TableTransformer

    table, name = _rule_table("implication", near_miss=False)
    train, holdout = split_train_holdout(table, 0.2, 0)
    schema = infer_schema(table)
    rules = collect_rules(train, holdout, schema, None)
    t = TableTransformer.fit(train, schema, rules=rules)
    rule = {r.name: r for r in rules}[name]
    assert rule.active and rule.enforcement == "conditioned"
    assert t.decode(t.encode(train), seed=0, row_offset=0).column("v").equals(train.column("v"))
    noise = np.random.default_rng(0).normal(size=(4000, t.n_features)).astype(np.float32)
    out = t.decode(noise, seed=0, row_offset=0).to_pandas()
    g1 = out.grp == "g1"
    assert g1.sum() > 100 and (out.v[g1] == 0).all()
    assert 0 < (out.v[~g1] == 0).mean() < 1
    free = TableTransformer.fit(train, schema, rules=[])
    noise = np.random.default_rng(0).normal(size=(4000, free.n_features)).astype(np.float32)
    out = free.decode(noise, seed=0, row_offset=0).to_pandas()
    assert (out.v[out.grp == "g1"] != 0).mean() > 0.3
    d = _base()
    rare = np.where(np.arange(N) < 8, "rare", "common")  # 8 rows, 0 on half of all rows
    d["w"] = np.where(rare == "rare", 0, np.where(np.arange(N) % 2 == 0, 0, 7 + np.arange(N) % 90))
    d["tag"] = rare
    assert not [n for n in _detect(_table(**d)) if n.startswith("w == 0 whenever")]


def test_a_declared_implication_is_enforced_where_detection_would_not_find_it() -> None:
    """``missing: {column, sentinel, whenever: {...}}`` declares "a sentinel whenever" with its
    triggers "or"-ed, null triggers included. Detection only looks for triggers left of the
    column, so ``a == 0 whenever grp == 'g1' or s null`` (grp and s to the right of a) is not
    found: noise decodes to rows breaking it; declared, it holds on every decoded row, beside
    the detected ``a <= b`` still enforced."""
    from pfcore.rules.collect import collect_rules
    from pfcore.rules.ruleset import RuleSet
    from pfcore.transforms.table import TableTransformer

    d = _base()
    no_s = np.random.default_rng(5).random(N) < 0.1
    d["a"] = np.where((d["grp"] == "g1") | no_s, 0, d["a"])
    d["s"] = pa.array(np.where(no_s, "", np.where(d["x"] > 0, "p", "q")), mask=no_s)
    table = _table(**d)
    train, holdout = split_train_holdout(table, 0.2, 0)
    schema = infer_schema(table)
    entry = {"missing": {"column": "a", "sentinel": 0, "whenever": {"grp": "g1", "s": None}}}
    declared = RuleSet(rules=parse_declared([entry]))
    assert declared.rules[0].name == "a == 0 whenever grp == 'g1' or s null"
    for ruleset, holds in ((None, False), (declared, True)):
        rules = collect_rules(train, holdout, schema, ruleset)
        t = TableTransformer.fit(train, schema, rules=rules)
        noise = np.random.default_rng(0).normal(size=(4000, t.n_features)).astype(np.float32)
        out = t.decode(noise, seed=0, row_offset=0).to_pandas()
        triggered = (out.grp == "g1") | out.s.isna()
        assert triggered.sum() > 500
        assert bool((out.a[triggered] == 0).all()) is holds
        by_name = {r.name: r for r in rules}
        assert by_name["a <= b"].active and (out.a <= out.b).all()
    rule = by_name["a == 0 whenever grp == 'g1' or s null"]
    assert rule.active and rule.enforcement == "conditioned" and rule.train_hold_rate == 1.0


def _gap_implication_table(n: int = N) -> pa.Table:
    """A discount: at most the price (an inequality the transform builds as a gap) and 0
    whenever there is no promotion code (null), and on a tenth of the other rows."""
    rng = np.random.default_rng(7)
    none = rng.random(n) < 0.15
    price = rng.integers(1, 2000, n)
    discount = np.round(price * rng.random(n), 2)  # a float: never a gap over the integer
    discount = np.where(none | (rng.random(n) < 0.1), 0.0, discount)
    promo = pa.array(np.where(none, "", rng.choice(np.array(["P1", "P2"]), n)), mask=none)
    return _table(promo=promo, price=price, discount=discount, x=rng.integers(-500, 500, n))


def test_an_implication_is_written_over_a_gap_on_the_far_side_of_its_parent(tmp_path) -> None:
    """``discount == 0.0 whenever promo null`` on a column the transform builds from ``discount <
    price``: 0 is the discount's minimum, the far side of its upper bound, so writing it keeps
    the inequality.
    Both hold on every row decoded from noise, the training rows round-trip exactly, and the
    rule survives a save and load of the transform. A sentinel on the near side (the maximum
    under an upper bound) is refused with why."""
    from pfcore.rules.collect import collect_rules
    from pfcore.rules.plan import plan_rules
    from pfcore.transforms.table import TableTransformer

    table = _gap_implication_table()
    train, holdout = split_train_holdout(table, 0.2, 0)
    schema = infer_schema(table)
    rules = collect_rules(train, holdout, schema, None)
    by_name = {r.name: r for r in rules}
    rule = by_name["discount == 0.0 whenever promo null"]
    t = TableTransformer.fit(train, schema, rules=rules)
    assert by_name["discount < price"].enforcement == "gap"
    assert rule.active and rule.enforcement == "conditioned" and "gap" in rule.note
    assert t.decode(t.encode(train), seed=0, row_offset=0).equals(train)
    noise = np.random.default_rng(0).normal(size=(4000, t.n_features)).astype(np.float32)
    for tr in (t, TableTransformer.load(t.save(tmp_path / "t"))):
        out = tr.decode(noise, seed=0, row_offset=0).to_pandas()
        assert out.promo.isna().sum() > 300
        assert (out.discount[out.promo.isna()] == 0).all() and (out.discount <= out.price).all()
    free = TableTransformer.fit(train, schema, rules=[r for r in rules if r is not rule])
    out = free.decode(noise, seed=0, row_offset=0).to_pandas()
    assert (out.discount[out.promo.isna()] != 0).mean() > 0.05
    near = copy.deepcopy(rule)
    near.params["special"]["sentinel"] = float(np.asarray(train.column("discount")).max())
    plan_rules([by_name["discount < price"], near], schema, train)
    assert not near.active and "minimum" in near.note


def _gap_mass_table(n: int = N) -> pa.Table:
    """A screen porch: at most the basement area (the sum of its finished and unfinished parts,
    computed by that identity, and 0 on a tenth of the houses, so no ratio to it) and 0 on four
    fifths of the houses, at least 60 square feet elsewhere."""
    rng = np.random.default_rng(11)
    none = rng.random(n) < 0.1
    finished = np.where(none | (rng.random(n) < 0.3), 0, rng.integers(1, 1000, n))
    unfinished = np.where(none, 0, rng.integers(0, 1000, n))
    basement = finished + unfinished
    porch = np.where(rng.random(n) < 0.8, 0, rng.integers(60, 300, n))
    porch = np.minimum(porch, basement)
    return _table(
        finished=finished, unfinished=unfinished, basement=basement, porch=porch,
        x=rng.integers(-500, 500, n),
    )  # fmt: skip


def test_a_gap_keeps_the_point_mass_of_its_columns_far_extreme(tmp_path, monkeypatch) -> None:
    """``porch <= basement`` is built as the gap ``basement - porch``; the porch's 0 (its
    minimum, on 80% of rows) is then the basement area itself, which a model reproduces only
    approximately. Kept as a point mass (the inner model's missing indicator), training rows
    encoded, blurred and decoded keep the real share of zeros and almost no sliver between 0
    and the smallest real area; without it half the zeros turn into slivers. The rule holds on
    every row either way, the training rows round-trip and the transform saves and loads."""
    import pfcore.transforms.ruled as ruled
    from pfcore.rules.collect import collect_rules
    from pfcore.transforms.ruled import GapTransform
    from pfcore.transforms.table import TableTransformer

    table = _gap_mass_table()
    train, holdout = split_train_holdout(table, 0.2, 0)
    schema = infer_schema(table)
    rules = collect_rules(train, holdout, schema, None)
    real_zero = float(np.mean(np.asarray(train.column("porch")) == 0))

    def blurred(tr: TableTransformer) -> Any:
        x = tr.encode(train)
        x = x + 0.1 * np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
        out = tr.decode(x, seed=0, row_offset=0).to_pandas()
        assert (out.porch <= out.basement).all()
        return out

    t = TableTransformer.fit(train, schema, rules=rules)
    (gap,) = [x for x in t.transforms if isinstance(x, GapTransform) and x.column.name == "porch"]
    assert (gap.parents, gap.mode, gap.mass) == (["basement"], "diff", 0)
    assert t.decode(t.encode(train), seed=0, row_offset=0).equals(train)
    for tr in (t, TableTransformer.load(t.save(tmp_path / "t"))):
        out = blurred(tr)
        assert abs((out.porch == 0).mean() - real_zero) < 0.03
        assert ((out.porch > 0) & (out.porch < 60)).mean() < 0.03
    monkeypatch.setattr(ruled, "GAP_MASS_SHARE", 1.1)
    out = blurred(TableTransformer.fit(train, schema, rules=rules))
    assert (out.porch == 0).mean() < real_zero - 0.2
    assert ((out.porch > 0) & (out.porch < 60)).mean() > 0.1


def _listings_table(n: int = N) -> pa.Table:
    """A longitude near 4.9 below a price of at least 5 on every row (their ranges set the
    order) and bedrooms at most the rooms (a rule)."""
    rng = np.random.default_rng(5)
    price = np.maximum(5, np.round(rng.lognormal(4.5, 0.6, n))).astype(np.int64)
    price[:3] = 5
    lon = np.round(4.9 + 0.03 * rng.standard_normal(n), 5)
    rooms = rng.integers(1, 60, n)
    beds = np.minimum(rooms, rng.integers(1, 30, n))
    return _table(lon=lon, price=price, rooms=rooms, beds=beds)


def test_an_order_the_ranges_all_but_set_is_clamped_not_modelled_as_a_gap(tmp_path) -> None:
    """Listings: a longitude near 4.9 is below the price (at least 5) on every row, and the
    bedrooms are at most the rooms. Independent columns with these values would break the
    first order on under 1% of rows and the second on far more: the first is kept by clamping
    (the column modelled as itself), the second is still a gap. Rows decoded from noise keep
    both rules and both columns their own distributions (not one's plus a gap); the training
    rows round-trip and the transform saves and loads."""
    from pfcore.rules.collect import collect_rules
    from pfcore.transforms.ruled import GapTransform
    from pfcore.transforms.table import TableTransformer

    table = _listings_table()
    train, holdout = split_train_holdout(table, 0.2, 0)
    schema = infer_schema(table)
    rules = collect_rules(train, holdout, schema, None)
    by_name = {r.name: r for r in rules}
    t = TableTransformer.fit(train, schema, rules=rules)
    assert by_name["lon < price"].enforcement == "gap"
    modes = {x.column.name: x.mode for x in t.transforms if isinstance(x, GapTransform)}
    assert modes.get("lon", modes.get("price")) == "clamp"
    assert modes.get("beds", modes.get("rooms")) in ("diff", "ratio")
    assert t.decode(t.encode(train), seed=0, row_offset=0).equals(train)
    noise = np.random.default_rng(1).normal(size=(5000, t.n_features)).astype(np.float32)
    for tr in (t, TableTransformer.load(t.save(tmp_path / "t"))):
        out = tr.decode(noise, seed=0, row_offset=0).to_pandas()
        assert (out.lon < out.price).all() and (out.beds <= out.rooms).all()
        for name, tol in (("price", 0.1), ("lon", 0.003)):
            real = np.asarray(train.column(name))
            assert abs(np.median(out[name]) - np.median(real)) < tol * np.median(real)


def test_a_column_that_would_drown_in_its_gap_is_clamped() -> None:
    """Absolute humidity (0.2-2.2) at most the relative humidity (10-90), both -200 where the
    sensor failed: the shared sentinel makes independent columns break the order on about 4%
    of rows, so the chance alone keeps it a rule, but the gap RH - AH is 20+ times as spread as
    AH itself. Clamped, AH keeps its own distribution; as a gap its middle half moved."""
    import pfcore.transforms.ruled as ruled
    from pfcore.rules.collect import collect_rules
    from pfcore.transforms.ruled import GapTransform
    from pfcore.transforms.table import TableTransformer

    rng = np.random.default_rng(8)
    n = N
    rh = np.round(rng.uniform(10, 90, n), 1)
    ah = np.round(np.exp(rng.normal(0, 0.4, n)), 4)
    failed = rng.random(n) < 0.04
    rh[failed], ah[failed] = -200.0, -200.0
    lost = rng.random(n) < 0.02  # a few unreadable AH values: AH cannot be RH's parent
    table = _table(ah=pa.array(ah, mask=lost), rh=rh)
    train, holdout = split_train_holdout(table, 0.2, 0)
    schema = infer_schema(table)
    rules = collect_rules(train, holdout, schema, None)
    real = train.column("ah").to_numpy(zero_copy_only=False)
    noise = np.random.default_rng(2).normal(size=(5000, 8)).astype(np.float32)

    def decoded(spread: float) -> tuple[str, np.ndarray]:
        old = ruled.CLAMP_SPREAD
        ruled.CLAMP_SPREAD = spread
        try:
            t = TableTransformer.fit(train, schema, rules=rules)
        finally:
            ruled.CLAMP_SPREAD = old
        (gap,) = [x for x in t.transforms if isinstance(x, GapTransform)]
        out = t.decode(noise[:, : t.n_features], seed=0, row_offset=0).to_pandas()
        assert (out.ah.dropna() <= out.rh[out.ah.notna()]).all()
        return gap.mode, out.ah.to_numpy(dtype=float, na_value=np.nan)

    def middle(x: np.ndarray) -> np.ndarray:
        return np.percentile(x[x > -200], [25, 50, 75])  # NaN (missing) compares False

    mode, ah_out = decoded(ruled.CLAMP_SPREAD)
    assert mode == "clamp"
    assert np.abs(middle(ah_out) - middle(real)).max() < 0.1
    mode, ah_out = decoded(1e18)
    assert mode == "diff" and np.abs(middle(ah_out) - middle(real)).max() > 0.1


def test_an_order_an_identity_keeps_is_reported_as_computed_and_holds(tmp_path) -> None:
    """King County: the living area is the area above ground plus the basement (0 in most
    houses), so the area above ground is at most the living area on every row. The identity
    computes the living area, which leaves no gap to build; the order holds because the
    basement is never negative, and says so (before, it was listed as not enforced). A later
    rule that rebuilds the basement from another column takes that back."""
    from pfcore.rules.collect import collect_rules
    from pfcore.transforms.table import TableTransformer

    rng = np.random.default_rng(3)
    above = rng.integers(500, 4000, N)
    basement = np.where(rng.random(N) < 0.6, 0, rng.integers(100, 1500, N))
    table = _table(above=above, basement=basement, living=above + basement)
    train, holdout = split_train_holdout(table, 0.2, 0)
    rules = collect_rules(train, holdout, infer_schema(table), None)
    by_name = {r.name: r for r in rules}
    t = TableTransformer.fit(train, infer_schema(table), rules=rules)
    order = by_name["above <= living"]
    assert by_name["living == above + basement"].enforcement == "computed"
    assert order.active and order.enforcement == "computed" and "'living'" in order.note
    noise = np.random.default_rng(1).normal(size=(5000, t.n_features)).astype(np.float32)
    out = t.decode(noise, seed=0, row_offset=0).to_pandas()
    assert (out.above <= out.living).all()

    # once another rule builds the basement (a gap), its decoded range is not its training
    # range any more, and the identity no longer proves the order
    from pfcore.rules.plan import Plan, _implied_order

    plan = Plan()
    plan.computed["living"] = (
        {"type": "linear", "operands": ["above", "basement"], "coefficients": [1.0, 1.0],
         "intercept": 0.0},
        False,
    )  # fmt: skip
    assert _implied_order(plan, order, train) == "living"
    plan.gaps["basement"] = (-1, ["above"], False)
    assert _implied_order(plan, order, train) == ""


def test_a_gap_over_a_parent_without_fixed_decimals_keeps_the_columns_own(tmp_path) -> None:
    """Whole-number days above a part of them with no fixed decimals (hippocorpus:
    ``timeSinceEvent`` above ``logTimeSinceEvent``): the gap has no grid of its own, so decoded
    days had fractions on 45% of rows; they are whole numbers again, still above their
    parent, on both decodes."""
    import torch

    from pfcore.rules.collect import collect_rules
    from pfcore.transforms.ruled import GapTransform
    from pfcore.transforms.table import TableTransformer

    rng = np.random.default_rng(3)
    days = rng.integers(1, 100, 3000).astype(np.float64)
    table = pa.table({"part": days * rng.uniform(0.3, 0.95, 3000), "days": days})
    train, holdout = split_train_holdout(table, 0.2, 0)
    schema = infer_schema(table)
    assert schema["days"].decimals == 0 and schema["part"].decimals is None
    rules = collect_rules(train, holdout, schema, None)
    t = TableTransformer.fit(train, schema, rules=rules)
    (gap,) = [x for x in t.transforms if isinstance(x, GapTransform)]
    assert gap.column.name == "days" and gap.decimals is None
    noise = np.random.default_rng(1).normal(size=(4000, t.n_features)).astype(np.float32)
    for tr in (t, TableTransformer.load(t.save(tmp_path / "t"))):
        out = tr.decode(noise, seed=0).to_pandas()
        assert (out.days == np.round(out.days)).all() and (out.days > out.part).all()
        dev = tr.decode(torch.from_numpy(noise), seed=0).to_pandas()
        assert dev.equals(out)

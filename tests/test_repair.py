"""Orders no construction builds, kept by moving an end on broken rows (``rules.repair``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pfcore.rules.collect import collect_rules
from pfcore.rules.model import numeric_values
from pfcore.rules.repair import OrderRepair, apply_repairs
from pfcore.schema import infer_schema
from pfcore.synthesizer import split_train_holdout


def _startups(n: int, seed: int, linked: bool = True) -> pa.Table:
    """A first and a last milestone age (years), the last never before the first; the funding
    follows the last. ``linked``: both missing for companies with no milestone (a third of
    them); else each missing on its own tenth of the rows (unrecorded)."""
    rng = np.random.default_rng(seed)
    first = np.round(rng.gamma(2.0, 1.5, n), 2)
    last = np.round(first + rng.exponential(2.0, n) * (rng.random(n) < 0.7), 2)
    none = rng.random(n) < 0.33
    funding = np.round(np.exp(rng.normal(1 + 0.3 * last, 0.5)), 1)
    no_first, no_last = (none, none) if linked else (rng.random(n) < 0.1, rng.random(n) < 0.1)
    return pa.table(
        {
            "first": pa.array(first, mask=no_first),
            "last": pa.array(last, mask=no_last),
            "funding": funding,
        }
    )


def _fit_transform(table: pa.Table):
    from pfcore.transforms.table import TableTransformer

    train, holdout = split_train_holdout(table, 0.2, 0)
    schema = infer_schema(table)
    rules = collect_rules(train, holdout, schema, None)
    return {r.name: r for r in rules}, TableTransformer.fit(train, schema, rules=rules)


def test_an_order_between_two_nullable_numbers_is_repaired_by_moving_its_free_end() -> None:
    """Both ends are sometimes missing, so neither is a gap's parent; the last one is null
    exactly when the first is (a missingness rule builds it, on its present values only)."""
    rules, t = _fit_transform(_startups(3000, 0))
    order = rules["first <= last"]
    assert order.active and order.enforcement == "repaired"
    assert rules["last null exactly when first null"].enforcement == "conditioned"
    (rep,) = t.repairs
    assert (rep.low, rep.high, rep.moved, rep.strict) == ("first", "last", "last", False)
    assert "'last' is reflected across 'first'" in order.note


def _rep(strict: bool = False, both: bool = False) -> OrderRepair:
    values = {"high": np.array([1.0, 2, 3, 4, 6, 8, 10])}
    if both:
        values["low"] = np.array([0.0, 1, 2, 3, 5, 7])
    return OrderRepair("low", "high", strict, "high", values)


def _table(low: list, high: list) -> pa.Table:
    return pa.table({"low": pa.array(low, pa.int64()), "high": pa.array(high, pa.int64())})


def test_broken_rows_are_reflected_onto_own_values_and_holding_rows_are_untouched() -> None:
    t = _table([1, 5, 3, None, 7, 20], [2, 4, 3, 1, None, 4])
    out = apply_repairs(t, [_rep()])
    # 5 > 4: reflected to 2*5-4 = 6; 20 > 4: no own value reaches 20, so the bound itself
    assert out["high"].to_pylist() == [2, 6, 3, 1, None, 20]
    assert out["low"].equals(t["low"]) and out.schema == t.schema
    strict = apply_repairs(t, [_rep(strict=True)])
    # 3 == 3 breaks a strict order: the nearest own value above 3 is 4; 20 needs 21
    assert strict["high"].to_pylist() == [2, 6, 4, 1, None, 21]


def test_a_given_end_stays_and_the_other_end_moves_when_it_may() -> None:
    t = _table([5, 1], [4, 2])
    assert apply_repairs(t, [_rep(both=True)], fixed={"high"})["low"].to_pylist() == [3, 1]
    assert apply_repairs(t, [_rep()], fixed={"high"}).equals(t)  # the low end may not move
    assert apply_repairs(t, [_rep(both=True)], fixed={"high", "low"}).equals(t)


def test_an_end_drawn_in_a_range_moves_only_within_it() -> None:
    t = _table([5, 9], [4, 3])
    # high within [None, 6]: 5 > 4 reflects to 6; no high value in [9, 6], so low moves
    # instead, reflected across 3 to -3 and snapped to its nearest value at most 3: 0
    out = apply_repairs(t, [_rep(both=True)], limits={"high": (None, 6)})
    assert out["high"].to_pylist() == [6, 3] and out["low"].to_pylist() == [5, 0]
    # both limited and neither can reach: the row stays as drawn
    out = apply_repairs(t, [_rep(both=True)], limits={"high": (None, 3), "low": (8, None)})
    assert out.equals(t)


def test_floats_keep_their_own_values() -> None:
    t = pa.table({"low": [0.5, 2.25], "high": [1.0, 2.0]})
    rep = OrderRepair("low", "high", False, "high", {"high": np.array([1.0, 2.0, 2.4, 3.5])})
    assert apply_repairs(t, [rep])["high"].to_pylist() == [1.0, 2.4]


def _fit_tiny(table: pa.Table):
    from pfcore.synthesizer import Synthesizer

    train, holdout = split_train_holdout(table, 0.2, 0)
    config = {"max_steps": 200, "distill_max_steps": 200}
    return Synthesizer.fit(
        train, infer_schema(table), holdout=holdout, preset="tiny", config=config
    )


def _unrepaired(synth, n: int, seed: int) -> pa.Table:
    """The rows the same model samples with its repairs cleared (the model's own breaks)."""
    repairs = synth.transformer.repairs
    synth.transformer.repairs = []
    try:
        return synth.sample(n, seed=seed)
    finally:
        synth.transformer.repairs = repairs


@pytest.fixture(scope="module")
def startup_synth():
    return _fit_tiny(_startups(3000, 0, linked=False))


def _broken(t: pa.Table) -> float:
    df = t.to_pandas()
    both = df["first"].notna() & df["last"].notna()
    return float((df["first"][both] > df["last"][both]).mean())


def test_sampled_rows_keep_the_order_unconditionally_conditionally_and_reloaded(
    startup_synth, tmp_path
) -> None:
    """The same model without its repairs breaks the order on 11% of the rows (fits at seeds 0
    and 1), so every check below could fail."""
    from pfcore.conditions import Conditions
    from pfcore.synthesizer import Synthesizer

    raw = _unrepaired(startup_synth, 20000, 1)
    assert _broken(raw) > 0.005
    out = startup_synth.sample(20000, seed=1)
    assert _broken(out) == 0.0
    a, b = raw.to_pandas(), out.to_pandas()
    assert b["last"].isna().equals(a["last"].isna())  # only present values move
    changed = (a["last"] != b["last"]) & a["last"].notna()
    assert changed.equals(a["first"] > a["last"])  # exactly the broken rows
    assert out["first"].equals(raw["first"]) and out["funding"].equals(raw["funding"])
    real_last = set(_startups(3000, 0, linked=False)["last"].drop_null().to_pylist())
    assert set(out["last"].drop_null().to_pylist()) <= real_last | set(raw["last"].to_pylist())
    rule = {r.name: r for r in startup_synth.rules.rules}["first <= last"]
    assert "'first' moves instead where 'last' is given" in rule.note
    for where in (
        {"last": (None, 2.0)},
        {"first": (3.0, None)},
        {"funding": (None, 3.0)},
        {"first": (2.0, 6.0), "last": (None, 5.0)},  # overlapping ranges on both ends
    ):
        rows = startup_synth.sample(5000, seed=2, conditions=Conditions.make(where))
        assert _broken(rows) == 0.0
        for col, (lo, hi) in where.items():
            v = rows[col].drop_null().to_numpy()
            assert (lo is None or (v >= lo).all()) and (hi is None or (v <= hi).all())
    seeds = _startups(2000, 3, linked=False).select(["last"])
    rows = startup_synth.sample(None, seed=3, conditions=Conditions.make(seed_rows=seeds))
    assert _broken(rows) == 0.0 and rows["last"].equals(seeds["last"])
    loaded = Synthesizer.load(startup_synth.save(tmp_path / "s"))
    assert loaded.sample(20000, seed=1).equals(out)


def test_conditions_that_leave_no_row_keeping_a_repaired_order_are_refused(startup_synth) -> None:
    from pfcore.conditions import Conditions
    from pfcore.errors import InputError

    for where in ({"first": (6.0, None), "last": (None, 5.0)}, {"first": 4.0, "last": 3.5}):
        with pytest.raises(InputError, match="contradictory.*'first <= last'"):
            startup_synth.sample(10, seed=0, conditions=Conditions.make(where))
    ok = startup_synth.sample(10, seed=0, conditions=Conditions.make({"first": 3.0, "last": 3.0}))
    assert ok["first"].to_pylist() == ok["last"].to_pylist() == [3.0] * 10


def test_a_chain_of_orders_is_repaired_in_plan_order_and_holds_at_both_links() -> None:
    """``a <= b <= c``, each missing on its own rows: b moves up above a, c above a and above
    the moved b (b is never moved down, which could undo the first link)."""
    rng = np.random.default_rng(0)
    n = 3000
    a = rng.gamma(2.0, 1.0, n)
    b = a + rng.exponential(1.0, n)
    c = b + rng.exponential(1.0, n)
    values = dict(zip("abc", (np.round(v, 2) for v in (a, b, c)), strict=True))
    rules, t = _fit_transform(
        pa.table({k: pa.array(v, mask=rng.random(n) < 0.1) for k, v in values.items()})
    )
    assert {(r.low, r.high, r.moved) for r in t.repairs} == {
        ("a", "b", "b"), ("a", "c", "c"), ("b", "c", "c")
    }  # fmt: skip
    orders = [r for r in rules.values() if r.kind == "inequality"]
    assert len(orders) == 3 and all(r.enforcement == "repaired" for r in orders)
    wild = pa.table({k: rng.permutation(v) for k, v in values.items()})
    out = t.repaired(wild).to_pandas()
    assert (out.a <= out.b).all() and (out.b <= out.c).all() and (out.a <= out.c).all()
    assert out.a.equals(wild["a"].to_pandas())


def _accounts(n: int, seed: int, unit: str = "ns") -> pa.Table:
    """An account opened and closed (timestamps), closed strictly after opened, each missing on
    its own tenth of the rows (so neither end can be built from the other); 30% closed the
    nanosecond after opening, which float64 cannot tell from the opening."""
    rng = np.random.default_rng(seed)
    opened = np.datetime64("2020-01-01T00:00:00", "ns") + (rng.random(n) * 3e7).astype(
        "timedelta64[s]"
    )
    held = (rng.exponential(5e5, n) * (rng.random(n) < 0.7)).astype("timedelta64[s]")
    closed = opened + held + np.timedelta64(1, "ns")
    return pa.table(
        {
            "opened": pa.array(opened, mask=rng.random(n) < 0.1).cast(pa.timestamp(unit)),
            "closed": pa.array(closed, mask=rng.random(n) < 0.1).cast(
                pa.timestamp(unit), safe=False
            ),
            "balance": np.round(rng.lognormal(3, 1, n), 2),
        }
    )


def test_an_order_between_two_nullable_timestamps_is_repaired() -> None:
    rules, t = _fit_transform(_accounts(3000, 0))
    order = rules["opened < closed"]
    assert order.active and order.enforcement == "repaired"
    (rep,) = t.repairs
    assert (rep.low, rep.high, rep.moved, rep.strict) == ("opened", "closed", "closed", True)
    assert rep.values["closed"].dtype == np.int64  # its own training instants, exact
    # a timestamp and a date, or two units, are not compared
    table = _accounts(3000, 0)
    closed_us = table["closed"].cast(pa.timestamp("us"), safe=False)
    mixed = table.set_column(1, "closed", closed_us)
    assert not _fit_transform(mixed)[1].repairs


def test_timestamps_move_exactly_to_their_own_instants() -> None:
    """Nanosecond instants are beyond float64's exact integers: one nanosecond apart they
    compare equal as floats, so a strict order broken by a nanosecond must still move."""
    base = 1_600_000_000_000_000_000
    values = {"closed": np.array([base + 1, base + 5, base + 9], dtype=np.int64)}
    rep = OrderRepair("opened", "closed", True, "closed", values)
    ts = pa.timestamp("ns")
    t = pa.table(
        {
            "opened": pa.array([base + 1, base + 4, base], ts),
            "closed": pa.array([base + 1, base + 2, base + 9], ts),
        }
    )
    out = apply_repairs(t, [rep])
    assert out.schema == t.schema
    # base+1 breaks the strict order by nothing: the nearest own instant above is base+5;
    # base+2 < base+4 reflects to base+6, nearest own instant base+5; the third row holds
    assert out["closed"].cast(pa.int64()).to_pylist() == [base + 5, base + 5, base + 9]
    limited = apply_repairs(t, [rep], limits={"closed": (None, pa.scalar(base + 5, ts))})
    assert limited["closed"].cast(pa.int64()).to_pylist() == [base + 5, base + 5, base + 9]
    # no own instant keeps the order within the range and the low end may not move: the
    # boundary itself, one nanosecond after the other end
    boxed = pa.table({"opened": pa.array([base + 9], ts), "closed": pa.array([base], ts)})
    out = apply_repairs(boxed, [rep])
    assert out["closed"].cast(pa.int64()).to_pylist() == [base + 10]


def test_sampled_timestamps_keep_their_order_unconditionally_and_in_a_range() -> None:
    from pfcore.conditions import Conditions

    synth = _fit_tiny(_accounts(3000, 0))

    def broken(t: pa.Table) -> int:
        (o, po), (c, pc_) = (numeric_values(t[k]) for k in ("opened", "closed"))
        both = po & pc_
        return int((o[both] >= c[both]).sum())

    # the model alone breaks it, so the checks below can fail
    assert broken(_unrepaired(synth, 20000, 1)) > 20
    assert broken(synth.sample(20000, seed=1)) == 0
    hi = pa.scalar(np.datetime64("2020-06-01T00:00:00", "ns"), pa.timestamp("ns"))
    rows = synth.sample(5000, seed=2, conditions=Conditions.make({"closed": (None, hi)}))
    assert broken(rows) == 0
    assert pa.compute.all(pa.compute.less_equal(rows["closed"], hi)).as_py()

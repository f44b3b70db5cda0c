"""Orders between two numbered codes kept by masking classes (``pfcore.rules.masks``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from pfcore.rules.collect import collect_rules
from pfcore.schema import infer_schema
from pfcore.synthesizer import split_train_holdout


def _homes(n: int, seed: int) -> pa.Table:
    """Bedrooms (0-6) at most the rooms (1-12), equal on a sixth of the rows; both few-valued
    counts, so categorical columns; a price that follows the rooms."""
    rng = np.random.default_rng(seed)
    rooms = rng.integers(1, 13, n)
    beds = np.minimum(rooms - rng.choice([0, 0, 1, 2, 3, 4], n), 6).clip(0)
    price = np.round(50 + 20 * rooms + rng.normal(0, 10, n), 1)
    return pa.table({"beds": beds, "rooms": rooms, "price": price})


def _rules_and_transform(table: pa.Table):
    from pfcore.transforms.table import TableTransformer

    train, holdout = split_train_holdout(table, 0.2, 0)
    schema = infer_schema(table)
    rules = collect_rules(train, holdout, schema, None)
    return rules, TableTransformer.fit(train, schema, rules=rules)


def test_an_order_between_two_codes_is_masked_as_its_class_pairs() -> None:
    from pfcore.rules.masks import class_bans

    rules, t = _rules_and_transform(_homes(3000, 0))
    assert t.schema["beds"].kind == t.schema["rooms"].kind == "categorical"
    by_name = {r.name: r for r in rules}
    rule = by_name["beds <= rooms"]
    assert rule.active and rule.enforcement == "masked"
    bans = class_bans(rules, t)
    start = {b.column: b.start for b in t.blocks}
    beds = {i + start["beds"]: v for i, v in enumerate(t.transforms[0].kept.to_pylist())}
    rooms = {i + start["rooms"]: v for i, v in enumerate(t.transforms[1].kept.to_pylist())}
    got = {(beds[i], rooms[j]) for i, j in bans.tolist()}
    want = {(b, r) for b in range(7) for r in range(1, 13) if b > r}
    assert got == want


def test_a_masked_order_whose_column_is_built_by_another_rule_is_switched_off() -> None:
    """A fixed combination decodes ``band`` from ``rooms``: it is not drawn, so the order
    ``band <= rooms`` cannot be kept by masking and says so."""
    table = _homes(3000, 0)
    band = pa.array((np.asarray(table["rooms"]) + 1) // 2)
    rules, _ = _rules_and_transform(table.append_column("band", band))
    by_name = {r.name: r for r in rules}
    assert by_name["rooms determines band"].enforcement == "derived"
    order = by_name["band <= rooms"]
    assert not order.active and "built by another rule" in order.note


def _draws(ar, u: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    dims = ar.draw(u)
    return (dims[:, 0] - ar.starts[0]).numpy(), (dims[:, 1] - ar.starts[1]).numpy()


def test_the_discrete_network_never_draws_a_banned_pair_and_keeps_them_when_saved() -> None:
    """Untrained, the network draws two 5-class columns nearly independently, so a quarter of
    the rows has the first class above the second; banned, none does, the first column keeps
    its law and a reloaded network keeps its bans (a state saved without them loads too)."""
    from pfcore.models.autoregressive import DiscreteAR

    torch.manual_seed(0)
    ar = DiscreteAR([5, 5], 16, 2, direct=True, links=True)
    u = torch.rand(20000, 2, generator=torch.Generator().manual_seed(1))
    a, b = _draws(ar, u)
    assert (a > b).mean() > 0.2
    # given later column first, as a rule "rooms >= beds" over (beds, rooms) gives them
    ar.set_bans(torch.tensor([(5 + j, i) for i in range(5) for j in range(5) if i > j]))
    a2, b2 = _draws(ar, u)
    assert not (a2 > b2).any() and np.array_equal(a, a2)
    state = ar.state_dict()
    again = DiscreteAR([5, 5], 16, 2, direct=True, links=True)
    again.load_state_dict(state)
    assert np.array_equal(_draws(again, u)[1], b2)
    old = DiscreteAR([5, 5], 16, 2, direct=True, links=True)
    old.load_state_dict({k: v for k, v in state.items() if k != "bans"})
    assert len(old.bans) == 0 and np.array_equal(_draws(old, u)[1], b)


@pytest.fixture(scope="module")
def homes_synth():
    from pfcore.synthesizer import Synthesizer

    table = _homes(3000, 0)
    train, holdout = split_train_holdout(table, 0.2, 0)
    config = {"max_steps": 300, "distill_max_steps": 300}
    return Synthesizer.fit(
        train, infer_schema(table), holdout=holdout, preset="tiny", config=config
    )


def test_the_default_family_keeps_an_order_of_two_codes_on_every_row(homes_synth, tmp_path) -> None:
    """Unconditional rows, rows with either end fixed, seed rows with the later column given
    and a reloaded model: no row has more bedrooms than rooms. (The same fits at seeds 0 and 1
    without the masks broke it on 1.0-1.1% of rows, 61-62% given 2 rooms, 2.4-2.6% given 5
    bedrooms and 15% of the seed rows.)"""
    from pfcore.conditions import Conditions
    from pfcore.synthesizer import Synthesizer

    def broken(t: pa.Table) -> float:
        return float(np.mean(np.asarray(t["beds"]) > np.asarray(t["rooms"])))

    out = homes_synth.sample(20000, seed=1)
    assert broken(out) == 0.0
    beds = np.bincount(np.asarray(out["beds"]), minlength=7) / len(out)
    real = np.bincount(np.asarray(_homes(3000, 0)["beds"]), minlength=7) / 3000
    assert np.abs(beds - real).max() < 0.03  # masking renormalises, it does not pile up mass
    for where in ({"rooms": 2}, {"beds": 5}):
        rows = homes_synth.sample(5000, seed=2, conditions=Conditions.make(where))
        assert broken(rows) == 0.0
    seeds = _homes(2000, 3).select(["rooms", "price"])
    assert (
        broken(homes_synth.sample(None, seed=3, conditions=Conditions.make(seed_rows=seeds))) == 0
    )
    loaded = Synthesizer.load(homes_synth.save(tmp_path / "s"))
    assert loaded.sample(20000, seed=1).equals(out)


def test_a_family_that_cannot_mask_switches_the_order_off() -> None:
    from pfcore.synthesizer import Synthesizer

    table = _homes(600, 0)
    synth = Synthesizer.fit(
        table, infer_schema(table), family="energy", preset="tiny", config={"max_steps": 5}
    )
    order = {r.name: r for r in synth.rules.rules}["beds <= rooms"]
    assert not order.active and "does not draw classes one column at a time" in order.note


@pytest.mark.parametrize(
    "where",
    [
        {"beds": 5, "rooms": (3, None)},  # an equality beside a range
        {"beds": (4, None), "rooms": (None, 6)},  # two ranges, drawn row by row
        {"rooms": (None, 6), "beds": (4, None)},  # the same, the later end drawn first
    ],
)
def test_conditions_on_both_ends_of_an_order_keep_it(homes_synth, where) -> None:
    """Each end given by the request is drawn by it, not by the model. Drawn without the
    order (each end by its own training counts), 20% of the rows of the first request and
    76-77% of the two-range ones had more bedrooms than rooms."""
    from pfcore.conditions import Conditions

    out = homes_synth.sample(4000, seed=4, conditions=Conditions.make(where)).to_pandas()
    assert (out.beds <= out.rooms).all()
    for col, v in where.items():
        lo, hi = (v, v) if not isinstance(v, tuple) else v
        assert (lo is None or (out[col] >= lo).all()) and (hi is None or (out[col] <= hi).all())
    if "rooms" in where and isinstance(where["beds"], tuple):
        assert set(out.beds) == {4, 5, 6} and set(out.rooms) == {4, 5, 6}


def test_conditions_an_order_rules_out_are_refused(homes_synth) -> None:
    from pfcore.conditions import Conditions
    from pfcore.errors import InputError

    for where in ({"beds": 6, "rooms": 4}, {"beds": (6, None), "rooms": (None, 5)}):
        with pytest.raises(InputError, match="contradictory.*'beds <= rooms'"):
            homes_synth.sample(10, seed=0, conditions=Conditions.make(where))


@pytest.mark.parametrize(
    ("rebalance", "where", "classes"),
    [
        ("beds=uniform", {"rooms": (None, 3)}, {0, 1, 2, 3}),  # uniform over the beds left
        ("rooms=uniform", {"beds": (4, None)}, set(range(4, 13))),
        ("beds=0:0.5", {"rooms": 5}, {0, 1, 2, 3, 4, 5}),  # named share kept, rest spread
    ],
)
def test_a_rebalanced_end_and_a_condition_on_the_other_keep_the_order(
    homes_synth, rebalance, where, classes
) -> None:
    """The rebalanced column is drawn first, the other end per row among the classes that keep
    the order. Drawn independently (before), the first two requests broke it on 56% and 37%
    of the rows, and ``beds=uniform`` with ``rooms=5`` on 14%."""
    from pfcore.conditions import Conditions

    out = homes_synth.sample(4000, seed=1, conditions=Conditions.make(where, rebalance))
    out = out.to_pandas()
    assert (out.beds <= out.rooms).all()
    column = rebalance.split("=")[0]
    assert set(out[column]) == classes
    if rebalance == "beds=0:0.5":
        assert abs((out.beds == 0).mean() - 0.5) < 0.03


def test_a_rebalancing_that_names_a_class_the_order_rules_out_is_refused(homes_synth) -> None:
    from pfcore.conditions import Conditions
    from pfcore.errors import InputError

    with pytest.raises(InputError, match="rebalancing asks for beds=6.*'beds <= rooms'"):
        homes_synth.sample(10, seed=0, conditions=Conditions.make({"rooms": 5}, "beds=6:0.5"))

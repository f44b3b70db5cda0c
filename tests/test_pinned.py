"""Pinned numbers (``pfcore.rules.pinned``): a route's distance is found pinned by the pair of
airports (not by one of them), noise and id-like keys are not, decode moves every modelled value
to a value its key held, and the transform round trips exactly and survives save / load."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pfcore.errors import SchemaError
from pfcore.rules import RuleSet, collect_rules, hold_rate, parse_declared
from pfcore.rules.pinned import find_pinned
from pfcore.rules.valuesets import ValueSets
from pfcore.schema import infer_schema
from pfcore.synthesizer import split_train_holdout
from pfcore.transforms import TableTransformer
from pfcore.transforms.ruled import PinnedTransform

AIRPORTS = np.array(["EWR", "JFK", "LGA"])
DESTS = np.array([f"D{i:02d}" for i in range(30)])


def _routes(n: int = 6000, seed: int = 0) -> pa.Table:
    """Flights whose distance is fixed by (origin, dest), two routes with two distances (a
    re-measured route), and columns nothing pins."""
    rng = np.random.default_rng(seed)
    # 90 routes over 60 distances: routes share distances, so no distance names its route
    base = np.random.default_rng(99).integers(200, 260, (len(AIRPORTS), len(DESTS))) * 10
    o = rng.integers(0, len(AIRPORTS), n)
    d = rng.integers(0, len(DESTS), n)
    dist = base[o, d].copy()
    moved = (o == 0) & (d < 2) & (rng.random(n) < 0.5)
    dist[moved] += 1
    return pa.table(
        {
            "origin": AIRPORTS[o],
            "dest": DESTS[d],
            "distance": dist.astype(np.int64),
            "air_time": np.round(dist / 8.0 + rng.normal(0, 5, n), 1),
            "seats": rng.integers(50, 300, n),
        }
    )


def test_distance_is_pinned_by_the_airport_pair_and_noise_is_not() -> None:
    table = _routes()
    found = find_pinned(table, list(infer_schema(table).columns))
    assert found == {"distance": ["origin", "dest"]}


def test_id_like_key_pins_nothing() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    table = pa.table(
        {
            "ticket": np.array([f"t{i}" for i in rng.permutation(n)]),  # one row per value
            "fare": rng.integers(50, 900, n),
        }
    )
    assert find_pinned(table, list(infer_schema(table).columns)) == {}


def test_snap_nearest_value_of_the_key_and_keeps_what_it_cannot_place() -> None:
    keys = [pa.array(["a", "a", "a", "b", None]), pa.array([1, 1, 1, 2, 3])]
    sets = ValueSets.fit(keys, np.array([10.0, 20.0, 10.0, 5.0, 7.0]), np.ones(5, dtype=bool))
    query = [pa.array(["a", "a", "a", "b", "c", None, "a"]), pa.array([1, 1, 1, 2, 1, 3, 1])]
    v = np.array([14.0, 15.0, 100.0, 0.0, 42.0, 8.0, 0.0])
    present = np.array([True, True, True, True, True, True, False])
    out = sets.snap(v, present, query)
    # 15 is as far from 10 as from 20: the lower wins; an unknown key ("c") and a missing value
    # keep theirs; a null key is a key value like any other.
    np.testing.assert_array_equal(out, [10.0, 10.0, 20.0, 5.0, 42.0, 7.0, 0.0])
    again = ValueSets.from_params(sets.to_params(), [pa.string(), pa.int64()])
    np.testing.assert_array_equal(again.snap(v, present, query), out)


def test_transform_round_trips_and_every_decoded_row_holds_the_rule(tmp_path) -> None:
    table = _routes()
    train, holdout = split_train_holdout(table, 0.2, 0)
    schema = infer_schema(table)
    rules = collect_rules(train, holdout, schema, None)
    (rule,) = [r for r in rules if r.kind == "values"]
    assert rule.holdout_hold_rate == 1.0
    tr = TableTransformer.fit(train, schema, rules=rules)  # plans the rules
    assert rule.active and rule.enforcement == "pinned", rule.note
    assert isinstance(tr.transforms[tr._index_of["distance"]], PinnedTransform)
    back = tr.decode(tr.encode(train, seed=1), seed=1)
    assert back.column("distance").equals(train.column("distance"))
    rng = np.random.default_rng(3)
    x = 2.0 * rng.standard_normal((20_000, tr.n_features)).astype(np.float32)
    rows = tr.decode(x, seed=4)
    assert hold_rate(rule, rows) == 1.0
    # The modelled values really moved: without the snap most rows miss their route's value.
    inner = tr.transforms[tr._index_of["distance"]].inner
    a, b = tr._slices[tr._index_of["distance"]]
    raw = inner.decode(x[:, a:b], len(x), rng, 0)
    assert not raw.equals(rows.column("distance").combine_chunks())
    assert hold_rate(rule, rows.set_column(2, "distance", raw)) < 0.5
    loaded = TableTransformer.load(tr.save(tmp_path / "t"))
    assert loaded.decode(x, seed=4).equals(rows)


@pytest.mark.parametrize("protect", [0, 2])
def test_value_protection_leaves_out_keys_that_hold_protected_extremes(protect: int) -> None:
    table = _routes(n=3000)
    d = table.column("distance").to_numpy().copy()
    d[0] = 99_999  # one row's value, far outside every route's
    table = table.set_column(2, "distance", pa.array(d))
    schema = infer_schema(table)
    tr = PinnedTransform.fit(
        schema["distance"], table, ["origin", "dest"], np.random.default_rng(0), protect
    )
    assert (99_999.0 in tr.sets.values) == (protect == 0)
    assert tr.left_out == (protect > 0)  # that row's route only, not the others


def test_declared_values_rule_is_enforced_and_a_non_number_refused() -> None:
    """A user pins distance by dest alone (detection finds the pair): declared rules go first,
    so the plan enforces the declared one and turns the detected one off."""
    table = _routes()
    train, holdout = split_train_holdout(table, 0.2, 0)
    schema = infer_schema(table)
    declared = RuleSet(rules=parse_declared([{"values": ["distance", "dest"]}]))
    rules = collect_rules(train, holdout, schema, declared)
    tr = TableTransformer.fit(train, schema, rules=rules)
    by_name = {r.name: r for r in rules}
    mine = by_name["distance takes only the values seen with its (dest)"]
    assert mine.origin == "declared" and mine.enforcement == "pinned"
    assert not by_name["distance takes only the values seen with its (origin, dest)"].active
    assert tr.transforms[tr._index_of["distance"]].keys == ["dest"]
    x = 2.0 * np.random.default_rng(5).standard_normal((5_000, tr.n_features)).astype(np.float32)
    assert hold_rate(mine, tr.decode(x, seed=0)) == 1.0
    bad = RuleSet(rules=parse_declared([{"values": ["origin", "dest"]}]))
    with pytest.raises(SchemaError, match="'origin' .* is not a number"):
        collect_rules(train, holdout, schema, bad)

"""Tied numbers (``pfcore.transforms.ties``): a payment that equals the bill on part of the rows is
found, correlated counts and shared zeros are not, decode copies the bill exactly where the flag
says so (never outside the column's range), and a fitted model reproduces the share of ties."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pfcore.schema import infer_schema
from pfcore.transforms import TableTransformer
from pfcore.transforms.ruled import TiedTransform
from pfcore.transforms.ties import find_ties


def _bills(n: int = 4000, seed: int = 0) -> pa.Table:
    """Bills (some negative: credits), payments that settle the bill in full on 30% of rows and
    pay a round amount otherwise, and two correlated counts that are no copy of each other."""
    rng = np.random.default_rng(seed)
    bill = np.round(rng.lognormal(8, 1, n)).astype(np.int64)
    bill[rng.random(n) < 0.05] *= -1
    full = (rng.random(n) < 0.3) & (bill > 0)
    paid = np.where(full, bill, rng.integers(0, 50, n) * 100)
    homes = rng.integers(100, 2000, n)
    rooms = homes + rng.integers(-40, 40, n)
    return pa.table({"bill": bill, "paid": paid, "homes": homes, "rooms": rooms})


def test_payment_tied_to_the_bill_and_correlated_counts_are_not() -> None:
    table = _bills()
    ties = find_ties(table, list(infer_schema(table).columns))
    assert set(ties.items()) in ({("paid", "bill")}, {("bill", "paid")})


def test_a_column_another_construction_builds_takes_no_part() -> None:
    """A bill built from the payment by a rule cannot be copied into the payment (the payment
    would depend on itself), nor tied itself."""
    table = _bills()
    cols = list(infer_schema(table).columns)
    assert find_ties(table, cols, skip={"bill"}) == {}
    assert find_ties(table, cols, skip={"paid"}) == {}


def test_no_tie_to_a_column_whose_rule_reads_the_other() -> None:
    """Sensors that fail together log -200 in each column: ``b == -200 whenever a == -200``
    is an implication (b modelled, overwritten where a fails) and ``a == b`` on those rows a
    tie. Tying a to b would build each from the other, tying b to a would drop the rule for a
    drawn flag: neither is tied, and the rule holds on every row decoded from noise."""
    from pfcore.rules.detect import detect_rules

    rng = np.random.default_rng(4)
    n = 4000
    a = np.round(rng.lognormal(5, 0.5, n)).astype(np.int64)
    b = np.round(a * rng.uniform(0.3, 1.5, n)).astype(np.int64)
    a_fail = rng.random(n) < 0.15
    a[a_fail] = -200
    b[a_fail | (rng.random(n) < 0.05)] = -200
    table = pa.table({"a": a, "b": b, "c": rng.normal(size=n)})
    schema = infer_schema(table)
    rules = detect_rules(table, None, schema)
    assert any(r.params.get("implies") and r.columns[:2] == ["b", "a"] for r in rules)
    tr = TableTransformer.fit(table, schema, rules=rules)  # raised "depends on itself"
    assert not [t for t in tr.transforms if isinstance(t, TiedTransform)]
    rule = next(r for r in rules if r.params.get("implies"))
    assert rule.active and rule.enforcement == "conditioned"
    assert find_ties(table, list(schema.columns)) == {"a": "b"}  # what the rule now prevents
    x = np.random.default_rng(5).standard_normal((5000, tr.n_features)).astype(np.float32)
    rows = tr.decode(x, seed=0)
    da, db = rows.column("a").to_numpy(), rows.column("b").to_numpy()
    assert (db[da == -200] == -200).all() and (da == -200).mean() > 0.05


def test_shared_point_mass_is_no_tie() -> None:
    rng = np.random.default_rng(1)
    n = 5000
    gain = np.where(rng.random(n) < 0.9, 0, rng.integers(1, 10_000, n))
    loss = np.where(rng.random(n) < 0.9, 0, rng.integers(1, 5_000, n))
    table = pa.table({"gain": gain, "loss": loss})  # both 0 on 81% of rows, by chance
    assert find_ties(table, list(infer_schema(table).columns)) == {}


def test_decode_copies_where_flagged_within_range_and_round_trips(tmp_path) -> None:
    table = _bills()
    schema = infer_schema(table)
    tr = TableTransformer.fit(table, schema, rules=[])
    tied = [t for t in tr.transforms if isinstance(t, TiedTransform)]
    assert len(tied) == 1
    t = tied[0]
    assert tr.decode(tr.encode(table, seed=0), seed=0).equals(table)
    x = 2.0 * np.random.default_rng(2).standard_normal((20_000, tr.n_features))
    x = x.astype(np.float32)
    rows = tr.decode(x, seed=3)
    a = rows.column(t.column.name).to_numpy()
    b = rows.column(t.source).to_numpy()
    a_blk, b_blk = tr._slices[tr._index_of[t.column.name]]
    flag = x[:, b_blk - 1] > x[:, b_blk - 2]
    fits = (b >= t.lo) & (b <= t.hi)
    np.testing.assert_array_equal(a[flag & fits], b[flag & fits])
    assert (a[~flag] != b[~flag]).mean() > 0.9  # elsewhere the modelled value stays
    assert a.min() >= t.lo and a.max() <= t.hi  # a copy never leaves the column's range
    loaded = TableTransformer.load(tr.save(tmp_path / "t"))
    assert loaded.decode(x, seed=3).equals(rows)


@pytest.fixture(scope="module")
def fitted():
    from pfcore.synthesizer import Synthesizer

    table = _bills(3000)
    config = {"max_steps": 300, "distill_max_steps": 200, "ar_max_steps": 300,
              "conditional_max_steps": 100, "n_pairs": 2048}  # fmt: skip
    synth = Synthesizer.fit(table, infer_schema(table), family="hybrid", preset="fast",
                            config=config)  # fmt: skip
    return table, synth


def _share(t: pa.Table) -> float:
    return float((t.column("paid").to_numpy() == t.column("bill").to_numpy()).mean())


def test_fitted_model_reproduces_the_share_of_ties(fitted) -> None:
    """Without the flag a model draws the payment near the bill, equal on almost no row
    (measured: 0.0002 against 0.29 in the data)."""
    table, synth = fitted
    share = _share(synth.sample(20_000, seed=0))
    assert abs(share - _share(table)) < 0.08, (share, _share(table))


def test_tied_column_can_be_conditioned_and_given_in_seed_rows(fitted) -> None:
    from pfcore.conditions import Conditions

    table, synth = fitted
    tied = next(t for t in synth.transformer.transforms if isinstance(t, TiedTransform))
    name = tied.column.name
    lo = int(np.quantile(table.column(name).to_numpy(), 0.7))
    rows = synth.sample(5_000, seed=1, conditions=Conditions.make(where={name: (lo, None)}))
    assert (rows.column(name).to_numpy() >= lo).all()
    seed_rows = table.select([name]).slice(0, 500)
    out = synth.sample(None, seed=2, conditions=Conditions.make(seed_rows=seed_rows))
    assert out.column(name).equals(seed_rows.column(name))


def test_seed_rows_that_give_a_tied_column_keep_the_share_of_ties(fitted, monkeypatch) -> None:
    """Seed rows giving the tied column alone leave the flag to the model, and its source takes
    the given value where the drawn flag says copied: the two agree on about the real share of
    the rows, where holding the flag at "not copied" left them equal on almost none. Seed rows
    giving both encode the flag from their own values, so the model draws the rest as for
    rows that agree where they do."""
    import pfcore.condition_plan as plan_mod
    from pfcore.conditions import Conditions
    from pfcore.sampling import blocks

    table, synth = fitted
    tied = next(t for t in synth.transformer.transforms if isinstance(t, TiedTransform))
    name, source = tied.column.name, tied.source
    seeds = table.slice(0, 2000)
    real = _share(seeds)
    request = Conditions.make(seed_rows=seeds.select([name]))
    plan = plan_mod.compile_conditions(request, synth)
    assert plan.reverse_ties == [tied] and not plan.seed_ties
    out = synth.sample(None, seed=2, conditions=request)
    assert out.column(name).equals(seeds.column(name))
    assert synth.sample(None, seed=2, conditions=request).equals(out)

    def held(out, tied, transforms, index_of, given, claimed, spans, hold):
        plan_mod._untie(tied.column.name, spans, hold)

    monkeypatch.setattr(plan_mod, "_seed_tie", held)
    before = synth.sample(None, seed=2, conditions=request)
    monkeypatch.undo()
    # measured 0.277 against 0.000 held (the seed rows' own: 0.299)
    assert abs(_share(out) - real) < 0.08 and _share(before) < 0.05, (_share(out), real)
    both = Conditions.make(seed_rows=seeds.select([name, source]))
    plan = plan_mod.compile_conditions(both, synth)
    ((t, f),) = plan.seed_ties
    known, _mask = plan.encoded(next(iter(blocks(2000, 7, block_rows=2000))))
    copied = seeds.column(name).to_numpy() == seeds.column(source).to_numpy()
    assert np.array_equal(known[:, f + 1] > known[:, f], copied) and plan.mask[f : f + 2].all()


def test_a_source_that_takes_a_given_value_carries_its_other_copies_along() -> None:
    """Two bills copy one payment. Seed rows give the first bill alone; where its drawn flag
    says copied, the payment takes the given bill, and the second bill, which held the drawn
    payment on rows where it copied it, follows it there and nowhere else."""
    from pfcore.condition_plan import _copy_back

    rng = np.random.default_rng(5)
    n = 4000
    paid = np.round(rng.lognormal(8, 1, n)).astype(np.int64)
    bill1 = np.where(rng.random(n) < 0.3, paid, np.round(paid * rng.uniform(1.1, 3, n)))
    bill2 = np.where(rng.random(n) < 0.3, paid, np.round(paid * rng.uniform(1.1, 3, n)))
    bills = {"bill1": bill1.astype(np.int64), "bill2": bill2.astype(np.int64)}
    table = pa.table({"paid": paid, **bills})
    from pfcore.transforms.numeric import NumericTransform

    cols = {c.name: c for c in infer_schema(table).columns}
    rng = np.random.default_rng(0)
    ties = {b: TiedTransform.fit(cols[b], table, "paid", rng) for b in bills}
    transforms = [NumericTransform.fit(cols["paid"], table.column("paid"), rng), *ties.values()]
    assert all(t.lo < 1000 and t.hi > 9999 for t in ties.values())
    # a decoded block: the given first bill is in place; the drawn payment and second bill
    drawn = pa.table(
        {
            "paid": pa.array([1000, 2000, 3000, 4000], pa.int64()),
            "bill1": pa.array([1500, 2500, 3500, 4500], pa.int64()),
            "bill2": pa.array([1000, 9999, 3000, 4000], pa.int64()),  # copied it on 0, 2, 3
        }
    )
    flagged = np.array([True, True, False, True])  # the first bill's drawn flag said copied
    out = _copy_back(drawn, ties["bill1"], flagged, transforms, {"bill1"})
    assert out.column("bill1").to_pylist() == [1500, 2500, 3500, 4500]
    assert out.column("paid").to_pylist() == [1500, 2500, 3000, 4500]
    assert out.column("bill2").to_pylist() == [1500, 9999, 3000, 4500]


def test_a_sentinel_column_takes_a_written_value_only_where_its_rule_lets_it() -> None:
    """A payment that is 0 exactly when its status says "none" (``ConditionedTransform``) takes
    a copied value only on rows whose status allows a payment, and never the sentinel itself
    there; when the sentinel only follows from the status (``implies``), any value may go where
    the status allows one."""
    from pfcore.transforms.ruled import ConditionedTransform

    rng = np.random.default_rng(2)
    n = 400
    status = rng.choice(np.array(["none", "paid"]), n)
    paid = np.where(status == "none", 0, rng.integers(1, 500, n)).astype(np.int64)
    table = pa.table({"status": status, "paid": paid})
    col = infer_schema(table)["paid"]
    rows = pa.table({"status": ["none", "paid", "paid", "none"], "paid": [0, 7, 9, 0]})
    values = pa.array([500, 500, 0, 0], pa.int64())
    when = {"equals": "none"}
    iff = ConditionedTransform.fit(col, table, "status", {"sentinel": 0}, when, rng)
    assert iff.keeps(rows, values).tolist() == [False, True, False, False]
    implied = ConditionedTransform.fit(
        col, table, ["status"], {"sentinel": 0}, [when], rng, implies=True
    )
    assert implied.keeps(rows, values).tolist() == [False, True, True, False]

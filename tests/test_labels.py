"""Integer columns that are labels of a class: found, mapped onto each class's values, saved."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from pfcore.labels import find_label_keys
from pfcore.models.class_maps import MIN_CLASS_ROWS, ClassMaps
from pfcore.schema import infer_schema
from pfcore.transforms import TableTransformer

AIRLINES = ["AA", "BB", "CC", "DD", "EE"]


def _table(n: int = 4000, seed: int = 0) -> pa.Table:
    """``flight``: each airline flies its own 40 numbers (out of 1..400, so airlines share
    some) at uneven rates; ``minutes``: a quantity whose mean depends on the airline;
    ``load``: unrelated."""
    rng = np.random.default_rng(seed)
    pool = np.arange(1, 401)
    own = np.stack([np.random.default_rng(a).choice(pool, 40, replace=False) for a in range(5)])
    airline = rng.integers(0, len(AIRLINES), n)
    pick = np.minimum(rng.geometric(0.1, n) - 1, 39)
    minutes = np.round(60 + 25 * airline + rng.normal(0, 15, n)).astype(np.int64)
    return pa.table(
        {
            "airline": pa.array([AIRLINES[a] for a in airline]),
            "flight": pa.array(own[airline, pick].astype(np.int64)),
            "minutes": pa.array(np.clip(minutes, 1, None)),
            "load": pa.array(np.round(rng.uniform(0, 1, n), 3)),
        }
    )


def _pairs_seen(train: pa.Table, rows: pa.Table) -> float:
    seen = set(zip(*(train.column(c).to_pylist() for c in ("airline", "flight")), strict=True))
    got = zip(*(rows.column(c).to_pylist() for c in ("airline", "flight")), strict=True)
    return float(np.mean([p in seen for p in got]))


def test_a_label_column_is_found_with_its_class_and_a_quantity_is_not() -> None:
    table = _table()
    tr = TableTransformer.fit(table, infer_schema(table), seed=0)
    report: dict = {}
    keys = find_label_keys(table, tr, tr.encode(table, seed=0), report=report)
    assert keys == {"flight": ["airline"]}
    # minutes depends on the airline (a key gains) but its counts are smooth in the value
    assert report["minutes"]["gain_nats"] > 0 and not report["minutes"]["label"]


def test_labels_written_as_large_numbers_are_found_the_same() -> None:
    """Account or product numbers run to 12 digits: a (class, value) pair must not overflow
    its int64 key."""
    table = _table()
    big = pa.array(table.column("flight").to_numpy() * 1_000_003 + 10**12)
    table = table.set_column(table.schema.get_field_index("flight"), "flight", big)
    tr = TableTransformer.fit(table, infer_schema(table), seed=0)
    assert find_label_keys(table, tr, tr.encode(table, seed=0)) == {"flight": ["airline"]}


def test_class_maps_send_each_class_onto_its_own_values_at_their_shares() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 6000
    slots = torch.randint(0, 3, (n, 1), generator=gen)
    values = torch.tensor([[-1.0, 0.2, 0.9], [-0.5, 0.0, 1.5], [0.3, 0.4, 2.0]])
    shares = torch.tensor([0.6, 0.3, 0.1])
    data = values[slots[:, 0], torch.multinomial(shares, n, replacement=True, generator=gen)]
    own = torch.randn(n, 1, generator=gen) + slots.float()  # smooth draws, one shift per class
    maps = ClassMaps([(0, [(0, 3)])])
    maps.fit(own, slots, data[:, None], slots)
    out = maps(own, slots)[:, 0]
    for c in range(3):
        got = out[slots[:, 0] == c]
        assert set(got.tolist()) <= set(values[c].tolist())  # only the class's own values
        freq = torch.stack([(got == v).float().mean() for v in values[c]])
        assert torch.allclose(freq, shares, atol=0.03)
        # the order of the draws within a class is kept
        mine = own[slots[:, 0] == c, 0]
        order = mine.argsort()
        assert bool((got[order].diff() >= 0).all())
    # another sampler of the same model (the flow teacher) keeps the targets, takes its sources
    other = own * 2 - 1
    maps.fit_sources(other, slots)
    again = maps(other, slots)[:, 0]
    assert torch.equal(again, out)  # a monotone change of the draws: the same values out


def test_a_class_with_too_few_rows_keeps_its_draws_and_the_maps_reload() -> None:
    gen = torch.Generator().manual_seed(1)
    slots = torch.cat([torch.zeros(500, 1), torch.ones(MIN_CLASS_ROWS - 1, 1)]).long()
    own = torch.randn(len(slots), 2, generator=gen)
    data = torch.round(torch.randn(len(slots), 2, generator=gen))
    maps = ClassMaps([(1, [(0, 2)])])
    maps.fit(own, slots, data, slots)
    out = maps(own, slots)
    rare = slots[:, 0] == 1
    assert torch.equal(out[rare], own[rare])  # unfitted class: as drawn
    assert torch.equal(out[:, 0], own[:, 0])  # an unmapped dim: as drawn
    assert set(out[~rare, 1].tolist()) <= set(data[~rare, 1].tolist())
    fresh = ClassMaps([(1, [(0, 2)])])
    fresh.load_state_dict(maps.state_dict(), strict=True)
    assert torch.equal(fresh(own, slots), out)


@pytest.fixture(scope="module")
def fitted():
    from pfcore.synthesizer import Synthesizer

    table = _table(3000)
    config = {"max_steps": 300, "distill_max_steps": 300, "ar_max_steps": 300,
              "conditional_max_steps": 100, "n_pairs": 2048}  # fmt: skip
    synth = Synthesizer.fit(table, infer_schema(table), family="hybrid", preset="fast",
                            config=config)  # fmt: skip
    return table, synth


def test_the_hybrid_draws_each_airline_only_on_its_own_flights(fitted, tmp_path) -> None:
    from pfcore.synthesizer import Synthesizer

    table, synth = fitted
    assert synth.model.config.class_keys == {"flight": ["airline"]}
    rows = synth.sample(4000, seed=3)
    assert _pairs_seen(table, rows) == 1.0
    maps, synth.model.class_maps = synth.model.class_maps, None
    try:
        without = synth.sample(4000, seed=3)
    finally:
        synth.model.class_maps = maps
    assert _pairs_seen(table, without) < 0.9  # what the maps are for
    loaded = Synthesizer.load(synth.save(tmp_path / "s"))
    assert loaded.sample(4000, seed=3).equals(rows)


def test_conditional_rows_keep_a_given_flight_and_map_a_drawn_one(fitted) -> None:
    from pfcore.conditions import Conditions

    table, synth = fitted
    rows = synth.sample(2000, seed=4, conditions=Conditions.make(where=["airline=CC"]))
    assert set(rows.column("airline").to_pylist()) == {"CC"}
    assert _pairs_seen(table, rows) == 1.0
    given = table.slice(0, 300).select(["flight"])
    out = synth.sample(None, 5, conditions=Conditions.make(seed_rows=given))
    assert out.column("flight").equals(given.column("flight"))

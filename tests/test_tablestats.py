"""Whole-table statistics from ingest, and the transform fitted on a sample with them: a
category or an extreme value that only rows outside the training sample hold still decides the
vocabulary and value protection; a table that fits the sample is fitted exactly as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import TEST_DATA

N, SEED, SAMPLE = 8000, 3, 1000
COMMON = ["a", "b", "c", "d", "e"]
RARE = [f"r{i:02d}" for i in range(30)]  # 5 rows each: under 0.1% of 8000 rows


def _ingest(tmp_path: Path, table: pa.Table, name: str = "ds") -> Path:
    """Several part files of small row groups, so the sample is a strict subset of each."""
    from pfcore.ingest import ingest

    src = tmp_path / f"{name}.parquet"
    pq.write_table(table, src)
    return Path(ingest(src, tmp_path / name, batch_rows=500, rows_per_file=2000).out_dir)


def _sample_rows() -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training sample and of the other training rows (by the split's
    row keys alone, so the table can be built around them)."""
    from pfcore.synthesizer import Split

    ids = pa.table({"row": np.arange(N)})
    split = Split(0.2, SEED, sample_rows=SAMPLE, method="hash", dataset_rows=N)
    sample = np.asarray(split.apply(ids)[0]["row"])
    hold = np.asarray(Split(0.2, SEED, method="hash", dataset_rows=N).apply(ids)[1]["row"])
    rest = np.setdiff1d(np.setdiff1d(np.arange(N), sample), hold)
    return sample, rest


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    """A category ``ghost`` (40 rows, 0.5%) and each column's 5 most extreme values only in
    training rows outside the sample."""
    rng = np.random.default_rng(0)
    sample, rest = _sample_rows()
    c = rng.choice(np.array(COMMON, dtype=object), size=N)
    rare_rows = rng.choice(N, size=5 * len(RARE), replace=False)
    c[rare_rows] = np.repeat(RARE, 5)
    free = np.setdiff1d(rest, rare_rows)
    ghost = rng.choice(free, size=40, replace=False)
    c[ghost] = "ghost"
    x = rng.normal(size=N)
    k = rng.integers(1_000, 2_000, size=N)
    far = rng.choice(np.setdiff1d(free, ghost), size=10, replace=False)
    x[far[:5]], x[far[5:]] = -100.0 - np.arange(5), 100.0 + np.arange(5)
    k[far[:5]], k[far[5:]] = np.arange(5), 10_000 + np.arange(5)
    table = pa.table({"c": c, "x": x, "k": k})
    return _ingest(tmp_path_factory.mktemp("outside"), table), table


def _fitted(ds: Path, *, with_stats: bool = True):
    from pfcore.defaults import PROTECT_EXTREMES
    from pfcore.schema import TableSchema
    from pfcore.synthesizer import Split
    from pfcore.tablestats import stats_for_fit
    from pfcore.transforms import TableTransformer

    split = Split.plan(ds, 0.2, SEED, sample_rows=SAMPLE)
    assert split.method == "hash" and split.row_spans is None
    train = split.read(ds, holdout_rows=0).train
    stats = stats_for_fit(ds, split) if with_stats else None
    schema = TableSchema.load(ds / "schema.json")
    tr = TableTransformer.fit(
        train, schema, seed=SEED, protect_extremes=PROTECT_EXTREMES, table_stats=stats
    )
    return tr, train, stats


def _column(tr, name: str):
    return tr.transforms[tr._index_of[name]]


def test_ingest_counts_every_row_and_the_counts_survive_a_reload(
    outside: tuple[Path, pa.Table], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pfcore import tablestats
    from pfcore.ingest import load_ingested
    from pfcore.tablestats import TableStats
    from pfcore.transforms.categorical import MAX_KEPT, MAX_POOLED

    assert tablestats.MAX_COUNTED == MAX_KEPT + MAX_POOLED
    ds, table = outside
    assert len(list((ds / "data").glob("part-*.parquet"))) == 4
    stats = load_ingested(ds).stats
    assert stats is not None and stats.rows == N
    c = stats.get("c")
    vc = pc.value_counts(table["c"]).to_pylist()
    assert dict(zip(c.values, c.counts, strict=True)) == {d["values"]: d["counts"] for d in vc}
    assert c.counts_exact and c.other_rows == 0 and c.other_values == 0 and c.nulls == 0
    xs = np.sort(np.asarray(table["x"]))
    assert stats.get("x").low == xs[:16].tolist() and stats.get("x").high == xs[::-1][:16].tolist()
    assert stats.get("k").low[:6] == [0, 1, 2, 3, 4, int(np.sort(table["k"])[5])]
    assert stats.get("x").values is None and stats.get("x").other_rows is None  # not counted
    back = TableStats.load(ds / "stats.json")
    assert back == stats and back.to_dict() == stats.to_dict()
    # capped: the rest is counted as other, honestly
    monkeypatch.setattr(tablestats, "MAX_COUNTED", 4)
    nulls = table.append_column("n", pa.array([None if i % 7 == 0 else i % 9 for i in range(N)]))
    capped = load_ingested(_ingest(tmp_path, nulls, "capped")).stats
    n = capped.get("n")
    assert len(n.values) == 4 and n.nulls == len(range(0, N, 7))
    assert n.other_rows == n.valid - sum(n.counts) > 0 and n.other_values == 9 - 4
    # statistics of another table than the split's are refused, naming the file
    from pfcore.errors import InputError
    from pfcore.synthesizer import Split
    from pfcore.tablestats import stats_for_fit

    ds2 = tmp_path / "capped"
    split = Split.plan(ds2, 0.2, SEED, sample_rows=SAMPLE)
    assert stats_for_fit(ds2, split) == capped
    TableStats(rows=N + 1, columns=capped.columns).save(ds2 / "stats.json")
    with pytest.raises(InputError, match="stats.json counts 8001 rows"):
        stats_for_fit(ds2, split)


def test_a_category_only_outside_the_sample_is_generated_in_proportion(
    outside: tuple[Path, pa.Table],
) -> None:
    from scipy.stats import chisquare

    ds, table = outside
    tr, train, stats = _fitted(ds)
    assert "ghost" not in set(train["c"].to_pylist())  # the sample never drew it
    ct = _column(tr, "c")
    assert ct.kept.to_pylist() == [v for v in stats.get("c").values if v in COMMON]
    pooled = dict(zip(ct.pooled.to_pylist(), ct.pooled_counts.tolist(), strict=True))
    assert pooled["ghost"] == 40 and set(pooled) == {"ghost", *RARE}
    assert set(RARE) & set(train["c"].to_pylist())  # the pool has training rows
    # every __other__ row is redrawn by the whole table's counts
    rng = np.random.default_rng(1)
    drawn = ct.decode_slots(np.full(40_000, ct._other_slot), 40_000, rng).to_pylist()
    values, counts = np.unique(np.array(drawn), return_counts=True)
    assert values[np.argmax(counts)] == "ghost"
    expect = np.array([pooled[v] for v in values], dtype=float)
    assert chisquare(counts, expect * counts.sum() / expect.sum()).pvalue > 1e-3
    # fitted on the sample alone, the category could never be generated
    old = _column(_fitted(ds, with_stats=False)[0], "c")
    assert "ghost" not in old.kept.to_pylist() + old.pooled.to_pylist()


def test_value_protection_clips_at_the_tables_own_extremes(
    outside: tuple[Path, pa.Table],
) -> None:
    from pfcore.transforms.numeric import NumericTransform

    ds, table = outside
    tr, train, stats = _fitted(ds)
    old, _, _ = _fitted(ds, with_stats=False)
    for name in ("x", "k"):
        new_t, old_t = _column(tr, name), _column(old, name)
        assert isinstance(new_t, NumericTransform)
        low, high = stats.get(name).low[5], stats.get(name).high[5]  # the table's 6th extremes
        assert new_t.lo + new_t.offset == low and new_t.hi + new_t.offset == high
        xs = np.sort(np.asarray(train[name]))
        assert old_t.lo + old_t.offset == xs[5] and old_t.hi + old_t.offset == xs[-6]
        # decode reaches further into the tail than the sample-only fit, never past the
        # table's 6th extreme, never beyond the sample's own range
        z = np.array([[-9.0], [9.0]])
        lo_v, hi_v = (new_t.decode_values(z)[0]).tolist()
        assert low <= lo_v <= xs[5] and xs[-6] <= hi_v <= high
        assert lo_v >= xs[0] and hi_v <= xs[-1]
        whole = np.sort(np.asarray(table[name]))
        assert lo_v > whole[4] and hi_v < whole[-5]  # none of the 5 most extreme


def test_train_task_hands_the_table_counts_to_the_fit(
    outside: tuple[Path, pa.Table], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pfcore.synthesizer import Synthesizer
    from tasks.train import train_task

    seen = {}

    class Stop(Exception):
        pass

    def fake_fit(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(Synthesizer, "fit", staticmethod(fake_fit))
    ds, _ = outside
    with pytest.raises(Stop):
        train_task.fn(str(ds), str(tmp_path), seed=SEED, sample_rows=SAMPLE, max_memory_gb=64)
    assert seen["split"].method == "hash"
    assert seen["table_stats"] is not None and seen["table_stats"].rows == N
    with pytest.raises(Stop):
        train_task.fn(str(ds), str(tmp_path), seed=SEED, sample_rows=N, max_memory_gb=64)
    assert seen["split"].method == "permutation" and seen["table_stats"] is None


def test_a_table_that_fits_the_sample_gets_the_same_transform_as_before(tmp_path: Path) -> None:
    """Small tables never read the statistics; and the table-count path itself, given counts
    of exactly the fit rows, builds the very transform the row path builds."""
    from pfcore.defaults import PROTECT_EXTREMES
    from pfcore.io import read_dataset, read_table
    from pfcore.schema import TableSchema
    from pfcore.synthesizer import Split
    from pfcore.tablestats import stats_for_fit, table_stats
    from pfcore.transforms import TableTransformer

    table = read_table(TEST_DATA / "credit_default_sample.csv")
    ds = _ingest(tmp_path, table)
    split = Split.plan(ds, 0.2, SEED, sample_rows=10**6)
    assert split.method == "permutation" and stats_for_fit(ds, split) is None
    train = split.read(ds).train
    schema = TableSchema.load(ds / "schema.json")
    kw = {"seed": SEED, "protect_extremes": PROTECT_EXTREMES}
    stats = table_stats(train, schema)  # the fit rows' statistics, not the schema's whole table
    assert stats.rows == train.num_rows < schema.n_rows
    assert all(c.nulls == train.column(c.name).null_count for c in stats.columns.values())
    before = TableTransformer.fit(train, schema, **kw)
    counted = TableTransformer.fit(train, schema, table_stats=stats, **kw)
    for d, tr in (("before", before), ("counted", counted)):
        tr.save(tmp_path / d)
    for f in ("transform.json", "transform.safetensors"):
        assert (tmp_path / "before" / f).read_bytes() == (tmp_path / "counted" / f).read_bytes()
    assert before.n_features == counted.n_features and read_dataset(ds).num_rows == table.num_rows


def test_pooled_values_no_training_row_holds_keep_their_share_under_a_parent_link(
    tmp_path: Path,
) -> None:
    """Tail numbers pooled and linked to their carrier: the tails the fit rows lack (about 10%
    of the table's rows) are redrawn at their whole-table share, the others keep their carrier,
    and the torch decode and a saved copy agree with the NumPy decode."""
    from pfcore.schema import infer_schema
    from pfcore.tablestats import table_stats
    from pfcore.transforms import TableTransformer
    from tests.test_torch_decode import assert_same_decode, noisy
    from tests.test_transforms import _owned_tails

    big, owner = _owned_tails(30_000, 0)
    unseen = {f"T{i}" for i in range(1800, 2000)}
    tails = np.asarray(big["tail"])
    fit_rows = big.slice(0, 15_000).filter(pa.array(~np.isin(tails[:15_000], list(unseen))))
    schema = infer_schema(big)
    stats = table_stats(big, schema)
    tr = TableTransformer.fit(fit_rows, schema, seed=0, table_stats=stats)
    ct = _column(tr, "tail")
    assert ct.link is not None and ct.link.parent == "carrier" and ct.link.marginal is not None
    assert unseen <= set(ct.pooled.to_pylist())
    share = float(np.isin(tails, list(unseen)).mean())
    assert 0.07 < share < 0.13
    d = tr.decode(tr.encode(fit_rows, seed=0), seed=1)
    drawn = np.asarray(d["tail"])
    got = float(np.isin(drawn, list(unseen)).mean())
    assert abs(got - share) < 0.015, (got, share)  # without the share kept: 0.0001
    seen_rows = ~np.isin(drawn, list(unseen))
    carriers = np.asarray(d["carrier"])[seen_rows]
    assert np.mean([owner[a] == b for a, b in zip(drawn[seen_rows], carriers, strict=True)]) > 0.8
    assert_same_decode(tr, noisy(tr, fit_rows, 0.5), "cpu")
    tr.save(tmp_path / "tr")
    z = np.random.default_rng(0).normal(size=(3000, tr.n_features)).astype(np.float32)
    assert TableTransformer.load(tmp_path / "tr").decode(z, seed=3).equals(tr.decode(z, seed=3))

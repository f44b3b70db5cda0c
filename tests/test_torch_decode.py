"""The torch decode equals the NumPy decode bit for bit: same model output, same seed, same
Parquet bytes, for every column kind (nulls, pooled categories with and without a parent,
derived columns, rule-built columns, tz-aware datetimes), on the bundled tables, hypothesis
tables and every shared dataset; on CPU always, on CUDA where present."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pfcore.io import read_table
from pfcore.schema import infer_schema
from pfcore.transforms import TableTransformer
from pfcore.transforms.canonical import interpolate, snap
from pfcore.transforms.ruled import ComputedTransform
from pfcore.transforms.torch_decode import decoder_for
from tests.conftest import SHARED_NAMES, TEST_DATA, shared_dataset
from tests.test_transforms import _owned_tails, tables

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def noisy(tr: TableTransformer, t: pa.Table, scale: float, seed: int = 0) -> np.ndarray:
    """Raw model output: encoded rows plus noise (scale 3: far outside the fitted range)."""
    rng = np.random.default_rng(seed)
    x = tr.encode(t, seed=seed)
    return (x + scale * rng.standard_normal(x.shape)).astype(np.float32)


def assert_same_decode(
    tr: TableTransformer,
    x: np.ndarray,
    device: str = "cpu",
    *,
    seed: int = 11,
    row_offset: int = 7,
    on_host: set[str] = frozenset(),  # type: ignore[assignment]
) -> pa.Table:
    """NumPy decode of ``x`` and torch decode of the same rows on ``device``: equal tables and
    equal Parquet bytes; only the columns in ``on_host`` may leave the device mid-decode."""
    ref = tr.decode(x, seed=seed, row_offset=row_offset)
    dec = decoder_for(tr, device)
    got = tr.decode(torch.from_numpy(x).to(device), seed=seed, row_offset=row_offset)
    assert got.schema.equals(ref.schema)
    for name in ref.column_names:
        assert got.column(name).equals(ref.column(name)), name
    assert parquet_bytes(got) == parquet_bytes(ref)
    assert dec.on_host <= set(on_host), dec.on_host
    return got


def all_kinds(n: int = 3000, seed: int = 1) -> pa.Table:
    """Every column kind with nulls, tz-aware and naive timestamps, dates, ids, constants."""
    rng = np.random.default_rng(seed)
    ts = np.datetime64("2020-01-01", "s") + rng.integers(0, 86400 * 365, n).astype("timedelta64[s]")
    return pa.table(
        {
            "f": pa.array(
                np.where(rng.random(n) < 0.1, np.nan, rng.normal(0, 1e4, n).round(3)),
                from_pandas=True,
            ),
            "f32": pa.array(rng.normal(0, 1, n).round(2), pa.float32()),
            "raw": rng.standard_cauchy(n),  # no decimals: plain interpolation
            "i": pa.array(
                np.where(rng.random(n) < 0.2, None, rng.integers(-(10**12), 10**12, n)).tolist(),
                pa.int64(),
            ),
            "u8": pa.array(rng.integers(0, 255, n), pa.uint8()),
            "step": pa.array(rng.integers(0, 50, n) * 25, pa.int32()),
            "c": pa.array(rng.choice(["x", "y", "z", None], n).tolist()),
            "b": pa.array(np.where(rng.random(n) < 0.1, None, rng.random(n) < 0.5).tolist()),
            "ts": pa.array(ts, pa.timestamp("s", tz="America/New_York")),
            "tsu": pa.array(ts.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")),
            "d": pa.array(ts.astype("datetime64[D]"), pa.date32()),
            "tsn": pa.array(
                np.where(rng.random(n) < 0.3, None, ts.astype("datetime64[ns]")), pa.timestamp("ns")
            ),
            "zero_heavy": np.where(rng.random(n) < 0.6, 0.0, rng.lognormal(0, 1, n).round(2)),
            "id": np.arange(n) * 5 + 7,
            "sid": [f"u{i:06d}" for i in range(n)],
            "k": [3.5] * n,
            "kc": ["same"] * n,
        }
    )


def derived_table(n: int = 6000, seed: int = 4) -> pa.Table:
    """A label and its code, an hour and minute inside an integer time (nearest-key lookups)."""
    rng = np.random.default_rng(seed)
    levels = np.array(["Bachelors", "HS-grad", "Masters", "Doctorate", "Some-college"])
    code = rng.integers(0, 5, n)
    sched = rng.choice(np.array([h * 100 + m for h in range(5, 23) for m in range(0, 60, 5)]), n)
    return pa.table(
        {
            "education": levels[code],
            "education_num": (code * 3 + 1).astype(np.int64),
            "sched": sched.astype(np.int64),
            "hour": (sched // 100).astype(np.int64),
            "minute": (sched % 100).astype(np.int64),
            "noise": rng.choice(["a", "b", "c"], n),
        }
    )


def fit(t: pa.Table, **kw) -> TableTransformer:
    return TableTransformer.fit(t, infer_schema(t), **kw)


# ---- the shared formulas ---------------------------------------------------------------------


def test_canonical_formulas_agree_between_numpy_and_torch():
    rng = np.random.default_rng(0)
    zp = np.sort(rng.normal(size=300)).astype(np.float32).astype(np.float64)
    zp[10:14] = zp[10]  # flat segments
    vp = np.sort(rng.lognormal(3, 2, 300))
    z = np.clip(rng.normal(0, 1.5, 50_000), zp[0], zp[-1])
    j = np.clip(np.searchsorted(zp, z, "right") - 1, 0, zp.size - 2)
    a = interpolate(z, j, zp, vp)
    b = interpolate(*(torch.from_numpy(v) for v in (z, j, zp, vp))).numpy()
    assert a.tobytes() == b.tobytes()
    np.testing.assert_allclose(a, np.interp(z, zp, vp), rtol=1e-12)
    for grid, dec in [(1, None), (25, None), (None, 0), (None, 2), (None, 5), (None, -1)]:
        v = rng.normal(0, 1e4, 20_000)
        s_np = snap(v, grid, dec)
        assert s_np.tobytes() == snap(torch.from_numpy(v), grid, dec).numpy().tobytes()
        if dec is not None:
            assert s_np.tobytes() == np.round(v, dec).tobytes()


# ---- bundled tables --------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "name", ["penguins.parquet", "credit_default_sample.csv", "diamonds_sample.jsonl"]
)
def test_bundled_tables(name, device):
    t = read_table(TEST_DATA / name)
    tr = fit(t, protect_extremes=2)
    for scale in (0.3, 3.0):
        assert_same_decode(tr, noisy(tr, t, scale), device, on_host=formula_columns(tr))


def formula_columns(tr: TableTransformer) -> set[str]:
    """Columns that follow a formula: decoded on the host (logs and powers, which NumPy and
    torch may round differently in the last bit)."""
    from pfcore.transforms.ruled import FormulaTransform

    return {t.column.name for t in tr.transforms if isinstance(t, FormulaTransform)}


@pytest.mark.parametrize("device", DEVICES)
def test_every_kind_with_nulls_and_time_zones(device):
    t = all_kinds()
    tr = fit(t)
    for scale in (0.0, 0.5, 3.0):
        got = assert_same_decode(tr, noisy(tr, t, scale), device)
    assert got.schema.field("ts").type == pa.timestamp("s", tz="America/New_York")
    assert got.column("f").null_count > 0 and got.column("c").null_count > 0


@pytest.mark.parametrize("device", DEVICES)
def test_pooled_categories_with_and_without_a_parent(device):
    t, _ = _owned_tails(20_000, 0)
    tr = fit(t)
    links = {c.column.name: getattr(c, "link", None) for c in tr.transforms}
    assert links["tail"] is not None and links["noise"] is None and len(tr.transforms[2].pooled)
    x = noisy(tr, t, 0.5)
    got = assert_same_decode(tr, x, device)
    # columns come back as dictionary codes + dictionary, ready for Arrow
    cols = decoder_for(tr, device).decode_columns(
        torch.from_numpy(x).to(device), seed=11, row_offset=7
    )
    tail = cols[1].dictionary_array()
    assert isinstance(tail, pa.DictionaryArray)
    assert tail.dictionary_decode().equals(got.column("tail").chunk(0))


@pytest.mark.parametrize("device", DEVICES)
def test_free_text_decodes_the_same_on_the_host(device):
    from tests.test_text import text_table

    t = text_table()
    tr = fit(t)
    assert tr.schema["title"].kind == "text"
    for scale in (0.0, 3.0):
        got = assert_same_decode(tr, noisy(tr, t, scale), device, on_host={"title"})
    assert got.column("title").null_count > 0


@pytest.mark.parametrize("device", DEVICES)
def test_derived_columns_are_gathers(device):
    from pfcore.transforms.derived import DerivedTransform

    t = derived_table()
    tr = fit(t)
    derived = {x.column.name: x.source for x in tr.transforms if isinstance(x, DerivedTransform)}
    assert derived == {"education_num": "education", "hour": "sched", "minute": "sched"}
    for scale in (0.3, 3.0):  # 3.0: sched decodes to times never seen (nearest key)
        assert_same_decode(tr, noisy(tr, t, scale), device)


def ruled(t: pa.Table) -> tuple[pa.Table, TableTransformer]:
    """Training rows and a transformer that enforces the rules detected on ``t``."""
    from pfcore.rules import collect_rules
    from pfcore.synthesizer import split_train_holdout

    train, holdout = split_train_holdout(t, 0.2, 0)
    schema = infer_schema(t)
    rules = collect_rules(train, holdout, schema, None)
    return train, TableTransformer.fit(train, schema, rules=rules)


def rules_table() -> pa.Table:
    """Every rule kind (tests/test_rules.py), plus a float column above an integer one."""
    from tests.test_rules import _all_rules_table

    table = _all_rules_table()
    rng = np.random.default_rng(3)
    bf = table.column("a").to_numpy() + np.round(rng.uniform(0, 5, table.num_rows), 1)
    return table.append_column("bf", pa.array(bf))


@pytest.mark.parametrize("device", DEVICES)
def test_rule_built_columns(device):
    """Gap (difference, ratio and clamp, and with a sentinel written over it), clock,
    computed (integer and clock arithmetic), missing and sentinel conditions (exactly when, and
    whenever) and a number pinned by two categorical keys decode on the device; the
    one non-integer identity runs on the host, and so do a calendar timestamp (time-zone rules)
    and its day within the month."""
    from pfcore.transforms.ruled import (
        ClockTransform,
        ConditionedTransform,
        GapTransform,
        PinnedTransform,
    )
    from tests.test_rules import (
        _calendar_table,
        _clock_table,
        _gap_implication_table,
        _gap_mass_table,
        _listings_table,
        _rule_table,
        _schedule_table,
    )

    cases = [(rules_table(), {"c"}), (_clock_table(), set()), (_calendar_table(), {"at", "day"})]
    cases.append((_rule_table("implication", near_miss=False)[0], set()))  # a sentinel whenever
    cases.append((_gap_mass_table(), set()))  # a gap with a point mass at its far extreme
    cases.append((_gap_implication_table(), set()))  # ... written over an inequality's gap
    cases.append((_listings_table(), set()))  # an order the ranges set: clamped
    cases.append((_schedule_table(), set()))  # a clock modelled after another clock
    for t, host in cases:
        train, tr = ruled(t)
        kinds = {type(x) for x in tr.transforms}
        assert kinds & {ClockTransform, ConditionedTransform, GapTransform, ComputedTransform}
        assert t is not cases[0][0] or PinnedTransform in kinds
        assert t is not cases[-5][0] or any(getattr(x, "implies", False) for x in tr.transforms)
        assert t is not cases[-4][0] or any(getattr(x, "mass", None) == 0 for x in tr.transforms)
        assert t is not cases[-3][0] or any(getattr(x, "overwrite", None) for x in tr.transforms)
        assert t is not cases[-2][0] or any(
            getattr(x, "mode", "") == "clamp" for x in tr.transforms
        )
        assert t is not cases[-1][0] or any(getattr(x, "base", None) for x in tr.transforms)
        for scale in (0.3, 3.0):
            assert_same_decode(tr, noisy(tr, train, scale), device, on_host=host)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.5, 3.0]))
def test_hypothesis_tables(t, seed, scale):
    tr = fit(t, seed=seed)
    assert_same_decode(tr, noisy(tr, t, scale, seed % 1000), seed=seed, row_offset=seed % 97)


# ---- shared datasets -------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", SHARED_NAMES)
def test_shared_datasets(name, device):
    """Fitted as the synthesizer fits (value protection, detected rules) on 10k rows."""
    from pfcore.rules import collect_rules
    from pfcore.synthesizer import split_train_holdout

    t = pq.read_table(shared_dataset(name)).replace_schema_metadata(None).slice(0, 10_000)
    schema = infer_schema(t)
    train, holdout = split_train_holdout(t, 0.2, 0)
    rules = collect_rules(train, holdout, schema, None)
    tr = TableTransformer.fit(train, schema, protect_extremes=5, rules=rules)
    from pfcore.transforms.ruled import MonthDayTransform

    host = {  # identities with fractional coefficients (long double) and calendars, on the host
        t.column.name
        for t in tr.transforms
        if isinstance(t, ComputedTransform)
        and (
            t.formula["type"] == "calendar"
            or t.formula["type"] == "linear"
            and not all(
                float(k).is_integer() for k in [*t.formula["coefficients"], t.formula["intercept"]]
            )
        )
        or isinstance(t, MonthDayTransform)
    } | formula_columns(tr)
    x = noisy(tr, train, 0.5)
    assert_same_decode(tr, x, device, on_host=host)


# ---- CPU against CUDA ------------------------------------------------------------------------


@CUDA
def test_cpu_and_cuda_give_the_same_parquet_bytes():
    """The same model output decoded by the CPU (NumPy) and the CUDA path, then written to
    Parquet: identical files, for every column kind and rule."""
    from tests.test_rules import _clock_table

    cases = [(t, fit(t, protect_extremes=2)) for t in (all_kinds(), derived_table())]
    cases.append((_owned_tails(20_000, 1)[0], None))
    cases += [ruled(rules_table()), ruled(_clock_table())]
    for t, tr in cases:
        tr = tr or fit(t)
        x = noisy(tr, t, 1.0)
        cpu = tr.decode(x, seed=3, row_offset=65_536)
        cuda = tr.decode(torch.from_numpy(x).cuda(), seed=3, row_offset=65_536)
        assert parquet_bytes(cuda) == parquet_bytes(cpu)


# ---- the sampling path -----------------------------------------------------------------------


def test_decode_backend_is_decided_by_the_device(monkeypatch):
    from pfcore import sampling
    from pfcore.errors import InputError

    assert sampling.decode_backend("cpu") == "numpy"
    assert sampling.decode_backend("cuda:0") == "torch"
    monkeypatch.setattr(sampling, "DECODE", "torch")
    assert sampling.decode_backend("cpu") == "torch"
    monkeypatch.setattr(sampling, "DECODE", "cupy")
    with pytest.raises(InputError, match="decode must be one of"):
        sampling.decode_backend("cpu")


def test_sampling_with_the_torch_decode_on_cpu_gives_the_published_rows(
    tmp_path, penguins_synth, monkeypatch
):
    """Switching the CPU decode changes nothing: sample and published batch stay equal."""
    from pfcore import sampling
    from pfcore.generate import BatchLayout, BatchTarget, generate_batch
    from pfcore.synthesizer import Synthesizer

    synth = Synthesizer.load(penguins_synth)
    n = 3 * 512 + 11
    expected = synth.sample(n, 5, block_rows=512)
    monkeypatch.setattr(sampling, "DECODE", "torch")
    block = next(sampling.blocks(n, 5, block_rows=512))
    assert isinstance(sampling.forward(synth, block), torch.Tensor)
    assert synth.sample(n, 5, block_rows=512).equals(expected)
    manifest = generate_batch(
        synth,
        n,
        5,
        BatchTarget(tmp_path, "penguins", model_name="p", model_version="1"),
        layout=BatchLayout(block_rows=512, rows_per_shard=1024),
    )
    published = pa.concat_tables(pq.read_table(p) for p in manifest.file_paths)
    assert published.equals(expected)


@CUDA
def test_cuda_sampling_decodes_on_the_device(penguins_synth):
    """On CUDA, forward leaves the rows on the device and the torch decode of them gives the
    bytes the NumPy decode gives for the same rows."""
    from pfcore import sampling
    from pfcore.synthesizer import Synthesizer

    synth = Synthesizer.load(penguins_synth, device="cuda")
    for block in sampling.blocks(70_000, 9):
        x = sampling.forward(synth, block, noise="device")
        assert isinstance(x, torch.Tensor) and x.device.type == "cuda"
        got = sampling.decode(synth, block, x)
        ref = synth.transformer.decode(
            x.cpu().numpy(), seed=block.decode_seed, row_offset=block.row_offset
        )
        assert parquet_bytes(got) == parquet_bytes(ref)

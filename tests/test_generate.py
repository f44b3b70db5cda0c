"""Batch generation: determinism across workers/shards, layout, readers, restart after a kill.

Most tests use ``ToySynth``, a tiny synthesizer with the real interface (``latent_dim``,
``push``, ``transformer.decode``, ``schema.arrow_schema``): it keeps these tests about the
generator (sharding, seeds, files, publishing) and makes a run slow on demand so the kill test
can stop it mid-way deterministically. ``test_real_synthesizer_*`` runs the same path with a
real, briefly trained ``pfcore.synthesizer.Synthesizer``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from pfcore.errors import GenerationError, InputError
from pfcore.generate import (
    MANIFEST_NAME,
    BatchLayout,
    BatchManifest,
    BatchPlan,
    BatchTarget,
    GenerationProgress,
    RunOptions,
    block_seeds,
    generate_batch,
    generate_shard,
    plan_batch,
    publish_batch,
    read_manifest,
    verify_batch,
)

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 512  # small canonical blocks so tests make many blocks and shards from few rows


# --------------------------------------------------------------------------- test double
class _Col:
    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind


class _ToySchema:
    columns = [
        _Col("id", "id"),
        _Col("amount", "continuous"),
        _Col("grade", "categorical"),
        _Col("flag", "boolean"),
        _Col("score", "integer"),
    ]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [
                pa.field("id", pa.int64(), nullable=False),
                pa.field("amount", pa.float64()),
                pa.field("grade", pa.string()),
                pa.field("flag", pa.bool_()),
                pa.field("score", pa.int32()),
            ],
            metadata={b"source": b"toy"},
        )


class _ToyTransformer:
    n_features = 4
    grades = np.array(["A", "B", "C"], dtype=object)

    def decode(self, x: np.ndarray, *, seed: int = 0, row_offset: int = 0) -> pa.Table:
        rng = np.random.default_rng(seed)  # decode randomness: a pure function of the seed
        n = len(x)
        amount = np.round(np.exp(x[:, 0].astype(np.float64)), 2)
        missing = rng.random(n) < 0.1
        grade = self.grades[np.argmax(x[:, 1:4], axis=1)]
        return pa.table(
            {
                "id": pa.array(np.arange(row_offset, row_offset + n, dtype=np.int64)),
                "amount": pa.array(amount, mask=missing),
                "grade": pa.array(grade, type=pa.string()),
                "flag": pa.array(x[:, 0] > 0),
                "score": pa.array(rng.integers(0, 100, n).astype(np.int32)),
            },
            schema=_ToySchema().arrow_schema(),
        )


class ToySynth:
    """Linear push-forward + toy decode; ``delay_s`` slows each block (for the kill test)."""

    latent_dim = 3

    def __init__(self, delay_s: float = 0.0) -> None:
        self.schema = _ToySchema()
        self.transformer = _ToyTransformer()
        self.delay_s = delay_s
        self.weights = np.array(
            [[1.0, 0.2, -0.3, 0.1], [0.0, 1.0, 0.5, -0.2], [0.3, -0.4, 1.0, 0.9]], dtype=np.float32
        )
        self.push_calls = 0

    def push(self, z):  # noqa: ANN001 - torch tensor in, numpy out, as Synthesizer.push
        self.push_calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return z.numpy().astype(np.float32) @ self.weights

    def save(self, directory: str | os.PathLike[str]) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "synthesizer.json").write_text(json.dumps({"family": "toy"}))
        (d / "weights.json").write_text(json.dumps(self.weights.tolist()))
        return d


def _read_batch(manifest: BatchManifest) -> pa.Table:
    tables = [pq.read_table(p) for p in manifest.file_paths]
    return pa.concat_tables(tables).replace_schema_metadata()


def _gen(
    out_root: Path,
    synth: ToySynth | None = None,
    *,
    n_rows: int = 5 * BLOCK + 37,
    seed: int = 7,
    **kw: object,
) -> BatchManifest:
    """A toy batch with small blocks; keyword arguments are sorted into generate_batch's
    BatchTarget, BatchLayout and RunOptions by name."""
    kw.setdefault("block_rows", BLOCK)
    kw.setdefault("run_date", "2026-01-02")
    groups: dict[type, dict] = {BatchTarget: {}, BatchLayout: {}, RunOptions: {}}
    progress = kw.pop("progress", None)
    for key, value in kw.items():
        cls = next(c for c in groups if key in c.__dataclass_fields__)
        groups[cls][key] = value
    return generate_batch(
        synth or ToySynth(),
        n_rows,
        seed,
        BatchTarget(out_root, "toy", **groups[BatchTarget]),
        layout=BatchLayout(**groups[BatchLayout]),
        run=RunOptions(**groups[RunOptions]),
        progress=progress,
    )


# --------------------------------------------------------------------------- planning
def test_plan_cuts_whole_blocks_and_covers_all_rows(tmp_path: Path) -> None:
    plan = plan_batch(
        ToySynth(),
        10 * BLOCK + 5,
        3,
        BatchTarget(tmp_path, "toy", run_date="2026-01-02"),
        layout=BatchLayout(rows_per_shard=3 * BLOCK - 1, block_rows=BLOCK),
    )
    assert plan.rows_per_shard == 3 * BLOCK  # rounded up to whole blocks
    assert [s.n_blocks for s in plan.shards] == [3, 3, 3, 2]
    assert sum(s.rows for s in plan.shards) == 10 * BLOCK + 5
    assert plan.shards[-1].rows == BLOCK + 5
    starts = [s.row_start for s in plan.shards]
    assert starts == [s.first_block * BLOCK for s in plan.shards]
    # plain values: survives JSON, as a Prefect/Dask task argument would
    again = BatchPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    assert BatchPlan.coerce(plan.staging_dir / "plan.json") == plan
    # deterministic default id: same request, same batch (so reruns resume)
    assert (
        plan_batch(
            ToySynth(),
            10 * BLOCK + 5,
            3,
            BatchTarget(tmp_path, "toy", run_date="2026-01-02"),
            layout=BatchLayout(block_rows=BLOCK),
        ).batch_id
        == plan.batch_id
    )
    other = plan_batch(
        ToySynth(),
        10 * BLOCK + 5,
        4,
        BatchTarget(tmp_path, "toy", run_date="2026-01-02"),
        layout=BatchLayout(block_rows=BLOCK),
    )
    assert other.batch_id != plan.batch_id


def test_block_seeds_are_stable_and_distinct() -> None:
    seeds = [block_seeds(11, b) for b in range(200)]
    assert seeds == [block_seeds(11, b) for b in range(200)]
    flat = [s for pair in seeds for s in pair]
    assert len(set(flat)) == len(flat)
    assert all(0 <= s < 2**63 for s in flat)
    assert block_seeds(12, 0) != block_seeds(11, 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_rows": -1}, "n_rows"),
        ({"seed": -3}, "seed"),
        ({"dataset_name": "../evil"}, "dataset name"),
        ({"run_date": "2026-13-01"}, "run_date"),
        ({"batch_id": "a/b"}, "batch id"),
        ({"rows_per_shard": 0}, "rows_per_shard"),
        ({"compression": "rar"}, "compression"),
        ({"noise": "gpu"}, "noise"),
    ],
)
def test_bad_parameters_raise_input_error(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"n_rows": 100, "seed": 1, "dataset_name": "toy"}
    args.update(kwargs)
    target = {k: args.pop(k) for k in ("run_date", "batch_id") if k in args}
    with pytest.raises(InputError, match=match):
        plan_batch(
            ToySynth(),
            args.pop("n_rows"),
            args.pop("seed"),
            BatchTarget(tmp_path, args.pop("dataset_name"), **target),
            layout=BatchLayout(**args),
        )


# --------------------------------------------------------------------------- determinism
def test_content_independent_of_workers_and_shard_size(tmp_path: Path) -> None:
    one = _gen(tmp_path / "a", workers=1, rows_per_shard=4 * BLOCK)
    four = _gen(tmp_path / "b", workers=4, executor="thread", rows_per_shard=BLOCK)
    assert len(one.files) == 2 and len(four.files) == 6
    t1, t4 = _read_batch(one), _read_batch(four)
    assert t1.num_rows == 5 * BLOCK + 37
    assert t1.equals(t4)
    # ids are globally unique and follow the canonical row numbering
    assert t1["id"].to_pylist() == list(range(t1.num_rows))
    assert one.batch_id == four.batch_id  # layout is not part of the identity
    other_seed = _read_batch(_gen(tmp_path / "c", seed=8))
    assert not other_seed.equals(t1)
    # each block is decoded with its own seed: the nulls are not a repeated pattern
    nulls = t1["amount"].is_null().to_numpy(zero_copy_only=False)
    assert not np.array_equal(nulls[:BLOCK], nulls[BLOCK : 2 * BLOCK])


def test_layout_metadata_and_readers(tmp_path: Path) -> None:
    import duckdb
    import polars as pl

    m = _gen(
        tmp_path,
        rows_per_shard=2 * BLOCK,
        row_group_rows=BLOCK,
        model_name="toy-model",
        model_version="3",
    )
    batch_dir = tmp_path / "dataset=toy" / "run_date=2026-01-02" / f"batch={m.batch_id}"
    assert m.batch_dir == batch_dir
    assert sorted(p.name for p in batch_dir.iterdir()) == [
        MANIFEST_NAME,
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert not (tmp_path / "_staging" / "toy").exists()  # staging cleaned after publish
    verify_batch(m)

    data = json.loads((batch_dir / MANIFEST_NAME).read_text())
    assert data["rows"] == 5 * BLOCK + 37 and data["seed"] == 7
    assert data["model_name"] == "toy-model" and data["model_version"] == "3"
    assert sum(f["rows"] for f in data["files"]) == data["rows"]
    names = [f["name"] for f in data["schema"]["fields"]]
    assert names == ["id", "amount", "grade", "flag", "score"]
    assert read_manifest(batch_dir).data == data

    expected = _ToySchema().arrow_schema()
    f0 = pq.ParquetFile(batch_dir / "part-00000.parquet")
    assert f0.schema_arrow.remove_metadata().equals(expected.remove_metadata())
    assert f0.schema_arrow.field("id").nullable is False
    meta = f0.schema_arrow.metadata
    assert meta[b"pushforward.seed"] == b"7" and meta[b"pushforward.model_version"] == b"3"
    assert meta[b"pushforward.batch_id"] == m.batch_id.encode()
    assert meta[b"source"] == b"toy"  # the source's own metadata is kept
    assert f0.metadata.num_row_groups == 2 and f0.metadata.row_group(0).num_rows == BLOCK
    rg = f0.metadata.row_group(0)
    encodings = {rg.column(i).path_in_schema: rg.column(i).encodings for i in range(rg.num_columns)}
    assert rg.column(0).compression == "ZSTD"
    assert any("DICTIONARY" in e for e in encodings["grade"])
    assert not any("DICTIONARY" in e for e in encodings["amount"])

    # pyarrow.dataset over the whole output root: hive partitions, staging ignored
    ds = pads.dataset(tmp_path, format="parquet", partitioning="hive")
    assert ds.count_rows() == m.rows
    glob = str(tmp_path / "dataset=toy" / "**" / "*.parquet")
    con = duckdb.connect()
    assert con.execute(f"select count(*) from read_parquet('{glob}')").fetchall() == [(m.rows,)]
    rows = con.execute(f"describe select * from read_parquet('{glob}')").fetchall()
    types = {r[0]: r[1] for r in rows}
    # DuckDB adds the hive partitions as columns on its own
    assert types == {
        "id": "BIGINT",
        "amount": "DOUBLE",
        "grade": "VARCHAR",
        "flag": "BOOLEAN",
        "score": "INTEGER",
        "dataset": "VARCHAR",
        "run_date": "DATE",
        "batch": "VARCHAR",
    }
    got = con.execute(
        f"select distinct batch, run_date::VARCHAR from read_parquet('{glob}')"
    ).fetchall()
    assert got == [(m.batch_id, "2026-01-02")]
    kv = con.execute(
        f"select value from parquet_kv_metadata('{batch_dir}/part-00000.parquet') "
        "where key = 'pushforward.seed'"
    ).fetchall()
    assert kv == [(b"7",)]
    df = pl.scan_parquet(glob).collect()
    assert df.height == m.rows
    assert dict(df.schema) == {
        "id": pl.Int64,
        "amount": pl.Float64,
        "grade": pl.String,
        "flag": pl.Boolean,
        "score": pl.Int32,
    }
    assert df["id"].n_unique() == m.rows


def test_row_groups_are_capped_by_bytes_without_changing_rows(tmp_path: Path) -> None:
    by_rows = _gen(tmp_path / "a", rows_per_shard=8 * BLOCK)
    by_bytes = _gen(tmp_path / "b", rows_per_shard=8 * BLOCK, row_group_bytes=1)
    f = pq.ParquetFile(by_bytes.file_paths[0])
    assert f.metadata.num_row_groups == 6  # one block per row group
    assert pq.ParquetFile(by_rows.file_paths[0]).metadata.num_row_groups == 1
    assert _read_batch(by_rows).equals(_read_batch(by_bytes))


def test_progress_reports_rows_rate_and_eta(tmp_path: Path) -> None:
    seen: list[GenerationProgress] = []
    m = _gen(tmp_path, rows_per_shard=BLOCK, progress=seen.append, progress_interval_s=0.0)
    assert seen[-1].finished and seen[-1].rows_written == m.rows == seen[-1].rows_total
    assert seen[-1].shards_done == seen[-1].shards_total == 6 and seen[-1].eta_s == 0.0
    written = [p.rows_written for p in seen]
    assert written == sorted(written) and len(seen) > 6
    mid = [p for p in seen if 0 < p.rows_written < m.rows]
    assert mid and all(p.rows_per_second > 0 and p.eta_s is not None and p.eta_s > 0 for p in mid)


def test_empty_batch_publishes_schema_only_file(tmp_path: Path) -> None:
    m = _gen(tmp_path, n_rows=0)
    assert m.rows == 0 and len(m.files) == 1
    t = pq.read_table(m.file_paths[0])
    assert t.num_rows == 0
    assert t.schema.remove_metadata().equals(_ToySchema().arrow_schema().remove_metadata())


# --------------------------------------------------------------------------- idempotence
def test_rerun_of_published_batch_does_nothing(tmp_path: Path) -> None:
    first = _gen(tmp_path)
    synth = ToySynth()
    again = _gen(tmp_path, synth=synth)
    assert synth.push_calls == 0
    assert again.data == first.data


def test_same_batch_id_with_other_content_is_refused(tmp_path: Path) -> None:
    _gen(tmp_path, batch_id="nightly")
    with pytest.raises(GenerationError, match="already published"):
        _gen(tmp_path, batch_id="nightly", seed=99)


def test_corrupt_staged_shard_is_regenerated(tmp_path: Path) -> None:
    synth = ToySynth()
    plan = plan_batch(
        synth,
        3 * BLOCK,
        5,
        BatchTarget(tmp_path, "toy"),
        layout=BatchLayout(rows_per_shard=BLOCK, block_rows=BLOCK),
    )
    r0 = generate_shard(synth, plan, 0)
    assert not r0.skipped and synth.push_calls == 1
    assert generate_shard(synth, plan, 0).skipped and synth.push_calls == 1
    staged = plan.staged_path(0)
    raw = bytearray(staged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    staged.write_bytes(bytes(raw))
    r0b = generate_shard(synth, plan, 0)
    assert not r0b.skipped and r0b.sha256 == r0.sha256  # rewritten, byte-identical
    results = [r0b] + [generate_shard(synth, plan, i) for i in (1, 2)]
    # publishing with a missing result is refused; with all of them it succeeds
    with pytest.raises(GenerationError, match="no result"):
        publish_batch(plan, results[:2])
    m = publish_batch(plan.to_dict(), [r.to_dict() for r in results])
    assert m.rows == 3 * BLOCK
    verify_batch(m)
    # a rerun of the whole flow after publication: shards are no-ops, publish returns the same
    calls = synth.push_calls
    again = [generate_shard(synth, plan, i) for i in range(3)]
    assert all(r.skipped for r in again) and synth.push_calls == calls
    assert publish_batch(plan, again).data == m.data


def test_decode_with_wrong_schema_fails_and_leaves_nothing(tmp_path: Path) -> None:
    synth = ToySynth()

    class Wrong(_ToyTransformer):
        def decode(self, x, *, seed=0, row_offset=0):  # noqa: ANN001
            return super().decode(x, seed=seed, row_offset=row_offset).drop_columns(["score"])

    synth.transformer = Wrong()
    with pytest.raises(GenerationError, match="schema"):
        _gen(tmp_path, synth=synth)
    assert not (tmp_path / "dataset=toy").exists()
    assert not [p for p in (tmp_path / "_staging").rglob("*.parquet*")]


# --------------------------------------------------------------------------- crash + restart
_CHILD = """
import sys
sys.path.insert(0, {root!r})
from tests.test_generate import ToySynth, BLOCK
from pfcore.generate import BatchLayout, BatchTarget, generate_batch
generate_batch(ToySynth(delay_s=0.15), 40 * BLOCK, 1, BatchTarget({out!r}, "toy", "2026-01-03"),
               layout=BatchLayout(block_rows=BLOCK, rows_per_shard=BLOCK))
"""


@pytest.mark.timeout(180)
def test_killed_run_leaves_published_batch_intact_and_resumes(tmp_path: Path) -> None:
    import polars as pl

    earlier = _gen(tmp_path, run_date="2026-01-02")  # a batch published by an earlier run
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT), out=str(tmp_path))],
        env=env,
        start_new_session=True,
        stderr=subprocess.PIPE,
    )
    shards = tmp_path / "_staging" / "toy" / "2026-01-03"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if len(list(shards.rglob("part-*.parquet.json"))) >= 3:
                break
            if child.poll() is not None:
                pytest.fail(f"child ended early: {child.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        else:
            pytest.fail("child made no progress")
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL

    # readers see exactly the earlier batch, which is intact
    verify_batch(read_manifest(earlier.batch_dir))
    ds = pads.dataset(tmp_path, format="parquet", partitioning="hive")
    assert ds.count_rows() == earlier.rows
    glob = str(tmp_path / "dataset=toy" / "**" / "*.parquet")
    assert pl.scan_parquet(glob).collect().height == earlier.rows
    assert not (tmp_path / "dataset=toy" / "run_date=2026-01-03").exists()

    staged = {p.name: p.stat().st_mtime_ns for p in shards.rglob("part-*.parquet.staged")}
    assert 3 <= len(staged) < 40
    synth = ToySynth()
    m = generate_batch(
        synth,
        40 * BLOCK,
        1,
        BatchTarget(tmp_path, "toy", run_date="2026-01-03"),
        layout=BatchLayout(block_rows=BLOCK, rows_per_shard=BLOCK),
    )
    assert synth.push_calls == 40 - len(m.data["run"]["shards_skipped"])
    # a shard killed between its file and its sidecar is redone; all others are kept
    assert len(m.data["run"]["shards_skipped"]) >= len(staged) - 1
    for name, mtime in staged.items():
        idx = int(name.split("-")[1].split(".")[0])
        if idx in m.data["run"]["shards_skipped"]:
            assert (m.batch_dir / name.removesuffix(".staged")).stat().st_mtime_ns == mtime
    verify_batch(m)
    t = _read_batch(m)
    assert t["id"].to_pylist() == list(range(40 * BLOCK))
    # the resumed batch equals one generated in a single go
    fresh = generate_batch(
        ToySynth(),
        40 * BLOCK,
        1,
        BatchTarget(tmp_path / "fresh", "toy", run_date="2026-01-03"),
        layout=BatchLayout(block_rows=BLOCK, rows_per_shard=8 * BLOCK),
    )
    assert _read_batch(fresh).equals(t)


# --------------------------------------------------------------------------- real synthesizer
@pytest.mark.timeout(180)
def test_real_synthesizer_process_pool_matches_inline(tmp_path: Path, penguins_synth: Path) -> None:
    import duckdb
    import pandas as pd
    import polars as pl

    from pfcore.synthesizer import Synthesizer

    n = 3 * BLOCK + 11
    inline = generate_batch(
        Synthesizer.load(penguins_synth),
        n,
        3,
        BatchTarget(tmp_path / "a", "penguins", model_name="penguins-synth", model_version="1"),
        layout=BatchLayout(block_rows=BLOCK, rows_per_shard=2 * BLOCK),
    )
    pooled = generate_batch(
        penguins_synth,
        n,
        3,
        BatchTarget(tmp_path / "b", "penguins", model_name="penguins-synth", model_version="1"),
        layout=BatchLayout(block_rows=BLOCK, rows_per_shard=BLOCK),
        run=RunOptions(workers=2, executor="process"),
    )
    assert pooled.data["run"]["executor"] == "process" and len(pooled.files) == 4
    # same model bytes, same request: same identity and the same rows
    assert inline.data["model_fingerprint"] == pooled.data["model_fingerprint"]
    assert inline.batch_id == pooled.batch_id
    t_inline, t_pooled = _read_batch(inline), _read_batch(pooled)
    assert t_inline.num_rows == n and t_inline.equals(t_pooled)
    source = pq.read_schema(ROOT / "tests" / "data" / "penguins.parquet")
    assert t_inline.schema.equals(source.remove_metadata())
    assert t_inline["sex"].null_count > 0  # nulls restored by decode, kept by the writer
    meta = pq.read_schema(inline.file_paths[0]).metadata
    assert b"pandas" not in meta and meta[b"pushforward.model_name"] == b"penguins-synth"
    assert pq.read_table(inline.file_paths[0]).to_pandas().index.equals(pd.RangeIndex(2 * BLOCK))

    glob = str(tmp_path / "b" / "dataset=penguins" / "**" / "*.parquet")
    con = duckdb.connect()
    assert (
        con.execute(
            f"select count(*), count(distinct species) from read_parquet('{glob}')"
        ).fetchall()[0][0]
        == n
    )
    df = pl.scan_parquet(glob).collect()
    assert df.height == n and df.schema["year"] == pl.Int64 and df.schema["species"] == pl.String


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("rows_per_shard", "workers", "executor"),
    [(BLOCK, 1, "thread"), (2 * BLOCK, 3, "thread"), (10 * BLOCK, 2, "process")],
)
def test_sample_equals_the_published_batch_for_any_layout(
    tmp_path: Path, penguins_synth: Path, rows_per_shard: int, workers: int, executor: str
) -> None:
    """``Synthesizer.sample(n, seed)`` and the batch writer run one sampling path: the gate,
    the pyfunc and an analyst's spot check see exactly the rows that were published."""
    from pfcore.synthesizer import Synthesizer

    synth = Synthesizer.load(penguins_synth)
    n = 3 * BLOCK + 11
    manifest = generate_batch(
        penguins_synth if executor == "process" else synth,
        n,
        5,
        BatchTarget(tmp_path, "penguins", model_name="penguins-synth", model_version="1"),
        layout=BatchLayout(block_rows=BLOCK, rows_per_shard=rows_per_shard),
        run=RunOptions(workers=workers, executor=executor),
    )
    assert len(manifest.files) == -(-n // rows_per_shard)
    expected = synth.sample(n, 5, block_rows=BLOCK)
    assert _read_batch(manifest).equals(expected)
    streamed = pa.concat_tables(list(synth.iter_blocks(n, 5, block_rows=BLOCK)))
    assert streamed.equals(expected)
    assert not synth.sample(n, 6, block_rows=BLOCK).equals(expected)

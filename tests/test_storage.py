"""Storage locations and the publish protocol on a real S3-compatible server (moto).

The server runs as its own process on 127.0.0.1; the code under test reaches it only through
the standard ``AWS_*`` environment, as it would reach S3.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pfcore import storage
from pfcore.errors import InputError, StorageError, StorageUnreachable
from pfcore.generate import (
    BatchLayout,
    BatchTarget,
    RunOptions,
    generate_batch,
    generate_shard,
    plan_batch,
    publish_batch,
    verify_batch,
)
from pfcore.generate import publish as publish_mod
from pfcore.generate.read import committed_batches, committed_files, read_committed
from tests.s3server import BUCKET, make_bucket, moto_server, s3_env
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 512
LAYOUT = BatchLayout(block_rows=BLOCK, rows_per_shard=2 * BLOCK, row_group_rows=BLOCK)
ROWS = 5 * BLOCK - 100  # 3 shards, the last one short


# --------------------------------------------------------------------------- without a server
def test_local_paths_resolve_unchanged(tmp_path: Path) -> None:
    assert storage.normalise(tmp_path / "a" / ".." / "b") == str((tmp_path / "b").resolve())
    assert storage.normalise(f"file://{tmp_path}") == str(tmp_path.resolve())
    assert not storage.is_remote(tmp_path)
    assert storage.normalise("s3a://bucket//x/y/") == "s3://bucket/x/y"
    assert storage.join("s3://b/x", "y", "z") == "s3://b/x/y/z"


def test_unknown_scheme_is_a_clear_input_error() -> None:
    with pytest.raises(InputError, match=r"unknown storage scheme 'ftp'.*known: abfs"):
        storage.resolve("ftp://host/data.csv")
    with pytest.raises(InputError, match="needs a bucket"):
        storage.resolve("s3://")


def test_local_exclusive_create_refuses_the_second_writer(tmp_path: Path) -> None:
    loc = storage.resolve(tmp_path / "m.json")
    assert loc.write_bytes(b"first", exclusive=True)
    assert not loc.write_bytes(b"second", exclusive=True)
    assert loc.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind


def test_unreachable_endpoint_fails_fast_with_storage_error(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    for k, v in s3_env("unused").items():
        if k != "AWS_ENDPOINT_URL":
            monkeypatch.setenv(k, v)
    t0 = time.monotonic()
    with pytest.raises(StorageUnreachable, match=r"s3://nobucket/x: cannot check: endpoint"):
        storage.resolve("s3://nobucket/x").exists()
    assert time.monotonic() - t0 < 60  # bounded retries, not botocore's long default


# --------------------------------------------------------------------------- with a server
@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    logs = tmp_path_factory.mktemp("moto")
    with moto_server(logs) as endpoint, pytest.MonkeyPatch.context() as mp:
        for k, v in s3_env(endpoint).items():
            mp.setenv(k, v)
        # model copies loaded from the bucket are cached here, never in the repository
        mp.setenv("PUSHFORWARD_HOME", str(logs / "pf-home"))
        make_bucket()
        yield endpoint


@pytest.fixture(scope="module")
def penguins_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real saved synthesizer trained for 2 steps: the protocol needs the saved form."""
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    table = pq.read_table(ROOT / "tests" / "data" / "penguins.parquet")
    config = {"max_steps": 2, "min_steps": 1, "eval_every": 2, "n_eval": 64, "n_pairs": 256}
    config["distill_max_steps"] = 2
    synth = Synthesizer.fit(
        table, infer_schema(table), family="onestep", preset="tiny", config=config, seed=0
    )
    return synth.save(tmp_path_factory.mktemp("synth") / "penguins")


def _target(root: str, batch_id: str | None = None) -> BatchTarget:
    return BatchTarget(root, "penguins", "2026-01-02", batch_id, "pf-penguins", "1")


def test_s3_exclusive_create_one_winner(s3) -> None:
    loc = storage.resolve(f"s3://{BUCKET}/race/_manifest.json")
    barrier = threading.Barrier(4)
    won: list[bytes] = []

    def attempt(i: int) -> None:
        barrier.wait()
        if loc.write_bytes(f"writer {i}".encode(), exclusive=True):
            won.append(f"writer {i}".encode())

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and loc.read_bytes() == won[0]


def test_generate_to_s3_matches_local_and_reads_back(s3, tmp_path, penguins_synth) -> None:
    import duckdb
    import polars as pl

    root = f"s3://{BUCKET}/gen"
    remote = generate_batch(penguins_synth, ROWS, 7, _target(root), layout=LAYOUT)
    local = generate_batch(penguins_synth, ROWS, 7, _target(tmp_path / "out"), layout=LAYOUT)
    assert str(remote.batch_dir).startswith(f"{root}/dataset=penguins/run_date=2026-01-02/")
    # same bytes, whatever the store: sha256 of every file is in both manifests
    assert [f["sha256"] for f in remote.files] == [f["sha256"] for f in local.files]
    assert remote.batch_id == local.batch_id and remote.rows == ROWS
    verify_batch(remote)  # re-reads every object and checks size and sha256
    # the staging prefix (shards, model copy, plan) is gone after the commit
    assert storage.resolve(f"{root}/_staging").files() == []

    expected = pa.concat_tables([pq.ParquetFile(p).read() for p in local.file_paths])
    got = read_committed(root, "penguins")
    assert got.drop_columns(["dataset", "run_date", "batch"]).equals(expected)

    files = committed_files(root, "penguins")
    con = duckdb.connect()
    # DuckDB's httpfs extension is downloaded on first use, which this sandbox cannot do; an
    # fsspec file system (the same s3fs client, same AWS_* environment) serves s3:// instead
    con.register_filesystem(storage.resolve(root).fs)
    sql = f"SELECT * EXCLUDE (dataset, run_date, batch) FROM read_parquet({files!r})"
    from_duckdb = con.sql(sql).to_arrow_table()
    assert from_duckdb.num_rows == ROWS
    assert from_duckdb.column_names == expected.column_names
    assert from_duckdb.to_pydict() == expected.to_pydict()

    opts = {
        "aws_endpoint_url": s3,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_region": "us-east-1",
        "aws_allow_http": "true",
    }
    frame = pl.read_parquet(files, storage_options=opts)
    assert frame.height == ROWS
    assert frame.to_arrow().to_pydict() == pl.from_arrow(expected).to_arrow().to_pydict()


def test_s3_crash_before_commit_then_rerun_writes_only_missing(s3, penguins_synth) -> None:
    root = f"s3://{BUCKET}/crash"
    plan = plan_batch(penguins_synth, ROWS, 11, _target(root), layout=LAYOUT)
    assert len(plan.shards) == 3
    first = generate_shard(None, plan, 0)  # then the run "crashes"
    assert not first.skipped
    assert committed_batches(root) == []  # nothing committed, nothing visible
    again = generate_shard(None, plan, 0)
    assert again.skipped and again.sha256 == first.sha256

    manifest = generate_batch(penguins_synth, ROWS, 11, _target(root), layout=LAYOUT)
    assert manifest.data["run"]["shards_skipped"] == [0]
    assert manifest.data["run"]["shards_generated"] == [1, 2]
    assert [m.batch_id for m in committed_batches(root)] == [plan.batch_id]

    # a crash after every shard but before the manifest: the rerun writes no shard at all
    plan2 = plan_batch(penguins_synth, ROWS, 12, _target(root), layout=LAYOUT)
    for i in range(3):
        generate_shard(None, plan2, i)
    # the commit's copies ran for one shard, then the process died before the manifest
    storage.resolve(plan2.staged_uri(0)).copy_to(
        storage.resolve(plan2.final_uri).child("part-00000.parquet")
    )
    assert [m.batch_id for m in committed_batches(root)] == [plan.batch_id]
    m2 = generate_batch(penguins_synth, ROWS, 12, _target(root), layout=LAYOUT)
    assert m2.data["run"]["shards_generated"] == [] and m2.rows == ROWS
    verify_batch(m2)


def test_two_concurrent_s3_commits_exactly_one_wins(s3, penguins_synth, monkeypatch) -> None:
    root = f"s3://{BUCKET}/race-batch"
    plan = plan_batch(penguins_synth, ROWS, 21, _target(root), layout=LAYOUT)
    results = [generate_shard(None, plan, i) for i in range(len(plan.shards))]

    # both committers have built their manifest before either creates it: a true race
    barrier = threading.Barrier(2)
    attempted: list[str] = []
    real = publish_mod._manifest_data

    def racing(*args, **kwargs):
        data = real(*args, **kwargs)
        attempted.append(data["commit_id"])
        barrier.wait(timeout=60)
        return data

    monkeypatch.setattr(publish_mod, "_manifest_data", racing)
    out: list = [None, None]
    errors: list[BaseException] = []

    def commit(i: int) -> None:
        try:
            out[i] = publish_batch(plan, results)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(attempted)) == 2
    winners = {m.commit_id for m in out}
    assert len(winners) == 1 and winners <= set(attempted)
    stored = json.loads(storage.resolve(plan.final_uri).child("_manifest.json").read_text())
    assert stored["commit_id"] in winners
    assert len(committed_batches(root)) == 1


def test_remote_output_refuses_seed_rows(s3, penguins_synth, tmp_path) -> None:
    from pfcore.conditions import Conditions

    seed_rows = pq.read_table(ROOT / "tests" / "data" / "penguins.parquet").select(["island"])
    with pytest.raises(InputError, match="seed rows need a local output folder"):
        plan_batch(
            penguins_synth,
            None,
            1,
            _target(f"s3://{BUCKET}/seed"),
            conditions=Conditions.make(seed_rows=seed_rows.slice(0, 5)),
        )


def test_thread_runner_to_s3_matches_inline(s3, penguins_synth) -> None:
    a = generate_batch(penguins_synth, ROWS, 5, _target(f"s3://{BUCKET}/inline"), layout=LAYOUT)
    b = generate_batch(
        penguins_synth,
        ROWS,
        5,
        _target(f"s3://{BUCKET}/threads"),
        layout=LAYOUT,
        run=RunOptions(workers=2, executor="thread"),
    )
    assert [f["sha256"] for f in a.files] == [f["sha256"] for f in b.files]
    assert os.environ["AWS_ENDPOINT_URL"] == s3


def test_ingest_from_s3_to_s3_train_generate_matches_local(
    s3, tmp_path, tmp_project, monkeypatch
) -> None:
    """The whole path through object storage: source, dataset store, model, output."""
    from flows.params import TrainParams
    from pfcore.ingest import ingest, load_ingested, local_dataset, read_dataset
    from pfcore.synthesizer import Synthesizer

    src = ROOT / "tests" / "data" / "penguins.parquet"
    storage.resolve(f"s3://{BUCKET}/raw/penguins.parquet").upload(src)
    params = TrainParams(
        source=f"s3://{BUCKET}/raw/penguins.parquet", dataset_store=f"s3://{BUCKET}/datasets"
    )
    assert params.resolved_dataset_dir() == f"s3://{BUCKET}/datasets/penguins"
    remote = ingest(params.source, params.resolved_dataset_dir())
    local = ingest(src, tmp_path / "ds")
    assert remote.out_dir == f"s3://{BUCKET}/datasets/penguins" and not remote.reused
    assert remote.manifest["source"] == f"s3://{BUCKET}/raw/penguins.parquet"
    # the same bytes as a local ingest (the data files' sha256 are in both manifests)
    assert [f["sha256"] for f in remote.manifest["files"]] == [
        f["sha256"] for f in local.manifest["files"]
    ]
    assert ingest(params.source, params.resolved_dataset_dir()).reused  # idempotent
    copy = local_dataset(remote.out_dir)
    assert load_ingested(remote.out_dir).manifest["rows"] == local.manifest["rows"]
    table = read_dataset(copy)
    assert table.equals(read_dataset(tmp_path / "ds"))

    config = {"max_steps": 2, "min_steps": 1, "eval_every": 2, "n_eval": 64, "n_pairs": 256}
    config["distill_max_steps"] = 2
    synth = Synthesizer.fit(table, remote.schema, family="onestep", preset="tiny", config=config)
    synth_dir = synth.save(tmp_path / "synth")
    out = f"s3://{BUCKET}/e2e"
    m = generate_batch(synth_dir, 1000, 3, _target(out), layout=LAYOUT)
    got = read_committed(out, "penguins").drop_columns(["dataset", "run_date", "batch"])
    assert got.num_rows == 1000
    assert got.schema.remove_metadata().equals(table.schema.remove_metadata())
    again = generate_batch(synth_dir, 1000, 3, _target(tmp_path / "again"), layout=LAYOUT)
    assert [f["sha256"] for f in m.files] == [f["sha256"] for f in again.files]


def test_missing_remote_source_and_bucket_are_clear_errors(s3, tmp_project) -> None:
    from pfcore.ingest import ingest
    from pfcore.preflight import check_writable_dir

    with pytest.raises(InputError, match=r"s3://pf-test/raw/nope.csv: does not exist"):
        ingest(f"s3://{BUCKET}/raw/nope.csv", f"s3://{BUCKET}/datasets/nope")
    with pytest.raises(StorageError, match="bucket s3://no-such-bucket does not exist"):
        check_writable_dir("s3://no-such-bucket/out", "the output folder")


def test_delta_append_is_one_transaction_per_batch(tmp_path, penguins_synth) -> None:
    import duckdb
    import polars as pl
    from deltalake import DeltaTable

    from pfcore.generate.delta import append_batch

    out = tmp_path / "out"
    m1 = generate_batch(penguins_synth, ROWS, 1, _target(out), layout=LAYOUT)
    m2 = generate_batch(penguins_synth, 700, 2, _target(out), layout=LAYOUT)
    table = tmp_path / "delta" / "penguins"
    assert append_batch(m1, table)
    assert not append_batch(m1, table)  # a retry never appends twice
    assert append_batch(m2, table)
    dt = DeltaTable(str(table))
    assert dt.version() == 1  # two commits: one per batch, none for the retry

    frame = pl.read_delta(str(table))
    assert frame.height == ROWS + 700
    expected = pa.concat_tables([pq.ParquetFile(p).read() for p in m1.file_paths])
    assert frame.columns == expected.column_names
    files = DeltaTable(str(table)).file_uris()
    n = duckdb.connect().sql(f"SELECT count(*) FROM read_parquet({files!r})").fetchall()[0][0]
    assert n == ROWS + 700


def _commits_of(table: str | Path, batch_id: str) -> int:
    from deltalake import DeltaTable

    return sum(c.get("pushforward.batch_id") == batch_id for c in DeltaTable(str(table)).history())


def _race(manifest, table, contenders: int = 3, **kwargs) -> list[bool]:
    """``contenders`` appends of one batch released at the same moment; their sorted results."""
    from pfcore.generate.delta import append_batch

    barrier = threading.Barrier(contenders)
    landed: list[bool] = []
    errors: list[BaseException] = []

    def race() -> None:
        barrier.wait()
        try:
            landed.append(append_batch(manifest, table, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=race) for _ in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return sorted(landed)


def _late_check_race(monkeypatch, manifest, table) -> dict[str, bool]:
    """The interleaving a check-then-append loses: the second caller's 'already appended?'
    check runs before the first caller commits, and its append after."""
    from pfcore.generate import delta

    real = delta._appended
    first_done, checked = threading.Event(), threading.Event()

    def appended(uri: str, txn: str) -> bool:
        found = real(uri, txn)
        if threading.current_thread().name == "late" and not checked.is_set():
            checked.set()
            assert first_done.wait(120)
        return found

    monkeypatch.setattr(delta, "_appended", appended)
    results: dict[str, bool] = {}

    def late() -> None:
        results["late"] = delta.append_batch(manifest, table, claim_timeout_s=10)

    thread = threading.Thread(target=late, name="late")
    thread.start()
    assert checked.wait(120)
    try:
        results["first"] = delta.append_batch(manifest, table, claim_timeout_s=10)
    finally:
        first_done.set()
        thread.join(120)
    return results


def _foreign_claim(table, manifest, generation: int = 0, beat: int = 0) -> storage.Location:
    """A claim written by another (here: imaginary) process."""
    from pfcore.generate.delta import app_id, claim_uri

    body = {"app_id": app_id(manifest), "batch_id": manifest.batch_id, "beat": beat}
    body["owner"] = {"host": "elsewhere", "pid": 1, "token": "0" * 16}
    loc = storage.resolve(claim_uri(table, manifest.batch_id, generation))
    if beat == 0:
        assert loc.write_bytes(json.dumps(body).encode(), exclusive=True)
    else:
        loc.write_bytes(json.dumps(body).encode())
    return loc


def test_delta_racing_appends_of_one_batch_land_once(tmp_path, penguins_synth) -> None:
    import polars as pl
    from deltalake import DeltaTable

    from pfcore.generate.delta import append_batch

    out = tmp_path / "out"
    m1 = generate_batch(penguins_synth, ROWS, 1, _target(out), layout=LAYOUT)
    m3 = generate_batch(penguins_synth, 600, 3, _target(out), layout=LAYOUT)
    for i in range(3):
        table = tmp_path / f"delta{i}" / "penguins"
        if i:  # the first race also creates the table
            assert append_batch(m1, table)
        assert _race(m3, table, claim_timeout_s=10) == [False, False, True]
        assert _commits_of(table, m3.batch_id) == 1
        assert pl.read_delta(str(table)).height == 600 + (ROWS if i else 0)
        # the claims folder is invisible to Delta: vacuum would never delete a claim
        dt = DeltaTable(str(table))
        leftovers = dt.vacuum(retention_hours=0, enforce_retention_duration=False, full=True)
        assert not [f for f in leftovers if "_pushforward" in f]
        assert (table / "_pushforward" / "claims" / f"{m3.batch_id}.0.json").exists()


def test_delta_check_before_a_commit_and_append_after_it_lands_once(
    tmp_path, penguins_synth, monkeypatch
) -> None:
    m = generate_batch(penguins_synth, 600, 3, _target(tmp_path / "out"), layout=LAYOUT)
    table = tmp_path / "delta" / "penguins"
    assert _late_check_race(monkeypatch, m, table) == {"first": True, "late": False}
    assert _commits_of(table, m.batch_id) == 1


def test_delta_stale_claim_is_taken_over_by_exactly_one(tmp_path, penguins_synth) -> None:
    import polars as pl

    from pfcore.generate.delta import append_batch, claim_uri

    m = generate_batch(penguins_synth, 600, 3, _target(tmp_path / "out"), layout=LAYOUT)
    table = tmp_path / "delta" / "penguins"
    dead = _foreign_claim(table, m)  # its owner died before committing
    t0 = time.monotonic()
    assert _race(m, table, claim_timeout_s=0.5) == [False, False, True]
    assert time.monotonic() - t0 >= 0.5  # nobody took over a claim before it was stale
    assert _commits_of(table, m.batch_id) == 1
    assert pl.read_delta(str(table)).height == 600
    assert json.loads(dead.read_bytes())["owner"]["host"] == "elsewhere"  # left untouched
    winner = json.loads(storage.resolve(claim_uri(table, m.batch_id, 1)).read_bytes())
    assert winner["owner"]["pid"] == os.getpid() and winner["generation"] == 1
    assert not storage.resolve(claim_uri(table, m.batch_id, 2)).exists()  # one taker won
    assert not append_batch(m, table, claim_timeout_s=0.5)


def test_delta_slow_holder_renews_its_claim_and_is_not_taken_over(
    tmp_path, penguins_synth, monkeypatch
) -> None:
    from pfcore.generate import delta

    m = generate_batch(penguins_synth, 600, 3, _target(tmp_path / "out"), layout=LAYOUT)
    table = tmp_path / "delta" / "penguins"
    real = delta._reader
    writing = threading.Event()

    def slow_reader(manifest):  # the holder's write takes 4 claim timeouts
        if threading.current_thread().name == "holder":
            writing.set()
            time.sleep(2.0)
        return real(manifest)

    monkeypatch.setattr(delta, "_reader", slow_reader)
    result: dict[str, bool] = {}

    def hold() -> None:
        result["holder"] = delta.append_batch(m, table, claim_timeout_s=0.5)

    holder = threading.Thread(target=hold, name="holder")
    holder.start()
    assert writing.wait(60)
    result["waiter"] = delta.append_batch(m, table, claim_timeout_s=0.5)
    holder.join(60)
    assert result == {"holder": True, "waiter": False}
    assert _commits_of(table, m.batch_id) == 1
    assert not storage.resolve(delta.claim_uri(table, m.batch_id, 1)).exists()


def test_delta_fresh_claim_makes_a_second_caller_wait_for_its_commit(
    tmp_path, penguins_synth
) -> None:
    import polars as pl
    import pyarrow.dataset as ds
    from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

    from pfcore.errors import GenerationError
    from pfcore.generate.delta import app_id, append_batch

    m = generate_batch(penguins_synth, 600, 3, _target(tmp_path / "out"), layout=LAYOUT)
    table = tmp_path / "delta" / "penguins"
    _foreign_claim(table, m)  # a live holder, appending right now
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(append_batch(m, table)))
    waiter.start()
    time.sleep(1.5)
    assert waiter.is_alive() and not (table / "_delta_log").exists()  # waiting, not appending
    rows = ds.dataset([str(p) for p in m.file_paths], format="parquet").to_table()
    props = CommitProperties(app_transactions=[Transaction(app_id(m), 1)])
    write_deltalake(str(table), rows, mode="append", commit_properties=props)  # holder commits
    waiter.join(30)
    assert result == [False]
    assert DeltaTable(str(table)).version() == 0  # the holder's commit only
    assert pl.read_delta(str(table)).height == 600

    # a holder that keeps renewing is never taken over; the waiter gives up, bounded
    m2 = generate_batch(penguins_synth, 600, 4, _target(tmp_path / "out"), layout=LAYOUT)
    _foreign_claim(table, m2)
    stop = threading.Event()

    def renew() -> None:
        beat = 0
        while not stop.wait(0.1):
            beat += 1
            _foreign_claim(table, m2, beat=beat)

    renewer = threading.Thread(target=renew)
    renewer.start()
    try:
        with pytest.raises(GenerationError, match="claimed by .* not appended after"):
            append_batch(m2, table, claim_timeout_s=0.5, max_wait_s=2.0)
    finally:
        stop.set()
        renewer.join()
    assert _commits_of(table, m2.batch_id) == 0


# --------------------------------------------------------------------------- a real Dask cluster
def _shard_on_worker(plan: dict, index: int) -> tuple[dict, str]:
    """Runs in a Dask worker process: the shard, and which worker's home folder it used."""
    import torch

    torch.set_num_threads(1)
    return generate_shard(None, plan, index).to_dict(), os.environ["PUSHFORWARD_HOME"]


def _wait_port(port: int, proc, timeout_s: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"dask scheduler did not listen on {port} within {timeout_s}s")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dask_cluster_writes_straight_to_the_bucket(s3, tmp_path, penguins_synth) -> None:
    """A scheduler and two workers, each its own process in its own folder with its own
    PUSHFORWARD_HOME: they share only the bucket. The batch equals the threads runner's."""
    import contextlib
    import shutil

    from distributed import Client, as_completed

    from pfcore.generate import ShardResult
    from tests.servers import background, stop_group

    dask = shutil.which("dask") or str(Path(os.sys.executable).parent / "dask")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    homes = [tmp_path / f"worker{i}" / "home" for i in (1, 2)]
    rows = 6 * 2 * BLOCK  # 6 shards
    workers: list = []
    with contextlib.ExitStack() as stack:
        (tmp_path / "scheduler").mkdir()
        sched = stack.enter_context(
            background(
                [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port)]
                + ["--dashboard-address", ":0"],
                env,
                tmp_path / "scheduler.log",
                cwd=tmp_path / "scheduler",
            )
        )
        _wait_port(port, sched)
        for i, home in enumerate(homes, 1):
            home.mkdir(parents=True)
            cmd = [dask, "worker", address, "--nthreads", "1", "--nworkers", "1"]
            cmd += ["--name", f"w{i}", "--local-directory", str(home.parent / "dask")]
            cmd += ["--dashboard-address", ":0", "--no-nanny"]
            workers.append(
                stack.enter_context(
                    background(
                        cmd,
                        {**env, "PUSHFORWARD_HOME": str(home)},
                        tmp_path / f"worker{i}.log",
                        cwd=home.parent,
                    )
                )
            )
        client = stack.enter_context(Client(address, timeout=60))
        client.wait_for_workers(2, timeout=120)

        root = f"s3://{BUCKET}/dask"
        plan = plan_batch(penguins_synth, rows, 9, _target(root), layout=LAYOUT)
        assert plan.synth_dir.startswith(f"{root}/_staging/")  # workers load it from the bucket
        assert len(plan.shards) == 6
        futures = client.map(
            _shard_on_worker, [plan.to_dict()] * 6, range(6), pure=False, retries=2
        )
        done = client.gather(futures)

        # a worker killed mid-batch: the scheduler gives its shards to the other one, and the
        # batch still commits once
        killed = plan_batch(penguins_synth, rows, 10, _target(root), layout=LAYOUT)
        futures = client.map(
            _shard_on_worker, [killed.to_dict()] * 6, range(6), pure=False, retries=2
        )
        next(as_completed(futures))
        stop_group(workers[0], grace_s=0)
        survived = [ShardResult.from_dict(d) for d, _ in client.gather(futures)]
        after_kill = publish_batch(killed, survived)
    results = [ShardResult.from_dict(d) for d, _ in done]
    used = {home for _, home in done}
    manifest = publish_batch(plan, results)

    threads = generate_batch(
        penguins_synth,
        rows,
        9,
        _target(tmp_path / "threads"),
        layout=LAYOUT,
        run=RunOptions(workers=2, executor="thread"),
    )
    assert [f["sha256"] for f in manifest.files] == [f["sha256"] for f in threads.files]
    assert manifest.rows == rows and not any(r.skipped for r in results)
    # each worker that ran a shard loaded the model into its own folder, from the bucket
    for home in used:
        assert any((Path(home) / "cache" / "synthesizers").iterdir())
    assert used <= {str(h) for h in homes}

    reference = generate_batch(penguins_synth, rows, 10, _target(tmp_path / "ref"), layout=LAYOUT)
    assert [f["sha256"] for f in after_kill.files] == [f["sha256"] for f in reference.files]
    assert [m.batch_id for m in committed_batches(root)] == sorted([plan.batch_id, killed.batch_id])
    verify_batch(after_kill)


def test_delta_table_in_the_bucket(s3, tmp_path, penguins_synth) -> None:
    import polars as pl
    from deltalake import DeltaTable

    from pfcore.generate.delta import append_batch

    m = generate_batch(penguins_synth, 800, 4, _target(f"s3://{BUCKET}/dl"), layout=LAYOUT)
    table = f"s3://{BUCKET}/dl/delta/penguins"
    assert append_batch(m, table)
    assert not append_batch(m, table)
    assert DeltaTable(table).version() == 0
    assert pl.read_delta(table).height == 800


def test_delta_racing_appends_in_the_bucket_land_once(
    s3, tmp_path, penguins_synth, monkeypatch
) -> None:
    import polars as pl
    from deltalake import DeltaTable

    from pfcore.generate.delta import claim_uri

    m = generate_batch(penguins_synth, 600, 5, _target(tmp_path / "out"), layout=LAYOUT)
    table = f"s3://{BUCKET}/dlrace/delta/penguins"
    assert _race(m, table, claim_timeout_s=10) == [False, False, True]
    assert _commits_of(table, m.batch_id) == 1
    assert pl.read_delta(table).height == 600
    assert storage.resolve(claim_uri(table, m.batch_id)).exists()
    leftovers = DeltaTable(table).vacuum(
        retention_hours=0, enforce_retention_duration=False, full=True
    )
    assert not [f for f in leftovers if "_pushforward" in f]

    late = f"s3://{BUCKET}/dlrace/delta/late"
    assert _late_check_race(monkeypatch, m, late) == {"first": True, "late": False}
    assert _commits_of(late, m.batch_id) == 1

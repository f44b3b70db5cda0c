"""Two runs of the same batch (same output, model and seed) at the same time: the second waits
for or reuses the first's shards, and both end with the same published batch, with no error that
needs a retry to pass."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pfcore.generate import (
    BatchLayout,
    BatchTarget,
    generate_shard,
    plan_batch,
    publish_batch,
    read_manifest,
    verify_batch,
)
from pfcore.generate.lock import batch_lock, shard_lock
from tests.test_generate import BLOCK, ROOT, ToySynth


def _plan(out: Path, synth: ToySynth, n_blocks: int = 4):
    return plan_batch(
        synth,
        n_blocks * BLOCK,
        5,
        BatchTarget(out, "toy", run_date="2026-02-01"),
        layout=BatchLayout(block_rows=BLOCK, rows_per_shard=BLOCK),
    )


def _in_thread(fn):
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def test_shard_of_second_run_waits_for_a_publish_in_progress(tmp_path: Path) -> None:
    """The reported race: the first run publishes (moving staged files away) while the second
    checks the same shard. The second now waits, then finds the shard published."""
    synth = ToySynth()
    plan = _plan(tmp_path, synth)
    first = [generate_shard(synth, plan, i) for i in range(len(plan.shards))]
    with batch_lock(plan, shared=False):  # the first run's publish holds this
        second, box = _in_thread(lambda: generate_shard(synth, plan, 0))
        time.sleep(0.3)
        assert second.is_alive(), "the second run's shard did not wait for the publish"
        from pfcore.generate.publish import _publish_locked

        published = _publish_locked(plan, first, True, None)
    second.join(10)
    assert "error" not in box, box.get("error")
    assert box["result"].skipped and box["result"].sha256 == first[0].sha256
    again = publish_batch(plan, [box["result"]] + first[1:])
    assert again.data["files"] == published.data["files"]
    verify_batch(read_manifest(published.batch_dir))


def test_second_writer_of_a_shard_waits_and_reuses_it(tmp_path: Path) -> None:
    synth = ToySynth()
    plan = _plan(tmp_path, synth)
    with batch_lock(plan, shared=True), shard_lock(plan, 1):  # the first run is writing shard 1
        second, box = _in_thread(lambda: generate_shard(synth, plan, 1))
        time.sleep(0.3)
        assert second.is_alive(), "the second writer did not wait for the first"
        from pfcore.generate.shard import _stage_shard

        first = _stage_shard(ToySynth(), plan, plan.shards[1], None)  # inside the first's locks
    second.join(10)
    assert "error" not in box, box.get("error")
    assert box["result"].skipped, "the second writer redid a shard the first had staged"
    assert box["result"].sha256 == first.sha256


_RUN = """
import sys
sys.path.insert(0, {root!r})
from tests.test_generate import ToySynth, BLOCK
from pfcore.generate import BatchLayout, BatchTarget, RunOptions, generate_batch
m = generate_batch(ToySynth(delay_s=0.01), 24 * BLOCK, 3, BatchTarget({out!r}, "toy", "2026-02-02"),
                   layout=BatchLayout(block_rows=BLOCK, rows_per_shard=BLOCK),
                   run=RunOptions(workers=2, executor="thread"))
print(m.batch_dir)
"""


@pytest.mark.timeout(180)
def test_two_concurrent_runs_publish_the_same_batch(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    script = _RUN.format(root=str(ROOT), out=str(tmp_path))
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [r.communicate(timeout=170) for r in runs]
    for r, (_, err) in zip(runs, outs, strict=True):
        assert r.returncode == 0, err[-3000:]
    dirs = {out.strip() for out, _ in outs}
    assert len(dirs) == 1
    m = read_manifest(dirs.pop())
    verify_batch(m)
    assert m.rows == 24 * BLOCK
    staging = tmp_path / "_staging"
    leftovers = [p for p in staging.rglob("*") if p.is_file()] if staging.exists() else []
    assert leftovers == []

"""Locks that let two runs of the same batch share its staging folder without a race.

Why: two runs into the same output with the same seed plan the same batch id and the same
staged shard paths (content depends only on model, seed and rows). Without coordination the
first run's publish moved or deleted staged files while the second was checking or writing
them, and the second failed with ``FileNotFoundError`` until a retry. With these locks:

* writing a shard holds the batch lock **shared** and that shard's lock **exclusive**: runs
  write different shards in parallel, and the second run to reach a shard waits for the first
  and then reuses its staged file (checked by sidecar and sha256) instead of redoing it;
* planning (recovering an interrupted publish) and publishing hold the batch lock
  **exclusive**: no shard is being checked or written meanwhile, and a run that publishes
  second finds the batch already published and returns its manifest.

Locks are ``flock`` on files under ``<out_root>/_staging/.locks/`` (dot-named, so no dataset
name can collide). They are released by the kernel when a process dies, so a killed run never
leaves a stale lock. Publishing deletes the batch's lock files while it holds the batch lock
exclusively; a waiter that then wakes up holding a deleted file notices (its inode is no longer
the path's) and takes the lock again on a fresh file. Needs a file system where ``flock`` works
across the machines that share ``out_root`` (local disks; NFSv4).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pfcore.generate.plan import BatchPlan

__all__ = ["file_lock", "batch_lock", "shard_lock", "remove_batch_locks"]

LOCK_DIR = ".locks"


def _lock_root(plan: BatchPlan) -> Path:
    return Path(plan.out_root) / "_staging" / LOCK_DIR / plan.dataset / plan.run_date


def _batch_lock_path(plan: BatchPlan) -> Path:
    return _lock_root(plan) / f"{plan.batch_id}.lock"


def _shard_lock_dir(plan: BatchPlan) -> Path:
    return _lock_root(plan) / plan.batch_id


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold ``flock`` on ``path`` (created if missing) until the block ends; blocks meanwhile."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)  # removed while we waited: lock the file that is there now
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


def batch_lock(plan: BatchPlan, *, shared: bool) -> contextlib.AbstractContextManager[None]:
    """Shared while a shard is checked or written; exclusive to plan or publish the batch."""
    return file_lock(_batch_lock_path(plan), shared=shared)


def shard_lock(plan: BatchPlan, index: int) -> contextlib.AbstractContextManager[None]:
    """Exclusive per shard; take it only while holding the shared batch lock."""
    return file_lock(_shard_lock_dir(plan) / f"shard-{index:05d}.lock")


def remove_batch_locks(plan: BatchPlan) -> None:
    """Delete the batch's lock files; call only while holding the batch lock exclusively."""
    shutil.rmtree(_shard_lock_dir(plan), ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        _batch_lock_path(plan).unlink()
    for parent in (_lock_root(plan), _lock_root(plan).parent):
        try:
            parent.rmdir()
        except OSError:
            break

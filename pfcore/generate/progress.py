"""Progress of a long generation run: rows written, rate and ETA, throttled."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["GenerationProgress", "ProgressTracker"]


@dataclass(frozen=True)
class GenerationProgress:
    """One progress report. Rows of shards found already staged count as done but not in the
    rate, so a resumed run's ETA reflects the speed of this machine, not of the cache."""

    rows_written: int
    rows_total: int
    shards_done: int
    shards_total: int
    elapsed_s: float
    rows_per_second: float
    eta_s: float | None
    finished: bool = False

    @property
    def fraction(self) -> float:
        return 1.0 if self.rows_total == 0 else self.rows_written / self.rows_total


class ProgressTracker:
    """Thread-safe counter that calls ``callback`` at most every ``interval_s`` seconds."""

    def __init__(
        self,
        rows_total: int,
        shards_total: int,
        callback: Callable[[GenerationProgress], None] | None,
        *,
        interval_s: float = 1.0,
    ) -> None:
        self.rows_total = rows_total
        self.shards_total = shards_total
        self.callback = callback
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._t0 = time.perf_counter()
        self._last = -float("inf")
        self.rows_generated = 0
        self.rows_skipped = 0
        self.shards_done = 0

    def snapshot(self, *, finished: bool = False) -> GenerationProgress:
        elapsed = time.perf_counter() - self._t0
        rate = self.rows_generated / elapsed if elapsed > 0 else 0.0
        done = self.rows_generated + self.rows_skipped
        remaining = max(self.rows_total - done, 0)
        eta = 0.0 if remaining == 0 else (remaining / rate if rate > 0 else None)
        return GenerationProgress(
            rows_written=done,
            rows_total=self.rows_total,
            shards_done=self.shards_done,
            shards_total=self.shards_total,
            elapsed_s=round(elapsed, 3),
            rows_per_second=rate,
            eta_s=eta,
            finished=finished,
        )

    def _emit(self, force: bool, finished: bool = False) -> None:
        if self.callback is None:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        self.callback(self.snapshot(finished=finished))

    def add_rows(self, rows: int) -> None:
        with self._lock:
            self.rows_generated += rows
            self._emit(force=False)

    def shard_done(self, *, skipped_rows: int = 0) -> None:
        with self._lock:
            self.rows_skipped += skipped_rows
            self.shards_done += 1
            self._emit(force=True)

    def finish(self) -> None:
        with self._lock:
            self._emit(force=True, finished=True)

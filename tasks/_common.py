"""Helpers shared by the Prefect tasks: logging, progress and per-run work folders."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

from prefect import runtime
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger


def logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run (shows in the UI); a plain logger when called via .fn."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("pushforward")


def run_dir(kind: str, name: str) -> Path:
    """A fresh work folder under PUSHFORWARD_HOME, named after the flow run when there is one."""
    from pfcore.paths import pushforward_home

    run_id = runtime.flow_run.id or uuid.uuid4().hex[:12]
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    path = pushforward_home() / kind / name / f"{stamp}-{str(run_id)[:8]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def retry_if_transient(task, task_run, state) -> bool:
    """Retry only failures that a retry can fix (network, an unreachable registry), so a
    missing model or bad input fails at once with its message instead of after minutes."""
    from pfcore.errors import PushforwardError, RegistryUnreachable, StorageUnreachable

    try:
        exc = state.result(raise_on_failure=False)
    except Exception as err:  # noqa: BLE001 - the result itself may be the failure
        exc = err
    if isinstance(exc, (RegistryUnreachable, StorageUnreachable)):
        return True
    return not isinstance(exc, (PushforwardError, ValueError, TypeError, KeyError, OSError))


class ThrottledProgress:
    """Turns a stream of progress events into a log line at most every ``every_s`` seconds.

    Training emits hundreds of steps; logging each would flood the Prefect UI and the API.
    """

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last = 0.0
        self.history: list[dict] = []
        self._artifact_id = None

    def __call__(self, p) -> None:  # p: pfcore.models.base.Progress
        row = {
            "phase": p.phase,
            "step": p.step,
            "total_steps": p.total_steps,
            "elapsed_s": round(p.elapsed_s, 3),
            "loss": float(p.loss),
            **{k: float(v) for k, v in (p.metrics or {}).items()},
        }
        self.history.append(row)
        now = time.monotonic()
        done = p.step >= p.total_steps
        if now - self._last < self.every_s and not done:
            return
        self._last = now
        pct = 100.0 * p.step / max(1, p.total_steps)
        extra = " ".join(f"{k}={float(v):.4g}" for k, v in (p.metrics or {}).items())
        logger().info(
            "%s step %d/%d (%.0f%%) loss=%.4g %s elapsed=%.0fs",
            p.phase,
            p.step,
            p.total_steps,
            pct,
            p.loss,
            extra,
            p.elapsed_s,
        )
        self._update_artifact(pct)

    def _update_artifact(self, pct: float) -> None:
        try:
            from prefect.artifacts import create_progress_artifact, update_progress_artifact

            if self._artifact_id is None:
                self._artifact_id = create_progress_artifact(
                    progress=pct, description="Training progress"
                )
            else:
                update_progress_artifact(self._artifact_id, progress=pct)
        except Exception:  # noqa: BLE001 - progress display must never fail training
            pass

"""Start and stop real servers (Prefect, MLflow) for end-to-end tests.

Servers run in their own process group on 127.0.0.1 and a free port, so teardown can kill every
process they spawned (both fork workers) and a failed test never leaves one behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(
    url: str, timeout_s: float, proc: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s:\n{tail(log)}")


def tail(log: Path | None, n: int = 4000) -> str:
    """The last ``n`` characters of a log file (empty when it does not exist)."""
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-n:]


def _descendants(pid: int) -> list:
    """Every process below ``pid``. A Prefect worker starts each flow run in a new session, so
    killing the worker's group would leave a run still going after a failed test."""
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - psutil missing or the process already gone
        return []


def stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGINT first (Prefect workers linger on SIGTERM), then SIGKILL the whole group and any
    descendant that left it."""
    if proc.poll() is not None:
        return
    below = _descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=grace_s)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in below:
        try:
            child.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass
    proc.wait(timeout=10)


@contextmanager
def background(
    cmd: list[str],
    env: dict[str, str],
    log: Path,
    cwd: Path | None = None,
    grace_s: float = 10.0,
) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` in its own process group with output to ``log``; stop the group on exit
    (``grace_s``: how long SIGINT may take before SIGKILL)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            stop_group(proc, grace_s)


#: Prefect's server answers 503 while its SQLite database is locked by another writer (workers
#: and served processes poll and heartbeat through the same file); Prefect's own client retries
#: 502/503, so a raw REST call (what the UI's Run button sends) does the same, a bounded number
#: of times.
RETRY_STATUS = {502, 503}


def api_request(method: str, url: str, attempts: int = 6, **kwargs) -> httpx.Response:
    """One REST call to a Prefect server, retried on 502/503 with a growing pause."""
    for attempt in range(attempts):
        r = httpx.request(method, url, **kwargs)
        if r.status_code not in RETRY_STATUS:
            return r
        time.sleep(1.0 + attempt)
    return r


def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
            "PREFECT_UI_ENABLED": "false",
            "PUSHFORWARD_HOME": str(home / "pf"),
            "OMP_NUM_THREADS": "1",
        }
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


PYTHON = sys.executable

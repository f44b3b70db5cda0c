"""Which MLflow store we talk to, and failing fast and clearly when it is not there.

Why this module exists:

* MLflow 3 with no tracking URI writes ``mlflow.db`` and ``mlruns/`` into whatever directory the
  process happened to start in, so two commands run from different folders see two different
  registries. We resolve the store once, under the project data folder
  (:func:`pfcore.paths.pushforward_home`), unless ``MLFLOW_TRACKING_URI`` names a server.
* MLflow's HTTP client retries 7 times with exponential backoff (minutes) before it reports an
  unreachable server. A scheduled pipeline should instead say "server X is unreachable" within
  seconds, so we lower those defaults (without overriding values the user set) and probe
  ``/health`` with a short timeout before starting any run — a run that cannot finish is never
  started, so nothing is left half-registered.

mlflow is imported inside functions only: the CLI imports this package at start-up.
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pfcore.errors import RegistryError, RegistryUnreachable
from pfcore.paths import pushforward_home

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "TrackingConfig",
    "resolve_tracking",
    "configure",
    "check_reachable",
    "ensure_experiment",
    "client",
    "registry_errors",
    "is_transport_error",
    "DEFAULT_EXPERIMENT",
]

DEFAULT_EXPERIMENT = "pushforward"
#: Bounded retries for MLflow's own HTTP client; applied with ``setdefault`` so a user's
#: explicit environment wins. 3 retries with backoff factor 1 is about 7 s worst case.
HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
PROBE_ATTEMPTS = 3
PROBE_TIMEOUT_S = 3.0

T = TypeVar("T")


@dataclass(frozen=True)
class TrackingConfig:
    """Resolved MLflow locations.

    ``artifact_root`` is set only for local database stores, where we choose where artifacts go;
    a tracking server decides that itself (``--artifacts-destination``).
    """

    uri: str
    artifact_root: Path | None
    remote: bool

    def describe(self) -> str:
        return (
            self.uri
            if self.artifact_root is None
            else f"{self.uri} (artifacts {self.artifact_root})"
        )


def _is_remote(uri: str) -> bool:
    return uri.split(":", 1)[0].lower() in {"http", "https"}


def resolve_tracking() -> TrackingConfig:
    """``MLFLOW_TRACKING_URI`` when set, else SQLite + an artifact folder under the project home."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    home = pushforward_home()
    if env:
        remote = _is_remote(env)
        return TrackingConfig(
            uri=env, artifact_root=None if remote else home / "mlartifacts", remote=remote
        )
    return TrackingConfig(
        uri=f"sqlite:///{(home / 'mlflow.db').as_posix()}",
        artifact_root=home / "mlartifacts",
        remote=False,
    )


def check_reachable(
    uri: str, *, attempts: int | None = None, timeout_s: float | None = None
) -> None:
    """Raise :class:`RegistryError` naming ``uri`` unless its ``/health`` answers within the bound.

    Worst case is ``attempts * timeout_s`` plus 0.5 s, 1 s, ... of backoff between attempts
    (defaults PROBE_ATTEMPTS and PROBE_TIMEOUT_S: about 10 s when the host hangs, 1.5 s when it
    refuses connections).
    """
    attempts = PROBE_ATTEMPTS if attempts is None else attempts
    timeout_s = PROBE_TIMEOUT_S if timeout_s is None else timeout_s
    url = uri.rstrip("/") + "/health"
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - http(s) only
                if resp.status == 200:
                    return
                last = RuntimeError(f"HTTP {resp.status}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
        if attempt + 1 < attempts:
            time.sleep(0.5 * 2**attempt)
    raise RegistryUnreachable(
        f"MLflow tracking server {uri} is unreachable after {attempts} attempts "
        f"({timeout_s:g} s timeout each): {last}. Start it, or unset MLFLOW_TRACKING_URI to use "
        f"the embedded store under {pushforward_home()}"
    )


def configure(*, probe: bool = True) -> TrackingConfig:
    """Point the MLflow client at the resolved store (process-wide) and return it.

    The fluent MLflow API (``mlflow.start_run``, ``log_model``) reads the global tracking URI,
    so we set it here; every public registry function calls this first, so a change of
    ``PUSHFORWARD_HOME`` or ``MLFLOW_TRACKING_URI`` between calls is honoured.
    """
    import mlflow

    cfg = resolve_tracking()
    for key, value in HTTP_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if cfg.artifact_root is not None:
        cfg.artifact_root.mkdir(parents=True, exist_ok=True)
        if cfg.uri.startswith("sqlite:///"):
            Path(cfg.uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    if cfg.remote and probe:
        check_reachable(cfg.uri)
    # mlflow.set_*_uri also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI; left there, our
    # derived default would look user-set on the next call and a later PUSHFORWARD_HOME change
    # would be ignored. Keep the global client setting, restore the environment as it was.
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    try:
        mlflow.set_tracking_uri(cfg.uri)
        mlflow.set_registry_uri(cfg.uri)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return cfg


def client(cfg: TrackingConfig) -> MlflowClient:
    """An MLflow client bound to ``cfg``'s store for both tracking and registry."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=cfg.uri, registry_uri=cfg.uri)


def _safe_dirname(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"


def ensure_experiment(cfg: TrackingConfig, name: str = DEFAULT_EXPERIMENT) -> str:
    """The id of experiment ``name``, creating it (with artifacts under the home) if needed."""
    mlc = client(cfg)
    with registry_errors(cfg, f"look up experiment {name!r}"):
        exp = mlc.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                mlc.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        location = None
        if cfg.artifact_root is not None:
            location = (cfg.artifact_root / _safe_dirname(name)).resolve().as_uri()
        try:
            return mlc.create_experiment(name, artifact_location=location)
        except Exception:
            # Another process created it between our lookup and create.
            exp = mlc.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id


@contextmanager
def registry_errors(cfg: TrackingConfig, action: str) -> Iterator[None]:
    """Re-raise MLflow/transport failures as :class:`RegistryError` naming the store and action.

    Our own errors pass through unchanged so messages are not double-wrapped.
    """
    from pfcore.errors import PushforwardError

    try:
        yield
    except PushforwardError:
        raise
    except Exception as exc:  # noqa: BLE001 - MlflowException, requests errors, sqlalchemy...
        kind = RegistryUnreachable if is_transport_error(exc) else RegistryError
        raise kind(f"MLflow at {cfg.describe()}: could not {action}: {exc}") from exc


def is_transport_error(exc: BaseException) -> bool:
    """True when ``exc`` or an exception it was raised from is a network failure.

    MLflow wraps a refused connection or a timeout in an ``MlflowException``; the transport
    error stays reachable through ``__cause__``/``__context__``, so the decision is made on
    types, not on the wording of a message.
    """
    transport: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    try:
        import requests

        transport += (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    except ImportError:  # pragma: no cover - mlflow depends on requests
        pass
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, (RegistryUnreachable, *transport, urllib.error.URLError)):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def call(cfg: TrackingConfig, action: str, fn: Callable[[], T]) -> T:
    """``fn()`` with :func:`registry_errors` around it; handy for one-line calls."""
    with registry_errors(cfg, action):
        return fn()

"""Reading the registry: aliases, the champion's scores, and loading the champion for generation.

Promotion uses aliases only (``champion``, ``challenger``); MLflow stages are deprecated. The
champion is whatever version holds the ``champion`` alias; a model version's content never
changes, so a downloaded version is cached under the project home and reused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pfcore.errors import ModelNotFound, RegistryError, RegistryUnreachable
from pfcore.paths import pushforward_home
from pfcore.promotion import CHALLENGER, CHAMPION
from pfcore.registry import tracking

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from pfcore.synthesizer import Synthesizer

__all__ = [
    "CHAMPION",
    "CHALLENGER",
    "ModelVersionInfo",
    "resolve_alias",
    "champion_summary",
    "load_champion",
    "INTERNAL_METRIC_PREFIX",
]

#: Metrics we log ourselves (gate verdict, training curve) carry this prefix, so a run's other
#: metrics are exactly the fidelity report's summary.
INTERNAL_METRIC_PREFIX = "pf."


@dataclass(frozen=True)
class ModelVersionInfo:
    """What callers need to know about one registered version (no MLflow types leak out)."""

    name: str
    version: int
    run_id: str | None
    source: str
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "source": self.source,
            "model_uri": self.model_uri,
            "aliases": list(self.aliases),
            "tags": dict(self.tags),
        }

    @classmethod
    def from_mlflow(cls, mv: ModelVersion) -> ModelVersionInfo:
        return cls(
            name=mv.name,
            version=int(mv.version),
            run_id=mv.run_id or None,
            source=str(mv.source),
            aliases=tuple(sorted(getattr(mv, "aliases", None) or ())),
            tags=dict(mv.tags or {}),
        )


def _is_not_found(exc: Exception) -> bool:
    """A missing model or alias (SQL store: RESOURCE_DOES_NOT_EXIST for the model,
    INVALID_PARAMETER_VALUE "alias ... not found" for the alias), not a transport failure."""
    code = getattr(exc, "error_code", "")
    text = str(exc).lower()
    if code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
        return True
    return code == "INVALID_PARAMETER_VALUE" and ("not found" in text or "does not exist" in text)


def alias_version(
    mlc: MlflowClient, cfg: tracking.TrackingConfig, name: str, alias: str
) -> ModelVersionInfo | None:
    """The version holding ``alias``, or None when the model or the alias does not exist."""
    try:
        mv = mlc.get_model_version_by_alias(name, alias)
    except Exception as exc:  # noqa: BLE001 - MlflowException; transport errors re-raised below
        if _is_not_found(exc):
            return None
        kind = RegistryUnreachable if tracking.is_transport_error(exc) else RegistryError
        raise kind(f"MLflow at {cfg.describe()}: could not resolve {name}@{alias}: {exc}") from exc
    return ModelVersionInfo.from_mlflow(mv)


def resolve_alias(name: str, alias: str = CHAMPION) -> ModelVersionInfo:
    """The version of ``name`` holding ``alias``; RegistryError saying what to do when none."""
    cfg = tracking.configure()
    info = alias_version(tracking.client(cfg), cfg, name, alias)
    if info is None:
        raise ModelNotFound(
            f"registered model {name!r} has no version with alias {alias!r} in "
            f"{cfg.describe()}: train and register a model whose fidelity gate passes first"
        )
    return info


def summary_of_run(mlc: MlflowClient, run_id: str) -> dict[str, float]:
    run = mlc.get_run(run_id)
    return {
        k: float(v) for k, v in run.data.metrics.items() if not k.startswith(INTERNAL_METRIC_PREFIX)
    }


def champion_summary(name: str) -> dict[str, float] | None:
    """The current champion's fidelity summary (its run's metrics), or None without a champion.

    Registration compares a new model with it through ``pfcore.promotion.decide``.
    """
    cfg = tracking.configure()
    mlc = tracking.client(cfg)
    info = alias_version(mlc, cfg, name, CHAMPION)
    if info is None or info.run_id is None:
        return None
    with tracking.registry_errors(cfg, f"read the metrics of {name}@{CHAMPION}"):
        return summary_of_run(mlc, info.run_id)


# ---------------------------------------------------------------------------------- loading
def _synthesizer_subdir(model_dir: Path) -> Path:
    """Where the pyfunc's ``synthesizer`` artifact sits inside a downloaded model directory."""
    import yaml

    mlmodel = model_dir / "MLmodel"
    if not mlmodel.exists():
        raise RegistryError(f"{model_dir}: downloaded model has no MLmodel file")
    conf = yaml.safe_load(mlmodel.read_text()) or {}
    artifacts = ((conf.get("flavors") or {}).get("python_function") or {}).get("artifacts") or {}
    entry = artifacts.get("synthesizer")
    if not entry or "path" not in entry:
        raise RegistryError(f"{mlmodel}: not a pushforward model (no 'synthesizer' artifact)")
    return model_dir / entry["path"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def download_version(
    info: ModelVersionInfo, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The local synthesizer directory of ``info``, downloading it once into the cache.

    Downloads land in a temporary folder that is renamed into place, so a crashed download is
    never mistaken for a complete one. The cache entry records the version's source, so a model
    deleted and re-created under the same name and number is fetched again.
    """
    import mlflow

    cfg = tracking.configure()
    root = Path(cache_dir) if cache_dir is not None else pushforward_home() / "cache" / "models"
    target = root / _safe(info.name) / f"v{info.version}"
    stamp = target / ".pushforward-source.json"
    want = {"source": info.source, "run_id": info.run_id}
    if stamp.exists():
        try:
            if json.loads(stamp.read_text()) == want:
                return _synthesizer_subdir(target / "model")
        except (OSError, ValueError):
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".v{info.version}.", dir=target.parent))
    try:
        with tracking.registry_errors(cfg, f"download {info.model_uri}"):
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=info.model_uri, dst_path=str(tmp / "dl")
            )
        os.replace(local, tmp / "model")
        _synthesizer_subdir(tmp / "model")  # validate before publishing into the cache
        (tmp / stamp.name).write_text(json.dumps(want))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _synthesizer_subdir(target / "model")


def load_champion(
    name: str,
    device: str = "cpu",
    *,
    alias: str = CHAMPION,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[Synthesizer, ModelVersionInfo]:
    """Load the version of ``name`` holding ``alias`` as a Synthesizer on ``device``.

    This is the generator's entry point: it gets the real Synthesizer (streaming generation,
    ``row_offset``) rather than the pyfunc wrapper, plus the version it came from for lineage.
    """
    from pfcore.synthesizer import Synthesizer

    info = resolve_alias(name, alias)
    path = download_version(info, cache_dir)
    return Synthesizer.load(path, device=device), info

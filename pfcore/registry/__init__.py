"""MLflow model registry for pushforward synthesizers: log, register, alias, load anywhere.

Public API (imported lazily, so ``import pfcore.registry`` does not import mlflow)::

    log_synthesizer(synth_dir, Registration(model_name, params=, metrics=, report_dir=,
                    gate_result=, training_curve=, tags=, policy=, ...)) -> LoggedModel
    champion_summary(name) -> dict | None       # the current champion's fidelity summary
    resolve_alias(name, alias="champion") -> ModelVersionInfo
    load_champion(name, device="cpu") -> (Synthesizer, ModelVersionInfo)
    download_version(info) -> Path                # local synthesizer dir (cached) of a version
    resolve_tracking() -> TrackingConfig          # where the store is

Anyone can also load a registered model without pushforward's API::

    mlflow.pyfunc.load_model("models:/<name>@champion").predict(
        pd.DataFrame({"n_rows": [1000], "seed": [7]}))

The store is ``MLFLOW_TRACKING_URI`` when set, else SQLite + artifacts under
``pfcore.paths.pushforward_home()`` (see :mod:`pfcore.registry.tracking`). The pyfunc input and
output contract is documented in :mod:`pfcore.registry.frames`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "log_synthesizer",
    "LoggedModel",
    "Registration",
    "champion_summary",
    "resolve_alias",
    "load_champion",
    "download_version",
    "ModelVersionInfo",
    "resolve_tracking",
    "TrackingConfig",
    "CHAMPION",
    "CHALLENGER",
]

_LAZY = {
    "log_synthesizer": "pfcore.registry.log",
    "LoggedModel": "pfcore.registry.log",
    "Registration": "pfcore.registry.log",
    "champion_summary": "pfcore.registry.register",
    "resolve_alias": "pfcore.registry.register",
    "load_champion": "pfcore.registry.register",
    "download_version": "pfcore.registry.register",
    "ModelVersionInfo": "pfcore.registry.register",
    "CHAMPION": "pfcore.promotion",
    "CHALLENGER": "pfcore.promotion",
    "resolve_tracking": "pfcore.registry.tracking",
    "TrackingConfig": "pfcore.registry.tracking",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pfcore.registry' has no attribute {name!r}")
    return getattr(import_module(module), name)

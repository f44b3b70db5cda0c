"""Push-forward generative models of encoded tables: ``z ~ N(0, I) -> encoded row``.

Families (``build(family, ...)``):

- ``"hybrid"`` (default): discrete columns drawn by a masked autoregressive network (inverse CDF
  of one latent coordinate each), numeric dims by a one-step student of a flow conditioned on
  them; conditional requests by an any-order discrete network and a mask-conditioned student.
- ``"onestep"``: a one-step generator distilled from a rectified flow over the whole row; one
  network forward per row (the fastest sampler; flow inpainting as a second conditional one).
- ``"flow"``: the rectified flow itself, sampled by a few-step ODE solver (slower, the teacher).
- ``"energy"``: a direct generator trained with energy distance / MMD (baseline, fallback).
- ``"naive_mse"``: MSE against randomly paired rows; collapses to the mean (negative control).

Example::

    from pfcore import models
    model = models.build("hybrid", {"seed": 1}, preset="fast")
    model.fit(x, blocks, valid=x_valid)
    rows = model.sample(10_000, seed=7)
    model.save("out/model"); same = models.load("out/model")
"""

from __future__ import annotations

import os
from typing import Any

from pfcore.defaults import DEFAULT_FAMILY, DEFAULT_PRESET
from pfcore.errors import ModelError
from pfcore.models.base import BlockSpec, GenerativeModel, ModelConfig, Progress, read_model_json
from pfcore.models.energy import EnergyConfig, EnergyModel
from pfcore.models.flow import FlowConfig, FlowModel
from pfcore.models.hybrid import HybridConfig, HybridModel
from pfcore.models.naive import NaiveMSEConfig, NaiveMSEModel
from pfcore.models.onestep import OneStepConfig, OneStepModel
from pfcore.models.presets import PRESET_NAMES, preset_config

__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "PRESET_NAMES",
    "BlockSpec",
    "EnergyConfig",
    "EnergyModel",
    "FlowConfig",
    "FlowModel",
    "GenerativeModel",
    "HybridConfig",
    "HybridModel",
    "ModelConfig",
    "NaiveMSEConfig",
    "NaiveMSEModel",
    "OneStepConfig",
    "OneStepModel",
    "Progress",
    "build",
    "load",
]

FAMILIES: dict[str, type[GenerativeModel]] = {
    cls.family: cls for cls in (FlowModel, OneStepModel, HybridModel, EnergyModel, NaiveMSEModel)
}


def build(
    family: str, config: dict[str, Any] | None = None, preset: str = DEFAULT_PRESET
) -> GenerativeModel:
    """An unfitted model: the preset's settings, overridden by ``config`` (validated now)."""
    if family not in FAMILIES:
        raise ModelError(f"unknown model family {family!r}; choose one of {sorted(FAMILIES)}")
    merged = preset_config(family, preset)
    merged.update(config or {})
    cls = FAMILIES[family]
    return cls(cls.config_class.from_dict(merged))


def load(directory: str | os.PathLike[str], device: str = "cpu") -> GenerativeModel:
    """Load any saved model; ``model.json`` names the family."""
    from pathlib import Path

    meta = read_model_json(Path(directory))
    family = meta["family"]
    if family not in FAMILIES:
        raise ModelError(f"{directory}: unknown model family {family!r} in model.json")
    return FAMILIES[family].load(directory, device=device)

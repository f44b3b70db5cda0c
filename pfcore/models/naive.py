"""The classic broken push-forward recipe, kept only as a negative control.

An MLP ``G(z)`` trained by MSE against *randomly paired* rows: noise and rows are independent,
so the MSE-optimal ``G`` maps every ``z`` to the mean row ``E[X]`` and the samples collapse
(classifier two-sample AUC 1.0 on a 10-D Gaussian mixture). Tests use it to prove they can
fail; it is never a default and no preset picks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pfcore.models.base import ModelConfig
from pfcore.models.energy import DirectGeneratorModel

__all__ = ["NaiveMSEConfig", "NaiveMSEModel"]


@dataclass
class NaiveMSEConfig(ModelConfig):
    """Size of the negative-control generator (same MLP as the energy family)."""

    width: int = 256
    depth: int = 3
    latent_dim: int | None = None

    def validate(self) -> None:
        super().validate()
        self._check_width_depth(self.width, self.depth)
        self._check_int("latent_dim", self.latent_dim, 1, optional=True)


class NaiveMSEModel(DirectGeneratorModel):
    """``G(z)`` regressed onto random rows: learns the mean (negative control)."""

    family = "naive_mse"
    config_class = NaiveMSEConfig
    config: NaiveMSEConfig
    _seed_salt = 5

    def _batch_loss(self, out: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, xb)

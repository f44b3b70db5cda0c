"""Direct generator trained with a distributional loss (energy distance or multi-scale MMD).

The naive push-forward recipe fails because MSE against randomly paired rows is minimised by the
mean row. Replacing it with a distance between *distributions* fixes that: the energy distance
``2 E|G(z) - X| - E|G(z) - G(z')| - E|X - X'|`` is zero only when the laws are equal, and an
unbiased minibatch estimate of it is a valid training loss. It needs no teacher and trains fast,
but on tables it resolved fine structure less well than the flow (classifier two-sample AUC
0.93 against the flow's 0.78 in the first benchmark), so it is a baseline and fallback, not the
default.

One-hot blocks leave the generator as ``2 softmax - 1`` during training (so the loss sees points
inside the simplex, not arbitrary reals) and are snapped to the argmax by ``push``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pfcore.errors import ModelError
from pfcore.models.base import GenerativeModel, ModelConfig, OneHotIndex, ProgressCallback
from pfcore.models.nets import MLP, count_parameters
from pfcore.models.phase import Phase, PhaseData, run_phase
from pfcore.models.training import (
    amp_enabled,
    autocast,
    batch_index,
    seeded_generator,
)

__all__ = ["DirectGeneratorModel", "EnergyConfig", "EnergyModel", "energy_distance", "mmd"]


@dataclass
class EnergyConfig(ModelConfig):
    """Generator size, latent size and the distributional loss."""

    width: int = 512
    depth: int = 4
    latent_dim: int | None = None  # None: same as the number of encoded features
    loss: str = "energy"  # "energy" or "mmd"
    mmd_scales: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)  # kernel widths x feature count

    def validate(self) -> None:
        super().validate()
        self._check_width_depth(self.width, self.depth)
        self._check_int("latent_dim", self.latent_dim, 1, optional=True)
        if self.loss not in ("energy", "mmd"):
            raise ModelError(f"config.loss must be 'energy' or 'mmd', got {self.loss!r}")
        self.mmd_scales = tuple(float(s) for s in self.mmd_scales)
        if not self.mmd_scales or min(self.mmd_scales) <= 0:
            raise ModelError("config.mmd_scales must be a non-empty list of positive numbers")


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2 * a @ b.T).clamp_min(0.0)


def energy_distance(gen: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Minibatch energy distance (unbiased within-sample term; the real-real term is constant).

    ``sqrt(d2 + eps)`` keeps the gradient finite at zero distance (the diagonal).
    """
    n = gen.shape[0]
    cross = (_sq_dists(gen, real) + 1e-8).sqrt().mean()
    within = (_sq_dists(gen, gen) + 1e-8).sqrt()
    within = (within.sum() - within.diagonal().sum()) / (n * (n - 1))
    return 2 * cross - within


def mmd(gen: torch.Tensor, real: torch.Tensor, scales: Sequence[float]) -> torch.Tensor:
    """Multi-scale Gaussian-kernel MMD^2 (bandwidths ``scale * n_features``)."""
    d = gen.shape[1]
    xx, yy, xy = _sq_dists(gen, gen), _sq_dists(real, real), _sq_dists(gen, real)
    total = gen.new_zeros(())
    for s in scales:
        bw = 2.0 * s * d
        total = (
            total
            + torch.exp(-xx / bw).mean()
            + torch.exp(-yy / bw).mean()
            - 2 * torch.exp(-xy / bw).mean()
        )
    return total


def soften_onehot(out: torch.Tensor, index: OneHotIndex) -> torch.Tensor:
    """Training-time view of generator output: one-hot blocks as ``2 softmax - 1``."""
    if not index.has_onehot:
        return out
    out = out.clone()
    for _w, idx in index.groups:
        out[:, idx] = 2 * torch.softmax(out[:, idx], dim=2) - 1
    return out


class DirectGeneratorModel(GenerativeModel):
    """``push(z) = snap(G(z))`` for an MLP ``G`` trained directly on (noise, data) batches.

    The families differ only in ``_batch_loss``: a distance between distributions (energy, MMD)
    learns the data; MSE against randomly paired rows learns the mean (the negative control).
    """

    #: Salt of the training random stream: keeps each family's draws distinct and reproducible.
    _seed_salt: int = 0

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.generator: MLP | None = None

    def _latent_dim_for(self, n_features: int) -> int:
        return self.config.latent_dim or n_features

    def _build_networks(self) -> None:
        self.generator = MLP(self.latent_dim, self.n_features, self.config.width, self.config.depth)

    def _networks(self) -> dict[str, nn.Module]:
        return {} if self.generator is None else {"generator": self.generator}

    def _push_raw(self, z: torch.Tensor) -> torch.Tensor:
        assert self.generator is not None
        return self.generator(z)

    def _batch_loss(self, out: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        """Loss of generator output ``out`` (float32, shape (b, d)) against real rows ``xb``."""
        raise NotImplementedError

    def _fit(
        self,
        x: torch.Tensor,
        valid: torch.Tensor | None,
        callbacks: Sequence[ProgressCallback],
        checkpoint_dir: Path | None,
    ) -> dict[str, Any]:
        cfg = self.config
        assert self.generator is not None
        net, device = self.generator, x.device
        gen = seeded_generator(cfg.seed, device, salt=self._seed_salt)
        batch = min(cfg.batch_size, len(x))
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        use_amp = amp_enabled(cfg.amp, device)

        def step_fn(step: int) -> torch.Tensor:
            xb = x[batch_index(len(x), batch, gen, device)]
            z = torch.randn(batch, self.latent_dim, generator=gen, device=device)
            with autocast(device, use_amp):
                out = net(z)
            return self._batch_loss(out.float(), xb)

        phase = Phase(
            name=self.family,
            max_steps=cfg.steps_for(len(x)),
            budget_s=cfg.max_minutes * 60,
            lr=cfg.lr,
            network=("generator", net),
            push_fn=net,
            step_fn=step_fn,
            optimizer=opt,
            generator=gen,
        )
        summary = run_phase(self, PhaseData(x, valid, checkpoint_dir), phase, callbacks)
        summary.update(parameters=count_parameters(net), batch_size=batch, amp=use_amp)
        return {self.family: summary}


class EnergyModel(DirectGeneratorModel):
    """``G`` trained to minimise the energy distance (or MMD) between generated and real rows."""

    family = "energy"
    config_class = EnergyConfig
    config: EnergyConfig
    _seed_salt = 4

    def _batch_loss(self, out: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        assert self._index is not None
        out = soften_onehot(out, self._index)
        if self.config.loss == "energy":
            return energy_distance(out, xb)
        return mmd(out, xb, self.config.mmd_scales)

"""The classic broken push-forward recipe, kept only as a negative control.

An MLP ``G(z)`` trained by MSE against *randomly paired* rows: noise and rows are independent,
so the MSE-optimal ``G`` maps every ``z`` to the mean row ``E[X]`` and the samples collapse
(issue 7 measured C2ST AUC 1.0 on a 10-D mixture). Tests use it to prove they can fail; it is
never a default and no preset picks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pfcore.errors import ModelError
from pfcore.models.base import GenerativeModel, ModelConfig, ProgressCallback
from pfcore.models.flow import make_proxy
from pfcore.models.nets import MLP, count_parameters
from pfcore.models.training import (
    Checkpointer,
    LoopSpec,
    autocast,
    batch_index,
    resume_key,
    seeded_generator,
    train_loop,
)

__all__ = ["NaiveMSEConfig", "NaiveMSEModel"]


@dataclass
class NaiveMSEConfig(ModelConfig):
    width: int = 256
    depth: int = 3
    latent_dim: int | None = None

    def validate(self) -> None:
        super().validate()
        self._check_width_depth(self.width, self.depth)
        if self.latent_dim is not None and (
            not isinstance(self.latent_dim, int) or self.latent_dim < 1
        ):
            raise ModelError(
                f"config.latent_dim must be an integer >= 1 or None, got {self.latent_dim!r}"
            )


class NaiveMSEModel(GenerativeModel):
    """``G(z)`` regressed onto random rows: learns the mean (negative control)."""

    family = "naive_mse"
    config_class = NaiveMSEConfig
    config: NaiveMSEConfig

    def __init__(self, config: NaiveMSEConfig | dict[str, Any] | None = None) -> None:
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
        gen = seeded_generator(cfg.seed, device, salt=5)
        batch = min(cfg.batch_size, len(x))
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        use_amp = cfg.amp and device.type == "cuda"

        def step_fn(step: int) -> torch.Tensor:
            xb = x[batch_index(len(x), batch, gen, device)]
            z = torch.randn(batch, self.latent_dim, generator=gen, device=device)
            with autocast(device, use_amp):
                out = net(z)
            return F.mse_loss(out.float(), xb)

        ckpt = None
        if checkpoint_dir is not None:
            ckpt = Checkpointer(checkpoint_dir, key=resume_key(cfg, x, valid))
        spec = LoopSpec(
            phase="naive_mse",
            max_steps=cfg.steps_for(len(x)),
            budget_s=cfg.max_minutes * 60,
            lr=cfg.lr,
            warmup_steps=cfg.warmup_steps,
            grad_clip=cfg.grad_clip,
            eval_every=cfg.eval_every,
            patience=cfg.patience,
            log_every=cfg.log_every,
            checkpoint_every=cfg.checkpoint_every,
        )
        proxy = make_proxy(self, x, valid, net)
        summary = train_loop(
            spec=spec,
            modules={"generator": net},
            optimizer=opt,
            step_fn=step_fn,
            eval_fn=proxy,
            generator=gen,
            callbacks=callbacks,
            checkpointer=ckpt,
        )
        summary.update(parameters=count_parameters(net), batch_size=batch, amp=use_amp)
        return {"naive_mse": summary}

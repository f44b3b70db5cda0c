"""One training phase of any family: resumable checkpoint, loop spec, held-out proxy, loop.

Families differ only in what a :class:`Phase` holds (their network, loss, budget and learning
rate); the flow teacher, the distilled student and the direct generators all train through
:func:`run_phase`, so checkpointing, early stopping and progress reports behave the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pfcore.models.progress import ProgressCallback
from pfcore.models.training import Checkpointer, LoopSpec, SlicedDistance, resume_key, train_loop

if TYPE_CHECKING:
    from pfcore.models.base import GenerativeModel

__all__ = ["Phase", "PhaseData", "make_proxy", "run_phase", "run_scored_phase"]


@dataclass(frozen=True)
class PhaseData:
    """The encoded rows a phase trains on, the held-out rows that stop it, where it resumes."""

    x: torch.Tensor
    valid: torch.Tensor | None = None
    checkpoint_dir: Path | None = None


@dataclass(frozen=True)
class Phase:
    """What one family's phase brings: its name, budget, network, sampler and loss step.

    ``network`` is the (name, module) the checkpoint saves; ``push_fn`` maps latent noise to
    encoded rows for the early-stopping proxy; ``step_fn(step)`` returns the batch loss.
    ``eval_fn``, when given, replaces that proxy (lower is better): a phase that fits one part
    of a model (the hybrid family's discrete network) is judged by its own held-out loss.
    """

    name: str
    max_steps: int
    budget_s: float
    lr: float
    network: tuple[str, nn.Module]
    push_fn: Callable[[torch.Tensor], torch.Tensor]
    step_fn: Callable[[int], torch.Tensor]
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    eval_fn: Callable[[], float] | None = None


def make_proxy(
    model: GenerativeModel, data: PhaseData, push_fn: Callable[[torch.Tensor], torch.Tensor]
) -> Callable[[], float]:
    """Early-stopping proxy: sliced W1 from ``push_fn(z_eval)`` (snapped) to held-out rows.

    Without held-out rows it compares with training rows: it then tracks fit, not overfitting.
    """
    from pfcore.models.base import snap_onehot

    cfg = model.config
    x, valid = data.x, data.valid
    ref = valid if valid is not None and len(valid) >= 64 else x
    dist = SlicedDistance(ref, n=min(cfg.n_eval, len(ref)), seed=cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 104729)
    z_eval = torch.randn(dist.n, model.latent_dim, generator=gen).to(x.device)
    assert model._index is not None
    index = model._index

    def proxy() -> float:
        with torch.no_grad():
            return dist(snap_onehot(push_fn(z_eval).float(), index))

    return proxy


def run_phase(
    model: GenerativeModel,
    data: PhaseData,
    phase: Phase,
    callbacks: Sequence[ProgressCallback] = (),
) -> dict[str, Any]:
    """Train ``phase`` of ``model`` on ``data``; returns the loop's summary."""
    cfg = model.config
    name, module = phase.network
    ckpt = None
    if data.checkpoint_dir is not None:
        ckpt = Checkpointer(data.checkpoint_dir, key=resume_key(cfg, data.x, data.valid))
    spec = LoopSpec.for_phase(
        cfg, phase=phase.name, max_steps=phase.max_steps, budget_s=phase.budget_s, lr=phase.lr
    )
    return train_loop(
        spec=spec,
        modules={name: module},
        optimizer=phase.optimizer,
        step_fn=phase.step_fn,
        eval_fn=phase.eval_fn
        if phase.eval_fn is not None
        else make_proxy(model, data, phase.push_fn),
        generator=phase.generator,
        callbacks=callbacks,
        checkpointer=ckpt,
    )


def run_scored_phase(
    model: GenerativeModel,
    data: PhaseData,
    phase: Phase,
    callbacks: Sequence[ProgressCallback],
    score_name: str,
) -> dict[str, Any]:
    """:func:`run_phase` for a phase judged by its own held-out loss (``phase.eval_fn``): the
    network is left in eval mode and the summary adds its parameter count and that final loss
    under ``score_name``."""
    from pfcore.models.nets import count_parameters

    assert phase.eval_fn is not None
    summary = run_phase(model, data, phase, callbacks)
    net = phase.network[1]
    net.eval()
    summary["parameters"] = count_parameters(net)
    summary[score_name] = round(phase.eval_fn(), 5)
    return summary

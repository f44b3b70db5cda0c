"""Mask-conditioned one-step student: (noise, mask, given values) to a full encoded row.

Why: flow inpainting (``conditional.py``) conditions well but costs ``DEFAULT_STEPS`` forwards of
the (large) flow teacher per row, a few percent of the one-step sampler's rows/s. This student is
the one-step sampler's own network with two more inputs, the mask of given dims and the given
encoded values, so a conditional row costs one forward of a network the size of the student.

How it is trained (during ``OneStepModel.fit``, after distillation, on a share of the budget):

* warm start: the student's weights, with the new inputs' first-layer weights at zero, so at
  step 0 it *is* the unconditional student whatever the mask;
* anchor: with an empty mask it keeps regressing onto the teacher's ``(z, ODE(z))`` pairs (the
  distillation loss), so unconditional behaviour stays the distilled one;
* conditioning: on real training rows with random column masks (a whole source column at a
  time, its missing indicator with it), the energy score of the generated unknown dims,
  ``E|Y - x| - E|Y - Y'| / 2`` over two draws ``Y, Y'`` given the same known values. It is a
  strictly proper scoring rule, so its minimiser is the conditional law of the unknown columns
  given the known ones, for every mask at once; no teacher trajectory is needed.

Given dims are overwritten by the given values after the network (exact by construction, as for
inpainting).

Measured (diamonds, one fast-preset model fitted in 2 minutes, its student's unconditional rows
at detection AUC 0.843; 5k conditional rows against the holdout rows that meet the condition;
one student forward per block against 32 flow forwards for inpainting):

==========================================  =====  =======  =====  =====  ==========  =========
sampler (training steps)                    cut    clarity  carat  seed   rebalance   s/step
                                            Ideal  I1       range  rows   cut
==========================================  =====  =======  =====  =====  ==========  =========
inpainting, churn 4, 32 steps               0.866  0.816    0.961  0.932  0.761
student, batch 2x1024, lr 1e-3 (1000)       0.858  0.901    0.980  0.970  0.843       0.08-0.21
same, one-hot dims at weight 0.5 (1000)     0.859  0.891    0.978  0.964  0.842
same, energy score x3 (1000)                0.855  0.876    0.979  0.958  0.832       0.26
batch 2x1024, lr 1e-3 (3000)                0.824  0.878    0.971  0.944  0.816       0.22
batch 2x512, lr 2e-3, x3 (1000)             0.844  0.883    0.973  0.950  0.834       0.13
batch 2x512, lr 2e-3, x3 (2000): default   0.831  0.834    0.960  0.927  0.809       0.11
==========================================  =====  =======  =====  =====  ==========  =========

(seconds per step on the shared 2-core machine under a load of 5-15; a distillation step costs
about the same.) Training steps are what matter: at 2000 steps the student matches or beats
inpainting on three requests of five (frequent category, range, seed rows), is 0.02 behind on
the rare category, and stays behind on rebalancing, where the teacher's rows are more realistic
than the student's; at 30-100x inpainting's rows/s. Half the batch at twice the learning
rate did as well at equal steps for half the step cost, so it is the default.

The student is saved beside the model (``conditional/``: JSON + safetensors); models without
one (other families, older artifacts) sample conditionally by inpainting.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pfcore.atomic import atomic_write
from pfcore.errors import ModelError
from pfcore.models.base import snap_onehot
from pfcore.models.nets import (
    MLP,
    PeriodicEmbedding,
    copy_with_more_inputs,
    count_parameters,
    embed_given,
    mlp_on_signed_onehots,
)

if TYPE_CHECKING:
    from pfcore.models.base import BlockSpec, GenerativeModel, ProgressCallback

__all__ = [
    "STUDENT_DIR",
    "ConditionalStudent",
    "attach_student",
    "check_conditional_config",
    "column_groups",
    "fit_conditional_student",
    "random_masks",
    "save_student",
]

#: Sub-folder of a saved model that holds its conditional student.
STUDENT_DIR = "conditional"
_JSON = "student.json"
_WEIGHTS = "student.safetensors"
_FORMAT = 1
#: Weight of one-hot dims in the energy score's distance: a wrong class then costs a squared
#: distance of 2 (like two independent standard normals), not 8, so categorical mismatches do
#: not drown the numeric dims' signal (diamonds, 1k steps: rare-category AUC 0.901 -> 0.891,
#: seed rows 0.970 -> 0.964).
ONEHOT_SCALE = 0.5


class ConditionalStudent(nn.Module):
    """``G(z, mask, known)``: an MLP on ``[z, mask, known * mask]``; shapes ``(n, .)``.

    ``mask`` may be ``(d,)`` (one mask for the block, as compiled conditions give) or ``(n, d)``.
    With ``embed`` (a :class:`~pfcore.models.nets.PeriodicEmbedding` over the ``d`` given
    values) the embedding of each given value, zero where not given, is appended to the input:
    the hybrid's numbers-given network distilled from its conditional teacher, where it took a
    numeric-range request's detection AUC from 0.813 to 0.758 (california_housing) and 0.808
    to 0.743 (diamonds), as close as the teacher's own rows.
    """

    def __init__(
        self,
        latent_dim: int,
        n_features: int,
        width: int,
        depth: int,
        embed: PeriodicEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim, self.n_features = int(latent_dim), int(n_features)
        self.width, self.depth = int(width), int(depth)
        # optional: a periodic embedding of each given value (zero where not given), for
        # inputs whose given values pin the others to narrow bands (the hybrid's numbers)
        self.embed = embed
        extra = 0 if embed is None else embed.out_dim - self.n_features
        inputs = self.latent_dim + 2 * self.n_features + extra
        self.mlp = MLP(inputs, self.n_features, width, depth)

    def forward(
        self,
        z: torch.Tensor,
        mask: torch.Tensor,
        known: torch.Tensor,
        dims: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``dims``: the last ``latent_dim - z.shape[1]`` latent inputs are ±1 one-hots given
        by their hot dims ``(n, K)`` (``nets.mlp_on_signed_onehots``), not built: the hybrid's
        numbers-given network reads its row's classes (355 one-hot dims on adult) beside a few
        latent numbers."""
        m = mask.to(z.dtype)
        if m.ndim == 1:
            m = m.expand(z.shape[0], -1)
        known = known.to(z.dtype)
        parts = [m, known * m]
        if dims is None:
            if self.embed is not None:
                parts.append(embed_given(self.embed, known, m))
            return self.mlp(torch.cat([z, *parts], dim=1))
        if self.embed is None:
            return mlp_on_signed_onehots(self.mlp, z, dims, after=torch.cat(parts, dim=1))
        # the embeddings of the columns given in some row only (a range gives one): the others
        # are zero inputs
        cols = m.any(dim=0).nonzero().flatten()
        units = self.embed.weight.shape[-1]
        parts.append(embed_given(self.embed, known, m, cols))
        base = 2 * self.n_features
        slots = (base + cols[:, None] * units + torch.arange(units, device=z.device)).flatten()
        inputs = torch.cat([torch.arange(base, device=z.device), slots])
        after = torch.cat(parts, dim=1)
        n_after = base + self.n_features * units
        return mlp_on_signed_onehots(self.mlp, z, dims, after=after, after_inputs=(n_after, inputs))

    def warm_start(self, student: MLP) -> None:
        """Copy the unconditional student; the new inputs start with zero weight."""
        copy_with_more_inputs(self.mlp, student)

    def spec(self) -> dict[str, int]:
        return {
            "format": _FORMAT,
            "latent_dim": self.latent_dim,
            "n_features": self.n_features,
            "width": self.width,
            "depth": self.depth,
        }


def check_conditional_config(cfg: Any) -> None:
    """The conditional-training fields every family that trains conditional networks shares
    (``conditional_max_steps``, ``_share``, ``_lr``, ``_weight``); 0 steps means none."""
    cfg._check_int("conditional_max_steps", cfg.conditional_max_steps, 0)
    if not 0 <= cfg.conditional_share < 1:
        raise ModelError(
            f"config.conditional_share must be in [0, 1), got {cfg.conditional_share!r}"
        )
    if not cfg.conditional_lr > 0 or not cfg.conditional_weight >= 0:
        raise ModelError("config.conditional_lr must be > 0 and conditional_weight >= 0")


def column_groups(blocks: Sequence[BlockSpec]) -> tuple[torch.Tensor, int]:
    """Group index of every encoded dim: one group per source column (with its missing
    indicator), the unit in which conditions give values; and the number of groups."""
    names: dict[str, int] = {}
    dims: list[int] = []
    for b in blocks:
        col = b.column.removesuffix(".__missing__")
        g = names.setdefault(col, len(names))
        dims += [g] * b.width
    return torch.tensor(dims, dtype=torch.long), len(names)


def random_masks(
    n: int, groups: torch.Tensor, n_groups: int, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``(n, d)`` bool masks of given dims, whole columns at a time, never empty.

    Half the rows give one column (fixed values, rebalancing, one range), half give each column
    with a probability drawn uniformly per row (seed rows with any share of columns given).
    """
    u = torch.rand(n, 1, generator=gen, device=device)
    p = torch.rand(n, 1, generator=gen, device=device)
    given = torch.rand(n, n_groups, generator=gen, device=device) < p
    one = torch.randint(0, n_groups, (n,), generator=gen, device=device)
    single = torch.nn.functional.one_hot(one, n_groups).to(torch.bool)
    cols = torch.where(u < 0.5, single, given | single)
    return cols[:, groups.to(device)]


def energy_score(
    y1: torch.Tensor, y2: torch.Tensor, x: torch.Tensor, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-row energy score of the two draws ``y1, y2`` against the observed row ``x``.

    ``scale`` (d,) weighs the dims in the distance (any fixed norm keeps the score proper).
    """

    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        diff = a - b if scale is None else (a - b) * scale
        return (diff.pow(2).sum(dim=1) + 1e-8).sqrt()

    return 0.5 * (dist(y1, x) + dist(y2, x)) - 0.5 * dist(y1, y2)


def fit_conditional_student(
    model: Any,
    pairs: tuple[torch.Tensor, torch.Tensor],
    x: torch.Tensor,
    valid: torch.Tensor | None,
    callbacks: Sequence[ProgressCallback],
    checkpoint_dir: Path | None,
    *,
    budget_s: float,
) -> dict[str, Any]:
    """Train ``model.conditional_student`` (a ``OneStepModel`` after distillation)."""
    from pfcore.models.energy import soften_onehot
    from pfcore.models.losses import endpoint_loss
    from pfcore.models.phase import Phase, PhaseData, run_phase
    from pfcore.models.training import amp_enabled, autocast, batch_index, seeded_generator

    cfg = model.config
    index = model._index
    assert model.student is not None and index is not None
    device = x.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = ConditionalStudent(
            model.latent_dim, model.n_features, cfg.student_width, cfg.student_depth
        )
    net.warm_start(model.student)
    net.to(device)
    groups, n_groups = column_groups(model.blocks)
    groups = groups.to(device)
    z_all, x_all = pairs
    d = x.shape[1]
    gen = seeded_generator(cfg.seed, device, salt=4)
    batch = max(2, min(cfg.distill_batch_size, len(x)) // 2)
    n_anchor = max(2, batch // 2)
    block_loss, classes = endpoint_loss(cfg, index, x_all)
    scale = torch.ones(d, device=device)
    if index.has_onehot:
        scale[index.onehot_cols.to(device)] = ONEHOT_SCALE
    empty = torch.zeros(d, dtype=torch.bool, device=device)
    zeros = torch.zeros(1, d, device=device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.conditional_lr)
    use_amp = amp_enabled(cfg.amp, device)

    def step_fn(step: int) -> torch.Tensor:
        b = batch_index(len(z_all), n_anchor, gen, device)
        rows = x[batch_index(len(x), batch, gen, device)]
        mask = random_masks(batch, groups, n_groups, gen, device)
        z = torch.randn(2 * batch, model.latent_dim, generator=gen, device=device)
        mm = torch.cat([mask, mask])
        known = torch.cat([rows, rows])
        with autocast(device, use_amp):
            anchor = net(z_all[b], empty, zeros.expand(n_anchor, -1)).float()
            out = net(z, mm, known).float()
        loss = block_loss(anchor, x_all[b], None if classes is None else [c[b] for c in classes])
        y = torch.where(mm, known, soften_onehot(out, index))
        es = energy_score(y[:batch], y[batch:], rows, scale)
        return loss + cfg.conditional_weight * es.mean()

    def push_fn(z: torch.Tensor) -> torch.Tensor:
        return net(z, empty, zeros.expand(z.shape[0], -1))

    phase = Phase(
        name="conditional",
        max_steps=cfg.conditional_max_steps,
        budget_s=budget_s,
        lr=cfg.conditional_lr,
        network=("conditional", net),
        push_fn=push_fn,
        step_fn=step_fn,
        optimizer=opt,
        generator=gen,
    )
    summary = run_phase(model, PhaseData(x, valid, checkpoint_dir), phase, callbacks)
    net.eval()
    model.conditional_student = net
    summary["parameters"] = count_parameters(net)
    return {"conditional": summary}


def student_push(model: GenerativeModel) -> Any:
    """The ``ConditionalPush`` of ``model``'s conditional student: one forward per block."""
    net: ConditionalStudent = model.conditional_student  # type: ignore[attr-defined]
    index = model._index
    assert index is not None

    def push(
        z: torch.Tensor,
        known: torch.Tensor,
        mask: torch.Tensor,
        seed: int,
        evidence: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``evidence`` is unused: one forward gives every one-hot block at once."""
        dev = model.device
        z, known, mask = z.to(dev).float(), known.to(dev).float(), mask.to(dev)
        with torch.inference_mode():
            out = snap_onehot(net(z, mask, known).float(), index)
            return torch.where(mask.to(torch.bool), known, out)

    return push


def save_student(model: GenerativeModel, model_dir: str | os.PathLike[str]) -> Path | None:
    """Write ``model_dir/conditional`` (JSON spec + safetensors) when the model has a student."""
    from safetensors.torch import save_file

    if getattr(model, "conditional_in_weights", False):
        return None  # a family that saves its conditional networks in its own weights
    net = getattr(model, "conditional_student", None)
    if not isinstance(net, ConditionalStudent):
        return None
    path = Path(model_dir) / STUDENT_DIR
    path.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()
    }
    atomic_write(path / _WEIGHTS, lambda p: save_file(tensors, str(p)))
    atomic_write(path / _JSON, lambda p: Path(p).write_text(json.dumps(net.spec(), indent=2)))
    return path


def attach_student(
    model: GenerativeModel, model_dir: str | os.PathLike[str], device: str = "cpu"
) -> None:
    """Load ``model_dir/conditional`` into ``model.conditional_student`` (no-op if absent)."""
    from safetensors.torch import load_file

    path = Path(model_dir) / STUDENT_DIR
    if getattr(model, "conditional_in_weights", False) or not (path / _JSON).exists():
        return  # (a hybrid of numbers only saved before this check wrote its network here too)
    spec = json.loads((path / _JSON).read_text())
    if int(spec.get("format", 0)) > _FORMAT:
        raise ModelError(
            f"{path}: conditional student format {spec['format']} is newer than {_FORMAT}"
        )
    if (int(spec["latent_dim"]), int(spec["n_features"])) != (model.latent_dim, model.n_features):
        raise ModelError(f"{path}: conditional student does not match the model's dimensions")
    with torch.random.fork_rng(devices=[]):
        net = ConditionalStudent(
            spec["latent_dim"], spec["n_features"], spec["width"], spec["depth"]
        )
    try:
        net.load_state_dict(load_file(str(path / _WEIGHTS), device="cpu"), strict=True)
    except Exception as exc:  # safetensors and torch raise their own types
        raise ModelError(f"{path}: cannot read the conditional student: {exc}") from exc
    net.eval()
    model.conditional_student = net.to(device)  # type: ignore[attr-defined]

"""One-step generator distilled from a rectified flow: the production sampler.

``fit`` trains a flow teacher, draws ``n_pairs`` noise vectors ``z`` and integrates the
teacher's ODE to get ``x = ODE(z)``, then regresses a student ``G(z) ≈ x``. The pairs are a real
coupling (the same ``z`` produced that ``x``), so MSE is the right loss here, unlike the naive
baseline where rows are paired with noise at random. Sampling then costs one student forward per
row; the student's width and depth are the throughput lever (``student_width`` /
``student_depth``), chosen by the benchmark's frontier table.

Categorical blocks (``distill_loss="ce"``): the student's outputs for a one-hot block are
logits, trained by cross-entropy on the teacher's chosen class; ``push`` snaps to the argmax as
for every family. ``"mse"`` regresses the teacher's raw endpoint in every dimension.

What limits the student (``benchmarks/distill_sweep.py``: one cached teacher per table, students
at equal distillation steps, scored like the fidelity benchmark): compute, not the loss. From the
same teacher, doubling the steps of the 256x2 student (4k -> 8k) and doubling its FLOPs (384x2 at
4k) each lowered detection AUC by ~0.015 on diamonds and credit_default, so the ``balanced``
preset spends its extra fit time on distillation steps and keeps the fast sampler. An
energy-distance term towards real rows (``distill_match_weight``; 0.1) changed AUC by < 0.01
while doubling the step cost, so it is off by default.

Few-step sampler (``sampler_steps = k > 1``): ``k - 1`` refiners of the student's size each
re-enter the straight path at ``t_i = i / k`` through ``(1 - t_i) z + t_i x1_hat`` and predict
the endpoint again, so ``push`` stays one deterministic function of ``z``. Measured from the
same teachers (4k steps of the 2-network student against 8k steps of the plain one, equal
training compute): detection AUC california_housing 0.748 vs 0.755, diamonds 0.747 vs 0.758
(teacher 0.733), credit_default 0.848 vs 0.867 (teacher 0.762). It doubles the sampler's FLOPs
per row: on the widest shared table (232 encoded features) that is about 59k instead of 92k
rows/s end to end on one thread, under the 80k floor, and credit_default stays 0.086 above its
teacher, so ``k = 1`` stays the default.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pfcore.errors import ModelError
from pfcore.models.base import (
    GenerativeModel,
    OneHotIndex,
    ProgressCallback,
    normalize_blocks,
    snap_onehot,
)
from pfcore.models.cond_student import check_conditional_config
from pfcore.models.energy import energy_distance, soften_onehot
from pfcore.models.flow import FlowConfig, FlowModel, fit_flow
from pfcore.models.losses import endpoint_loss
from pfcore.models.nets import MLP, count_parameters
from pfcore.models.phase import Phase, PhaseData, run_phase
from pfcore.models.training import (
    amp_enabled,
    autocast,
    batch_index,
    seeded_generator,
)

__all__ = ["OneStepConfig", "OneStepModel", "make_pairs"]


@dataclass
class OneStepConfig(FlowConfig):
    """Teacher settings (inherited from ``FlowConfig``) plus the student and distillation.

    ``max_minutes`` bounds the whole fit; the teacher gets ``teacher_share`` of it, pair
    generation what it needs, and distillation the rest.
    """

    student_width: int = 256
    student_depth: int = 2  # the frontier's pick (presets.py)
    n_pairs: int = 60_000
    pair_batch: int = 8192
    teacher_share: float = 0.6
    distill_loss: str = "ce"  # "ce" (logits for one-hot blocks) or "mse"
    distill_lr: float = 2e-3
    distill_batch_size: int = 1024
    distill_max_steps: int = 6000
    distill_min_seconds: float = 5.0
    # Weight of an energy-distance term between each student batch (one-hot blocks softened) and
    # a batch of reference rows: "data" (real training rows) or "teacher" (other ODE endpoints).
    # 0 = plain regression onto the teacher's endpoints.
    distill_match_weight: float = 0.0
    distill_match_ref: str = "data"
    # Mask-conditioned student for conditional sampling (cond_student.py): trained after
    # distillation on ``conditional_share`` of what is left of the budget; 0 steps = none
    # (conditional sampling then inpaints with the teacher).
    conditional_max_steps: int = 3000
    conditional_share: float = 0.4
    conditional_lr: float = 2e-3
    conditional_weight: float = 3.0
    # Network evaluations per sampled row. 1 = the plain student. k > 1 adds k - 1 refiners of
    # the student's size: refiner i sees the point ``(1 - t_i) z + t_i x1_hat`` (t_i = i / k,
    # x1_hat the previous estimate of the endpoint) and predicts the endpoint again.
    sampler_steps: int = 1
    # What a refiner trains on: "teacher" (the straight line from z to the teacher's endpoint,
    # the path a reflowed flow follows) or "student" (the line to the previous network's own
    # estimate, the point it sees when sampling).
    refine_input: str = "teacher"

    def validate(self) -> None:
        super().validate()
        self._check_width_depth(self.student_width, self.student_depth, prefix="student_")
        self._check_ints(["n_pairs", "pair_batch", "distill_batch_size", "distill_max_steps"], 1)
        if not 0 < self.teacher_share < 1:
            raise ModelError(f"config.teacher_share must be in (0, 1), got {self.teacher_share!r}")
        if self.distill_loss not in ("ce", "mse"):
            raise ModelError(
                f"config.distill_loss must be 'ce' or 'mse', got {self.distill_loss!r}"
            )
        if not self.distill_match_weight >= 0:
            raise ModelError(
                f"config.distill_match_weight must be >= 0, got {self.distill_match_weight!r}"
            )
        if self.distill_match_ref not in ("data", "teacher"):
            raise ModelError(
                "config.distill_match_ref must be 'data' or 'teacher', "
                f"got {self.distill_match_ref!r}"
            )
        if not isinstance(self.sampler_steps, int) or not 1 <= self.sampler_steps <= 8:
            raise ModelError(
                f"config.sampler_steps must be an integer in [1, 8], got {self.sampler_steps!r}"
            )
        if self.refine_input not in ("teacher", "student"):
            raise ModelError(
                f"config.refine_input must be 'teacher' or 'student', got {self.refine_input!r}"
            )
        if not self.distill_lr > 0 or self.distill_min_seconds < 0:
            raise ModelError("config.distill_lr must be > 0 and distill_min_seconds >= 0")
        check_conditional_config(self)

    def refine_times(self) -> list[float]:
        """The times ``t_i = i / k`` at which refiners re-enter the path (empty for k = 1)."""
        k = self.sampler_steps
        return [i / k for i in range(1, k)]

    def teacher_config(self) -> FlowConfig:
        names = {f.name for f in fields(FlowConfig)}
        return FlowConfig(**{k: v for k, v in self.to_dict().items() if k in names})


@torch.no_grad()
def make_pairs(
    teacher: FlowModel, n: int, seed: int, *, batch: int = 8192, amp: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z, ODE(z))`` pairs on the teacher's device: the coupling the student regresses on.

    Endpoints are the raw (unsnapped) ODE outputs; the student's loss decides how to use them.
    """
    device = teacher.device
    gen = seeded_generator(seed, device, salt=2)
    z = torch.randn(n, teacher.latent_dim, generator=gen, device=device)
    x = torch.empty_like(z)
    field = teacher.field()
    with autocast(device, amp_enabled(amp, device)):
        for lo in range(0, n, batch):
            x[lo : lo + batch] = field.integrate(z[lo : lo + batch]).float()
    return z, x


class OneStepModel(GenerativeModel):
    """``push(z) = snap(G(z))`` with one MLP forward.

    ``teacher`` (the flow) is kept in memory after ``fit`` for inspection and benchmarks; it is
    not saved.
    """

    family = "onestep"
    config_class = OneStepConfig
    config: OneStepConfig

    def __init__(self, config: OneStepConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.student: MLP | None = None
        self.refiners: nn.ModuleList | None = None
        self.teacher: FlowModel | None = None
        self.conditional_student: nn.Module | None = None  # cond_student.py; saved beside

    def _build_networks(self) -> None:
        cfg = self.config
        self.student = MLP(self.latent_dim, self.n_features, cfg.student_width, cfg.student_depth)
        self.refiners = None
        if cfg.sampler_steps > 1:
            self.refiners = nn.ModuleList(
                MLP(self.n_features, self.n_features, cfg.student_width, cfg.student_depth)
                for _ in range(cfg.sampler_steps - 1)
            )

    def _networks(self) -> dict[str, nn.Module]:
        nets: dict[str, nn.Module] = {}
        if self.student is not None:
            nets["student"] = self.student
        if self.refiners is not None:
            nets["refiner"] = self.refiners
        return nets

    def _endpoint(self, out: torch.Tensor) -> torch.Tensor:
        """The endpoint a network output stands for: one-hot logits become ``2 softmax - 1``."""
        assert self._index is not None
        if self.config.distill_loss != "ce" or not self._index.has_onehot:
            return out
        x1 = out.clone()
        for _w, idx in self._index.groups:
            x1[:, idx] = 2 * torch.softmax(out[:, idx], dim=2) - 1
        return x1

    def _push_raw(self, z: torch.Tensor) -> torch.Tensor:
        assert self.student is not None
        out = self.student(z)
        for t, net in zip(self.config.refine_times(), self.refiners or (), strict=True):
            out = net((1 - t) * z + t * self._endpoint(out.float()))
        return out

    def to(self, device: str | torch.device) -> OneStepModel:
        super().to(device)
        if self.teacher is not None:
            self.teacher.to(device)
        if self.conditional_student is not None:
            self.conditional_student.to(device)
        return self

    def _fit(
        self,
        x: torch.Tensor,
        valid: torch.Tensor | None,
        callbacks: Sequence[ProgressCallback],
        checkpoint_dir: Path | None,
    ) -> dict[str, Any]:
        cfg = self.config
        t_start = time.perf_counter()
        budget = cfg.max_minutes * 60.0
        teacher = FlowModel(cfg.teacher_config())
        teacher.n_features, teacher.latent_dim, teacher.blocks = (
            self.n_features,
            self.latent_dim,
            self.blocks,
        )
        teacher._index = OneHotIndex(self.blocks)
        teacher._build_networks()
        teacher.to(x.device)
        summary = fit_flow(
            teacher,
            x,
            valid,
            callbacks,
            checkpoint_dir,
            budget_s=budget * cfg.teacher_share,
            phase="teacher",
        )
        teacher._fitted = True
        teacher.fit_summary = summary
        self.teacher = teacher
        t0 = time.perf_counter()
        pairs = make_pairs(teacher, cfg.n_pairs, cfg.seed, batch=cfg.pair_batch, amp=cfg.amp)
        summary["pairs"] = {"n": cfg.n_pairs, "seconds": round(time.perf_counter() - t0, 3)}
        remaining = budget - (time.perf_counter() - t_start)
        share = cfg.conditional_share if cfg.conditional_max_steps else 0.0
        summary.update(
            distill(
                self,
                pairs,
                x,
                valid,
                callbacks,
                checkpoint_dir,
                budget_s=max(remaining * (1 - share), cfg.distill_min_seconds),
            )
        )
        if share:
            from pfcore.models.cond_student import fit_conditional_student

            left = max(budget - (time.perf_counter() - t_start), cfg.distill_min_seconds)
            summary.update(
                fit_conditional_student(
                    self, pairs, x, valid, callbacks, checkpoint_dir, budget_s=left
                )
            )
        return summary

    @classmethod
    def from_teacher(
        cls,
        teacher: FlowModel,
        pairs: tuple[torch.Tensor, torch.Tensor],
        x: torch.Tensor,
        valid: torch.Tensor | None,
        config: OneStepConfig | dict[str, Any],
        *,
        budget_s: float,
        callbacks: Sequence[ProgressCallback] = (),
    ) -> OneStepModel:
        """Distil a student of another size from an already-trained teacher and its pairs.

        Used by the benchmark's frontier (one teacher, several student sizes); ``x``/``valid``
        are tensors on the teacher's device.
        """
        model = cls(config)
        model.n_features, model.latent_dim, model.blocks = (
            teacher.n_features,
            teacher.latent_dim,
            normalize_blocks(teacher.blocks, teacher.n_features),
        )
        model._index = OneHotIndex(model.blocks)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(model.config.seed)
            model._build_networks()
        model.to(teacher.device)
        summary = distill(model, pairs, x, valid, callbacks, None, budget_s=budget_s)
        for net in model._networks().values():
            net.eval()
        model.teacher = teacher
        model._fitted = True
        model.fit_summary = {"family": cls.family, **summary}
        return model


def distill(
    model: OneStepModel,
    pairs: tuple[torch.Tensor, torch.Tensor],
    x: torch.Tensor,
    valid: torch.Tensor | None,
    callbacks: Sequence[ProgressCallback],
    checkpoint_dir: Path | None,
    *,
    budget_s: float,
) -> dict[str, Any]:
    """Regress the student onto the teacher's endpoints (block-aware loss)."""
    cfg = model.config
    assert model.student is not None and model._index is not None
    student, index = model.student, model._index
    z_all, x_all = pairs
    device = z_all.device
    gen = seeded_generator(cfg.seed, device, salt=3)
    batch = min(cfg.distill_batch_size, len(z_all))
    block_loss, classes = endpoint_loss(cfg, index, x_all)
    use_amp = amp_enabled(cfg.amp, device)

    match_w = cfg.distill_match_weight
    ref_rows = x if cfg.distill_match_ref == "data" else x_all
    if cfg.distill_match_ref == "teacher" and index.has_onehot:
        ref_rows = snap_onehot(x_all.clone(), index)

    refiners = list(model.refiners or ())
    times = cfg.refine_times()
    from_teacher = cfg.refine_input == "teacher"
    params = [p for net in (student, *refiners) for p in net.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.distill_lr)
    trained: nn.Module = student
    if refiners:
        trained = nn.ModuleDict({"student": student, "refiner": model.refiners})

    def step_fn(step: int) -> torch.Tensor:
        b = batch_index(len(z_all), batch, gen, device)
        zb, xb = z_all[b], x_all[b]
        cls_b = None if classes is None else [c[b] for c in classes]
        with autocast(device, use_amp):
            out = student(zb).float()
        loss = block_loss(out, xb, cls_b)
        prev = out
        for t, net in zip(times, refiners, strict=True):
            end = xb if from_teacher else model._endpoint(prev.detach())
            with autocast(device, use_amp):
                prev = net((1 - t) * zb + t * end).float()
            loss = loss + block_loss(prev, xb, cls_b)
        if match_w > 0:
            ref = ref_rows[batch_index(len(ref_rows), batch, gen, device)]
            loss = loss + match_w * energy_distance(soften_onehot(out, index), ref)
        return loss

    phase = Phase(
        name="distill",
        max_steps=cfg.distill_max_steps,
        budget_s=budget_s,
        lr=cfg.distill_lr,
        network=("student", trained),
        push_fn=model._push_raw,
        step_fn=step_fn,
        optimizer=opt,
        generator=gen,
    )
    summary = run_phase(model, PhaseData(x, valid, checkpoint_dir), phase, callbacks)
    summary["parameters"] = count_parameters(trained)
    summary["sampler_steps"] = cfg.sampler_steps
    summary["width"], summary["depth"] = cfg.student_width, cfg.student_depth
    return {"distill": summary}

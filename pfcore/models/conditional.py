"""Conditional sampling supplied by the model family: flow inpainting on known encoded dims.

Why inpainting (and not rejection): the rectified flow's network predicts, at any point
``x_t = (1 - t) z + t x1`` of its paths, where the path ends. Holding the known dimensions of
that prediction at their given values while integrating the flow's stochastic form (see
:func:`inpaint`) generates the unknown dimensions given the known ones. It needs no retraining,
costs ``DEFAULT_STEPS`` network evaluations per row whatever the condition (a rare category as
cheap as a frequent one) and never throws rows away. The one-step student cannot do this (it
has no time axis), so ``onestep`` models inpaint with their flow teacher, which is saved beside
the student (``teacher/``: JSON config + safetensors state dict), when they carry no
mask-conditioned student (``cond_student.py``), the faster sampler that
:func:`conditional_method` prefers.

The rows approximate the model's conditional law (no mask was seen in training). Measured
(toy: two columns with P(y=u | x=a) = 0.9, E[num | x=a] = 3, the trained teacher's own rows
0.905 and 3.04; then detection AUC of 4-5k conditional rows against the holdout rows that meet
the condition, fast preset, 2-minute fits; unconditional rows: california_housing 0.859,
diamonds 0.848):

================================  ========  ========  =========  ==========  =======  =======
sampler (steps)                   P(u | a)  E[num|a]  cal ocean  cal income  dia cut  dia carat
================================  ========  ========  =========  ==========  =======  =======
ODE, known dims replaced (16)     0.70      2.25      0.872      0.854       0.781    0.975
predict, replace, re-noise (16)   0.92      2.98      0.934      0.907       0.823    0.952
SDE churn 2 (16)                  0.81      2.71      0.876      0.864
SDE churn 2 (32)                                                             0.827    0.971
SDE churn 4 (16)                  0.89      2.87      0.892      0.864       0.930    0.982
SDE churn 4 (32, default)         0.89      2.95      0.871      0.828       0.830    0.962
================================  ========  ========  =========  ==========  =======  =======

(cal ocean: ocean_proximity = <1H OCEAN; cal income: median_income >= 5; dia cut: cut = Ideal;
dia carat: 0.9 <= carat <= 1.51.) Plain replacement is the most realistic but under-conditions
(the unknown dims commit before the known ones carry signal); full re-noising conditions but
smooths rows (it restarts from the endpoint's mean, not a sample); the SDE with churn 4 and 32
steps conditions as well as re-noising and is the most realistic of the conditioning samplers
on three of four conditions. A numeric range on diamonds' carat stays far from realistic for
every sampler (x, y, z are near-exact functions of carat).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import torch

from pfcore.defaults import CONDITIONAL_METHODS
from pfcore.errors import ModelError
from pfcore.models.base import GenerativeModel, snap_onehot

__all__ = [
    "TEACHER_DIR",
    "ConditionalPush",
    "METHODS",
    "attach_teacher",
    "conditional_method",
    "conditional_push",
    "inpaint",
    "save_teacher",
]

#: Sub-folder of a saved one-step model that holds its flow teacher.
TEACHER_DIR = "teacher"


class ConditionalPush(Protocol):
    """A family's conditional sampler: ``known`` (n, d) holds the given encoded values where
    ``mask`` (d,) or (n, d) is true; output rows equal ``known`` there exactly, one-hot blocks
    snapped; ``seed`` seeds the re-noising draws (so rows depend only on the block's seeds).
    ``evidence`` (``CompiledConditions.evidence``): per one-hot block not given (its first
    feature) ``(n, classes)`` log-weights of its classes; a sampler that draws classes one
    column at a time (the hybrid's) adds them to its log-probabilities, the others ignore
    them."""

    def __call__(
        self,
        z: torch.Tensor,
        known: torch.Tensor,
        mask: torch.Tensor,
        seed: int,
        evidence: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor: ...


#: Steps of the conditional sampler (one network evaluation each): with churn 4, 16 steps were
#: too coarse on diamonds (table in the module docstring).
DEFAULT_STEPS = 32
#: Strength of the Langevin correction (``lambda`` in :func:`inpaint`); chosen by measurement,
#: see the module docstring.
DEFAULT_CHURN = 4.0


@torch.no_grad()
def inpaint(
    field: Any,
    z: torch.Tensor,
    known: torch.Tensor,
    mask: torch.Tensor,
    *,
    steps: int,
    churn: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Euler-Maruyama on the flow's marginal-preserving SDE, known dims held in the endpoint.

    ``field`` is a ``pfcore.models.flow.VelocityField``. At ``(x, t)`` the field gives the
    endpoint estimate ``x1``; its known dims are replaced by ``known``, which sets the implied
    noise ``zh = (x - t x1) / (1 - t)`` and velocity ``v = x1 - zh``. For the straight path the
    score is ``-zh / (1 - t)``, so ``dx = (v - churn zh) dt + sqrt(2 churn (1 - t)) dW`` has the
    ODE's marginals for any ``churn``: ``churn = 0`` is the plain ODE with the known dims
    replaced (which under-conditions: the unknown dims commit before the known ones carry
    signal); ``churn > 0`` keeps revising the unknown dims given the known ones.
    """
    known = known.float()
    m = mask.to(torch.bool)
    h = 1.0 / steps
    x = z.float().clone()
    x1 = x
    for i in range(steps):
        t0 = i * h
        x1 = torch.where(m, known, endpoint(field, x, t0))
        if i == steps - 1:
            break
        zh = (x - t0 * x1) / (1.0 - t0)
        eps = torch.randn(x.shape, generator=generator, device=x.device)
        x = x + h * ((x1 - zh) - churn * zh) + (2.0 * churn * (1.0 - t0) * h) ** 0.5 * eps
    return x1


def endpoint(field: Any, x: torch.Tensor, t: float) -> torch.Tensor:
    """The field's estimate of the path's endpoint at ``(x, t)``: ``x + (1 - t) v``.

    With the softmax head a one-hot block's estimate is ``2 softmax - 1`` directly (the same
    value the velocity is derived from, without dividing by ``1 - t`` and multiplying back).
    """
    raw = field.net(x, torch.full((x.shape[0], 1), t, device=x.device)).float()
    if not field.softmax:
        return x + (1.0 - t) * raw
    x1 = x + (1.0 - t) * raw
    for _w, idx in field.index.groups:
        x1[:, idx] = 2 * torch.softmax(raw[:, idx], dim=2) - 1
    return x1


def _flow_of(model: GenerativeModel) -> GenerativeModel:
    """The flow that carries ``model``'s conditional sampler (itself, or a one-step's teacher)."""
    from pfcore.models.flow import FlowModel

    if isinstance(model, FlowModel):
        return model
    teacher = getattr(model, "teacher", None)
    if isinstance(teacher, FlowModel):
        return teacher
    if model.family == "onestep":
        raise ModelError(
            "conditional sampling needs the one-step model's flow teacher, and this model was "
            "saved without it (saved by an older pushforward): retrain it to sample conditionally"
        )
    if getattr(model, "conditional_student", None) is not None:
        raise ModelError(
            f"model family {model.family!r} has no flow to inpaint with; its conditional "
            "sampler is conditional_method 'auto' (or 'student')"
        )
    raise ModelError(
        f"this {model.family!r} model has no conditional sampler (its family has none, or it "
        "was fitted with conditional_max_steps=0 or saved by an older pushforward); use the "
        "'hybrid' (default), 'onestep' or 'flow' family"
    )


#: Conditional samplers a caller may ask for; "auto" is :func:`conditional_method`'s choice.
METHODS = CONDITIONAL_METHODS


def conditional_method(model: GenerativeModel, requested: str = "auto") -> str:
    """Which conditional sampler ``model`` runs: the one decision, made for every entry point.

    Every request reaches it through ``pfcore.condition_plan.compile_conditions`` (the Python
    API, the pyfunc, the CLI and the generate-batch flow all compile their conditions before
    sampling), so it also refuses, before any row is drawn, a sampler the model cannot run.
    "auto" takes the mask-conditioned one-step student (``cond_student.py``: one forward of a
    student-sized network per row) when the model carries one, else flow inpainting
    (``DEFAULT_STEPS`` forwards of the flow): flows, and one-step models saved before the
    student existed or fitted without it, still sample conditionally. "project" is asked for,
    never chosen: a hybrid model's discrete columns from its any-order network and its numbers
    from the unconditional student at a latent point moved onto the given numbers
    (``latent_project.py``): closer to the real rows than "student" when numbers are given,
    at a fraction of its speed (``hybrid_cond.py`` has the measurements).
    """
    if requested not in METHODS:
        raise ModelError(f"conditional_method must be one of {list(METHODS)}, got {requested!r}")
    has_student = getattr(model, "conditional_student", None) is not None
    if requested == "student" and not has_student:
        raise ModelError(
            f"conditional_method 'student': this {model.family!r} model has no conditional "
            "student (fitted with conditional_max_steps=0, another family, or saved by an "
            "older pushforward); use 'auto' or 'inpaint'"
        )
    if requested == "project" and not (has_student and model.family == "hybrid"):
        raise ModelError(
            f"conditional_method 'project' needs a hybrid model with its conditional networks; "
            f"this {model.family!r} model has "
            f"{'them' if has_student else 'none'} (use 'auto')"
        )
    method = ("student" if has_student else "inpaint") if requested == "auto" else requested
    if method == "inpaint":
        _flow_of(model)  # raises when the model has no flow to inpaint with
    return method


def conditional_push(
    model: GenerativeModel,
    *,
    method: str = "auto",
    steps: int | None = None,
    churn: float = DEFAULT_CHURN,
) -> ConditionalPush:
    """The family's conditional sampler (raises ``ModelError`` if the family has none)."""
    chosen = conditional_method(model, method)
    if chosen == "project":
        return model.conditional_push(project=True)  # type: ignore[attr-defined]
    if chosen == "student":
        from pfcore.models.cond_student import student_push

        own = getattr(model, "conditional_push", None)  # a family with its own networks
        return own() if callable(own) else student_push(model)
    flow = _flow_of(model)
    field = flow.field()  # type: ignore[attr-defined]
    n_steps = int(steps or DEFAULT_STEPS)
    index = flow._index
    assert index is not None

    def push(
        z: torch.Tensor,
        known: torch.Tensor,
        mask: torch.Tensor,
        seed: int,
        evidence: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``evidence`` is unused: the flow moves every one-hot block at once."""
        dev = flow.device
        z, known, mask = z.to(dev), known.to(dev), mask.to(dev)
        gen = torch.Generator(device=dev).manual_seed(int(seed))
        with torch.inference_mode():
            out = inpaint(field, z, known, mask, steps=n_steps, churn=float(churn), generator=gen)
            out = snap_onehot(out, index)
            return torch.where(mask.to(torch.bool), known.float(), out)

    return push


def save_teacher(model: GenerativeModel, model_dir: str | os.PathLike[str]) -> Path | None:
    """Save a one-step model's conditional samplers beside it: its flow teacher under
    ``model_dir/teacher`` and its conditional student under ``model_dir/conditional`` (each
    if it has one)."""
    from pfcore.models.cond_student import save_student

    save_student(model, model_dir)
    teacher = getattr(model, "teacher", None)
    if teacher is None or not getattr(teacher, "_fitted", False):
        return None
    return teacher.save(Path(model_dir) / TEACHER_DIR)


def attach_teacher(
    model: GenerativeModel, model_dir: str | os.PathLike[str], device: str = "cpu"
) -> None:
    """Load ``model_dir/teacher`` into ``model.teacher`` and ``model_dir/conditional`` into
    ``model.conditional_student`` when they were saved (no-op otherwise)."""
    from pfcore.models.cond_student import attach_student
    from pfcore.models.flow import FlowModel

    if hasattr(model, "conditional_student"):
        attach_student(model, model_dir, device=device)
    path = Path(model_dir) / TEACHER_DIR
    if hasattr(model, "teacher") and (path / "model.json").exists():
        model.teacher = FlowModel.load(path, device=device)  # type: ignore[attr-defined]

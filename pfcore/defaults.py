"""Choices and defaults shared by the library, the flow parameters and the CLI.

Why a module of its own: the CLI and the Prefect form are generated from ``flows.params``, which
reads its choices and defaults from here, and the library reads the same names; keeping them
in one import-light module (no torch, no Prefect) means a new family or a changed default is
written once and the CLI's ``--help`` stays instant.
"""

from __future__ import annotations

__all__ = [
    "CONDITIONAL_METHODS",
    "DEFAULT_CONDITIONAL_METHOD",
    "DEFAULT_FAMILY",
    "DEFAULT_PRESET",
    "FAMILY_CHOICES",
    "PRESET_CHOICES",
    "PROTECT_EXTREMES",
]

#: Model families offered to users (``naive_mse`` exists only as a negative control).
FAMILY_CHOICES: tuple[str, ...] = ("onestep", "flow", "hybrid", "energy")
DEFAULT_FAMILY = "hybrid"
#: Training budget presets, smallest first (``pfcore.models.presets``); ``gpu`` is sized for one
#: CUDA device.
PRESET_CHOICES: tuple[str, ...] = ("tiny", "fast", "balanced", "best", "gpu")
DEFAULT_PRESET = "balanced"
#: No synthetic value is more extreme than a column's 6th most extreme real value (privacy:
#: outliers identify people; see ``pfcore.transforms.numeric``). 0 reproduces the full range.
PROTECT_EXTREMES = 5
#: Conditional samplers a request may name (``pfcore.models.conditional.conditional_method``
#: decides what "auto" runs: the model's mask-conditioned networks when it has them, else flow
#: inpainting; "student" names those networks: a one-step model's conditional student, a hybrid
#: model's any-order discrete network and numeric student; "project" is a hybrid model's
#: any-order discrete network with its unconditional student's latent point moved onto the
#: given numbers, slower and closer to the real rows when numbers are given).
CONDITIONAL_METHODS: tuple[str, ...] = ("auto", "student", "inpaint", "project")
DEFAULT_CONDITIONAL_METHOD = "auto"

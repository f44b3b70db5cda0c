"""Hybrid push-forward map: discrete columns drawn autoregressively, numbers by a one-step map.

Why: the one-step student distilled from a flow over the whole encoded row reproduces every
column's shape but loses the discrete joint structure (a one-pass map ``z -> one-hot`` must carve
sharp class regions in latent space). Here the two parts are modelled by what suits each:

1. **Discrete part** (every ``onehot`` block: categoricals, booleans, missing indicators): a
   masked autoregressive network (``autoregressive.DiscreteAR``) trained by maximum likelihood
   on the data, sampled column by column in block order by inverse CDF from one latent
   coordinate per column (``u = Phi(z_c)``).
2. **Continuous part** (every numeric dim): a rectified flow over the numeric dims whose velocity
   net also receives the row's one-hot blocks (``VelocityNet(cond_dim=D)``, trained on data
   rows), then a one-step student ``(z_num, d) -> x_num`` regressed onto pairs made by
   integrating that flow from ``(z_num, d_data)``. When sampling, ``d`` comes from the discrete
   part and ``z_num`` is fresh latent noise, the same kind of inputs the student was trained on.

The latent vector is ``[one coordinate per discrete column, one per numeric dim]``, so
``push`` is one deterministic function of ``z`` (noise in, rows out). A table with no one-hot
block has no discrete part; a table with no numeric dim has no flow and no student.

Budget (``max_minutes``): the discrete network gets ``ar_share`` of it, the flow
``teacher_share``, pair generation what it needs up to ``pairs_share`` and distillation the
rest (at least ``distill_min_seconds``). Step limits: ``ar_max_steps``, ``max_steps`` (capped
by ``epochs`` as for every family) and ``distill_max_steps``.

Measured (``benchmarks/hybrid_sweep.py``, balanced preset, 3,000 flow and 6,000 distillation
steps for both families, 3,000 discrete-network steps; detection AUC of the one-step sampler):
credit_default 0.787 against onestep's 0.862, nyc_flights 0.944 against 0.990 (onestep's flow
teacher: 0.968), california_housing 0.759 against 0.761, diamonds 0.765/0.769 (seeds 0/1)
against 0.759/0.761 (a loss); the student is within 0.02 of its own teacher everywhere
(onestep: 0.02-0.11), but the conditional flow is itself behind onestep's flow teacher
on the numeric-heavy tables (diamonds 0.763 against 0.710). Sampling runs at 0.55-0.67x
onestep's rows/s (the discrete network costs about one forward of a 128x2 MLP).

The numeric dims are whitened first (``whiten``, ``whiten.py``): the flow, its pairs and the
students live in ZCA-whitened coordinates and every sampler maps back, so an error of the
networks shrinks along the thin directions of near-exact relations between numeric columns.
With the conditional flow's periodic embedding it embeds the source columns, not the whitened
coordinates (``PeriodicEmbedding.set_input_map``). Measured with ``hybrid_sweep.py`` (the same
step budgets with and without, 512x4 MLP flow, seed 0; detection AUC teacher / student):
california_housing 0.750 / 0.758 with whitening against 0.762 / 0.767 without, nyc_flights
0.965 / 0.965 against 0.967 / 0.970; diamonds 0.708 / 0.721 and credit_default 0.817 / 0.824
with it, where the unwhitened flow of the same fit budget scored 0.764 / 0.768 and
0.843 / 0.842 in the fidelity benchmark (3 seeds).

The student is distilled with a Huber loss (``distill_huber``; see :func:`distill_loss`) and
its numbers then go through a monotone map per column that gives them the training rows'
marginals (``marginal.py``, fitted after distillation; ``calibrate_numbers``). With one fitted
teacher per table and 70 s of distillation (``benchmarks/student_lab.py``) the two together
took the student's detection AUC from 0.696 to 0.639 on california_housing, 0.701 to 0.693 on
diamonds, 0.774 to 0.742 on credit_default; nyc_flights 0.948 to 0.950; in the 5-minute fits
of ``benchmarks/fidelity.py`` (3 seeds) 0.692 to 0.630, 0.701 to 0.694, 0.786 to 0.755 and 0.929
to 0.936 (per-column maps cannot keep nyc_flights' clock arithmetic exact). Each fit now
chooses where the maps act (encoded columns, whitened coordinates or both, ``calibrate_space``,
``map_space.py``) by a classifier on its own decoded rows: 0.623, 0.689, 0.757 and 0.927. The
flow teacher's sampler gets maps of its own in the same space for the benchmark
(:meth:`HybridModel.calibrate_teacher`).

Integer columns whose values are labels of a key of discrete columns (``pfcore.labels``: a
flight number of an airline and route) then go through a step map per class of their key onto
the values that class holds (``class_maps.py``, ``class_keys``), in every sampler: the student,
the teacher (maps of its own, to the same targets) and the conditional one. Every other number
goes through a smooth map per class of the discrete column that explains it best onto the
training rows' law within that class (``class_numbers``, ``number_keys``), kept only when a
classifier on the fit's own rows says it helps (:meth:`HybridModel._fit_number_maps`).

Conditional requests (given columns, seed rows, rebalancing) are answered by two more
mask-conditioned networks trained after distillation (``hybrid_cond.py``). The family is the
product default: at the 5-minute budget its detection AUC is below the one-step family's on all
four shared tables (``benchmarks/results/fidelity.json``).

The per-slot calibration offsets of other families are not fitted: the discrete part is a
likelihood model whose class frequencies already match the data's, and an offset on its ±1
output would only move classes the sampler drew on purpose.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from pfcore.errors import ModelError
from pfcore.models import map_space
from pfcore.models.autoregressive import DiscreteAR
from pfcore.models.base import BlockSpec, GenerativeModel, ProgressCallback
from pfcore.models.calibration import CALIBRATION_ROWS
from pfcore.models.class_maps import ClassMaps, number_keys
from pfcore.models.cond_student import ConditionalStudent, check_conditional_config, random_masks
from pfcore.models.flow import FlowConfig, VelocityField, train_field, velocity_net_for
from pfcore.models.hybrid_cond import (
    AnyOrderDiscrete,
    build_networks,
    distill_loss,
    fit_conditional,
    hybrid_conditional_push,
    numbers_by_newton,
    numeric_index,
)
from pfcore.models.latent_move import LinearMove
from pfcore.models.marginal import MarginalMap
from pfcore.models.nets import (
    MLP,
    ResVelocityNet,
    VelocityNet,
    count_parameters,
    mlp_on_signed_onehots,
)
from pfcore.models.phase import Phase, PhaseData, run_phase, run_scored_phase
from pfcore.models.training import amp_enabled, autocast, batch_index, seeded_generator
from pfcore.models.whiten import Whitener

__all__ = ["HybridConfig", "HybridModel"]

#: What ``continuous_sampler`` may be: the distilled student (one forward) or the flow.
CONTINUOUS_SAMPLERS = ("student", "teacher")

#: Up to this many numeric dims the student is ``FEW_NUMBERS_WIDTH`` wide, above it
#: ``MANY_NUMBERS_WIDTH`` (``student_width_for``).
FEW_NUMBERS = 6
FEW_NUMBERS_WIDTH = 128
MANY_NUMBERS_WIDTH = 256


#: The model's own rows the class maps (class_maps.py) are fitted on.
CLASS_MAP_ROWS = 200_000


def student_width_for(n_num: int) -> int:
    """The student's hidden width for a table with ``n_num`` numeric dims.

    Why by the number of numbers: the student maps them (given the drawn classes), and on a
    mostly-categorical table it has only a few to map yet took half of the sampler's time at
    256 wide (adult, telco churn: three hidden layers of 256 for 5 and 3 numeric dims). At 128
    wide, three 5-minute fits each (one thread): detection AUC adult 0.519 +/- 0.004 against
    0.517 +/- 0.004, bank marketing 0.599 +/- 0.010 against 0.598 +/- 0.008, telco churn 0.550
    +/- 0.004 against 0.566 +/- 0.012, Quality within 0.003, and 1.5-2x the rows/s (idle,
    interleaved, 100k rows: adult 120-160k against 82-98k, telco 137-150k against 71-81k).
    The tables with 7 to 14 numeric dims keep 256 (a 128-wide one-step student was 0.05 worse
    on diamonds); none of those measured has 6, so the cut sits between what was measured.
    """
    return FEW_NUMBERS_WIDTH if n_num <= FEW_NUMBERS else MANY_NUMBERS_WIDTH


@dataclass
class HybridConfig(FlowConfig):
    """Flow settings (``FlowConfig``: the conditional flow over numeric dims) plus the
    discrete network, the student and the budget split."""

    ar_width: int = 128
    ar_depth: int = 2
    ar_lr: float = 1e-3
    ar_max_steps: int = 4000
    ar_share: float = 0.1
    # MADE's direct connections in the discrete network (autoregressive.DiscreteAR), trained at
    # ``ar_direct_lr_scale`` times ``ar_lr``: started at zero, they must reach logit offsets of
    # several units within a few hundred steps on a wide table. 5-minute fits, one thread:
    # Ames house prices (65 discrete columns) detection AUC 0.811 +/- 0.020 -> 0.778 +/- 0.011
    # (3 seeds each), adult 0.517 +/- 0.004 -> 0.514 and nyc_flights 0.863 -> 0.858 (one seed,
    # the latter beside an off fit); sampling on house prices 30k -> 16k rows/s (one lookup of
    # every later column's logits per drawn column), adult and nyc_flights within noise.
    ar_direct: bool = True
    ar_direct_lr_scale: float = 10.0
    # Class links (autoregressive.find_links): a class of one discrete column present exactly
    # when a class of an earlier one is, on every training and held-out row, is drawn exactly
    # then. Ames house prices: no fireplace quality exactly when there are no fireplaces held on
    # 91-94% of sampled rows without them.
    ar_links: bool = True
    teacher_share: float = 0.5
    # None: sized by the number of numeric dims it outputs (``student_width_for``).
    student_width: int | None = None
    student_depth: int = 2
    n_pairs: int = 60_000
    pair_batch: int = 8192
    # Pair generation stops after this share of ``max_minutes`` (having made at least one
    # ``pair_batch``): on a CPU with native bf16 150k pairs took 16-24 s of a 5-minute fit, in
    # fp32 about 2.5 times that, which would come out of distillation's time.
    pairs_share: float = 0.1
    distill_lr: float = 2e-3
    distill_batch_size: int = 1024
    distill_max_steps: int = 6000
    distill_min_seconds: float = 5.0
    # Distillation loss: Huber with this threshold (whitened units), 0 = mean squared error.
    distill_huber: float = 0.05
    # Conditional networks (hybrid_cond.py), trained after distillation on ``conditional_share``
    # of what is left of the budget (distillation stops at its step cap early, and the rest
    # goes to them too); 0 steps = none, and the model then refuses conditional requests.
    conditional_max_steps: int = 3000
    conditional_share: float = 0.35
    conditional_lr: float = 2e-3
    # The any-order discrete network's learning rate (``conditional_lr`` is the numbers-given
    # network's). In a 4-minute fit it got 12-14 s (now, with no numbers-given network to train,
    # about twice that): 700-900 steps on adult, credit_default and nyc_flights, a cap of 3,000
    # on the others. Refitted for those seconds on the same six fits
    # (one thread), 1.6e-2 against 2e-3 lowered the held-out NLL of the missing columns on all
    # six (nyc_flights 1.256 -> 1.198, california_housing 0.569 -> 0.553, credit_default 0.973
    # -> 0.960, diamonds 1.609 -> 1.592, telco churn 0.676 -> 0.672, adult 1.361 -> 1.358) and
    # brought the rebalanced targets of adult and credit_default 0.05-0.06 detection AUC closer
    # to the real rows (0.601 -> 0.551, 0.744 -> 0.682); 8e-3 came between. At 2e-3 the chain of
    # columns drawn given credit_default's target needed 60 s (4,200 steps) to reach what the
    # unconditional network's own law of them scores (14.4 nats per held-out row). With one
    # mask draw for numbers and classes this rate also left a class given one number and many
    # drawn classes worse than its marginal (nyc_flights' hour given its delay: 3.12 nats
    # held out at 1.6e-2, 2.75 at 2e-3, the unconditional network 2.47); the two draws of
    # ``hybrid_cond._mask_sampler`` took it to 2.47 at this rate.
    conditional_discrete_lr: float = 1.6e-2
    conditional_weight: float = 3.0
    # The any-order discrete network's hidden width. 256 rather than 512: refitted on the same
    # four 4-minute fits for the same seconds, it made 1.5-1.8x the steps, reached a lower
    # held-out NLL on all four shared tables, scored the 18 conditional requests within 0.007
    # detection AUC of the 512-wide network (credit_default's rebalanced target 0.775 -> 0.755)
    # and sampled credit_default's rebalanced target at 54% of unconditional rows/s (512: 42%).
    conditional_width: int = 256
    conditional_depth: int = 1
    # Each given number also enters the any-order discrete network through this many bins
    # (``hybrid_cond.AnyOrderDiscrete.number_inputs``; 0: the raw number alone). Eight, not
    # tuned: on King County's range and seed rows they took 0.012-0.027 detection AUC off (the
    # network alone refitted on the same fits; the shared tables within 0.01 either way,
    # ``benchmarks/results/conditional_number_bins.json``).
    conditional_number_bins: int = 8
    # Numbers given: distil the numbers-given network from a copy of the flow teacher
    # fine-tuned to take given numbers (hybrid_cond._fit_cond_teacher; ``conditional_pairs``
    # endpoints) instead of training it by the energy score alone. Off by default: in 4-minute
    # fits with ``conditional_share=0.6`` (the time it needs) the numeric-range and seed-row
    # requests of california_housing and diamonds came 0.03-0.10 detection AUC closer to the
    # real rows (range 0.858 -> 0.758 and 0.821 -> 0.743, seed rows 0.849 -> 0.818 and
    # 0.739 -> 0.636), credit_default's and nyc_flights' came no closer, and the
    # distillation time it takes cost nyc_flights' unconditional rows 0.04 (0.788 -> 0.827;
    # one seed each, benchmarks/results/conditional_teacher.json, conditional_balanced.json).
    # Those gains are against the network without ``conditional_embed``; against the one with
    # it (now the default) the teacher was not measured.
    conditional_teacher: bool = False
    conditional_pairs: int = 60_000
    # A periodic embedding of each given number (``nets.PeriodicEmbedding``, the flow's size)
    # as an input of the numbers-given network beside the raw value, also without the teacher.
    # A given number that enters only as a raw input is a smooth signal, and a condition such as
    # a longitude pins the latitude to a few narrow bands. Only that network refitted on six
    # 4-minute fits for the seconds they gave it (``benchmarks/numbers_given_refit.py``), the
    # nine requests that give numbers (``benchmarks/results/conditional_embed.json``): the
    # ranges of california_housing 0.829 -> 0.781, diamonds 0.827 -> 0.796, nyc_flights
    # 0.876 -> 0.862, telco churn 0.579 -> 0.570; seed rows of diamonds 0.763 -> 0.706,
    # credit_default 0.819 -> 0.809, the other three within 0.008. It makes 30% fewer steps in
    # those seconds, and those requests sample at 58-86% of the unconditional rows/s instead of
    # 54-115% (the sampler embeds only the columns some row gives: a range embeds one).
    conditional_embed: bool = True
    # Measure the numbers-given network's energy score in the whitened coordinates (where a
    # column tied to others varies along its own unit-scale direction) instead of the encoded
    # columns (where such a direction is a small residual that the distance barely sees: a
    # diamond's width given its carat). Any fixed linear map keeps the score proper. Only that
    # network refitted on five 4-minute fits for the seconds they gave it
    # (``benchmarks/results/conditional_white_score.json``): diamonds' range 0.809 -> 0.759
    # and seed rows 0.716 -> 0.629 (a second seed 0.808 -> 0.767 and 0.715 -> 0.654; its own
    # rows 0.783 / 0.689), california_housing's 0.790 -> 0.782 and 0.855 -> 0.849; nyc_flights,
    # credit_default and adult within 0.008 either way. Off (or without ``whiten``): encoded.
    conditional_white_score: bool = True
    # The numbers-given network moves the row's latent point and the unconditional student
    # draws the numbers there (``HybridModel.cond_white``), instead of drawing them itself: the
    # numbers drawn beside given ones keep the student's relations. Only that network refitted
    # on five 4-minute fits for the seconds they gave it (``hybrid_cond.py``,
    # ``benchmarks/results/conditional_mover.json``): seed rows california_housing 0.848 ->
    # 0.815, nyc_flights 0.877 -> 0.835, diamonds 0.621 -> 0.608, credit_default 0.798 ->
    # 0.794; numeric ranges nyc_flights 0.783 -> 0.770, diamonds 0.754 -> 0.741,
    # california_housing 0.783 -> 0.788; requests that give no number sample as before.
    conditional_mover: bool = True
    # Its learning rate (``conditional_lr`` is the network's that draws the numbers itself)
    # and hidden width (two layers). 128 rather than 256: the same detection AUC within 0.011
    # on california_housing's and nyc_flights' ranges and seed rows, and 100k rows' numbers
    # in 0.75 s instead of 1.0 s on one thread (the network that draws them itself: 0.58 s).
    conditional_mover_lr: float = 6e-3
    conditional_mover_width: int = 128
    # The numbers beside given ones come from the unconditional student at the row's latent
    # point moved by two Newton steps along a least-squares line through the student
    # (``latent_move.py``, fitted once at fit time): the first to where the line gives the
    # given numbers, the second correcting the student's own miss there; no numbers-given
    # network is trained (the fit ends those seconds sooner). Off, or with
    # ``conditional_teacher`` (which trains that network), the network answers
    # (``conditional_mover``). On three saved 4-minute fits per table, against the mover: seed
    # rows california_housing 0.654 -> 0.604 and nyc_flights 0.751 -> 0.742 detection AUC, the
    # other requests level (``benchmarks/results/conditional_newton.json``); seed rows and
    # ranges at 57-65% of the unconditional rows/s instead of the mover's 68-82%.
    conditional_linear_move: bool = True
    # Decorrelate the numeric dims before the flow and the students model them (whiten.py).
    whiten: bool = True
    # Map the student's numbers to the data's marginals after distillation (marginal.py);
    # fitted only when ``calibrate`` is on too.
    calibrate_numbers: bool = True
    # Where those maps act (map_space.py): "encoded" columns, "white" (whitened) coordinates,
    # "both", or "select" the one a classifier tells from training rows least well.
    calibrate_space: str = "select"
    # Integer columns whose values are labels of a key of discrete columns (``pfcore.labels``):
    # numeric block name -> the key's block names. Set at fit from what the synthesizer found
    # (``GenerativeModel.fit``'s ``class_keys``) and saved: the class maps' shapes follow it.
    class_keys: dict[str, list[str]] = field(default_factory=dict)
    # Map those columns' numbers onto the values each class holds (class_maps.py).
    label_maps: bool = True
    # Map every other number onto the training rows' law within each class of the discrete
    # column that explains it best (class_maps.py, smooth), when a classifier on the fit's own
    # rows prefers it. ``number_keys`` (numeric block name -> that column's block name) is set
    # at fit and saved: the maps' shapes follow it.
    class_numbers: bool = True
    number_keys: dict[str, str] = field(default_factory=dict)
    # Ask the transform for latent cells (``transforms.cells``): a k-means class of each group
    # of related numbers, drawn by the discrete network before the numbers. Read by the
    # synthesizer when it fits the transform; the model sees one more discrete column.
    latent_cells: bool = True

    #: Hybrid models saved before the conditional networks (or whitening) existed carry none.
    SAVED_BEFORE: ClassVar[dict[str, Any]] = {
        "conditional_max_steps": 0,
        "whiten": False,
        "calibrate_numbers": False,
        "distill_huber": 0.0,
        "calibrate_space": "encoded",
        "conditional_teacher": False,
        "ar_direct": False,
        "ar_links": False,
        "conditional_embed": False,
        "conditional_white_score": False,
        "conditional_mover": False,
        "conditional_linear_move": False,
        "label_maps": False,
        "class_numbers": False,
        "latent_cells": False,
        "conditional_number_bins": 0,
    }

    def validate(self) -> None:
        super().validate()
        self._check_width_depth(self.ar_width, self.ar_depth, prefix="ar_")
        self._check_int("student_width", self.student_width, 1, optional=True)
        self._check_int("student_depth", self.student_depth, 1)
        self._check_width_depth(
            self.conditional_width, self.conditional_depth, prefix="conditional_"
        )
        self._check_int("conditional_mover_width", self.conditional_mover_width, 1)
        names = ["ar_max_steps", "n_pairs", "pair_batch", "distill_batch_size", "distill_max_steps"]
        names.append("conditional_pairs")
        self._check_ints(names, 1)
        if not (isinstance(self.pairs_share, int | float) and 0 < self.pairs_share <= 1):
            raise ModelError(f"config.pairs_share must be in (0, 1], got {self.pairs_share!r}")
        if not (0 < self.ar_share < 1 and 0 < self.teacher_share < 1):
            raise ModelError("config.ar_share and config.teacher_share must be in (0, 1)")
        if not self.ar_share + self.teacher_share < 1:
            raise ModelError(
                "config.ar_share + config.teacher_share must be < 1 (distillation needs a share), "
                f"got {self.ar_share} + {self.teacher_share}"
            )
        check_conditional_config(self)
        self._check_int("conditional_number_bins", self.conditional_number_bins, 0)
        flags = (
            "whiten",
            "calibrate_numbers",
            "conditional_teacher",
            "conditional_embed",
            "conditional_white_score",
            "conditional_mover",
            "conditional_linear_move",
            "ar_direct",
            "ar_links",
        )
        for name in flags:
            if not isinstance(getattr(self, name), bool):
                raise ModelError(
                    f"config.{name} must be true or false, got {getattr(self, name)!r}"
                )
        spaces = ("select", *map_space.SPACES)
        if self.calibrate_space not in spaces:
            raise ModelError(
                f"config.calibrate_space must be one of {spaces}, got {self.calibrate_space!r}"
            )
        if not (isinstance(self.distill_huber, int | float) and self.distill_huber >= 0):
            raise ModelError(
                f"config.distill_huber must be a number >= 0, got {self.distill_huber!r}"
            )
        if not (isinstance(self.ar_direct_lr_scale, int | float) and self.ar_direct_lr_scale > 0):
            raise ModelError(
                f"config.ar_direct_lr_scale must be a number > 0, got {self.ar_direct_lr_scale!r}"
            )
        lrs = (self.ar_lr, self.distill_lr, self.conditional_discrete_lr, self.conditional_mover_lr)
        if not all(lr > 0 for lr in lrs) or self.distill_min_seconds < 0:
            raise ModelError(
                "config.ar_lr, config.distill_lr, config.conditional_discrete_lr and "
                "config.conditional_mover_lr must be > 0, distill_min_seconds >= 0"
            )


#: Combinations of the free discrete columns before a fixed class at most that
#: ``HybridModel.prefix_posterior`` enumerates (one network forward each, once per request).
PREFIX_MAX = 4096


class HybridModel(GenerativeModel):
    """``push(z) = [AR(Phi(z_disc)), G(z_num, AR(...))]`` scattered back to the block layout.

    ``teacher`` (the conditional velocity net) and ``cond_teacher`` (its copy that also takes
    given numbers) are kept in memory after ``fit`` and are not saved;
    ``continuous_sampler = "teacher"`` samples the numeric dims by its ODE instead of the student
    (the benchmark's teacher-equivalent rows).
    """

    family = "hybrid"
    config_class = HybridConfig
    config: HybridConfig
    exact_onehots = True  # the discrete network draws classes
    masks_classes = True  # ... one column at a time, so a class can be ruled out per row
    #: Its conditional networks are saved in its own weights, not as a separate student: on a
    #: table of numbers only, ``conditional_student`` is the numbers-given network, which is a
    #: ``ConditionalStudent``, and saving it beside the model as well made the model unloadable.
    conditional_in_weights = True

    def __init__(self, config: HybridConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.ar: DiscreteAR | None = None
        self.student: MLP | None = None
        self.teacher: VelocityNet | ResVelocityNet | None = None
        # the teacher's copy fine-tuned to take given numbers (``conditional_teacher``)
        self.cond_teacher: nn.Module | None = None
        self.continuous_sampler = "student"
        self.cond_discrete: AnyOrderDiscrete | None = None
        self.cond_numeric: ConditionalStudent | None = None
        self.whitener: Whitener | None = None
        self.marginal: MarginalMap | None = None
        self.white_marginal: MarginalMap | None = None
        self.teacher_marginal: MarginalMap | None = None
        self.teacher_white_marginal: MarginalMap | None = None
        self.cond_marginal: MarginalMap | None = None
        self.latent_move: LinearMove | None = None
        self.class_maps: ClassMaps | None = None
        self.teacher_class_maps: ClassMaps | None = None
        self.number_maps: ClassMaps | None = None
        self.teacher_number_maps: ClassMaps | None = None

    # ------------------------------------------------------------------ layout
    def onehot_blocks(self) -> list[BlockSpec]:
        """The discrete columns' one-hot blocks, in the discrete network's order."""
        return [b for b in self.blocks if b.kind == "onehot"]

    @torch.no_grad()
    def prefix_posterior(
        self, given: dict[int, int]
    ) -> tuple[list[int], torch.Tensor, torch.Tensor] | None:
        """The discrete network's exact law of the discrete columns before the last given one,
        given the classes ``given`` (discrete column -> class) and nothing else: (those free
        columns, every combination of their classes ``(P, F)``, its probability ``(P,)``).
        None without a network, without a free column before the last given one, or past
        ``PREFIX_MAX`` combinations.

        Why: a request that fixes a class leaves the columns before it in the network's order
        to the any-order network, trained for seconds on random masks, where a class seen in
        1.4% of the rows is rarely the one given; the columns after it come from this network
        given a prefix of its order, which is exact. Drawing the prefix from this network's
        posterior (enumerated: diamonds' ``cut`` and ``color`` before ``clarity``, 35
        combinations) makes the whole row the model's own law in the class: diamonds'
        ``clarity=I1`` scored 0.587 / 0.590 detection AUC on two saved fits (153 holdout rows,
        ten classifier subsamples, two sampling seeds) against 0.607 / 0.609 through the
        any-order network (the model's own rows in the class: 0.591 / 0.623).

        The combinations keep the rules the sampler keeps on every row: both ends of a class
        link or neither, never a banned pair."""
        ar = self.ar
        if ar is None or not given:
            return None
        last = max(given)
        free = [c for c in range(last) if c not in given]
        widths = [int(w) for w in ar.widths]
        if not free or math.prod(widths[c] for c in free) > PREFIX_MAX:
            return None
        dev = self.device
        grids = torch.meshgrid(*[torch.arange(widths[c], device=dev) for c in free], indexing="ij")
        combos = torch.stack([g.reshape(-1) for g in grids], dim=1)
        cls = torch.empty(len(combos), last + 1, dtype=torch.long, device=dev)
        for j, c in enumerate(free):
            cls[:, c] = combos[:, j]
        for c, k in given.items():
            cls[:, c] = int(k)
        starts = torch.tensor([int(ar.starts[c]) for c in range(last + 1)], device=dev)
        x = torch.zeros(len(combos), ar.dim, device=dev)
        x.scatter_(1, cls + starts, 1.0)
        lp = ar.log_prob(x, columns=last + 1).float()
        end = int(ar.starts[last]) + widths[last]
        hot = x > 0.5
        pairs = [(ar.links.long(), True)] if ar.use_links else []
        for pair, linked in [*pairs, (ar.bans.long(), False)]:
            for a, b in pair.tolist():
                if a < end and b < end:
                    broken = (hot[:, a] != hot[:, b]) if linked else (hot[:, a] & hot[:, b])
                    lp[broken] = -torch.inf
        if not bool(torch.isfinite(lp).any()):
            return None
        return free, combos, torch.softmax(lp, dim=0)

    def _dims(self) -> tuple[int, int, int]:
        """(discrete columns K, their one-hot width D, numeric dims)."""
        onehot = self.onehot_blocks()
        n_num = sum(1 for b in self.blocks if b.kind == "numeric")
        return len(onehot), sum(b.width for b in onehot), n_num

    def _latent_dim_for(self, n_features: int) -> int:
        k, _d, n_num = self._dims()
        return k + n_num

    # ------------------------------------------------------------------ networks
    def _build_networks(self) -> None:
        cfg = self.config
        k, d, n_num = self._dims()
        self.ar = None
        if k:
            widths = [b.width for b in self.onehot_blocks()]
            self.ar = DiscreteAR(
                widths, cfg.ar_width, cfg.ar_depth, direct=cfg.ar_direct, links=cfg.ar_links
            )
        self.student = None
        self.whitener = Whitener(n_num) if n_num and cfg.whiten else None
        self.marginal = MarginalMap(n_num) if n_num and cfg.calibrate_numbers else None
        white = self.marginal is not None and cfg.calibrate_space != "encoded"
        self.white_marginal = MarginalMap(n_num) if white else None
        if cfg.student_width is None:
            # resolved once, at fit, and saved: a later change of the rule never changes what
            # a saved model's weights mean
            self.config = cfg = replace(cfg, student_width=student_width_for(n_num))
        if n_num:
            self.student = MLP(n_num + d, n_num, cfg.student_width, cfg.student_depth)
        self.cond_discrete, self.cond_numeric = build_networks(self)
        self.latent_move = self.build_latent_move()
        calibrated = self.numbers_sampler is not None and cfg.calibrate_numbers
        self.cond_marginal = MarginalMap(n_num) if calibrated else None
        if self._class_key_hint is not None:  # fitting: record what the synthesizer found
            self.config = cfg = replace(cfg, class_keys=self._resolvable(self._class_key_hint))
        specs = self._class_specs(cfg.class_keys)
        mapped = specs and cfg.label_maps and self.marginal is not None
        self.class_maps = ClassMaps(specs) if mapped else None
        self.teacher_class_maps = None
        self.number_maps = self._number_maps(cfg.number_keys)
        self.teacher_number_maps = None

    def build_latent_move(self) -> LinearMove | None:
        """The line the conditional numbers move along (``latent_move.py``) when the config
        draws them by Newton steps (:func:`hybrid_cond.numbers_by_newton`)."""
        _k, d, n_num = self._dims()
        return LinearMove(n_num, d) if n_num and numbers_by_newton(self.config) else None

    def _number_maps(self, keys: dict[str, str]) -> ClassMaps | None:
        """The smooth per-class maps of ``keys`` (numeric block -> discrete block), or None."""
        specs = self._class_specs(self._resolvable({n: [c] for n, c in keys.items()}))
        if not (specs and self.config.class_numbers and self.marginal is not None):
            return None
        return ClassMaps(specs, smooth=True)

    def _resolvable(self, keys: dict[str, list[str]]) -> dict[str, list[str]]:
        """The class keys whose number and key columns are blocks of this model."""
        numeric = {b.column for b in self.blocks if b.kind == "numeric"}
        onehot = {b.column for b in self.onehot_blocks()}
        return {
            str(n): [str(c) for c in key]
            for n, key in sorted(keys.items())
            if n in numeric and key and all(c in onehot for c in key)
        }

    def _class_specs(self, keys: dict[str, list[str]]) -> list[tuple[int, list[tuple[int, int]]]]:
        """``ClassMaps`` specs (numeric dim, [(discrete column, width)]) of ``keys``."""
        numeric = [b.column for b in self.blocks if b.kind == "numeric"]
        onehot = self.onehot_blocks()
        where = {b.column: (i, b.width) for i, b in enumerate(onehot)}
        return [(numeric.index(n), [where[c] for c in key]) for n, key in keys.items()]

    def slots(self, dims: torch.Tensor) -> torch.Tensor:
        """Each discrete column's slot ``(n, K)`` from its hot dims ``dims`` (one-hot dims
        counted from the discrete network's first column: its ``starts``)."""
        assert self.ar is not None
        return dims - torch.tensor(self.ar.starts[:-1], dtype=torch.long, device=dims.device)

    def class_mapped(
        self, x_num: torch.Tensor, dims: torch.Tensor | None, teacher: bool = False
    ) -> torch.Tensor:
        """Numbers ``x_num`` (encoded, after the marginal maps) moved onto the training rows'
        law within their row's class (``number_maps``) and each label column onto the values
        its row's class holds (``class_maps``; ``class_maps.py``); the identity without."""
        if dims is None:
            return x_num
        slots = None
        for maps in (
            self.teacher_number_maps if teacher else self.number_maps,
            self.teacher_class_maps if teacher else self.class_maps,
        ):
            if maps is not None:
                slots = self.slots(dims) if slots is None else slots
                x_num = maps(x_num, slots)
        return x_num

    def _networks(self) -> dict[str, nn.Module]:
        nets: dict[str, nn.Module | None] = {
            "ar": self.ar,
            "student": self.student,
            "cond_discrete": self.cond_discrete,
            "cond_numeric": self.cond_numeric,
            "whitener": self.whitener,
            "marginal": self.marginal,
            "white_marginal": self.white_marginal,
            "cond_marginal": self.cond_marginal,
            "latent_move": self.latent_move,
            "class_maps": self.class_maps,
            "number_maps": self.number_maps,
        }
        return {name: net for name, net in nets.items() if net is not None}

    @property
    def numbers_sampler(self) -> nn.Module | None:
        """What draws the numbers beside given ones: the line of the Newton steps
        (``latent_move``) or the numbers-given network (``cond_numeric``); None without
        either. The config builds at most one of them (``hybrid_cond.numbers_by_newton``)."""
        return self.latent_move if self.latent_move is not None else self.cond_numeric

    @property
    def conditional_student(self) -> nn.Module | None:
        """What ``conditional.conditional_method`` checks: the networks that sample given
        columns (None when the model was fitted or saved without them)."""
        k, _d, n_num = self._dims()
        numbers = self.numbers_sampler
        missing = (k and self.cond_discrete is None) or (n_num and numbers is None)
        if missing or not (k or n_num):
            return None
        return self.cond_discrete or numbers

    def conditional_push(self, project: bool = False) -> Callable:
        """The family's conditional sampler (``hybrid_cond.py``); ``project``: given numbers
        reached by moving the unconditional student's latent point (``latent_project.py``)."""
        return hybrid_conditional_push(self, project=project)

    def to(self, device: str | torch.device) -> HybridModel:
        super().to(device)
        if self.teacher is not None:
            self.teacher.to(device)
        return self

    def _field(self) -> VelocityField:
        assert self.teacher is not None
        return VelocityField(self.teacher, numeric_index(self.teacher.dim), self.config)

    def teacher_cond(self, d: torch.Tensor) -> torch.Tensor | None:
        """The flow teacher's condition for rows with one-hots ``d`` (±1; None when there are
        no one-hot blocks)."""
        return d if d.shape[1] else None

    def masked_cond(self, d: torch.Tensor, known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The conditional teacher's condition: ``[d, known * mask, mask]`` over the encoded
        numeric dims (the teacher's own condition with the given numbers appended)."""
        m = mask.to(d.dtype)
        return torch.cat([d, known.to(d.dtype) * m, m], dim=1)

    # ------------------------------------------------------------------ numeric space
    def to_white(self, num: torch.Tensor) -> torch.Tensor:
        """Encoded numeric dims in the space the flow and the students model (whiten.py)."""
        return num if self.whitener is None else self.whitener.encode(num)

    def from_white(self, w: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_white`: a network's numeric output as encoded dims."""
        return w if self.whitener is None else self.whitener.decode(w)

    def mapped_numbers(
        self, w: torch.Tensor, white_map: MarginalMap | None, encoded_map: MarginalMap | None
    ) -> torch.Tensor:
        """Whitened outputs ``w`` as encoded numeric dims through a sampler's marginal maps
        (marginal.py, map_space.py): the whitened one, :meth:`from_white`, the encoded one
        (each the identity when None or not fitted)."""
        x = self.from_white(w if white_map is None else white_map(w))
        return x if encoded_map is None else encoded_map(x)

    def student_numbers(self, w: torch.Tensor) -> torch.Tensor:
        """A student's output as encoded numeric dims, through its marginal maps."""
        return self.mapped_numbers(w, self.white_marginal, self.marginal)

    def cond_numbers(
        self,
        zd: torch.Tensor,
        mask: torch.Tensor,
        known: torch.Tensor,
        dims: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The conditional student's numbers for inputs ``zd`` (``[z_num, d]``, d the ±1
        one-hots; with ``dims``, the hot dims ``(n, K)`` of those one-hots, ``zd`` is ``z_num``
        alone) with the numbers of ``mask`` given as ``known``: decoded from the whitened
        space, then the given ones set and the others moved with them
        (:meth:`given_numbers`). Without its marginal map, which is fitted on these numbers
        and applied by the sampler. With ``latent_move`` the numbers are the student's at the
        latent point moved by :meth:`newton_point`, else the numbers-given network's."""
        if self.latent_move is None:
            x = self.from_white(self.cond_white(zd, mask, known, dims))
            return self.given_numbers(x, known, mask)
        n_num = self.latent_move.n_num
        z, d = (zd, None) if dims is not None else (zd[:, :n_num], zd[:, n_num:])
        x = self.from_white(self._student_at(self.newton_point(z, d, dims, mask, known), d, dims))
        return self.given_numbers(x, known, mask)

    def newton_point(
        self,
        z: torch.Tensor,
        d: torch.Tensor | None,
        dims: torch.Tensor | None,
        mask: torch.Tensor,
        known: torch.Tensor,
    ) -> torch.Tensor:
        """The latent point ``z`` moved by two Newton steps towards the student giving
        ``known`` where ``mask``, both with the least-squares line's slope: the first from
        the line's own numbers at ``z``, the second from the student's at the first point (one
        student pass). Measured on california_housing's seed rows (a saved fit): 0.668
        detection AUC after the first step alone, 0.597 after the second, 0.602 after a third
        (one more pass); the Gauss-Newton projection with the student's exact slope, four
        steps at a backward pass per given column each, 0.586 at a tenth of the speed."""
        lm = self.latent_move
        assert lm is not None
        z1 = z + lm(z, d, dims, mask, known)
        at = self.from_white(self._student_at(z1, d, dims))
        return z1 + lm(z1, d, dims, mask, known, at=at)

    def _student_at(
        self, z: torch.Tensor, d: torch.Tensor | None, dims: torch.Tensor | None
    ) -> torch.Tensor:
        """The unconditional student's whitened output at ``z`` for the rows' classes, as
        ±1 one-hots ``d`` or their hot dims ``dims`` (looked up, not built: the faster form)."""
        assert self.student is not None
        if dims is not None:
            return mlp_on_signed_onehots(self.student, z, dims)
        assert d is not None
        return self.student(torch.cat([z, d], dim=1))

    def cond_white(
        self,
        zd: torch.Tensor,
        mask: torch.Tensor,
        known: torch.Tensor,
        dims: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The numbers-given network's whitened output for :meth:`cond_numbers`' inputs,
        before the given numbers are set. With ``conditional_mover`` that network's output is
        a move of the row's latent point and this is the unconditional student's output
        there."""
        assert self.cond_numeric is not None
        out = self.cond_numeric(zd, mask, known, dims)
        if not self.config.conditional_mover:
            return out
        if dims is not None:
            return self._student_at(zd + out, None, dims)
        n_num = out.shape[1]
        return self._student_at(zd[:, :n_num] + out, zd[:, n_num:], None)

    def given_numbers(
        self, x_num: torch.Tensor, known: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Encoded numeric dims ``x_num`` with the given ones (``mask``, ``(n, n_num)``) set to
        ``known``; with whitening the others follow the change (``Whitener.condition``)."""
        if self.whitener is None:
            return torch.where(mask.to(torch.bool), known.to(x_num.dtype), x_num)
        return self.whitener.condition(x_num, known, mask)

    # ------------------------------------------------------------------ sampling
    def _drawn(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(one-hots as ±1 ``(n, D)``, the hot dim of each column ``(n, K)``) drawn from the
        discrete latent coordinates of ``z``; no discrete columns: ``(n, 0)`` and None."""
        dims = self._hot_dims(z)
        if dims is None:
            return z.new_zeros(z.shape[0], 0), None
        return self.signed_onehots(dims), dims

    def _hot_dims(self, z: torch.Tensor) -> torch.Tensor | None:
        """The hot dim of each discrete column ``(n, K)`` drawn from the discrete latent
        coordinates of ``z`` (None without discrete columns)."""
        k = self._dims()[0]
        if not k:
            return None
        assert self.ar is not None
        return self.ar.draw(torch.special.ndtr(z[:, :k].float()))

    def signed_onehots(self, dims: torch.Tensor) -> torch.Tensor:
        """±1 one-hots ``(n, D)`` of the hot dims ``dims`` ``(n, K)``: one filled tensor and
        one scatter (0/1 one-hots times 2 minus 1 made three tensors of ``n x D`` floats)."""
        assert self.ar is not None
        out = dims.new_full((dims.shape[0], self.ar.dim), -1.0, dtype=torch.float32)
        return out.scatter_(1, dims, 1.0)

    def _continuous_white(
        self, z_num: torch.Tensor, d: torch.Tensor | None, dims: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The continuous sampler's numbers in the whitened space, before any map. ``dims``
        (the hot dims of ``d``, when known) lets the student look its one-hot inputs up; ``d``
        may then be None (only the teacher reads it)."""
        if self.continuous_sampler == "teacher":
            if self.teacher is None:
                raise ModelError("this hybrid model carries no flow teacher (it is not saved)")
            if d is None:
                assert dims is not None
                d = self.signed_onehots(dims)
            return self._field().integrate(z_num, cond=self.teacher_cond(d))
        if self.continuous_sampler != "student":
            raise ModelError(
                f"continuous_sampler must be one of {CONTINUOUS_SAMPLERS}, "
                f"got {self.continuous_sampler!r}"
            )
        return self._student_at(z_num, d, dims)

    def _continuous(
        self, z_num: torch.Tensor, d: torch.Tensor | None, dims: torch.Tensor | None = None
    ) -> torch.Tensor:
        w = self._continuous_white(z_num, d, dims)
        if self.continuous_sampler == "teacher":
            x = self.mapped_numbers(w, self.teacher_white_marginal, self.teacher_marginal)
            return self.class_mapped(x, dims, teacher=True)
        return self.class_mapped(self.student_numbers(w), dims)

    def assemble_dims(
        self, dims: torch.Tensor | None, x_num: torch.Tensor | None, out: torch.Tensor | None
    ) -> torch.Tensor:
        """Encoded rows from the hot dims ``dims`` ``(n, K)`` (None: no discrete column) and the
        numbers, written into ``out`` when given.

        Why not through the one-hots: building ``n x D`` floats and copying them into the
        output's one-hot columns was 30% of the unconditional sampler's time on adult
        (12 discrete columns, 355 one-hot dims, 8,192 rows on one thread: 18 ms for the
        one-hots, 7.8 ms to place them, 47 ms to draw the classes); filling the output with -1
        and scattering +1 at each row's hot columns takes 0.9 ms."""
        assert self._index is not None
        n = len(x_num) if dims is None else len(dims)
        if out is None:
            ref = x_num if x_num is not None else dims
            assert ref is not None
            out = torch.empty(n, self.n_features, device=ref.device)
        if dims is not None:
            out.fill_(-1.0)
            out.scatter_(1, self._index.onehot_cols[dims], 1.0)
        if x_num is not None:
            out.index_copy_(1, self._index.numeric, x_num.to(out.dtype))
        return out

    def _push_raw(self, z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        k, _d, n_num = self._dims()
        dims = self._hot_dims(z)
        x_num = None
        if n_num:  # the one-hots are built only where the teacher reads them
            d = z.new_zeros(z.shape[0], 0) if dims is None else None
            x_num = self._continuous(z[:, k:], d, dims)
        return self.assemble_dims(dims, x_num, out)

    def _push_piece(self, z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        # every one-hot block is drawn as exact ±1 and nothing is added to it (no calibration
        # bias: ``_calibrate``), so the rows go straight into the batch's output
        return self._push_raw(z, out)

    def _calibrate(self, x: torch.Tensor) -> dict[str, Any]:
        # See the module docstring: maximum likelihood already matches class frequencies.
        return {"skipped": "discrete columns are drawn from a likelihood model"}

    # ------------------------------------------------------------------ training
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
        k, d, n_num = self._dims()
        data = PhaseData(x, valid, checkpoint_dir)
        summary: dict[str, Any] = {"latent": {"discrete": k, "numeric": n_num}}
        if k:
            summary.update(self._fit_ar(data, callbacks, budget_s=budget * cfg.ar_share))
        share = cfg.conditional_share if cfg.conditional_max_steps else 0.0
        pairs = None
        if n_num:
            if self.whitener is not None:
                self.whitener.fit(self._split(x)[1])
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed + 1)
                self.teacher = velocity_net_for(cfg, n_num, range(n_num), cond_dim=d)
                self.teacher.to(x.device)
            embed = getattr(self.teacher, "embed", None)
            if self.whitener is not None and embed is not None:
                embed.set_input_map(self.whitener.inverse_matrix, self.whitener.mean)
            left = budget - (time.perf_counter() - t_start)
            teacher_share = cfg.teacher_share / (1 - cfg.ar_share)
            summary.update(self._fit_teacher(data, callbacks, budget_s=left * teacher_share))
            t0 = time.perf_counter()
            pairs = self._make_pairs(x, budget_s=budget * cfg.pairs_share)
            summary["pairs"] = {
                "n": len(pairs[0]),
                "asked": cfg.n_pairs,
                "seconds": round(time.perf_counter() - t0, 3),
            }
            left = budget - (time.perf_counter() - t_start)
            budget_distill = max(left * (1 - share), cfg.distill_min_seconds)
            summary.update(self._distill(data, pairs, callbacks, budget_s=budget_distill))
            if self.marginal is not None and cfg.calibrate:
                summary["marginals"] = self._fit_marginals(x)
        if share:  # a discrete-only table gives its conditional network all that is left
            left = max(budget - (time.perf_counter() - t_start), cfg.distill_min_seconds)
            summary.update(fit_conditional(self, data, pairs, callbacks, budget_s=left))
        return summary

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(one-hot dims ±1, numeric dims) of encoded rows. ``index_select`` and not ``x[:, idx]``:
        the same gather, 6.5x faster on one CPU thread (8,192 x 357 floats: 0.97 against 6.4 ms;
        a conditional request splits every block's given values)."""
        assert self._index is not None
        idx = self._index
        return x.index_select(1, idx.onehot_cols), x.index_select(1, idx.numeric)

    def _fit_ar(
        self, data: PhaseData, callbacks: Sequence[ProgressCallback], *, budget_s: float
    ) -> dict[str, Any]:
        cfg = self.config
        assert self.ar is not None
        ar, device = self.ar, data.x.device

        def onehot01(x: torch.Tensor) -> torch.Tensor:  # the discrete dims as 0/1, not -1/+1
            return (self._split(x)[0] + 1) / 2

        d_train = onehot01(data.x)
        ref = data.valid if data.valid is not None and len(data.valid) >= 64 else data.x
        d_eval = onehot01(ref[: cfg.n_eval])
        gen = seeded_generator(cfg.seed, device, salt=11)
        ar.init_marginals(d_train)
        ar.init_links(d_train, *([] if data.valid is None else [onehot01(data.valid)]))
        assert self._index is not None
        onehot_cols = self._index.onehot_cols.cpu()  # feature index of each discrete dim
        ar.set_bans(torch.searchsorted(onehot_cols, self._bans))
        batch = min(cfg.batch_size, len(d_train))
        groups = [{"params": [p for n, p in ar.named_parameters() if not n.startswith("direct.")]}]
        if ar.direct is not None:
            groups.append(
                {"params": list(ar.direct.parameters()), "lr_scale": cfg.ar_direct_lr_scale}
            )
        opt = torch.optim.Adam(groups, lr=cfg.ar_lr, weight_decay=cfg.weight_decay)
        use_amp = amp_enabled(cfg.amp, device)

        def step_fn(step: int) -> torch.Tensor:
            db = d_train[batch_index(len(d_train), batch, gen, device)]
            with autocast(device, use_amp):
                return ar.nll(db).float()

        def eval_fn() -> float:
            with torch.no_grad():
                return float(ar.nll(d_eval))

        phase = Phase(
            name="ar",
            max_steps=cfg.ar_max_steps,
            budget_s=budget_s,
            lr=cfg.ar_lr,
            network=("ar", ar),
            push_fn=self._push_raw,
            step_fn=step_fn,
            optimizer=opt,
            generator=gen,
            eval_fn=eval_fn,
        )
        return {"ar": run_scored_phase(self, data, phase, callbacks, "valid_nll_per_column")}

    def _push_with(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable:
        """A full-row sampler whose numeric dims come from ``fn(z_num, d)`` (for phase proxies)."""
        k, _d, _n = self._dims()

        def push(z: torch.Tensor) -> torch.Tensor:
            d, dims = self._drawn(z)
            return self.assemble_dims(dims, fn(z[:, k:], d), None)

        return push

    def _fit_teacher(
        self, data: PhaseData, callbacks: Sequence[ProgressCallback], *, budget_s: float
    ) -> dict[str, Any]:
        assert self.teacher is not None
        field = self._field()
        d_all, num_all = self._split(data.x)

        def flow(z_num: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
            return self.from_white(field.integrate(z_num, cond=self.teacher_cond(d)))

        summary = train_field(
            self,
            field,
            self.to_white(num_all),
            data,
            callbacks,
            budget_s=budget_s,
            phase="teacher",
            push_fn=self._push_with(flow),
            cond=self.teacher_cond(d_all),
        )
        self.teacher.eval()
        return {"teacher": summary}

    @torch.no_grad()
    def _make_pairs(
        self, x: torch.Tensor, budget_s: float = float("inf")
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z_num, d, ODE(z_num | d))``: ``d`` drawn from the training rows' one-hots; the
        endpoints are in the flow's (whitened, :meth:`to_white`) numeric space. Up to
        ``n_pairs``, batch by batch until ``budget_s`` is spent: the pairs made are a prefix of
        the ``n_pairs`` the seed determines."""
        cfg = self.config
        device = x.device
        d_all, num_all = self._split(x)
        gen = seeded_generator(cfg.seed, device, salt=2)
        z = torch.randn(cfg.n_pairs, num_all.shape[1], generator=gen, device=device)
        d = d_all[batch_index(len(x), cfg.n_pairs, gen, device)]
        out = self._endpoints(self._field(), z, self.teacher_cond(d), budget_s)
        made = len(out)
        return z[:made], d[:made], out

    @torch.no_grad()
    def make_masked_pairs(
        self, field: VelocityField, x: torch.Tensor, budget_s: float = float("inf")
    ) -> tuple[torch.Tensor, ...]:
        """``(z_num, d, known, mask, ODE(z_num | d, known, mask))`` for ``conditional_pairs``
        training rows, each giving a random non-empty set of its numeric columns (``known``:
        the row's encoded numbers; only the masked ones reach the field): the conditional
        teacher ``field``'s endpoints, a prefix of them when ``budget_s`` runs out."""
        cfg = self.config
        device = x.device
        d_all, num_all = self._split(x)
        n, n_num = cfg.conditional_pairs, num_all.shape[1]
        gen = seeded_generator(cfg.seed, device, salt=18)
        b = batch_index(len(x), n, gen, device)
        m = random_masks(n, torch.arange(n_num, device=device), n_num, gen, device)
        z = torch.randn(n, n_num, generator=gen, device=device)
        d, known = d_all[b], num_all[b]
        out = self._endpoints(field, z, self.masked_cond(d, known, m), budget_s)
        made = len(out)
        return z[:made], d[:made], known[:made], m[:made], out

    def _endpoints(
        self, field: VelocityField, z: torch.Tensor, cond: torch.Tensor | None, budget_s: float
    ) -> torch.Tensor:
        """``field``'s ODE endpoints of ``z`` given ``cond``, ``pair_batch`` rows at a time until
        ``budget_s`` is spent (having made at least one batch): a prefix of them."""
        cfg = self.config
        out = torch.empty_like(z)
        t0, made = time.perf_counter(), 0
        with autocast(z.device, amp_enabled(cfg.amp, z.device)):
            for lo in range(0, len(z), cfg.pair_batch):
                if made and time.perf_counter() - t0 > budget_s:
                    break
                sl = slice(lo, lo + cfg.pair_batch)
                out[sl] = field.integrate(z[sl], cond=None if cond is None else cond[sl]).float()
                made = min(lo + cfg.pair_batch, len(z))
        return out[:made]

    @torch.no_grad()
    def _own_rows(self, n: int = CALIBRATION_ROWS) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``n`` rows from the current samplers as (the discrete columns' hot dims, None
        without any; the continuous sampler's whitened numbers before any map), seeded by the
        config's seed."""
        cfg = self.config
        gen = seeded_generator(cfg.seed, self._device, salt=16)
        z = torch.randn(n, self.latent_dim, generator=gen, device=self._device)
        k = self._dims()[0]
        ds, ws = [], []
        with torch.inference_mode():
            for i in range(0, len(z), 8192):
                zc = z[i : i + 8192]
                d, dims = self._drawn(zc)
                ds.append(dims)
                ws.append(self._continuous_white(zc[:, k:], d, dims))
        return (torch.cat(ds) if k else None), torch.cat(ws)

    def _fit_marginals(self, x: torch.Tensor) -> dict[str, Any]:
        """Fit the student's marginal maps (identity until now) on its own rows against the
        training rows ``x``, in the space ``calibrate_space`` names or, with ``"select"``, the
        one :func:`map_space.choose` picks (map_space.py)."""
        assert self.marginal is not None
        cfg = self.config
        dims, w = self._own_rows()
        x_num = self._split(x)[1]
        spaces = map_space.SPACES if cfg.calibrate_space == "select" else (cfg.calibrate_space,)
        fitted = {
            s: map_space.fit_maps(s, w, self.to_white(x_num), x_num, self.from_white)
            for s in spaces
        }
        summary: dict[str, Any] = {"rows": CALIBRATION_ROWS, "space": spaces[0]}
        if len(spaces) > 1:
            t0 = time.perf_counter()
            n = min(map_space.SCORE_ROWS, len(x), len(w))
            gen = seeded_generator(cfg.seed, x.device, salt=17)
            real_rows = x[torch.randperm(len(x), generator=gen, device=x.device)[:n]]
            real = real_rows.float().cpu().numpy()
            view = self._detector_view or map_space.encoded_view(self.blocks)
            candidates = {}
            for s, maps in fitted.items():
                hot = None if dims is None else dims[:n]
                rows = self.assemble_dims(hot, self.mapped_numbers(w[:n], *maps), None)
                candidates[s] = view(real, rows.float().cpu().numpy())
            summary["space"], summary["space_auc"] = map_space.choose(candidates, cfg.seed)
            summary["select_seconds"] = round(time.perf_counter() - t0, 2)
        wmap, emap = fitted[summary["space"]]
        for own, new in ((self.white_marginal, wmap), (self.marginal, emap)):
            if own is not None:
                own.copy_from(new)
        if dims is None or not (self.config.class_numbers or self.class_maps is not None):
            return summary
        # more rows than the marginal maps read: a key's finer classes hold few of them
        t0 = time.perf_counter()
        dims, w = self._own_rows(CLASS_MAP_ROWS)
        assert dims is not None
        data_slots = self._data_slots(x)
        if self.config.class_numbers:
            summary["number_maps"] = self._fit_number_maps(x, x_num, data_slots, dims, w)
        if self.class_maps is not None:
            summary["class_maps"] = {
                "fitted_classes": self.class_maps.fit(
                    self.student_numbers(w), self.slots(dims), x_num, data_slots
                ),
                "rows": CLASS_MAP_ROWS,
                "seconds": round(time.perf_counter() - t0, 2),
            }
        return summary

    def _fit_number_maps(
        self,
        x: torch.Tensor,
        x_num: torch.Tensor,
        data_slots: torch.Tensor,
        dims: torch.Tensor,
        w: torch.Tensor,
    ) -> dict[str, Any]:
        """Fit the smooth per-class maps of the numbers (``class_numbers``) on the model's own
        rows (``dims``, ``w``: ``_own_rows``) against the training rows ``x`` (their numbers
        ``x_num`` and slots ``data_slots``), and keep them
        when a classifier tells the fit's decoded rows from training rows less well with them
        than without (``map_space.choose``, as the marginal maps' space is chosen); otherwise
        the model goes on without them."""
        t0 = time.perf_counter()
        numeric = [b.column for b in self.blocks if b.kind == "numeric"]
        onehot = [b.column for b in self.onehot_blocks()]
        labels = {numeric.index(n) for n in self.config.class_keys}
        keys = number_keys(x_num, data_slots, skip=sorted(labels))
        self.config = replace(
            self.config, number_keys={numeric[j]: onehot[k] for j, k in keys.items()}
        )
        self.number_maps = maps = self._number_maps(self.config.number_keys)
        out: dict[str, Any] = {"keys": dict(self.config.number_keys)}
        if maps is None:
            return out
        maps.to(self._device)
        own = self.student_numbers(w)
        out["fitted_classes"] = maps.fit(own, self.slots(dims), x_num, data_slots)
        n = min(map_space.SCORE_ROWS, len(x), len(w))
        gen = seeded_generator(self.config.seed, x.device, salt=18)
        real = x[torch.randperm(len(x), generator=gen, device=x.device)[:n]].float().cpu().numpy()
        view = self._detector_view or map_space.encoded_view(self.blocks)
        hot, own = dims[:n], own[:n]
        candidates = {
            "without": view(real, self.assemble_dims(hot, own, None).float().cpu().numpy()),
            "with": view(
                real, self.assemble_dims(hot, maps(own, self.slots(hot)), None).cpu().numpy()
            ),
        }
        chosen, out["auc"] = map_space.choose(candidates, self.config.seed)
        if chosen == "without":
            self.config = replace(self.config, number_keys={})
            self.number_maps = None
        out["kept"] = chosen == "with"
        out["seconds"] = round(time.perf_counter() - t0, 2)
        return out

    def _data_slots(self, x: torch.Tensor) -> torch.Tensor:
        """Each discrete column's slot ``(n, K)`` in encoded rows ``x``."""
        return torch.stack(
            [x[:, b.start : b.start + b.width].argmax(dim=1) for b in self.onehot_blocks()],
            dim=1,
        )

    def calibrate_teacher(self) -> dict[str, Any]:
        """Give the flow teacher's sampler (``continuous_sampler = "teacher"``) marginal maps
        of its own, in the space the student's were fitted in and to the same data quantiles,
        so the two samplers of one fit are compared on equal terms. In memory only, like the
        teacher."""
        if self.teacher is None or self.marginal is None or not self.config.calibrate:
            return {"skipped": "no teacher or no fitted marginal map"}
        before = self.continuous_sampler
        self.continuous_sampler = "teacher"
        self.teacher_white_marginal = self.teacher_marginal = self.teacher_class_maps = None
        self.teacher_number_maps = None
        try:
            dims, w = self._own_rows()
        finally:
            self.continuous_sampler = before
        w_raw = w
        out: dict[str, Any] = {"rows": CALIBRATION_ROWS}
        student = {"white": self.white_marginal, "encoded": self.marginal}
        for space, smap in student.items():
            if smap is None or smap.is_identity:
                continue
            tmap = MarginalMap(w.shape[1]).to(self._device)
            if space == "white":
                out[space] = tmap.fit(w, target=smap.target)
                w = tmap(w)
                self.teacher_white_marginal = tmap
            else:
                out[space] = tmap.fit(self.from_white(w), target=smap.target)
                self.teacher_marginal = tmap
        if dims is None or (self.number_maps is None and self.class_maps is None):
            return out
        x_t = self.mapped_numbers(w_raw, self.teacher_white_marginal, self.teacher_marginal)
        if self.number_maps is not None:
            self.teacher_number_maps = copy.deepcopy(self.number_maps)
            out["number_maps"] = self.teacher_number_maps.fit_sources(x_t, self.slots(dims))
            x_t = self.teacher_number_maps(x_t, self.slots(dims))
        if self.class_maps is not None:
            self.teacher_class_maps = copy.deepcopy(self.class_maps)
            out["class_maps"] = self.teacher_class_maps.fit_sources(x_t, self.slots(dims))
        return out

    def _distill(
        self,
        data: PhaseData,
        pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        callbacks: Sequence[ProgressCallback],
        *,
        budget_s: float,
    ) -> dict[str, Any]:
        cfg = self.config
        assert self.student is not None
        student = self.student
        z_all, d_all, x_all = pairs
        device = z_all.device
        n_num = z_all.shape[1]
        loss_fn = distill_loss(cfg.distill_huber, n_num, device)
        gen = seeded_generator(cfg.seed, device, salt=3)
        batch = min(cfg.distill_batch_size, len(z_all))
        opt = torch.optim.Adam(student.parameters(), lr=cfg.distill_lr)
        use_amp = amp_enabled(cfg.amp, device)

        def step_fn(step: int) -> torch.Tensor:
            b = batch_index(len(z_all), batch, gen, device)
            with autocast(device, use_amp):
                out = student(torch.cat([z_all[b], d_all[b]], dim=1)).float()
            return loss_fn(out, x_all[b])

        def one_step(z_num: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
            return self.student_numbers(student(torch.cat([z_num, d], dim=1)))

        phase = Phase(
            name="distill",
            max_steps=cfg.distill_max_steps,
            budget_s=budget_s,
            lr=cfg.distill_lr,
            network=("student", student),
            push_fn=self._push_with(one_step),
            step_fn=step_fn,
            optimizer=opt,
            generator=gen,
        )
        summary = run_phase(self, data, phase, callbacks)
        student.eval()
        summary["parameters"] = count_parameters(student)
        summary["width"], summary["depth"] = cfg.student_width, cfg.student_depth
        return {"distill": summary}

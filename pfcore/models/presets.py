"""Named configurations per family: ``tiny`` (tests), ``fast``, ``balanced``, ``best``, ``gpu``.

Budgets are stated two ways on purpose. ``max_minutes`` is sized for a 2-core CPU (``fast`` about
1 minute, ``balanced`` about 4 (``onestep``: 4.6, of which the teacher 2.4), ``best`` about 12 at
20k rows) and ends scheduled runs on time;
``max_steps`` capped by ``epochs`` passes over the data scales the work with the table's size
(a 300-row table gets ``min_steps``, not hours of overfitting) and is what binds on a GPU, where
the same preset then finishes in seconds and reproduces exactly. ``gpu`` is sized for one CUDA
device instead: the same 5-minute wall budget, with networks and batches that leave a 2-core CPU
far behind (a 1024-wide teacher, batches of 4096, step caps that a GPU reaches and a CPU does
not). Nothing here is tuned to one dataset: the values were chosen on the 8-Gaussian toy and
checked across the shared tables by ``benchmarks/fidelity.py``.
"""

from __future__ import annotations

from typing import Any

from pfcore.defaults import PRESET_CHOICES
from pfcore.errors import ModelError

__all__ = ["PRESETS", "PRESET_NAMES", "preset_config"]

PRESET_NAMES = PRESET_CHOICES

_TRAIN: dict[str, dict[str, Any]] = {
    # A few seconds on CPU: for unit tests, not for data you care about.
    "tiny": dict(
        batch_size=256,
        max_steps=400,
        min_steps=50,
        epochs=None,
        max_minutes=2.0,
        warmup_steps=20,
        eval_every=100,
        n_eval=512,
        log_every=50,
        checkpoint_every=100,
    ),
    "fast": dict(
        batch_size=512,
        max_steps=4000,
        min_steps=600,
        epochs=200,
        max_minutes=1.0,
        warmup_steps=100,
        eval_every=250,
        n_eval=1024,
        patience=0,
    ),
    "balanced": dict(
        batch_size=1024,
        max_steps=12000,
        min_steps=1500,
        epochs=600,
        max_minutes=3.5,
        warmup_steps=200,
        eval_every=500,
        n_eval=2048,
        patience=0,
    ),
    "best": dict(
        batch_size=1024,
        max_steps=40000,
        min_steps=3000,
        epochs=2000,
        max_minutes=12.0,
        warmup_steps=300,
        eval_every=1000,
        n_eval=4096,
        patience=0,
    ),
    # One CUDA device: a step of a 1024-wide network on 4096 rows costs a GPU little more than
    # a 256-wide one on 1024 rows (both are bound by kernel launches), so the batch and the
    # networks grow and the wall budget stays that of ``balanced``. ``epochs`` is what binds on
    # a small table, and it must: on an H200 (hybrid, seed 0, 5-minute fits run side by side on
    # the one GPU) the flow teacher's training loss kept falling while its held-out proxy did
    # not, and detection AUC on diamonds was 0.835-0.843 after 2000 passes over 16.5k rows,
    # 0.671 after 600 and 0.656 after 300 (california_housing 0.594-0.614, 0.584, 0.576): the
    # teacher stops early and distillation gets the time.
    "gpu": dict(
        batch_size=4096,
        max_steps=40000,
        min_steps=500,
        epochs=300,
        max_minutes=4.6,
        warmup_steps=500,
        eval_every=1000,
        n_eval=8192,
        patience=0,
    ),
}

_FLOW_NET: dict[str, dict[str, Any]] = {
    "tiny": dict(width=64, depth=2, solver_steps=4),
    "fast": dict(width=256, depth=3, solver_steps=8),
    "balanced": dict(width=512, depth=4, solver_steps=8),
    "best": dict(width=768, depth=4, solver_steps=12),
    "gpu": dict(width=1024, depth=4, solver_steps=12),
}

# Student sizes from the benchmark's frontier (benchmarks/results/frontier.json): the smallest
# student within 0.02 detection AUC of the best on both diamonds and credit_default is 256x2
# (AUC 0.775 vs best 0.757; 0.887 vs 0.876) at 1.5x the rows/s of 256x3; larger students were
# not better at these budgets, so "best" spends its time on the teacher and on pairs instead.
_ONESTEP: dict[str, dict[str, Any]] = {
    "tiny": dict(
        student_width=64,
        student_depth=2,
        n_pairs=4096,
        distill_max_steps=400,
        distill_batch_size=256,
        max_minutes=3.0,
        conditional_max_steps=100,  # the conditional student (tests that use it set more)
    ),
    "fast": dict(
        student_width=256, student_depth=2, n_pairs=20_000, distill_max_steps=3000, max_minutes=1.25
    ),
    # The student is compute-bound at this budget: at equal teacher and pairs, doubling its
    # distillation steps (4k -> 8k) lowered detection AUC on every seed tried (diamonds
    # 0.778 -> 0.763, credit_default 0.877 -> 0.860, california_housing 0.768 -> 0.755), as
    # much as a 384x2 student (2x the FLOPs) at 4k steps (0.763, 0.857), which would halve the
    # sampler's rows/s (benchmarks/distill_sweep.py). So the extra fit time goes to
    # distillation: the teacher keeps its ~143 s (0.52 x 4.6 min), pairs take ~25 s, and
    # distillation gets ~107 s instead of ~70 s on an idle core (about 6.8k steps on a
    # 24-column table, 10k on a 10-column one); the fit stays under 5 minutes at 20k rows.
    "balanced": dict(
        student_width=256,
        student_depth=2,
        n_pairs=60_000,
        distill_max_steps=12000,
        max_minutes=4.6,
        teacher_share=0.52,
    ),
    "best": dict(
        student_width=256,
        student_depth=3,
        n_pairs=150_000,
        distill_max_steps=30000,
        max_minutes=14.0,
    ),
    # The student keeps its CPU size (generation runs on CPU workers too); the GPU buys it more
    # pairs and steps, the distillation budget that bounds it at ``balanced``.
    "gpu": dict(
        student_width=256,
        student_depth=3,
        n_pairs=1_000_000,
        pair_batch=65_536,
        distill_max_steps=60000,
        distill_batch_size=4096,
        max_minutes=4.6,
        teacher_share=0.5,
    ),
}

# The hybrid family (hybrid.py): the onestep student's sizes and distillation budgets for the
# continuous part, plus the discrete network. The flow teacher sees only the numeric dims (and
# the one-hots as its condition), so its steps are not cheaper than onestep's, while a
# discrete-network step costs a few milliseconds; ``ar_share`` is its share of ``max_minutes``.
_HYBRID: dict[str, dict[str, Any]] = {
    "tiny": dict(
        student_width=64,
        student_depth=2,
        n_pairs=4096,
        distill_max_steps=400,
        distill_batch_size=256,
        ar_width=64,
        ar_depth=2,
        ar_max_steps=400,
        max_minutes=3.0,
        conditional_max_steps=100,  # the conditional networks (tests that use them set more)
        conditional_width=64,
        conditional_mover_width=64,
    ),
    "fast": dict(
        student_width=256,
        student_depth=2,
        n_pairs=20_000,
        distill_max_steps=3000,
        ar_width=128,
        ar_max_steps=2000,
        max_minutes=1.25,
    ),
    # The conditional flow is the residual network with a periodic embedding of each source
    # column (nets.py), over whitened numeric dims (whiten.py), and the student is three layers
    # deep. Measured with hybrid_sweep.py (step budgets of the 5-minute fit, seed 0, detection
    # AUC teacher / 256x2 student), against the 512x4 MLP flow, also whitened: california_housing
    # 0.634 / 0.709 against 0.750 / 0.758, diamonds 0.666 / 0.712 against 0.708 / 0.721,
    # credit_default 0.714 / 0.779 against 0.817 / 0.824, nyc_flights 0.923 / 0.931 against
    # 0.965 / 0.965. Distilled from one such teacher for 75 s, a 256x3 student scored 0.682 /
    # 0.709 on california_housing / diamonds where 256x2 scored 0.707 / 0.716, and 384x3 0.678 /
    # 0.705 at 0.7x the 256x3's rows/s (too slow for 5x TabularARGN on diamonds). At the product
    # budget (fidelity.py, 3 seeds): 0.692 / 0.701 / 0.786 / 0.929 against 0.751 / 0.768 /
    # 0.842 / 0.947 for the unwhitened MLP flow with a 256x2 student.
    # Pairs and distillation steps: where bf16 matmuls are native (training.amp_enabled) the
    # flow trains about twice the steps in its share and 60k pairs plus 12k distillation steps
    # left 40 s of the 5 minutes unused, while the student fits its pairs better than fresh ones
    # (squared error 0.035 on them against 0.061 on new pairs, diamonds, student_lab.py). 150k pairs
    # (16-24 s there, capped by ``pairs_share`` elsewhere) and up to 20k steps use that time:
    # fidelity.py, 3 seeds, detection AUC with them against 60k / 12k in bf16, same day:
    # california_housing 0.587 / 0.592, diamonds 0.667 / 0.672, credit_default 0.687 / 0.696,
    # nyc_flights 0.777 / 0.775.
    "balanced": dict(
        net="resmlp",
        width=384,
        depth=2,
        num_embedding="periodic",
        student_width=None,  # hybrid.student_width_for: 128 up to 6 numeric dims, else 256
        student_depth=3,
        n_pairs=150_000,
        distill_max_steps=20000,
        ar_width=128,
        ar_max_steps=4000,
        max_minutes=4.6,
        ar_share=0.1,
        teacher_share=0.45,
    ),
    "best": dict(
        student_width=256,
        student_depth=3,
        n_pairs=150_000,
        distill_max_steps=30000,
        ar_width=256,
        ar_max_steps=12000,
        max_minutes=14.0,
    ),
    # One CUDA device: the resnet teacher at 1024 x 3, a 512-wide discrete network, a million
    # pairs and five times the distillation steps of ``balanced`` at four times the batch. The
    # student keeps its CPU size; the discrete network does not, so on a CPU worker (one thread,
    # 100k rows) such a model sampled 50-60% of a ``balanced`` model's rows/s on the four shared
    # tables, and ``ar_width=128`` gave the full rate back. On an H200 (three seeds, six fits
    # sharing it) detection AUC was 0.570 / 0.653 / 0.706 / 0.741 on california_housing /
    # diamonds / credit_default / nyc_flights against 0.587 / 0.667 / 0.687 / 0.777 for
    # ``balanced`` on one CPU thread; ``ar_width=128`` scored 0.565 and 0.638 on the first two
    # (one seed), level with 512 in held-out likelihood there, and is unmeasured on the
    # discrete-heavy two, where the 512-wide network fits better (nyc_flights: 1.117 nats per
    # column held out against 1.136 for ``balanced``'s 128-wide one on a CPU).
    "gpu": dict(
        net="resmlp",
        width=1024,
        depth=3,
        num_embedding="periodic",
        student_width=None,
        student_depth=3,
        n_pairs=1_000_000,
        pair_batch=65_536,
        distill_max_steps=60000,
        distill_batch_size=4096,
        ar_width=512,
        ar_max_steps=20000,
        conditional_max_steps=10000,
        max_minutes=4.6,
        ar_share=0.1,
        teacher_share=0.45,
    ),
}

_GEN_NET: dict[str, dict[str, Any]] = {
    "tiny": dict(width=64, depth=2),
    "fast": dict(width=256, depth=3),
    "balanced": dict(width=512, depth=4),
    "best": dict(width=768, depth=4),
    "gpu": dict(width=1024, depth=4),
}


def _merge(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in parts:
        out.update(p)
    return out


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "flow": {p: _merge(_TRAIN[p], _FLOW_NET[p]) for p in PRESET_NAMES},
    "onestep": {p: _merge(_TRAIN[p], _FLOW_NET[p], _ONESTEP[p]) for p in PRESET_NAMES},
    "hybrid": {p: _merge(_TRAIN[p], _FLOW_NET[p], _HYBRID[p]) for p in PRESET_NAMES},
    "energy": {p: _merge(_TRAIN[p], _GEN_NET[p]) for p in PRESET_NAMES},
    "naive_mse": {p: _merge(_TRAIN[p], _GEN_NET[p]) for p in PRESET_NAMES},
}


def preset_config(family: str, preset: str) -> dict[str, Any]:
    """The preset's settings for ``family`` (a fresh dict the caller may update)."""
    if family not in PRESETS:
        raise ModelError(f"unknown model family {family!r}; choose one of {sorted(PRESETS)}")
    if preset not in PRESETS[family]:
        raise ModelError(f"unknown preset {preset!r}; choose one of {list(PRESET_NAMES)}")
    return dict(PRESETS[family][preset])

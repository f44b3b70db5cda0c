"""Validate a saved synthesizer: the one function behind the validate task and the CLI.

Why one function: the flow's gate and ``pushforward validate`` used to re-derive the holdout
from their own parameters and sample a different number of rows, so re-scoring a model from the
command line could disagree with the verdict that registered it. Both now call
:func:`validate_synthesizer`, which reads the split the synthesizer was trained with and draws
its rows through ``Synthesizer.sample`` (the same blocks a published batch is made of).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pfcore.fidelity import FidelityReport, GateConfig, GateResult
    from pfcore.synthesizer import Split, Synthesizer

__all__ = [
    "MAX_HOLDOUT_ROWS",
    "MAX_SCORED_TRAIN_ROWS",
    "Validation",
    "synthetic_rows_for",
    "validate_synthesizer",
]

#: Synthetic rows scored: at least the holdout's size, and at least this many (up to the training
#: rows) so that a small holdout still gives the detection classifier enough synthetic rows.
MIN_SYNTHETIC_ROWS = 5000
#: Held-out rows scored at most: a larger holdout is scored on a seeded uniform subset, read
#: streaming, so validation's memory and time do not grow with the table (every metric but
#: column shapes subsamples fewer rows than this anyway; see ``EvalConfig``).
MAX_HOLDOUT_ROWS = 100_000
#: Training rows given to privacy and efficacy at most (they use 50k and 20k of them).
MAX_SCORED_TRAIN_ROWS = 100_000


@dataclass(frozen=True)
class Validation:
    """A fidelity report, the gate's verdict on it, and what was scored."""

    report: FidelityReport
    result: GateResult
    split: Split
    synthetic_rows: int
    sample_seed: int


def synthetic_rows_for(train_rows: int, holdout_rows: int) -> int:
    """How many synthetic rows validation scores for a split of this size."""
    return max(holdout_rows, min(train_rows, MIN_SYNTHETIC_ROWS))


def validate_synthesizer(
    dataset_dir: str | os.PathLike[str],
    synth: Synthesizer | str | os.PathLike[str],
    *,
    target: str | None = None,
    gate_config: GateConfig | dict[str, Any] | None = None,
    split: Split | None = None,
) -> Validation:
    """Score ``synth`` against the holdout of the ingested dataset in ``dataset_dir``; gate it.

    The holdout is the one recorded in the synthesizer (``Synthesizer.split``); ``split`` is
    only for synthesizers saved without one. Synthetic rows are drawn with seed
    ``split.seed + 1``, so they are not the rows of a batch published with the training seed.
    """
    from pfcore.errors import InputError
    from pfcore.fidelity import GateConfig, evaluate, gate
    from pfcore.schema import TableSchema
    from pfcore.synthesizer import Split, Synthesizer

    if not isinstance(synth, Synthesizer):
        synth = Synthesizer.load(synth)
    if split is not None and synth.split is not None and not split.same_holdout(synth.split):
        raise InputError(
            f"the synthesizer was trained with split {synth.split.to_dict()}; scoring against "
            f"{split.to_dict()} would put training rows in the holdout: leave the split out"
        )
    used = synth.split or split or Split()
    schema = TableSchema.load(Path(dataset_dir) / "schema.json")
    rows = used.read(dataset_dir, holdout_rows=MAX_HOLDOUT_ROWS, train_rows=MAX_SCORED_TRAIN_ROWS)
    train, holdout = rows.train, rows.holdout
    n = synthetic_rows_for(train.num_rows, holdout.num_rows)
    sample_seed = used.seed + 1
    synthetic = synth.sample(n, seed=sample_seed)
    report = evaluate(
        holdout,
        synthetic,
        schema,
        train=train,
        target=target,
        seed=used.seed,
        rules=synth.rules,
        formulas=synth.transformer.formulas(),
    )
    report.source_rows = {
        "dataset": rows.train_total + rows.holdout_total
        if used.dataset_rows is None
        else used.dataset_rows,
        "holdout_available": rows.holdout_total,
        "train_available": rows.train_total,
    }
    if not isinstance(gate_config, GateConfig):
        gate_config = GateConfig.from_dict(gate_config or {})
    result = gate(report, gate_config)
    return Validation(report, result, used, n, sample_seed)

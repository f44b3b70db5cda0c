"""Memory as a budget: the peak memory of training and validation, estimated from the schema.

Why an estimate before the work: an out-of-memory kill gives no message and leaves no cleanup,
minutes into a run. Training and validation read bounded samples of the ingested table
(``pfcore.rowsample``), so their peak depends on the sample size and the encoded width, never
on the source's size, and can be predicted from the schema alone.

The model (measured with ``benchmarks/scale.py`` and a fit of 0.2M to 2M rows of three shared
tables, 16 to 93 encoded features, one torch thread):

* training: ``TRAIN_BASE_MB`` (interpreter, torch, pyarrow, the network) + per training row its
  Arrow bytes (8 per number, the mean text length + 4 per string, 1 per boolean) + 12 bytes per
  encoded feature: the float32 matrix exists about three times at the peak (the encoding, the
  shuffled training part, its validation part). Measured 2.2-2.6 copies; 3 is the margin.
* validation: ``VALIDATE_BASE_MB`` + per scored row (held-out, synthetic and training rows
  together) ``VALIDATE_BYTES_PER_CELL`` per column (pandas frames, the prepared numeric and
  code arrays, the detection features).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pfcore.errors import InputError

if TYPE_CHECKING:
    from pfcore.schema import TableSchema
    from pfcore.synthesizer import Split

__all__ = [
    "MIN_SAMPLE_ROWS",
    "MemoryPlan",
    "available_bytes",
    "check_memory",
    "memory_budget",
    "plan_training",
    "encoded_features",
    "row_bytes",
    "sample_rows_for",
    "training_bytes",
    "validation_bytes",
]

TRAIN_BASE_MB = 600
VALIDATE_BASE_MB = 600
FEATURE_COPIES = 3
VALIDATE_BYTES_PER_CELL = 120
#: A table with at most this many training rows is always read whole: today's exact split, and
#: every shared dataset (the largest has 0.27M training rows) trains on all its rows.
MIN_SAMPLE_ROWS = 1_000_000
#: Share of the available memory a run plans to use (the rest: page cache, other processes).
MEMORY_SHARE = 0.6
_MB = 1 << 20


def available_bytes() -> int:
    """Memory this process may use now: ``MemAvailable``, or the cgroup limit when lower."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 8 << 30
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit():
            avail = min(avail, int(text))
    return int(avail)


def encoded_features(schema: TableSchema) -> int:
    """Model features the transform will produce (categoricals: up to 100 kept + null + other;
    numbers: 1, + 2 for a missing indicator)."""
    from pfcore.transforms.categorical import MAX_KEPT

    n = 0
    for c in schema.modelled:
        missing = bool(c.nullable or (c.missing_rate or 0) > 0)
        if c.kind in ("categorical", "boolean"):
            cats = len(c.categories or []) or MAX_KEPT
            n += max(2, min(cats, MAX_KEPT) + int(missing) + int(cats > MAX_KEPT))
        else:
            n += 1 + (2 if missing else 0)
    # free text: up to 100 frequent values, other repeated ones, new text, missing
    n += (MAX_KEPT + 3) * sum(c.kind == "text" for c in schema.columns)
    return n


def row_bytes(schema: TableSchema) -> int:
    """Arrow bytes of one row of the table (all columns, as read from the dataset)."""
    total = 0
    for c in schema.columns:
        t = (c.arrow_type or "").lower()
        if t.startswith("string") or t.startswith("large_string"):
            cats = c.categories or []
            mean = sum(len(str(x.get("value", ""))) for x in cats) / len(cats) if cats else 16
            total += 4 + int(mean + 0.5)
        elif t == "bool":
            total += 1
        elif t in ("int8", "uint8"):
            total += 1
        elif t in ("int16", "uint16"):
            total += 2
        elif t in ("int32", "uint32", "float", "float32", "date32[day]"):
            total += 4
        else:
            total += 8
    return max(1, total)


def training_bytes(schema: TableSchema, rows: int) -> int:
    """Estimated peak memory of training on ``rows`` rows."""
    per_row = row_bytes(schema) + 4 * FEATURE_COPIES * encoded_features(schema)
    return TRAIN_BASE_MB * _MB + rows * per_row


def validation_bytes(schema: TableSchema, scored_rows: int) -> int:
    """Estimated peak memory of validation scoring ``scored_rows`` rows in all."""
    cells = scored_rows * max(1, len(schema.columns))
    return VALIDATE_BASE_MB * _MB + cells * VALIDATE_BYTES_PER_CELL


def budget_rows(family: str, preset: str, config: dict[str, Any] | None = None) -> int:
    """Distinct rows the training budget can visit: steps x batch size (the preset's, or the
    override's). More rows than this are never looked at, so reading them is waste."""
    from pfcore.models.presets import preset_config

    cfg = preset_config(family, preset)
    cfg.update(config or {})
    return int(cfg["max_steps"]) * int(cfg["batch_size"])


@dataclass(frozen=True)
class MemoryPlan:
    """What a run will hold in memory and the estimated peaks, against the budget."""

    #: Rows read into memory for training (the sample; the whole table when it fits it).
    read_rows: int
    n_features: int
    #: Rows validation scores: held-out, synthetic and training rows together.
    validation_rows: int
    train_bytes: int
    validation_bytes: int
    budget_bytes: int

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def memory_budget(max_memory_gb: float | None = None) -> int:
    """The memory budget in bytes: ``max_memory_gb`` when given, else ``MEMORY_SHARE`` of the
    memory available now."""
    if max_memory_gb is not None:
        return int(max_memory_gb * 2**30)
    return int(available_bytes() * MEMORY_SHARE)


def sample_rows_for(
    schema: TableSchema,
    *,
    family: str,
    preset: str,
    config: dict[str, Any] | None = None,
    budget_bytes: int,
) -> int:
    """Default training sample size: what the training budget can visit (at least
    ``MIN_SAMPLE_ROWS``), lowered to what fits ``budget_bytes``."""
    per_row = training_bytes(schema, 1) - TRAIN_BASE_MB * _MB
    fits = max(0, (budget_bytes - TRAIN_BASE_MB * _MB) // per_row)
    want = max(MIN_SAMPLE_ROWS, budget_rows(family, preset, config))
    return int(max(1, min(want, fits)))


def check_memory(
    schema: TableSchema,
    *,
    read_rows: int,
    validation_rows: int,
    validation_read_rows: int,
    budget_bytes: int,
    path: str | os.PathLike[str] | None = None,
) -> MemoryPlan:
    """InputError (exit 2) when training on ``read_rows`` rows or validating
    ``validation_rows`` scored rows (after reading ``validation_read_rows``) would not fit
    ``budget_bytes``; the plan otherwise."""
    nf = encoded_features(schema)
    tb = training_bytes(schema, read_rows)
    vb = validation_bytes(schema, validation_rows) + validation_read_rows * row_bytes(schema)
    plan = MemoryPlan(read_rows, nf, validation_rows, tb, vb, budget_bytes)
    gib = 2**30
    if tb > budget_bytes:
        per_row = training_bytes(schema, 1) - TRAIN_BASE_MB * _MB
        fits = max(0, (budget_bytes - TRAIN_BASE_MB * _MB) // per_row)
        raise InputError(
            f"training on {read_rows:,} rows x {nf} encoded features needs about "
            f"{tb / gib:.1f} GiB, more than the memory budget of {budget_bytes / gib:.1f} GiB; "
            + (
                f"lower --sample-rows to {fits:,} or less, or raise --max-memory-gb"
                if fits > 0
                else f"raise --max-memory-gb (training alone needs {TRAIN_BASE_MB} MiB)"
            ),
            path=path,
        )
    if vb > budget_bytes:
        raise InputError(
            f"validating {validation_rows:,} rows x {len(schema.columns)} columns needs about "
            f"{vb / gib:.1f} GiB, more than the memory budget of {budget_bytes / gib:.1f} GiB; "
            "raise --max-memory-gb",
            path=path,
        )
    return plan


def plan_training(
    dataset_dir: str | os.PathLike[str],
    *,
    holdout_fraction: float,
    seed: int,
    family: str,
    preset: str,
    config: dict[str, Any] | None = None,
    max_train_rows: int | None = None,
    sample_rows: int | None = None,
    max_memory_gb: float | None = None,
) -> tuple[Split, MemoryPlan]:
    """The split a run trains with and its memory plan; InputError when it cannot fit.

    The one decision of how many rows training reads: the preflight, the train task and the
    scale benchmark all call it, so what was checked is what runs.
    """
    from pfcore.schema import TableSchema
    from pfcore.synthesizer import Split
    from pfcore.validation import MAX_HOLDOUT_ROWS, MAX_SCORED_TRAIN_ROWS, synthetic_rows_for

    schema = TableSchema.load(Path(dataset_dir) / "schema.json")
    budget = memory_budget(max_memory_gb)
    if sample_rows is None:
        sample_rows = sample_rows_for(
            schema, family=family, preset=preset, config=config, budget_bytes=budget
        )
    split = Split.plan(dataset_dir, holdout_fraction, seed, max_train_rows, sample_rows)
    n = int(split.dataset_rows or 0)
    whole = split.method == "permutation"
    read_rows = n if whole else int(split.train_rows_cap or n)
    hold = min(MAX_HOLDOUT_ROWS, int(round(n * holdout_fraction)))
    train_scored = min(MAX_SCORED_TRAIN_ROWS, read_rows)
    scored = hold + synthetic_rows_for(train_scored, hold) + train_scored
    plan = check_memory(
        schema,
        read_rows=read_rows,
        validation_rows=scored,
        validation_read_rows=n if whole else 0,
        budget_bytes=budget,
        path=_source_of(dataset_dir),
    )
    return split, plan


def _source_of(dataset_dir: str | os.PathLike[str]) -> str:
    import json

    try:
        return str(json.loads((Path(dataset_dir) / "manifest.json").read_text())["source"])
    except (OSError, ValueError, KeyError):
        return str(dataset_dir)

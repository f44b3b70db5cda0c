"""Typed flow parameters.

Why pydantic models: Prefect renders them as a form in the UI (with defaults and descriptions)
and a deployment validates them before a run starts, so a bad value from the Run button or
``prefect deployment run --params`` is rejected with the field named instead of failing an hour
into training.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pfcore.defaults import (
    CONDITIONAL_METHODS,
    DEFAULT_CONDITIONAL_METHOD,
    DEFAULT_FAMILY,
    DEFAULT_PRESET,
    FAMILY_CHOICES,
    PRESET_CHOICES,
    PROTECT_EXTREMES,
)
from pfcore.errors import InputError
from pfcore.fidelity.gate import GateConfig
from pfcore.generate.plan import DEFAULT_ROWS_PER_SHARD
from pfcore.promotion import PromotionPolicy

if TYPE_CHECKING:
    from pfcore.conditions import Conditions

EXAMPLE_DATASET = (
    Path(__file__).resolve().parents[1] / "pfcore" / "examples" / "california_housing.parquet"
)

_GATE = GateConfig()
_PROMOTION = PromotionPolicy()
_GATE_FIELDS = {
    "min_quality",
    "min_pair_trends",
    "min_column_shape",
    "max_detection_auc",
    "max_missing_rate_diff",
    "min_dcr_ratio",
}
_PROMOTION_FIELDS = set(PromotionPolicy().to_dict())


__all__ = [
    "GateParams",
    "TrainParams",
    "GenerateParams",
    "PipelineParams",
    "EXAMPLE_DATASET",
    "csv_read_options",
]


#: Delimiters that are awkward to type on a command line, by name.
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "semicolon": ";", "pipe": "|", "comma": ","}


def csv_read_options(
    delimiter: str | None, quote_char: str, encoding: str, null_tokens: str | None
) -> dict:
    """``pfcore.ingest.ingest`` keyword arguments from the form / command-line values (one
    conversion for the train flow and the ``ingest`` command)."""
    return {
        "delimiter": _DELIMITER_NAMES.get(delimiter, delimiter) if delimiter else None,
        "quote_char": quote_char,
        "encoding": encoding,
        "null_tokens": None if null_tokens is None else null_tokens.split(","),
    }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GateParams(_Strict):
    """What a model must meet to be registered, and to replace the current ``champion``.

    One typed policy for the UI form: the absolute gate (``pfcore.fidelity.GateConfig``) and
    the promotion rules (``pfcore.promotion.PromotionPolicy``). Defaults are read from those two
    dataclasses, so the form, the CLI and the library cannot drift apart.
    """

    min_quality: float = Field(
        _GATE.min_quality,
        ge=0,
        le=1,
        description="Minimum overall quality (mean of column shapes and pair trends).",
    )
    min_pair_trends: float = Field(
        _GATE.min_pair_trends,
        ge=0,
        le=1,
        description="Minimum pair-trend score over related column pairs.",
    )
    min_column_shape: float = Field(
        _GATE.min_column_shape,
        ge=0,
        le=1,
        description="Minimum shape score of every single column.",
    )
    max_detection_auc: float = Field(
        _GATE.max_detection_auc,
        ge=0.5,
        le=1,
        description="Maximum classifier two-sample ROC AUC (0.5 = indistinguishable).",
    )
    max_missing_rate_diff: float = Field(
        _GATE.max_missing_rate_diff,
        ge=0,
        le=1,
        description="Maximum per-column difference of missing rates.",
    )
    min_dcr_ratio: float = Field(
        _GATE.min_dcr_ratio,
        ge=0,
        description=(
            "Privacy: synthetic-to-train over holdout-to-train distance to closest record (5th "
            "percentile) must be at least this."
        ),
    )
    check_regression: bool = Field(
        _PROMOTION.check_regression,
        description="Replace the current champion only if no score below regresses against it.",
    )
    quality_tolerance: float = Field(
        _PROMOTION.quality_tolerance,
        ge=0,
        le=1,
        description="Quality may drop at most this below the champion's.",
    )
    pair_trends_tolerance: float = Field(
        _PROMOTION.pair_trends_tolerance,
        ge=0,
        le=1,
        description="Pair trends may drop at most this below the champion's.",
    )
    detection_auc_tolerance: float = Field(
        _PROMOTION.detection_auc_tolerance,
        ge=0,
        le=1,
        description="Detection AUC may rise at most this above the champion's.",
    )

    def gate_config(self) -> dict:
        """The absolute gate's part, as ``pfcore.fidelity.GateConfig.from_dict`` takes it."""
        return self.model_dump(include=_GATE_FIELDS)

    def promotion_policy(self) -> dict:
        """The promotion part, as ``pfcore.promotion.PromotionPolicy.from_dict`` takes it."""
        return self.model_dump(include=_PROMOTION_FIELDS)


class TrainParams(_Strict):
    """Train a synthesizer on a table and register it (ingest → train → validate → register)."""

    source: str = Field(
        str(EXAMPLE_DATASET),
        description=(
            "Path or URI (s3://, gs://, abfs://) of the real table: CSV, Parquet (file or "
            "folder/prefix) or JSON Lines."
        ),
    )
    dataset_name: str | None = Field(
        None, description="Short name for the dataset; defaults to the file name."
    )
    dataset_store: str | None = Field(
        None,
        description=(
            "Folder or URI under which the ingested dataset is kept, in a sub-folder named "
            "after the dataset; defaults to 'datasets' under PUSHFORWARD_HOME."
        ),
    )
    artifacts: str | None = Field(
        None,
        description=(
            "Folder or URI the run's artifacts (synthesizer, fidelity report, training curve) "
            "are copied to, in sub-folders named after the dataset and the run; none by "
            "default (they stay under PUSHFORWARD_HOME/runs and in MLflow)."
        ),
    )
    model_name: str | None = Field(
        None,
        description=(
            "Registered model name in MLflow; defaults to 'pushforward-' followed by the "
            "dataset name."
        ),
    )
    family: Literal[FAMILY_CHOICES] = Field(
        DEFAULT_FAMILY,
        description=(
            "Model family: 'hybrid' (default: discrete columns drawn autoregressively, numbers "
            "by a one-step map conditioned on them; the lowest detection AUC), 'onestep' "
            "(distilled from a flow over the whole row; fastest sampler, and flow inpainting "
            "as a second conditional sampler), 'flow' (ODE sampler), 'energy' (direct "
            "MMD/energy generator)."
        ),
    )
    preset: Literal[PRESET_CHOICES] = Field(
        DEFAULT_PRESET,
        description=(
            "Training budget preset: 'fast' ~1 min, 'balanced' ~4 min, 'best' ~12 min on 2 CPU "
            "cores at 20k rows; 'gpu' ~5 min with networks sized for one CUDA device; 'tiny' "
            "takes seconds and is for smoke tests only."
        ),
    )
    max_minutes: float | None = Field(
        None,
        gt=0,
        le=24 * 60,
        description="Hard training time budget in minutes (overrides the preset's).",
    )
    seed: int = Field(0, ge=0, description="Seed for the split, the transform and training.")
    holdout_fraction: float = Field(
        0.2,
        ge=0.05,
        le=0.5,
        description="Fraction of rows held out for fidelity and privacy scoring.",
    )
    max_train_rows: int | None = Field(
        None, gt=1, description="Cap on training rows (random subsample)."
    )
    sample_rows: int | None = Field(
        None,
        gt=1,
        description=(
            "Most training rows read from a larger table (a seeded uniform sample, streamed); "
            "empty chooses from the training budget (steps x batch size, at least 1M rows) "
            "and the memory budget. A table whose training rows fit is read whole."
        ),
    )
    max_memory_gb: float | None = Field(
        None,
        gt=0,
        description=(
            "Memory budget of training and validation in GiB; a run estimated to exceed it is "
            "refused before it starts. Empty: 60 percent of the memory available when the run "
            "starts."
        ),
    )
    target: str | None = Field(
        None,
        description=(
            "Optional target column for ML-efficacy scoring (train on synthetic, test on real)."
        ),
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Training device; 'auto' uses CUDA when present."
    )
    protect_extremes: int = Field(
        PROTECT_EXTREMES,
        ge=0,
        le=1000,
        description=(
            "Value protection: synthetic numbers never go beyond a column's (k+1)-th most extreme "
            "real value on either side, so outliers are not disclosed; 0 reproduces the full "
            "range."
        ),
    )
    overrides: str | None = Field(
        None,
        description=(
            "Optional YAML/JSON file of schema overrides (force a kind, drop a column, set bounds)."
        ),
    )
    delimiter: str | None = Field(
        None,
        min_length=1,
        max_length=1,
        description="CSV delimiter; empty detects it (comma, tab, semicolon or pipe).",
    )
    quote_char: str = Field('"', min_length=1, max_length=1, description="CSV quote character.")
    encoding: str = Field(
        "utf8",
        description="Text encoding of a CSV source ('utf8' also reads a byte-order mark; "
        "'latin-1', 'cp1252', ... are transcoded).",
    )
    null_tokens: str | None = Field(
        None,
        description=(
            "Comma-separated CSV cells read as null in every column (an empty item is the empty "
            "cell); empty uses the default set: ,NA,N/A,null,NULL,-,?,NaN."
        ),
    )
    gate: GateParams = Field(default_factory=GateParams)

    @field_validator("delimiter", mode="before")
    @classmethod
    def _named_delimiter(cls, v: object) -> object:
        return _DELIMITER_NAMES.get(v, v) if isinstance(v, str) else v

    def read_options(self) -> dict:
        """Keyword arguments of ``pfcore.ingest.ingest`` that say how to read the source."""
        return csv_read_options(self.delimiter, self.quote_char, self.encoding, self.null_tokens)

    @field_validator("source")
    @classmethod
    def _source_exists(cls, v: str) -> str:
        from pfcore import storage

        try:
            if storage.is_remote(v):
                return v  # checked by the preflight, which reads it (network, bounded retries)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        try:
            exists = Path(v).expanduser().exists()
        except OSError as exc:  # a parent folder this user may not enter
            raise ValueError(f"source {v!r} cannot be read ({exc.strerror or exc})") from None
        if not exists:
            raise ValueError(f"source {v!r} does not exist")
        return v

    def resolved_dataset_name(self) -> str:
        if self.dataset_name:
            return self.dataset_name
        name = self.source.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
        return name.split(".")[0] or "dataset"

    def resolved_model_name(self) -> str:
        return self.model_name or f"pushforward-{self.resolved_dataset_name()}"

    def resolved_dataset_dir(self) -> str:
        """Where ingest writes this source (under the project folder)."""
        from pfcore import storage
        from pfcore.paths import pushforward_home

        store = self.dataset_store or str(pushforward_home() / "datasets")
        return storage.join(storage.normalise(store), self.resolved_dataset_name())

    def preflight(self, *, ingest: bool = False) -> None:
        """Every check that can fail this run before training (``pfcore.preflight``);
        ``ingest``: also ingest the source and check the ingested table (the command line
        does, so it fails before starting Prefect; the flow ingests in its own task)."""
        from pfcore import preflight

        preflight.check_train_inputs(
            self.source,
            holdout_fraction=self.holdout_fraction,
            read_options=self.read_options(),
            overrides=self.overrides,
            target=self.target,
        )
        if ingest:
            from pfcore.ingest import ingest as run_ingest

            res = run_ingest(
                self.source,
                self.resolved_dataset_dir(),
                overrides=self.overrides,
                **self.read_options(),
            )
            preflight.check_dataset(
                res.out_dir, holdout_fraction=self.holdout_fraction, target=self.target
            )
            self.memory_plan(str(res.out_dir))

    def memory_plan(self, dataset_dir: str) -> dict:
        """The training split and memory plan this run will use on the ingested dataset;
        InputError (exit 2) when it cannot fit the memory budget (``pfcore.memory``)."""
        from pfcore.ingest import local_dataset
        from pfcore.memory import plan_training

        split, plan = plan_training(
            local_dataset(dataset_dir),
            holdout_fraction=self.holdout_fraction,
            seed=self.seed,
            family=self.family,
            preset=self.preset,
            config={} if self.max_minutes is None else {"max_minutes": self.max_minutes},
            max_train_rows=self.max_train_rows,
            sample_rows=self.sample_rows,
            max_memory_gb=self.max_memory_gb,
        )
        return {"split": split.to_dict(), "memory": plan.to_dict()}


class GenerateParams(_Strict):
    """Generate a synthetic batch from a registered model and publish it as Parquet."""

    model_name: str = Field(
        "pushforward-california_housing", description="Registered model name in MLflow."
    )
    alias: str = Field("champion", description="Model alias to load (the gate sets 'champion').")
    rows: int = Field(1_000_000, gt=0, le=10**12, description="Number of synthetic rows.")
    seed_policy: Literal["fixed", "run_date"] = Field(
        "fixed",
        description=(
            "'fixed' uses `seed`, so the same request gives the same rows; 'run_date' derives "
            "the seed from `seed` and the run date, so each day's batch differs yet is "
            "reproducible (what the daily schedule uses)."
        ),
    )
    seed: int = Field(0, ge=0, description="Base seed.")
    run_date: dt.date | None = Field(None, description="Partition date (defaults to today, UTC).")
    output: str | None = Field(
        None,
        description=(
            "Root folder or URI (s3://bucket/prefix, gs://, abfs://) of published batches; "
            "defaults to the folder 'synthetic' under PUSHFORWARD_HOME."
        ),
    )
    format: Literal["parquet", "delta"] = Field(
        "parquet",
        description=(
            "'parquet' publishes the batch; 'delta' also appends it to the Delta Lake table "
            "'delta/' followed by the dataset name under the output root, as one transaction "
            "per batch (a retried or concurrent run never appends twice)."
        ),
    )
    dataset_name: str | None = Field(
        None,
        description="Name of the 'dataset=...' partition folder; defaults to the model name.",
    )
    rows_per_shard: int = Field(
        DEFAULT_ROWS_PER_SHARD,
        gt=0,
        description="Rows per Parquet file (rounded to whole generation blocks).",
    )
    runner: Literal["threads", "dask"] = Field(
        "threads", description="Where shards run: Prefect's thread runner, or a Dask cluster."
    )
    dask_address: str | None = Field(
        None, description="Address of an existing Dask scheduler; empty starts a local cluster."
    )
    workers: int = Field(
        2, ge=1, le=1024, description="Parallel shard workers (local Dask cluster size)."
    )
    where: list[str] = Field(
        default_factory=list,
        description=(
            "Fixed values every row meets, one condition per use: an equality such as "
            "'region=EU' (categorical, boolean, integer columns), or a bound on a numeric or "
            "datetime column, or on a categorical column of numbers such as a month: the "
            "column, a comparison operator (greater or less than, optionally or equal) and a "
            "value; 'phone=null' asks for a missing value. Refused before sampling if a "
            "category was never seen or a range is outside the column's bounds."
        ),
    )
    rebalance: str | None = Field(
        None,
        description=(
            "Target distribution of one categorical column: 'y=yes:0.5' (classes not named "
            "share the rest by their training frequencies) or 'y=uniform'."
        ),
    )
    seed_rows: str | None = Field(
        None,
        description=(
            "Parquet/CSV/JSON Lines file of partial rows to complete: its columns are kept "
            "exactly (nulls included), the others generated; one output row per seed row, so "
            "`rows` is ignored."
        ),
    )
    conditional_method: Literal[CONDITIONAL_METHODS] = Field(
        DEFAULT_CONDITIONAL_METHOD,
        description=(
            "Sampler of a conditional batch (with where, rebalance or seed_rows): 'student' "
            "(the model's mask-conditioned networks: a hybrid's any-order discrete network and "
            "numeric student, a onestep model's conditional student), 'inpaint' (onestep and "
            "flow models only: the flow teacher, 32 evaluations per row, 3-7 percent of the "
            "speed), 'project' (hybrid models only: the student's latent point moved onto given "
            "numbers; closer to real rows when numbers are given, 6-20 percent of the speed) "
            "or 'auto' (the student when the model has one). The batch records the one that ran."
        ),
    )

    @model_validator(mode="after")
    def _method_needs_conditions(self) -> GenerateParams:
        from pfcore.conditions import check_method

        conditioned = bool(self.where or self.rebalance or self.seed_rows)
        try:
            check_method(self.conditional_method, conditioned=conditioned)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return self

    @field_validator("where")
    @classmethod
    def _parse_where(cls, value: list[str]) -> list[str]:
        from pfcore.conditions import Where

        for text in value:
            try:
                Where.parse(text)
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("rebalance")
    @classmethod
    def _parse_rebalance(cls, value: str | None) -> str | None:
        from pfcore.conditions import Rebalance

        if value is not None:
            try:
                Rebalance.parse(value)
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return value

    def conditions(self) -> Conditions:
        """The typed request (``pfcore.conditions``); empty when nothing is conditioned."""
        from pfcore.conditions import Conditions

        return Conditions.make(
            where=self.where or None,
            rebalance=self.rebalance,
            seed_rows=self.seed_rows,
            method=self.conditional_method,
        )

    def resolved_output(self) -> str:
        from pfcore.paths import pushforward_home

        return self.output or str(pushforward_home() / "synthetic")

    def preflight(self) -> None:
        """Output root writable, registry answering, model and alias registered: seconds, not
        the minutes of a Prefect retry loop (``pfcore.preflight``)."""
        from pfcore.preflight import check_generate_inputs

        if self.seed_rows:
            from pfcore.conditions import SeedRows

            SeedRows.read(self.seed_rows)  # readable, a known format: before the flow starts
        check_generate_inputs(self.resolved_output(), model_name=self.model_name, alias=self.alias)

    def resolved_seed(self, today: dt.date) -> int:
        """The seed actually used: reproducible from (seed, run date) under 'run_date'."""
        if self.seed_policy == "fixed":
            return self.seed
        return self.seed * 100_000_000 + int(today.strftime("%Y%m%d"))


class PipelineParams(_Strict):
    """Train and register, then generate a batch from the champion."""

    train: TrainParams = Field(default_factory=TrainParams)
    rows: int = Field(
        100_000,
        gt=0,
        le=10**12,
        description="Rows of the synthetic batch generated after training.",
    )
    generate_seed: int = Field(0, ge=0, description="Seed of the generated batch.")
    output: str | None = Field(None, description="Root folder of published batches.")

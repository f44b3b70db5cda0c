"""Batch planning: shards of canonical blocks, batch ids and paths.

The rows come from the canonical blocks of ``pfcore.sampling`` (the one sampling path). A
shard is only a contiguous run of whole blocks, so the bytes of the data depend on (model,
seed, N) and never on how the work is split.

A :class:`BatchPlan` is a small, JSON-able value (paths, strings and ints) so that a Prefect
mapped task or a Dask worker can receive it and call ``generate_shard(plan, i)`` on its own.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pfcore import storage
from pfcore.errors import GenerationError, InputError
from pfcore.sampling import BLOCK_ROWS, NOISE_CHOICES, block_seeds

__all__ = [
    "BLOCK_ROWS",
    "BatchLayout",
    "BatchTarget",
    "DEFAULT_ROWS_PER_SHARD",
    "DEFAULT_ROW_GROUP_ROWS",
    "DEFAULT_ROW_GROUP_BYTES",
    "PLAN_FORMAT_VERSION",
    "ShardSpec",
    "BatchPlan",
    "block_seeds",
    "default_batch_id",
    "fingerprint_directory",
    "make_plan",
]

#: Shard size: 128 blocks (about 8.4M rows, a few hundred MB of Parquet for 20-30 columns).
DEFAULT_ROWS_PER_SHARD = 128 * BLOCK_ROWS
#: Row groups of 16 blocks (1,048,576 rows): the size analytics engines scan best...
DEFAULT_ROW_GROUP_ROWS = 16 * BLOCK_ROWS
#: ...or fewer whole blocks once they hold this many bytes of decoded Arrow data (wide tables):
#: a writer keeps at most two row groups in memory, so this bounds its RSS.
DEFAULT_ROW_GROUP_BYTES = 128 << 20
PLAN_FORMAT_VERSION = 1

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Files that identify the synthesizer's behaviour. synthesizer.json is left out on purpose:
# it carries timings of the fit, which do not change a single generated value.
_FINGERPRINT_EXCLUDE = {"synthesizer.json"}


def fingerprint_directory(directory: str | os.PathLike[str]) -> str:
    """sha256 over the relative paths and bytes of a saved synthesizer's files.

    Two directories with the same fingerprint generate the same rows, whichever registry
    version or download location they came from.
    """
    root = Path(directory)
    if not root.is_dir():
        raise InputError("not a directory (expected a saved synthesizer)", path=root)
    h = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        rel = p.relative_to(root).as_posix()
        if rel in _FINGERPRINT_EXCLUDE:
            continue
        h.update(rel.encode() + b"\0")
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def default_batch_id(
    *,
    model_name: str,
    model_version: str,
    fingerprint: str,
    seed: int,
    n_rows: int,
    block_rows: int,
    noise: str = "cpu",
    conditions_digest: str | None = None,
) -> str:
    """Deterministic id from what defines the content, so a rerun finds its own staging.

    Overlapping scheduled runs that must not share a batch pass their own ids.
    """
    parts: list[Any] = [
        model_name,
        model_version,
        fingerprint,
        int(seed),
        int(n_rows),
        int(block_rows),
    ]
    if noise != "cpu":
        parts.append(f"noise={noise}")
    if conditions_digest is not None:
        parts.append(f"conditions={conditions_digest}")
    key = json.dumps(parts).encode()
    # the "b-" prefix keeps DuckDB's hive-partition type inference from reading an all-digit
    # (or "1e5"-like) hex id as a number
    return "b-" + hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True)
class ShardSpec:
    """One shard: blocks ``[first_block, first_block + n_blocks)``, rows ``[row_start, +rows)``."""

    index: int
    first_block: int
    n_blocks: int
    row_start: int
    rows: int

    @property
    def file_name(self) -> str:
        return f"part-{self.index:05d}.parquet"


@dataclass(frozen=True)
class BatchPlan:
    """Everything a worker needs to write one shard, as plain JSON-able values."""

    out_root: str
    dataset: str
    run_date: str
    batch_id: str
    synth_dir: str
    model_name: str
    model_version: str
    model_fingerprint: str
    seed: int
    n_rows: int
    block_rows: int
    rows_per_shard: int
    row_group_rows: int
    compression: str
    compression_level: int | None
    device: str
    shards: tuple[ShardSpec, ...] = field(default_factory=tuple)
    #: where latent noise is drawn: one of ``pfcore.sampling.NOISE_CHOICES`` (see there).
    noise: str = "cpu"
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES
    format_version: int = PLAN_FORMAT_VERSION
    #: ``pfcore.conditions.Conditions.to_dict()`` of a conditional batch (seed rows by path to
    #: their copy in staging, and content hash); None for an unconditional one.
    conditions: dict[str, Any] | None = None

    @property
    def conditions_digest(self) -> str | None:
        """Content hash of the conditions (None when unconditional): part of the identity."""
        return None if self.conditions is None else conditions_digest(self.conditions)

    # ---------------------------------------------------------------- paths
    @property
    def remote(self) -> bool:
        """True when ``out_root`` is an object-store URI (commit by manifest, not rename)."""
        return storage.is_remote(self.out_root)

    @property
    def final_uri(self) -> str:
        """The published batch location as text: a local path or ``scheme://bucket/...``."""
        return storage.join(
            self.out_root,
            f"dataset={self.dataset}",
            f"run_date={self.run_date}",
            f"batch={self.batch_id}",
        )

    @property
    def staging_uri(self) -> str:
        """Where shards wait for the commit, as text (see :attr:`staging_dir`)."""
        return storage.join(self.out_root, "_staging", self.dataset, self.run_date, self.batch_id)

    def staged_uri(self, index: int) -> str:
        return storage.join(self.staging_uri, "shards", f"{self.shards[index].file_name}.staged")

    def sidecar_uri(self, index: int) -> str:
        return storage.join(self.staging_uri, "shards", f"{self.shards[index].file_name}.json")

    @property
    def final_dir(self) -> Path:
        """The published batch folder (hive-style partitions)."""
        return (
            Path(self.out_root)
            / f"dataset={self.dataset}"
            / f"run_date={self.run_date}"
            / f"batch={self.batch_id}"
        )

    @property
    def staging_dir(self) -> Path:
        """Outside ``dataset=*`` and ``_``-prefixed: pyarrow.dataset and partition globs skip it."""
        return Path(self.out_root) / "_staging" / self.dataset / self.run_date / self.batch_id

    @property
    def shards_dir(self) -> Path:
        return self.staging_dir / "shards"

    def staged_path(self, index: int) -> Path:
        # Not "*.parquet": a reader's "**/*.parquet" glob over out_root never counts a shard
        # left behind by a killed run.
        return self.shards_dir / f"{self.shards[index].file_name}.staged"

    def sidecar_path(self, index: int) -> Path:
        return self.shards_dir / f"{self.shards[index].file_name}.json"

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shards"] = [asdict(s) for s in self.shards]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatchPlan:
        d = dict(d)
        if int(d.get("format_version", PLAN_FORMAT_VERSION)) > PLAN_FORMAT_VERSION:
            raise GenerationError(
                f"batch plan format {d['format_version']} is newer than this code"
            )
        d["shards"] = tuple(ShardSpec(**s) for s in d.get("shards", ()))
        return cls(**d)

    @classmethod
    def coerce(cls, plan: BatchPlan | dict[str, Any] | str | os.PathLike[str]) -> BatchPlan:
        """Accept a plan, its dict, or a path to its JSON (what a remote task may carry)."""
        if isinstance(plan, BatchPlan):
            return plan
        if isinstance(plan, dict):
            return cls.from_dict(plan)
        return cls.from_dict(json.loads(storage.resolve(plan).read_text()))

    def with_synth_dir(self, synth_dir: str | os.PathLike[str]) -> BatchPlan:
        return replace(self, synth_dir=str(synth_dir))


def conditions_digest(d: dict[str, Any]) -> str:
    """``Conditions.digest()`` computed from the recorded dict (no seed-row file is read)."""
    import hashlib

    d = dict(d)
    if d.get("seed_rows") is not None:
        d["seed_rows"] = {k: v for k, v in d["seed_rows"].items() if k != "path"}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _SAFE_NAME.match(value):
        raise InputError(
            f"{what} {value!r} must be letters, digits, '_', '-' or '.', not starting with "
            "'.', '_' or '-' (it becomes a folder name)"
        )
    return value


def _run_date(run_date: str | _dt.date | None) -> str:
    if run_date is None:
        return _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    if isinstance(run_date, _dt.datetime):
        return run_date.date().isoformat()
    if isinstance(run_date, _dt.date):
        return run_date.isoformat()
    if isinstance(run_date, str) and _DATE.match(run_date):
        try:
            _dt.date.fromisoformat(run_date)
        except ValueError as exc:
            raise InputError(f"run_date {run_date!r} is not a valid date") from exc
        return run_date
    raise InputError(f"run_date {run_date!r} must be YYYY-MM-DD")


def _positive_int(value: Any, what: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{what} must be an integer, got {value!r}")
    value = int(value)
    if value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


@dataclass(frozen=True)
class BatchLayout:
    """How a batch is cut into blocks, files and row groups, and compressed.

    ``block_rows`` and ``noise`` take part in which rows a seed gives (``pfcore.sampling``), so
    they are part of the batch id; every other field only changes how the same rows are laid
    out in files.
    """

    block_rows: int = BLOCK_ROWS
    rows_per_shard: int = DEFAULT_ROWS_PER_SHARD
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES
    compression: str = "zstd"
    compression_level: int | None = None
    noise: str = "cpu"


@dataclass(frozen=True)
class BatchTarget:
    """Where a batch is published (``out_root/dataset=/run_date=/batch=``) and its labels.

    ``run_date`` defaults to today (UTC); ``batch_id`` to an id derived from what defines the
    content, so a rerun finds its own staging; ``model_name``/``model_version`` (e.g. the
    registry's) go into the metadata and default to the synthesizer's family and fingerprint.
    """

    out_root: str | os.PathLike[str]
    dataset_name: str
    run_date: str | _dt.date | None = None
    batch_id: str | None = None
    model_name: str | None = None
    model_version: str | None = None


def make_plan(
    *,
    synth_dir: str | os.PathLike[str],
    n_rows: int,
    seed: int,
    target: BatchTarget,
    model_fingerprint: str,
    layout: BatchLayout = BatchLayout(),
    device: str = "cpu",
    conditions: dict[str, Any] | None = None,
) -> BatchPlan:
    """Validate the parameters and cut ``[0, n_rows)`` into shards of whole blocks.

    ``rows_per_shard`` and ``row_group_rows`` are rounded up to whole blocks: they change the
    file layout, never the rows.
    """
    n_rows = _positive_int(n_rows, "n_rows", allow_zero=True)
    seed = _positive_int(seed, "seed", allow_zero=True)
    block_rows = _positive_int(layout.block_rows, "block_rows")
    rows_per_shard = _positive_int(layout.rows_per_shard, "rows_per_shard")
    row_group_rows = _positive_int(layout.row_group_rows, "row_group_rows")
    row_group_bytes = _positive_int(layout.row_group_bytes, "row_group_bytes")
    dataset_name = _check_name(target.dataset_name, "dataset name")
    run_date_s = _run_date(target.run_date)
    noise, compression = layout.noise, layout.compression
    if target.model_name is None or target.model_version is None:
        raise InputError("a batch plan needs the model's name and version (BatchTarget)")
    model_name, model_version, batch_id = target.model_name, target.model_version, target.batch_id
    if noise not in NOISE_CHOICES:
        raise InputError(f"noise must be one of {list(NOISE_CHOICES)}, got {noise!r}")
    if batch_id is None:
        batch_id = default_batch_id(
            model_name=model_name,
            model_version=model_version,
            fingerprint=model_fingerprint,
            seed=seed,
            n_rows=n_rows,
            block_rows=block_rows,
            noise=noise,
            conditions_digest=None if conditions is None else conditions_digest(conditions),
        )
    _check_name(batch_id, "batch id")
    if compression not in {"zstd", "snappy", "gzip", "brotli", "lz4", "none"}:
        raise InputError(f"unknown Parquet compression {compression!r}")

    blocks_per_shard = -(-rows_per_shard // block_rows)
    n_blocks = -(-n_rows // block_rows)
    shards: list[ShardSpec] = []
    for index, first in enumerate(range(0, n_blocks, blocks_per_shard)):
        nb = min(blocks_per_shard, n_blocks - first)
        row_start = first * block_rows
        rows = min(nb * block_rows, n_rows - row_start)
        shards.append(ShardSpec(index, first, nb, row_start, rows))
    if not shards:
        # An empty batch still publishes one (row-less) file, so readers see its schema.
        shards.append(ShardSpec(0, 0, 0, 0, 0))
    return BatchPlan(
        out_root=storage.normalise(target.out_root),
        dataset=dataset_name,
        run_date=run_date_s,
        batch_id=batch_id,
        synth_dir=storage.normalise(synth_dir),
        model_name=str(model_name),
        model_version=str(model_version),
        model_fingerprint=model_fingerprint,
        seed=seed,
        n_rows=n_rows,
        block_rows=block_rows,
        rows_per_shard=blocks_per_shard * block_rows,
        row_group_rows=-(-row_group_rows // block_rows) * block_rows,
        compression=compression,
        compression_level=layout.compression_level,
        device=str(device),
        shards=tuple(shards),
        noise=noise,
        row_group_bytes=row_group_bytes,
        conditions=conditions,
    )

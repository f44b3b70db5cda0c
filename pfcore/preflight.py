"""Preflight: every check that can fail a run, done before the expensive steps.

Why: a problem a few file-system calls can see (an unreadable source, a 3-row table, an output
path that is a file, a registry that does not answer, a model without a champion) must not
surface after minutes of training. Each check raises the error type that decides the exit code
(``pfcore.errors``) with a message naming what to fix, and takes seconds at most: the registry
probe is bounded by ``REGISTRY_BUDGET_S`` in total, with no retries around it.

Entry points call these functions in this order (the command line before it starts Prefect, the
flows again at their start, so a deployment run fails as early):

* ``check_train_inputs``: source readable and parseable, enough rows, overrides and target name
  real columns, project folder writable, registry reachable;
* ``check_dataset``: after ingest, before training: enough rows for the split, the validation
  folds and the model, and at least one column to model;
* ``check_generate_inputs``: output root writable, registry reachable, model and alias exist.

The minimum table size is stated, not discovered by a crash: ``MIN_ROWS`` rows in all, of which
at least ``MIN_HOLDOUT_ROWS`` are held out (the classifier two-sample test splits the held-out
rows into ``detection_folds`` = 2 stratified folds, and the privacy distance needs held-out rows
too) and ``MIN_TRAIN_ROWS`` train (the model holds out 10% of those for early stopping, which
it only does from 20 rows on).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pfcore.errors import InputError, RegistryUnreachable, SchemaError, StorageError

__all__ = [
    "MIN_ROWS",
    "MIN_HOLDOUT_ROWS",
    "MIN_TRAIN_ROWS",
    "REGISTRY_BUDGET_S",
    "min_rows",
    "check_source",
    "check_rows",
    "check_writable_dir",
    "check_registry",
    "check_model_alias",
    "check_train_inputs",
    "check_dataset",
    "check_generate_inputs",
]

MIN_ROWS = 50
MIN_HOLDOUT_ROWS = 10
MIN_TRAIN_ROWS = 40
#: Longest a preflight waits for the registry to answer, all attempts together: with Python's
#: start-up the command reports a registry that does not answer within 15 s.
REGISTRY_BUDGET_S = 12.0


def min_rows(holdout_fraction: float) -> int:
    """Smallest table that leaves ``MIN_HOLDOUT_ROWS`` held out and ``MIN_TRAIN_ROWS`` to train
    under ``holdout_fraction`` (the split rounds the held-out count)."""
    n = MIN_ROWS
    while True:
        hold = int(round(n * holdout_fraction))
        if hold >= MIN_HOLDOUT_ROWS and n - hold >= MIN_TRAIN_ROWS:
            return n
        n += 1


def check_rows(
    n_rows: int, *, holdout_fraction: float, path: str | os.PathLike[str] | None = None
) -> None:
    """InputError naming ``path`` when ``n_rows`` is below :func:`min_rows`."""
    need = min_rows(holdout_fraction)
    if n_rows >= need:
        return
    if n_rows == 0:
        raise InputError("has a header but no data rows", path=path)
    raise InputError(
        f"has {n_rows} rows; training needs at least {need} (with holdout fraction "
        f"{holdout_fraction:g}: {MIN_HOLDOUT_ROWS}+ rows held out for validation and "
        f"{MIN_TRAIN_ROWS}+ to train); add rows or use another table",
        path=path,
    )


def check_source(
    source: str | os.PathLike[str],
    *,
    read_options: Mapping[str, Any] | None = None,
    count_up_to: int = 0,
) -> tuple[list[str], int]:
    """Open ``source`` as ingest will and read until ``count_up_to`` rows are seen.

    Returns (column names, rows seen: exact when below ``count_up_to``). Raises InputError for a
    missing, unreadable, binary or unparseable file, an empty or repeated column name, or an
    unsupported column type: everything ingest would refuse in its header or first blocks.
    """
    from pfcore.io import _RetryAsString, open_source

    opts = {k: v for k, v in dict(read_options or {}).items() if v is not None}
    reader = open_source(source, **opts)
    if reader.format == "parquet":
        import pyarrow.parquet as pq

        from pfcore.io import normal_schema, source_files

        names: list[str] = []
        rows = 0
        for f in source_files(reader.path):
            try:
                meta = pq.ParquetFile(f)
                names = normal_schema(meta.schema_arrow, f).names
                rows += meta.metadata.num_rows
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001 - pyarrow raises several types here
                raise InputError(f"is not a valid Parquet file ({exc})", path=f) from None
        return names, rows
    rows = 0
    try:
        for batch in reader.batches():
            rows += batch.num_rows
            if rows >= count_up_to > 0:
                break
    except _RetryAsString:
        pass  # a column of mixed types: ingest re-reads it as text; not a preflight failure
    if not hasattr(reader, "schema"):
        raise InputError("has no header and no rows", path=reader.path)
    return list(reader.schema.names), rows


def check_writable_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a folder pushforward may create and write into.

    An existing file at ``path`` (or at a parent) is a wrong option (InputError); a folder that
    cannot be written (permissions, read-only disk) is the environment (StorageError).
    """
    from pfcore import storage

    if storage.is_remote(path):
        storage.check_usable(path)  # bucket exists and the store answers (bounded retries)
        return Path(storage.normalise(path))
    p = Path(path).expanduser().absolute()
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "" if probe == p else f" (its parent {probe} is a file)"
        raise InputError(f"{what} must be a folder, but it is a file{where}", path=p)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise StorageError(
            f"{p}: {what} is not writable ({probe} denies writing to this user); choose another "
            "folder or fix its permissions"
        )
    return p


def check_registry(*, budget_s: float = REGISTRY_BUDGET_S) -> str:
    """The tracking store's description, once it answers; RegistryUnreachable within
    ``budget_s`` seconds otherwise. A local store needs only a writable folder."""
    from pfcore.registry.tracking import check_reachable, resolve_tracking

    cfg = resolve_tracking()
    if not cfg.remote:
        if cfg.uri.startswith("sqlite:///"):
            check_writable_dir(Path(cfg.uri[len("sqlite:///") :]).parent, "the MLflow store folder")
        if cfg.artifact_root is not None:
            check_writable_dir(cfg.artifact_root, "the MLflow artifact folder")
        return cfg.describe()
    attempts = 3
    # 0.5 s + 1 s of backoff between the tries, and 1 s of margin for name lookup and imports.
    timeout_s = round(max(0.5, (budget_s - 2.5) / attempts), 1)
    t0 = time.monotonic()
    try:
        check_reachable(cfg.uri, attempts=attempts, timeout_s=timeout_s)
    except RegistryUnreachable as exc:
        raise RegistryUnreachable(
            f"{exc} (preflight gave up after {time.monotonic() - t0:.1f} s)"
        ) from None
    return cfg.describe()


def check_model_alias(model_name: str, alias: str) -> None:
    """ModelNotFound naming the model and alias when the registry has no such version."""
    from pfcore.registry import resolve_alias

    resolve_alias(model_name, alias)


def _check_override_names(overrides: Any, names: Sequence[str]) -> None:
    from pfcore.schema import load_overrides

    ov = load_overrides(overrides)
    per_col = ov.get("columns")
    named = list(ov.get("drop") or []) + (list(per_col) if isinstance(per_col, Mapping) else [])
    unknown = [n for n in named if n not in names]
    if unknown:
        raise SchemaError(
            f"overrides name column {unknown[0]!r}, which is not in the table "
            f"(columns: {', '.join(map(repr, names[:20]))}{', ...' if len(names) > 20 else ''})"
        )


def check_train_inputs(
    source: str | os.PathLike[str],
    *,
    holdout_fraction: float = 0.2,
    read_options: Mapping[str, Any] | None = None,
    overrides: Any = None,
    target: str | None = None,
    home: str | os.PathLike[str] | None = None,
    registry: bool = True,
) -> list[str]:
    """Everything about a training run that can be checked before ingest; returns the
    source's column names."""
    from pfcore.paths import pushforward_home

    need = min_rows(holdout_fraction)
    names, rows = check_source(source, read_options=read_options, count_up_to=need)
    check_rows(rows, holdout_fraction=holdout_fraction, path=source)
    if overrides:
        _check_override_names(overrides, names)
    if target is not None and target not in names:
        raise InputError(
            f"target column {target!r} is not in the table (columns: "
            f"{', '.join(map(repr, names[:20]))})",
            path=source,
        )
    check_writable_dir(home or pushforward_home(), "the project folder (PUSHFORWARD_HOME)")
    if registry:
        check_registry()
    return names


def check_dataset(
    dataset_dir: str | os.PathLike[str],
    *,
    holdout_fraction: float = 0.2,
    target: str | None = None,
) -> None:
    """After ingest, before training: the ingested table can be split, validated and modelled."""
    from pfcore.ingest import local_dataset
    from pfcore.schema import TableSchema

    d = local_dataset(dataset_dir)
    schema = TableSchema.load(d / "schema.json")
    source = _source_of(d)
    check_rows(schema.n_rows, holdout_fraction=holdout_fraction, path=source)
    schema.require_modelled(path=source)
    if target is not None and target not in schema.names:
        raise InputError(f"target column {target!r} was dropped by the overrides", path=source)


def _source_of(dataset_dir: Path) -> str:
    import json

    try:
        return str(json.loads((dataset_dir / "manifest.json").read_text())["source"])
    except (OSError, ValueError, KeyError):
        return str(dataset_dir)


def check_generate_inputs(
    output: str | os.PathLike[str], *, model_name: str, alias: str, registry: bool = True
) -> None:
    """Output root usable, registry answering, ``model_name@alias`` registered."""
    check_writable_dir(output, "the output folder")
    if registry:
        check_registry()
        check_model_alias(model_name, alias)

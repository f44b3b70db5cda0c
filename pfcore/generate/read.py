"""Read only committed batches: the manifests say which files make up each batch.

Why through manifests: on an object store a batch is committed by creating its
``_manifest.json`` (there is no rename), so a plain ``**/*.parquet`` listing can meet the part
files of a commit in progress, or of one that crashed before its manifest. Listing manifests
and reading exactly the files they name gives every reader (pyarrow, DuckDB, Polars, Spark) the
same all-or-nothing view on local disks and in buckets.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa

from pfcore import storage
from pfcore.generate.publish import MANIFEST_NAME, BatchManifest, read_manifest

__all__ = ["committed_batches", "committed_files", "read_committed"]


def committed_batches(
    out_root: str | os.PathLike[str], dataset: str | None = None
) -> list[BatchManifest]:
    """Manifests of every committed batch under ``out_root`` (of one dataset when named),
    ordered by dataset, run date and batch id."""
    root = storage.resolve(out_root)
    pattern = f"dataset={dataset or '*'}/run_date=*/batch=*/{MANIFEST_NAME}"
    found = root.glob(pattern)
    return [read_manifest(p.rsplit("/", 1)[0]) for p in found]


def committed_files(out_root: str | os.PathLike[str], dataset: str | None = None) -> list[str]:
    """Paths or URIs of the Parquet files of every committed batch (what to hand a reader)."""
    return [str(p) for m in committed_batches(out_root, dataset) for p in m.file_paths]


def read_committed(
    out_root: str | os.PathLike[str],
    dataset: str | None = None,
    *,
    columns: list[str] | None = None,
) -> pa.Table:
    """Every committed row as one table, with the hive partition columns (dataset, run_date,
    batch) from the file paths; files in manifest order."""
    import pyarrow.dataset as ds

    files = committed_files(out_root, dataset)
    fs, base = storage.arrow_filesystem(out_root)
    paths = [storage.resolve(f).path for f in files]
    if not paths:
        raise FileNotFoundError(f"{storage.normalise(out_root)}: no committed batch")
    data: Any = ds.dataset(
        paths,
        filesystem=fs,
        format="parquet",
        partitioning=ds.partitioning(flavor="hive"),
        partition_base_dir=base,
    )
    return data.to_table(columns=columns)

"""Append a committed batch to a Delta Lake table: one transaction per batch, at most once.

Why a transaction id: a retried flow, or two overlapping runs of the same batch, must never
append its rows twice. Each append records a Delta application transaction
(``txn`` action: ``app_id = "pushforward:<dataset>:<batch id>"``, version 1) in the same commit
as its files; an append first asks the table for that id and does nothing when it is there, so
a retry or a rerun never appends twice. Two appends of one batch that run at the same moment and
both pass that check can both land: delta-rs' conflict check does not refuse a blind append
whose ``app_id`` a concurrent commit already wrote (a failed commit is still re-checked for the
id). Run one append per batch at a time.

The rows are streamed from the committed Parquet batch (its manifest's files), so a Delta table
holds exactly what the batch holds. Object-store tables use delta-rs' own configuration, the
standard ``AWS_*`` environment (an ``http://`` endpoint also needs ``AWS_ALLOW_HTTP=true``);
delta-rs commits to S3 with conditional writes, as the batch manifest does.
"""

from __future__ import annotations

import os
from typing import Any

from pfcore import storage
from pfcore.errors import GenerationError, StorageError
from pfcore.generate.publish import BatchManifest

__all__ = ["append_batch", "app_id"]


def app_id(manifest: BatchManifest) -> str:
    """The Delta application-transaction id that marks this batch as appended."""
    return f"pushforward:{manifest.data['dataset']}:{manifest.batch_id}"


def _appended(table_uri: str, txn: str) -> bool:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(table_uri)
    except TableNotFoundError:
        return False
    return table.transaction_version(txn) is not None


def _reader(manifest: BatchManifest) -> Any:
    import pyarrow.dataset as ds

    files = [str(p) for p in manifest.file_paths]
    fs, _ = storage.arrow_filesystem(files[0])
    data = ds.dataset([storage.resolve(f).path for f in files], filesystem=fs, format="parquet")
    return data.scanner(batch_size=65_536).to_reader()


def append_batch(manifest: BatchManifest, table_uri: str | os.PathLike[str]) -> bool:
    """Append the batch's rows to the Delta table at ``table_uri`` (created if absent) as one
    transaction; returns False, appending nothing, when this batch is already in the table."""
    from deltalake import CommitProperties, Transaction, write_deltalake
    from deltalake.exceptions import CommitFailedError, DeltaError

    uri = storage.normalise(table_uri)
    txn = app_id(manifest)
    try:
        if _appended(uri, txn):
            return False
        props = CommitProperties(
            custom_metadata={"pushforward.batch_id": manifest.batch_id},
            app_transactions=[Transaction(txn, 1)],
        )
        try:
            write_deltalake(uri, _reader(manifest), mode="append", commit_properties=props)
        except (CommitFailedError, DeltaError) as exc:
            if _appended(uri, txn):
                return False  # a concurrent run appended this batch first
            raise GenerationError(
                f"{uri}: Delta append of batch {manifest.batch_id} failed: {exc}"
            ) from exc
    except OSError as exc:  # delta-rs reports every object-store failure as OSError
        hint = ""
        if "scheme is not allowed" in str(exc):
            hint = " (an http:// endpoint needs AWS_ALLOW_HTTP=true for delta-rs)"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"{uri}: Delta table not reachable: {first}{hint}") from exc
    return True

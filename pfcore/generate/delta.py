"""Append a committed batch to a Delta Lake table: one transaction per batch, exactly once.

Why a transaction id: a retried flow, or a later run of the same batch, must never append its
rows twice. Each append records a Delta application transaction (``txn`` action:
``app_id = "pushforward:<dataset>:<batch id>"``, version 1) in the same commit as its files, and
an append first asks the table for that id. That check alone does not stop two appends running
at the same moment: both can pass it, and delta-rs does not refuse a blind append whose
``app_id`` a concurrent commit already wrote. Measured on delta-rs 1.6.6 with the check alone:
a second append whose check ran before the first commit and whose write ran after it landed
every time; three appends released together landed twice in 20 of 20 races on a new table and
5 of 20 on an existing one.

Why a claim: the append is serialised per batch by a claim object,
``<table>/_pushforward/claims/<batch id>.<generation>.json``, created with the store's exclusive
create (:meth:`pfcore.storage.Location.write_bytes`, ``If-None-Match: *`` on S3, ``O_EXCL``
locally), so exactly one caller creates each generation; a Delta table on another object store
(``gs://``, ``abfs://``) is refused with StorageError, as a batch commit there is. Delta ignores
the folder: readers take their files from the log, and delta-rs' ``vacuum`` (also
``full=True``) and ``optimize`` leave ``_``-prefixed folders alone (checked on delta-rs 1.6:
``DeltaTable``, ``vacuum``, ``optimize.compact``, ``pl.read_delta`` and DuckDB's
``read_parquet`` of ``file_uris()``; a claims folder made before the table does not stop
delta-rs creating it).

The protocol (:func:`append_batch`):

1. The table already has the batch's ``app_id``: return False, touching nothing.
2. Create generation 0 of the claim exclusively. If it exists, another caller holds it: poll
   (every ``min(1 s, timeout / 10)``) until the ``app_id`` appears, then return False.
3. A holder renews its claim (rewrites it with a new beat) every ``claim_timeout_s / 6``
   while it appends. A claim whose content has not changed for ``claim_timeout_s`` on the
   waiter's own monotonic clock, with still no ``app_id``, is stale (its holder died or
   stopped): the waiter takes over by creating the next generation exclusively, so of several
   takers exactly one wins and the others wait on the new generation. No wall clock is compared
   across machines.
4. The winner re-checks the ``app_id`` (the previous holder may have committed just before it
   died), then appends. Claims are left in place, never deleted: generations then only grow, so
   a claim cannot be created a second time behind a waiter's back, and the claim records who
   appended the batch. A failed append stops renewing and leaves its claim (a failed commit
   might still land, so nothing may call the batch free before the timeout): a retry takes
   over once the claim is stale, ``claim_timeout_s`` after it starts waiting.

Limits: the guarantee holds while a holder that stops renewing for ``claim_timeout_s`` does not
commit afterwards. A process frozen (suspended, swapped out, cut off from the store but not
from the Delta log) for longer than the timeout in the middle of its write can still land a
second copy once it resumes; a larger ``claim_timeout_s`` narrows that, at the price of a longer
wait before a crashed append's batch is taken over. Claims of a batch that is not yet in the
table must not be deleted by hand. A waiter gives up with GenerationError after ``max_wait_s``
of a live holder that never commits.

The rows are streamed from the committed Parquet batch (its manifest's files), so a Delta table
holds exactly what the batch holds. Object-store tables use delta-rs' own configuration, the
standard ``AWS_*`` environment (an ``http://`` endpoint also needs ``AWS_ALLOW_HTTP=true``);
delta-rs commits to S3 with conditional writes, as the batch manifest and the claim do.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from datetime import datetime, timezone
from typing import Any

from pfcore import storage
from pfcore.errors import GenerationError, StorageError
from pfcore.generate.publish import BatchManifest

__all__ = ["CLAIM_TIMEOUT_S", "MAX_WAIT_S", "append_batch", "app_id", "claim_uri"]

#: a claim not renewed for this long (seconds, on the waiter's clock) is stale
CLAIM_TIMEOUT_S = 120.0
#: how long a caller waits for a live holder's append before giving up
MAX_WAIT_S = 1800.0
_RENEWALS_PER_TIMEOUT = 6
_log = logging.getLogger("pushforward.delta")


def app_id(manifest: BatchManifest) -> str:
    """The Delta application-transaction id that marks this batch as appended."""
    return f"pushforward:{manifest.data['dataset']}:{manifest.batch_id}"


def claim_uri(table_uri: str | os.PathLike[str], batch_id: str, generation: int = 0) -> str:
    """Where generation ``generation`` of the claim on appending ``batch_id`` lives."""
    base = storage.normalise(table_uri)
    return storage.join(base, "_pushforward", "claims", f"{batch_id}.{generation}.json")


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


class _Claim:
    """A claim this call holds; renews itself from a daemon thread until :meth:`stop`."""

    def __init__(self, location: storage.Location, body: dict, every_s: float) -> None:
        self.location = location
        self._body = body
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="delta-claim", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _renew(self) -> None:
        beat = 0
        while not self._stop.wait(self._every_s):
            beat += 1
            body = {**self._body, "beat": beat, "renewed": _utc_now()}
            try:
                self.location.write_bytes(json.dumps(body, indent=1).encode())
            except Exception as exc:  # noqa: BLE001 - a dead renewer would let waiters take over
                # the next beat may get through: waiters see six per timeout
                _log.warning("could not renew the Delta append claim %s: %s", self.location, exc)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _acquire(
    table: str, manifest: BatchManifest, txn: str, timeout_s: float, max_wait_s: float
) -> _Claim | None:
    """Step 2-3 of the protocol: the claim this call won, or None once the batch is in the
    table (appended by whoever held the claim)."""
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "token": secrets.token_hex(8)}
    poll_s = min(1.0, timeout_s / 10)
    started = time.monotonic()
    generation = 0
    seen: bytes | None = None  # the watched generation's content, as last read
    changed_at = started
    while True:
        loc = storage.resolve(claim_uri(table, manifest.batch_id, generation))
        body = {
            "app_id": txn,
            "batch_id": manifest.batch_id,
            "generation": generation,
            "owner": owner,
            "created": _utc_now(),
            "beat": 0,
        }
        newer = storage.resolve(claim_uri(table, manifest.batch_id, generation + 1))
        if loc.write_bytes(json.dumps(body, indent=1).encode(), exclusive=True):
            if not newer.exists():  # only a claim deleted by hand leaves a newer one behind
                return _Claim(loc, body, timeout_s / _RENEWALS_PER_TIMEOUT)
        if _appended(table, txn):
            return None
        if newer.exists():  # taken over meanwhile: watch the newest generation
            generation, seen = generation + 1, None
            continue
        try:
            content = loc.read_bytes()
        except FileNotFoundError:
            continue  # deleted by hand: create it again
        now = time.monotonic()
        if content != seen:
            seen, changed_at = content, now
        elif now - changed_at >= timeout_s:
            _log.warning(
                "Delta append claim %s not renewed for %.0f s and batch %s not in the table: "
                "taking it over",
                loc,
                now - changed_at,
                manifest.batch_id,
            )
            generation, seen = generation + 1, None
            continue
        if now - started >= max_wait_s:
            raise GenerationError(
                f"{table}: batch {manifest.batch_id} is claimed by {loc} (renewed, so its "
                f"holder is alive) but not appended after {now - started:.0f} s of waiting"
            )
        time.sleep(poll_s)


def append_batch(
    manifest: BatchManifest,
    table_uri: str | os.PathLike[str],
    *,
    claim_timeout_s: float = CLAIM_TIMEOUT_S,
    max_wait_s: float = MAX_WAIT_S,
) -> bool:
    """Append the batch's rows to the Delta table at ``table_uri`` (created if absent) as one
    transaction; returns False, appending nothing, when this batch is already in the table or
    another caller appended it meanwhile. See the module docstring for the claim protocol."""
    from deltalake import CommitProperties, Transaction, write_deltalake
    from deltalake.exceptions import CommitFailedError, DeltaError

    if claim_timeout_s <= 0 or max_wait_s <= 0:
        raise ValueError("claim_timeout_s and max_wait_s must be positive")
    uri = storage.normalise(table_uri)
    txn = app_id(manifest)
    try:
        if _appended(uri, txn):
            return False
        claim = _acquire(uri, manifest, txn, claim_timeout_s, max_wait_s)
        if claim is None:
            return False
        claim.start()
        try:
            if _appended(uri, txn):
                return False  # the previous holder committed, then died before we saw it
            props = CommitProperties(
                custom_metadata={"pushforward.batch_id": manifest.batch_id},
                app_transactions=[Transaction(txn, 1)],
            )
            try:
                write_deltalake(uri, _reader(manifest), mode="append", commit_properties=props)
            except (CommitFailedError, DeltaError) as exc:
                if _appended(uri, txn):
                    return False  # a holder whose claim went stale appended this batch first
                raise GenerationError(
                    f"{uri}: Delta append of batch {manifest.batch_id} failed: {exc}"
                ) from exc
        finally:
            claim.stop()
    except OSError as exc:  # delta-rs reports every object-store failure as OSError
        hint = ""
        if "scheme is not allowed" in str(exc):
            hint = " (an http:// endpoint needs AWS_ALLOW_HTTP=true for delta-rs)"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"{uri}: Delta table not reachable: {first}{hint}") from exc
    return True

"""Transactions: client-side buffering, and a commit that is atomic across
shards and survives the committer's death at any instant.

transaction design:
- Serialised: transaction_start takes the database's transaction lock, a
  lease-based exclusive lock in the header object's lock table (locking.py),
  so a dead holder blocks the database for one lease at most. The next holder
  first finishes whatever commit the dead one left (recover), so every
  transaction starts from a database without half commits.
- Buffered: writes go to an overlay (key -> value, or None for a deleted key)
  in the handle; nothing reaches RADOS before commit, and reads inside the
  transaction see the overlay first. INSERT/MODIFY/DELETE are checked against
  that view when called, as TDB checks them; APPEND folds into the value.
- Nesting follows TDB: with ALLOW_NESTING (the default) an inner start only
  counts and an inner commit only uncounts; an inner cancel poisons the
  transaction (its prepare or commit then fails with TDB's IO error and the
  transaction is gone); DISALLOW_NESTING makes an inner start fail.
- The commit sends the overlay as shard batches of PUT/DISCARD entries, which
  are idempotent. When every entry falls in one shard the commit is ONE
  atomic class call (``apply``), no journal. Otherwise (txid = a random id):
    1. journal: the batches are written to the journal object in chunks; the
       LAST write also sets state=commit. That write is the commit point.
    2. apply: one ``apply(txid)`` per shard, in parallel. The OSD applies the
       batch, records applied=txid (a resent part is a no-op) and marks the
       shard pending=txid: reads, writes and locks on it get -EUCLEAN and wait.
    3. settle: one ``settle(txid)`` per shard, in parallel: pending cleared.
    4. the journal object is removed; "free" is notified on the shards.
  A reader never sees half a commit: a shard shows the new records only while
  pending (unreadable) until every shard has them.
- Recovery (``recover``), by the next transaction_start or by any reader or
  writer that waited on a pending shard and could take the transaction lock
  (its holder died: lease over): no journal -> nothing to do; a journal
  without state=commit -> the commit never happened: remove it (roll back; no
  shard was touched); a journal with state=commit -> resend every part (done
  parts are no-ops), settle every shard, remove the journal (roll forward).
- Death at each step: before or during step 1 -> rolled back; after step 1,
  at any point of steps 2-4 -> rolled forward. Either way all or nothing.
- Writes of other handles meet the pending mark during steps 2-3 and wait;
  before step 2 they are simply ordered before the commit. TDB's rule that
  writes of other handles may interleave with a transaction until its commit
  is kept: the transaction lock serialises transactions, not plain writes.
- ``RADOSTDB_TXN_CRASH_AT=<step>`` makes the committing process SIGKILL
  itself at a named step (tests): see CRASH_STEPS.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import rados

from . import clsops, layout, locking
from .errors import ERR_EINVAL, ERR_EXISTS, ERR_IO, ERR_NOEXIST, TdbError

if TYPE_CHECKING:
    from .storage import RadosStorage, Storage

CHUNK = 4 << 20  # bytes of journal per omap value
WRITE_OP_BYTES = 32 << 20  # journal bytes per write op
CRASH_STEPS = (
    "before-journal", "journal-partial", "journal-written", "apply-partial", "applied",
    "settle-partial", "settled", "journal-removed",
)


def crash_point(step: str) -> None:
    """Die here (SIGKILL) if RADOSTDB_TXN_CRASH_AT names this step (tests)."""
    if os.environ.get("RADOSTDB_TXN_CRASH_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


def iter_ops(overlay: Iterable[tuple[bytes, bytes | None]]) -> list[tuple[int, bytes, bytes]]:
    """Batch entries that make the records equal to an overlay (None = deleted)."""
    return [
        (clsops.OP_PUT, k, v) if v is not None else (clsops.OP_DISCARD, k, b"")
        for k, v in overlay
    ]


class Transaction:
    """The state of one (possibly nested) transaction on a handle."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.overlay: dict[bytes, bytes | None] = {}
        self.cleared = False
        self.depth = 1
        self.poisoned = False
        self.prepared = False

    # -- reads --------------------------------------------------------------
    def fetch(self, key: bytes) -> bytes | None:
        if key in self.overlay:
            return self.overlay[key]
        if self.cleared:
            return None
        return self.storage.fetch(key)

    def keys(self) -> Iterator[bytes]:
        if not self.cleared:
            for key in self.storage.keys():
                if key not in self.overlay:
                    yield key
        yield from (k for k, v in list(self.overlay.items()) if v is not None)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key in self.keys():
            value = self.fetch(key)
            if value is not None:
                yield key, value

    def first_key(self) -> bytes | None:
        return next(self.keys(), None)

    def next_key(self, key: bytes) -> bytes | None:
        it = self.keys()
        for k in it:
            if k == key:
                return next(it, None)
        return None

    # -- writes -------------------------------------------------------------
    def _writable(self) -> None:
        if self.prepared:
            raise TdbError(ERR_EINVAL)

    def store(self, key: bytes, data: bytes, flag: int) -> None:
        self._writable()
        if flag != clsops.REPLACE:
            exists = self.fetch(key) is not None
            if flag == clsops.INSERT and exists:
                raise TdbError(ERR_EXISTS)
            if flag == clsops.MODIFY and not exists:
                raise TdbError(ERR_NOEXIST)
        self.overlay[key] = data

    def append(self, key: bytes, data: bytes) -> None:
        self._writable()
        self.overlay[key] = (self.fetch(key) or b"") + data

    def delete(self, key: bytes) -> None:
        self._writable()
        if self.fetch(key) is None:
            raise TdbError(ERR_NOEXIST)
        self.overlay[key] = None

    def clear(self) -> None:
        self._writable()
        self.overlay = {}
        self.cleared = True

    # -- outcome ------------------------------------------------------------
    def ops(self) -> list[tuple[int, bytes, bytes]]:
        """The batch entries that commit this transaction."""
        entries: list[tuple[bytes, bytes | None]] = []
        if self.cleared:
            entries.extend((k, None) for k in self.storage.keys() if k not in self.overlay)
        entries.extend(self.overlay.items())
        return iter_ops(entries)

    def commit(self) -> None:
        if self.poisoned:
            raise TdbError(ERR_IO)
        ops = self.ops()
        if ops:
            self.storage.commit_transaction(ops)


# -- the multi-shard commit protocol ------------------------------------------------
def _journal_chunks(requests: dict[str, bytes]) -> dict[str, bytes]:
    """Omap entries of a journal: the parts' apply requests, cut into chunks."""
    entries: dict[str, bytes] = {}
    for obj, req in requests.items():
        for i, start in enumerate(range(0, max(len(req), 1), CHUNK)):
            entries[f"part.{obj}.{i:06d}"] = req[start: start + CHUNK]
    return entries


def _write_omap(io: rados.Ioctx, obj: str, entries: dict[str, bytes]) -> None:
    with rados.WriteOpCtx() as op:
        io.set_omap(op, tuple(entries), tuple(entries.values()))
        io.operate_write_op(op, obj)


def commit(storage: RadosStorage, ops: list[tuple[int, bytes, bytes]]) -> None:
    """Commit batch entries atomically across shards (protocol above)."""
    by_shard = storage.group(ops)
    if len(by_shard) <= 1:
        storage.apply_parts(storage.apply_requests(by_shard, 0))  # one atomic call
        return
    txid = random.getrandbits(63) or 1
    requests = storage.apply_requests(by_shard, txid)
    io = storage.io()
    journal = layout.journal_object(storage.name)
    crash_point("before-journal")
    chunks = list(_journal_chunks(requests).items())
    batch: dict[str, bytes] = {}
    size = 0
    for i, (k, v) in enumerate(chunks):
        batch[k] = v
        size += len(v)
        if size >= WRITE_OP_BYTES and i < len(chunks) - 1:
            _write_omap(io, journal, batch)
            crash_point("journal-partial")
            batch, size = {}, 0
    batch["txid"] = str(txid).encode()
    batch["state"] = b"commit"  # the commit point: written with the last chunk
    _write_omap(io, journal, batch)
    crash_point("journal-written")
    _finish(storage, txid, requests, journal)


def _finish(storage: RadosStorage, txid: int, requests: dict[str, bytes], journal: str) -> None:
    """Steps 2-4: apply every part, settle every shard, remove the journal."""
    io = storage.io()
    if os.environ.get("RADOSTDB_TXN_CRASH_AT") == "apply-partial":
        first = next(iter(requests))
        storage.apply_parts({first: requests[first]})
        crash_point("apply-partial")
    storage.apply_parts(requests)
    crash_point("applied")
    objs = list(requests)
    settle = clsops.settle_request(txid)
    if os.environ.get("RADOSTDB_TXN_CRASH_AT") == "settle-partial":
        clsops.call(io, objs[0], "settle", settle)
        crash_point("settle-partial")
    batch = clsops.Batch(io)
    for obj in objs:
        batch.start(obj, "settle", settle)
    batch.wait()
    crash_point("settled")
    try:
        io.remove_object(journal)
    except rados.ObjectNotFound:
        pass
    crash_point("journal-removed")
    for obj in objs:
        locking.wake(io, obj)


def read_journal(storage: RadosStorage) -> tuple[dict[str, bytes], dict[str, bytes]] | None:
    """(meta, parts) of the database's journal, or None when there is none."""
    io = storage.io()
    journal = layout.journal_object(storage.name)
    entries: dict[str, bytes] = {}
    start = ""
    while True:
        with rados.ReadOpCtx() as op:
            it, _ = io.get_omap_vals(op, start, "", 64)
            try:
                io.operate_read_op(op, journal)
            except rados.ObjectNotFound:
                return None
            page = [(k, bytes(v)) for k, v in it]
        entries.update(page)
        if len(page) < 64:
            break
        start = page[-1][0]
    meta = {k: v for k, v in entries.items() if not k.startswith("part.")}
    parts: dict[str, list[bytes]] = {}
    for k in sorted(k for k in entries if k.startswith("part.")):
        obj = k[len("part."): k.rindex(".")]
        parts.setdefault(obj, []).append(entries[k])
    return meta, {obj: b"".join(chunks) for obj, chunks in parts.items()}


def recover(storage: RadosStorage) -> str | None:
    """Finish or undo a commit left by a dead committer (the caller holds the
    transaction lock). Returns "rolled forward", "rolled back" or None."""
    found = read_journal(storage)
    if found is None:
        return None
    meta, parts = found
    journal = layout.journal_object(storage.name)
    if meta.get("state") != b"commit":
        try:
            storage.io().remove_object(journal)
        except rados.ObjectNotFound:
            pass
        return "rolled back"
    _finish(storage, int(meta["txid"]), parts, journal)
    return "rolled forward"

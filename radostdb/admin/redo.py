"""The redo log a shard keeps while a multi-shard transaction is pending on
it, read from outside the class: what a repair reports as the records at
risk, and installs by hand when the transaction committed but the shard's
metadata no longer decodes (the class then refuses its own ``settle``).

Stored by the class (cls/radostdb/txn.cc, write_redo) as the object's
data; its wire struct is ops.h's RedoLog, decoded by
clsops.decode_redo_log: the transaction's id, the shard's previous
``applied``, and per omap key (in order) the new record or its removal.
The object has data exactly while a transaction is pending on it (settle
installs the log into the omap and truncates it, rollback truncates it).

Version 1 (compat 1) is radostdb 0.2's undo log, the same struct holding
the OLD records (``present`` 0: the key did not exist), the new ones being
already in the omap. The class refuses it; it decodes here with ``undo``
set, so that a repair can finish a transaction pending across an upgrade:
committed, the omap already holds its writes; aborted, the log is
installed by hand, which puts the old records back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import rados

from .. import clsops, codec

VERSION = clsops.REDO_VERSION
UNDO_VERSION = clsops.UNDO_VERSION  # radostdb 0.2's undo log


class RedoError(clsops.WireError):
    """A redo log that does not decode."""


@dataclass
class RedoLog:
    """A decoded redo log; ``version`` is the object's version when it was read."""

    txid: int
    prev_applied: int
    # omap key, new record (old record in an undo log); None: no record
    entries: list[tuple[str, bytes | None]] = field(default_factory=list)
    version: int = 0
    undo: bool = False  # radostdb 0.2's undo log: the omap holds the new records

    @property
    def keys(self) -> list[bytes]:
        """The raw keys the transaction writes (omap keys that do not decode are left out)."""
        out = []
        for ek, _ in self.entries:
            try:
                out.append(codec.decode_key(ek))
            except codec.CodecError:
                continue
        return sorted(out)


def decode(raw: bytes) -> RedoLog:
    """Decode a redo log (or radostdb 0.2's undo log); RedoError if it does not."""
    try:
        wire = clsops.decode_redo_log(raw)
    except clsops.WireError as exc:
        raise RedoError(str(exc)) from None
    entries = [(key, record if present else None) for key, present, record in wire.entries]
    return RedoLog(wire.txid, wire.prev_applied, entries, undo=wire.undo)


def read(io: Any, obj: str) -> RedoLog | None:
    """The redo log of ``obj``; None when it has none (no data, or no object).
    RedoError when it does not decode."""
    try:
        size, _ = io.stat(obj)
        if not size:
            return None
        raw = io.read(obj, size)
        version = io.get_last_version()
    except rados.ObjectNotFound:
        return None
    log = decode(bytes(raw))
    log.version = version
    return log


def pending_log(io: Any, obj: str, txid: int) -> tuple[RedoLog | None, str | None]:
    """The redo log of transaction ``txid``, pending on ``obj`` (whose
    metadata decodes and says so), and why the class could not settle or
    roll it back, if it could not: (log, None), (None, problem), or for an
    undo log of radostdb 0.2 (log, problem)."""
    try:
        log = read(io, obj)
    except RedoError as exc:
        return None, f"its redo log does not decode ({exc})"
    if log is None:
        return None, "its redo log is missing (the object has no data)"
    if log.txid != txid:
        return None, f"the redo log there is of transaction {log.txid:x}"
    if log.undo:
        return log, "it holds radostdb 0.2's undo log, which this version's class refuses"
    return log, None


def install(io: Any, obj: str, log: RedoLog) -> None:
    """Write the records of ``log`` into ``obj``'s omap and remove the keys
    it removes (for an undo log: put the old records back) in one op,
    refused (rados.Error with ERANGE or EOVERFLOW) if the object changed
    since the log was read. The log itself stays (the class's ``reset``
    drops it)."""
    puts = [(k, new) for k, new in log.entries if new is not None]
    gone = [k for k, new in log.entries if new is None]
    with rados.WriteOpCtx() as op:
        op.assert_version(log.version)
        if gone:
            io.remove_omap_keys(op, tuple(gone))
        if puts:
            io.set_omap(op, tuple(k for k, _ in puts), tuple(v for _, v in puts))
        io.operate_write_op(op, obj)

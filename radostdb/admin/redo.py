"""The redo log a shard keeps while a multi-shard transaction is pending on
it, read from outside the class: what a repair reports as the records at
risk, and installs by hand when the transaction committed but the shard's
metadata no longer decodes (the class then refuses its own ``settle``).

Stored by the class (cls/radostdb/server.cc, write_redo; ops.h) as the
object's data, a framed struct (u8 version 2, u8 compat 2, u32 length) of:
u64 txid, u64 the shard's previous ``applied``, u32 n, then n entries of
(bytes omap key, u8 present, bytes new record), in omap key order.
``present`` 0: the transaction removes the key. The object has data exactly
while a transaction is pending on it (settle installs the log into the
omap and truncates it, rollback truncates it).

Version 1 (compat 1) is radostdb 0.2's undo log, the same struct holding
the OLD records (``present`` 0: the key did not exist), the new ones being
already in the omap. The class refuses it; it decodes here with ``undo``
set, so that a repair can finish a transaction pending across an upgrade:
committed, the omap already holds its writes; aborted, the log is
installed by hand, which puts the old records back.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import rados

from .. import clsops, codec

_HEAD = struct.Struct("<BBI")
_U32 = struct.Struct("<I")
_BODY_HEAD = struct.Struct("<QQI")
VERSION = 2
UNDO_VERSION = 1  # radostdb 0.2's undo log


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
        version, compat, length = _HEAD.unpack_from(raw, 0)
        undo = version == compat == UNDO_VERSION
        if (version < VERSION and not undo) or compat > VERSION or _HEAD.size + length > len(raw):
            raise RedoError(
                f"frame: version {version}, compat {compat}, {length} bytes in {len(raw)}"
            )
        end = _HEAD.size + length
        txid, prev, n = _BODY_HEAD.unpack_from(raw, _HEAD.size)
        pos = _HEAD.size + _BODY_HEAD.size
        log = RedoLog(txid, prev, undo=undo)

        def take() -> bytes:
            nonlocal pos
            (size,) = _U32.unpack_from(raw, pos)
            if pos + 4 + size > end:
                raise RedoError("an entry runs past the end")
            pos += 4 + size
            return raw[pos - size : pos]

        for _ in range(n):
            key = take()
            if pos >= end:
                raise RedoError("an entry runs past the end")
            present = raw[pos]
            pos += 1
            new = take()
            log.entries.append((key.decode("utf-8"), new if present else None))
        return log
    except (struct.error, UnicodeDecodeError) as exc:
        raise RedoError(str(exc)) from None


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

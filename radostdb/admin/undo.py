"""The undo log a shard keeps while a multi-shard transaction is pending on
it, read from outside the class: what a repair reports as the records at
risk, and puts back by hand when the shard's metadata no longer decodes
(the class then refuses its own ``rollback``).

Stored by the class (cls/radostdb/server.cc, write_undo) as the object's
data, a framed struct (u8 version 1, u8 compat 1, u32 length) of: u64
txid, u64 the shard's previous ``applied``, u32 n, then n entries of
(bytes omap key, u8 present, bytes old record). ``present`` 0: the key did
not exist before the transaction. The object has data exactly while a
transaction is pending on it (settle and rollback truncate it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import rados

from .. import codec

_HEAD = struct.Struct("<BBI")
_U32 = struct.Struct("<I")
_BODY_HEAD = struct.Struct("<QQI")
KNOWN_COMPAT = 1


class UndoError(ValueError):
    """An undo log that does not decode."""


@dataclass
class UndoLog:
    """A decoded undo log; ``version`` is the object's version when it was read."""

    txid: int
    prev_applied: int
    entries: list[tuple[str, bytes | None]] = field(default_factory=list)  # omap key, old record
    version: int = 0

    @property
    def keys(self) -> list[bytes]:
        """The raw keys the transaction wrote (omap keys that do not decode are left out)."""
        out = []
        for ek, _ in self.entries:
            try:
                out.append(codec.decode_key(ek))
            except codec.CodecError:
                continue
        return sorted(out)


def decode(raw: bytes) -> UndoLog:
    """Decode an undo log; UndoError if it does not."""
    try:
        _version, compat, length = _HEAD.unpack_from(raw, 0)
        if compat > KNOWN_COMPAT or _HEAD.size + length > len(raw):
            raise UndoError(f"frame: compat {compat}, {length} bytes in {len(raw)}")
        end = _HEAD.size + length
        txid, prev, n = _BODY_HEAD.unpack_from(raw, _HEAD.size)
        pos = _HEAD.size + _BODY_HEAD.size
        log = UndoLog(txid, prev)

        def take() -> bytes:
            nonlocal pos
            (size,) = _U32.unpack_from(raw, pos)
            if pos + 4 + size > end:
                raise UndoError("an entry runs past the end")
            pos += 4 + size
            return raw[pos - size : pos]

        for _ in range(n):
            key = take()
            if pos >= end:
                raise UndoError("an entry runs past the end")
            present = raw[pos]
            pos += 1
            old = take()
            log.entries.append((key.decode("utf-8"), old if present else None))
        return log
    except (struct.error, UnicodeDecodeError) as exc:
        raise UndoError(str(exc)) from None


def read(io: Any, obj: str) -> UndoLog | None:
    """The undo log of ``obj``; None when it has none (no data, or no object).
    UndoError when it does not decode."""
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


def restore(io: Any, obj: str, log: UndoLog) -> None:
    """Put the old records of ``log`` back into ``obj``'s omap in one op,
    refused (rados.Error with ERANGE or EOVERFLOW) if the object changed
    since the log was read. The log itself stays (the class's ``reset``
    drops it)."""
    puts = [(k, old) for k, old in log.entries if old is not None]
    gone = [k for k, old in log.entries if old is None]
    with rados.WriteOpCtx() as op:
        op.assert_version(log.version)
        if puts:
            io.set_omap(op, tuple(k for k, _ in puts), tuple(v for _, v in puts))
        if gone:
            io.remove_omap_keys(op, tuple(gone))
        io.operate_write_op(op, obj)

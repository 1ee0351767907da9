"""Client side of the radostdb object class (cls/radostdb/server.cc).

The only Python that knows the class wire format: it encodes requests,
decodes replies and maps errno results to TDB errors. The formats are
documented once, at the top of server.cc (shard header: types.h); the
constants here mirror ops.h and types.h.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import rados

from .errors import ERR_CORRUPT, ERR_EXISTS, ERR_IO, ERR_LOCK, ERR_NOEXIST, TdbError

CLASS = "radostdb"
WIRE_VERSION = 1
OWNER_LEN = 16

# store flags (TDB's values)
REPLACE, INSERT, MODIFY = 1, 2, 3

# apply ops
OP_PUT, OP_INSERT, OP_MODIFY, OP_APPEND, OP_DELETE, OP_DISCARD = 1, 2, 3, 4, 5, 6

# write flags
WRITE_ASSERT_LOCK = 0x1

# locks
LOCK_RECORD, LOCK_SHARD = 1, 2
LOCK_EXCL, LOCK_SHARED = 1, 2

_V = bytes([WIRE_VERSION])
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_EMPTY_REQ = _V


class Busy(Exception):
    """Another owner holds a conflicting lock (-EBUSY); nothing was changed."""


class Pending(Busy):
    """The shard holds a multi-shard transaction whose commit is not finished
    (-EUCLEAN): wait for it, or recover it if its committer died."""


def _bytes(b: bytes) -> bytes:
    return _U32.pack(len(b)) + b


def _whead(owner: bytes, wflags: int) -> bytes:
    return _V + owner + bytes((wflags,))


# -- requests -----------------------------------------------------------------
def store_request(owner: bytes, wflags: int, key: bytes, data: bytes, flag: int) -> bytes:
    return b"".join((_whead(owner, wflags), bytes((flag,)), _U32.pack(len(key)), key,
                     _U32.pack(len(data)), data))


def append_request(owner: bytes, wflags: int, key: bytes, data: bytes) -> bytes:
    return b"".join((_whead(owner, wflags), _U32.pack(len(key)), key, _U32.pack(len(data)),
                     data))


def delete_request(owner: bytes, wflags: int, key: bytes) -> bytes:
    return b"".join((_whead(owner, wflags), _U32.pack(len(key)), key))


def apply_request(owner: bytes, wflags: int, ops: Iterable[tuple[int, bytes, bytes]],
                  txid: int = 0) -> bytes:
    """A batch: (op, key, data) entries applied in order, atomically; txid
    marks a part of a multi-shard transaction (0: none)."""
    parts = [b""]
    n = 0
    for op, key, data in ops:
        parts.append(bytes((op,)) + _bytes(key) + _bytes(data))
        n += 1
    parts[0] = _whead(owner, wflags) + _U64.pack(txid) + _U32.pack(n)
    return b"".join(parts)


def settle_request(txid: int) -> bytes:
    return _V + _U64.pack(txid)


def get_request(maxlen: int, key: bytes) -> bytes:
    return _V + _U32.pack(maxlen) + _bytes(key)


def list_request(max_records: int, max_bytes: int, start_after: str) -> bytes:
    start = start_after.encode()
    return _V + _U32.pack(max_records) + _U32.pack(max_bytes) + _bytes(start)


def clear_request(owner: bytes, wflags: int) -> bytes:
    return _whead(owner, wflags)


def lock_request(owner: bytes, lease_ms: int, kind: int, mode: int, key: bytes) -> bytes:
    return b"".join((_V, owner, _U32.pack(lease_ms), bytes((kind, mode)), _bytes(key)))


def unlock_request(owner: bytes, kind: int, mode: int, key: bytes) -> bytes:
    return b"".join((_V, owner, bytes((kind, mode)), _bytes(key)))


def renew_request(owner: bytes, lease_ms: int) -> bytes:
    return _V + owner + _U32.pack(lease_ms)


# -- errors -------------------------------------------------------------------
def errno_of(exc: rados.Error) -> int:
    return abs(getattr(exc, "errno", 0) or 0)


def tdb_error(code: int, what: str) -> Exception:
    """Map a failed class call (positive errno) to the error a tdb caller expects."""
    if code == errno.EBUSY:
        return Busy(what)
    if code == errno.EUCLEAN:
        return Pending(what)
    if code == errno.EEXIST:
        return TdbError(ERR_EXISTS)
    if code == errno.ENOENT:
        return TdbError(ERR_NOEXIST)
    if code == errno.EIO:
        return TdbError(ERR_CORRUPT)
    if code == errno.ENOLCK:
        return TdbError(ERR_LOCK)
    if code == errno.EOPNOTSUPP:
        return TdbError(ERR_IO, f"{what}: the OSD's radostdb class is too old for this client")
    if code in (errno.EPERM, errno.EACCES):
        return PermissionError(code, f"{what}: permission denied by the cluster")
    return TdbError(ERR_IO, f"{what}: {os.strerror(code)}")


def call(ioctx: Any, obj: str, method: str, request: bytes, length: int = 0) -> bytes:
    """Run a class method synchronously; raise the mapped error on failure
    (:class:`Busy` for a conflicting lock)."""
    try:
        _, out = ioctx.execute(obj, CLASS, method, request, length)
    except rados.Error as exc:
        raise tdb_error(errno_of(exc), f"{method} on {obj}") from None
    return bytes(out)


GET_FOUND, GET_MISSING, GET_TOO_BIG = 0, 1, 2
GET_BUFFER = 1 << 16


def get(ioctx: Any, obj: str, key: bytes) -> bytes | None:
    """The stored record of key on obj (codec format), or None.

    Raises Pending while a transaction's commit is unfinished on the shard."""
    size = GET_BUFFER
    while True:
        try:
            out = call(ioctx, obj, "get", get_request(size, key), size)
        except TdbError as exc:
            if exc.code == ERR_NOEXIST:  # no shard object: never written
                return None
            raise
        status = out[0]
        if status == GET_FOUND:
            return out[1:]
        if status == GET_MISSING:
            return None
        (size,) = _U32.unpack_from(out, 1)


def list_page(ioctx: Any, obj: str, start_after: str, max_records: int,
              max_bytes: int) -> tuple[bool, bytes]:
    """(more, page) of records after an encoded key; a missing shard is empty.

    A page holds at least one record, so one record larger than max_bytes
    overflows the reply buffer (-ERANGE): the call is repeated with a buffer
    four times larger."""
    req = list_request(max_records, max_bytes, start_after)
    size = max_bytes + (1 << 16)
    while True:
        try:
            _, out = ioctx.execute(obj, CLASS, "list", req, size)
        except rados.ObjectNotFound:
            return False, b""
        except rados.Error as exc:
            if errno_of(exc) == errno.ERANGE and size < (1 << 32):
                size *= 4
                continue
            raise tdb_error(errno_of(exc), f"list on {obj}") from None
        out = bytes(out)
        return bool(out[0]), out[1:]


def bump(ioctx: Any, obj: str) -> None:
    call(ioctx, obj, "bump", _EMPTY_REQ)


def prune(ioctx: Any, obj: str) -> None:
    call(ioctx, obj, "prune", _EMPTY_REQ)


class Batch:
    """Class calls on many objects at once (aio), collected with :meth:`wait`.

    >>> b = Batch(ioctx); b.start(obj1, "apply", req1); b.start(obj2, "apply", req2); b.wait()
    """

    def __init__(self, ioctx: Any) -> None:
        self.ioctx = ioctx
        self.pending: list[tuple[str, str, Any, bool]] = []
        self.outputs: dict[str, bytes] = {}

    def start(self, obj: str, method: str, req: bytes, length: int = 0,
              missing_ok: bool = False) -> None:
        def done(_completion: Any, data: Any) -> None:
            self.outputs[obj] = bytes(data) if data is not None else b""

        c = self.ioctx.aio_execute(obj, CLASS, method, req, length, oncomplete=done)
        self.pending.append((obj, method, c, missing_ok))

    def seq(self, obj: str) -> None:
        self.start(obj, "seq", _EMPTY_REQ, 8, missing_ok=True)

    def wait_each(self) -> dict[str, Exception | None]:
        """Wait for every call; the mapped error (or None) per object."""
        results: dict[str, Exception | None] = {}
        for obj, method, c, missing_ok in self.pending:
            c.wait_for_complete_and_cb()
            ret = c.get_return_value()
            ok = ret >= 0 or (missing_ok and ret == -errno.ENOENT)
            results[obj] = None if ok else tdb_error(-ret, f"{method} on {obj}")
        self.pending.clear()
        return results

    def wait(self) -> dict[str, bytes]:
        """Wait for every call; raise the first failure's mapped error."""
        errors = [e for e in self.wait_each().values() if e is not None]
        if errors:
            raise errors[0]
        return self.outputs


def seq_value(out: bytes | None) -> int:
    """Decode a ``seq`` reply (None or empty: a missing object, seq 0)."""
    return int(_U64.unpack(out)[0]) if out else 0


def watchers(ioctx: Any, obj: str) -> list[tuple[int, int]]:
    """(client id, cookie) of every watch on ``obj``."""
    out = call(ioctx, obj, "watchers", _EMPTY_REQ, 1 << 16)
    (n,) = _U32.unpack_from(out, 0)
    return [struct.unpack_from("<QQ", out, 4 + 16 * i) for i in range(n)]


# -- the lock table of a shard ------------------------------------------------
@dataclass
class LockEntry:
    """One lock in a shard header: kind, mode, key and its holders."""

    kind: int
    mode: int
    key: bytes
    holders: list[tuple[bytes, int]]  # (owner, expiry in ms on the OSD clock)


def decode_shard_header(raw: bytes) -> tuple[int, list[LockEntry]]:
    """(seq, locks) from a shard omap header as stored (empty: (0, []))."""
    if not raw:
        return 0, []
    try:
        version, compat = raw[0], raw[1]
        (seq,) = _U64.unpack_from(raw, 4)
        if version < 2:
            return seq, []
        pos = 28  # after seq: u64 applied, u64 pending
        (n,) = _U32.unpack_from(raw, pos)
        pos += 4
        locks = []
        for _ in range(n):
            kind, mode = raw[pos], raw[pos + 1]
            (klen,) = _U32.unpack_from(raw, pos + 2)
            key = raw[pos + 6: pos + 6 + klen]
            pos += 6 + klen
            (nh,) = _U32.unpack_from(raw, pos)
            pos += 4
            holders = []
            for _ in range(nh):
                owner = raw[pos: pos + OWNER_LEN]
                (expiry,) = _U64.unpack_from(raw, pos + OWNER_LEN)
                holders.append((owner, expiry))
                pos += OWNER_LEN + 8
            locks.append(LockEntry(kind, mode, key, holders))
        if pos != len(raw) or compat > 2:
            raise ValueError("trailing bytes or unknown compat")
        return seq, locks
    except (IndexError, struct.error, ValueError) as exc:
        raise TdbError(
            ERR_CORRUPT, f"Corrupt database: shard header does not decode ({exc})"
        ) from None


def decode_txn_fields(raw: bytes) -> tuple[int, int]:
    """(applied, pending) transaction ids of a stored shard header."""
    if len(raw) < 28 or raw[0] < 2:
        return 0, 0
    return _U64.unpack_from(raw, 12)[0], _U64.unpack_from(raw, 20)[0]


def read_locks(ioctx: Any, obj: str) -> tuple[int, int, list[LockEntry]]:
    """(OSD time in ms, seq, locks) of a shard; a missing shard has none."""
    try:
        _, out = ioctx.execute(obj, CLASS, "locks", _EMPTY_REQ, 1 << 20)
    except rados.ObjectNotFound:
        return 0, 0, []
    except rados.Error as exc:
        raise tdb_error(errno_of(exc), f"locks of {obj}") from None
    out = bytes(out)
    (now,) = _U64.unpack_from(out, 0)
    seq, locks = decode_shard_header(out[8:])
    return now, seq, locks

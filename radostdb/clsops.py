"""Client side of the radostdb object class (cls/radostdb/server.cc).

The only Python that knows the class wire format: it encodes requests,
decodes replies and maps errno results to TDB errors. The formats are
documented once, at the top of server.cc; the constants here mirror ops.h.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterable
from typing import Any

import rados

from .errors import ERR_CORRUPT, ERR_EXISTS, ERR_IO, ERR_NOEXIST, TdbError

CLASS = "radostdb"
WIRE_VERSION = 1

# store flags (TDB's values)
REPLACE, INSERT, MODIFY = 1, 2, 3

# apply ops
OP_PUT, OP_INSERT, OP_MODIFY, OP_APPEND, OP_DELETE, OP_DISCARD = 1, 2, 3, 4, 5, 6

_V = bytes([WIRE_VERSION])
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_EMPTY_REQ = _V


def _bytes(b: bytes) -> bytes:
    return _U32.pack(len(b)) + b


# -- requests -----------------------------------------------------------------
def store_request(key: bytes, data: bytes, flag: int) -> bytes:
    return b"".join((_V, bytes([flag]), _U32.pack(len(key)), key, _U32.pack(len(data)), data))


def append_request(key: bytes, data: bytes) -> bytes:
    return b"".join((_V, _U32.pack(len(key)), key, _U32.pack(len(data)), data))


def delete_request(key: bytes) -> bytes:
    return b"".join((_V, _U32.pack(len(key)), key))


def apply_request(ops: Iterable[tuple[int, bytes, bytes]]) -> bytes:
    """A batch: (op, key, data) entries applied in order, atomically."""
    parts = [b""]
    n = 0
    for op, key, data in ops:
        parts.append(bytes([op]) + _bytes(key) + _bytes(data))
        n += 1
    parts[0] = _V + _U32.pack(n)
    return b"".join(parts)


# -- errors -------------------------------------------------------------------
def errno_of(exc: rados.Error) -> int:
    return abs(getattr(exc, "errno", 0) or 0)


def tdb_error(code: int, what: str) -> Exception:
    """Map a failed class call (positive errno) to the error a tdb caller expects."""
    if code == errno.EEXIST:
        return TdbError(ERR_EXISTS)
    if code == errno.ENOENT:
        return TdbError(ERR_NOEXIST)
    if code == errno.EIO:
        return TdbError(ERR_CORRUPT)
    if code == errno.EOPNOTSUPP:
        return TdbError(ERR_IO, f"{what}: the OSD's radostdb class is too old for this client")
    if code in (errno.EPERM, errno.EACCES):
        return PermissionError(code, f"{what}: permission denied by the cluster")
    return TdbError(ERR_IO, f"{what}: {os.strerror(code)}")


def call(ioctx: Any, obj: str, method: str, request: bytes, length: int = 0) -> bytes:
    """Run a class method synchronously; raise the mapped TDB error on failure."""
    try:
        _, out = ioctx.execute(obj, CLASS, method, request, length)
    except rados.Error as exc:
        raise tdb_error(errno_of(exc), f"{method} on {obj}") from None
    return bytes(out)


def store(ioctx: Any, obj: str, key: bytes, data: bytes, flag: int) -> None:
    call(ioctx, obj, "store", store_request(key, data, flag))


def append(ioctx: Any, obj: str, key: bytes, data: bytes) -> None:
    call(ioctx, obj, "append", append_request(key, data))


def delete(ioctx: Any, obj: str, key: bytes) -> None:
    call(ioctx, obj, "delete", delete_request(key))


def apply(ioctx: Any, obj: str, ops: Iterable[tuple[int, bytes, bytes]]) -> None:
    """Apply a batch of (op, key, data) entries to one shard, atomically."""
    call(ioctx, obj, "apply", apply_request(ops))


def bump(ioctx: Any, obj: str) -> None:
    call(ioctx, obj, "bump", _EMPTY_REQ)


class Batch:
    """Class calls on many objects at once (aio), collected with :meth:`wait`.

    >>> b = Batch(ioctx); b.apply(obj1, ops1); b.apply(obj2, ops2); b.wait()
    """

    def __init__(self, ioctx: Any) -> None:
        self.ioctx = ioctx
        self.pending: list[tuple[str, str, Any, bool]] = []
        self.outputs: dict[str, bytes] = {}

    def _start(self, obj: str, method: str, req: bytes, length: int, missing_ok: bool) -> None:
        def done(_completion: Any, data: Any) -> None:
            self.outputs[obj] = bytes(data) if data is not None else b""

        c = self.ioctx.aio_execute(obj, CLASS, method, req, length, oncomplete=done)
        self.pending.append((obj, method, c, missing_ok))

    def apply(self, obj: str, ops: Iterable[tuple[int, bytes, bytes]]) -> None:
        self._start(obj, "apply", apply_request(ops), 0, False)

    def clear(self, obj: str) -> None:
        self._start(obj, "clear", _EMPTY_REQ, 0, False)

    def seq(self, obj: str) -> None:
        self._start(obj, "seq", _EMPTY_REQ, 8, True)

    def wait(self) -> dict[str, bytes]:
        """Wait for every call; raise the first failure's mapped error."""
        first: Exception | None = None
        for obj, method, c, missing_ok in self.pending:
            c.wait_for_complete_and_cb()
            ret = c.get_return_value()
            if ret < 0 and not (missing_ok and ret == -errno.ENOENT) and first is None:
                first = tdb_error(-ret, f"{method} on {obj}")
        self.pending.clear()
        if first is not None:
            raise first
        return self.outputs


def seq_value(out: bytes | None) -> int:
    """Decode a ``seq`` reply (None or empty: a missing object, seq 0)."""
    return int(_U64.unpack(out)[0]) if out else 0


def watchers(ioctx: Any, obj: str) -> list[tuple[int, int]]:
    """(client id, cookie) of every watch on ``obj``."""
    out = call(ioctx, obj, "watchers", _EMPTY_REQ, 1 << 16)
    (n,) = _U32.unpack_from(out, 0)
    return [struct.unpack_from("<QQ", out, 4 + 16 * i) for i in range(n)]

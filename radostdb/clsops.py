"""Client side of the radostdb object class (cls/radostdb/, server.h says where).

The only Python that knows the class wire format and passes class method
names to librados. Per class method it offers a request encoder, a sync call
and an asynchronous one (:class:`Call`, started with ``aio_<method>``), and
for write methods that other writes may guard (``apply``) a form that adds
the call to a compound write op (``compose_apply``), as Ceph's cls client
helpers do. Replies are decoded here too; errno results become TDB errors
(:func:`error_of`).

Wire conventions (ops.h has the same): little-endian; ``bytes`` = u32 length
+ bytes; every request and reply is a framed struct (u8 version, u8 compat,
u32 length, body), read by :func:`_open`, which refuses a compat it does not
know and ignores body bytes it does not know. The domain's enums (batch
operations, lock kinds and modes, journal states) are kinds.py's; the
reply codes below equal cls/radostdb/types.h (checked by
tests/unit/test_wire.py against the C++ headers).
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import rados

from . import cluster as clustermod
from .errors import ERR_CORRUPT, ERR_EXISTS, ERR_IO, ERR_LOCK, ERR_NOEXIST, RadostdbError, TdbError

CLASS = "radostdb"
WIRE_VERSION = 2
OWNER_LEN = 16
NO_OWNER = bytes(OWNER_LEN)


class EntryState(IntEnum):
    HELD = 1
    QUEUED = 2


class ReadStatus(IntEnum):
    FOUND = 0
    MISSING = 1
    TOO_BIG = 2
    PENDING = 3


# apply / clear flags
WRITE_ASSERT_LOCK = 0x1
WRITE_ASSERT_TXN = 0x2
WRITE_RELEASE = 0x4
WRITE_REPORT = 0x8
# bits of a reported apply's return value (apply_report)
APPLIED_CREATED = 0x1
APPLIED_GRANTED = 0x2  # a RELEASE write granted a waiter (with RETURNVEC)
APPLIED_WATCHED = 0x4  # a key written (a clear: any) was watched: notify (watch.py)
APPLIED_GRANTED_SEVERAL = 0x40  # ... and more than one waiter
GRANTS_MAX = 0xFF  # unlock's and release's count of waiters granted, capped
# lock's, unlock's, release's and a releasing apply's return value carry a
# ticket above their bits: the lock entry's own (lock), or the first waiter
# granted (types.h); 0: none (a class older than header version 5)
TICKET_SHIFT = 8
TICKET_MAX = 0x7FFFFF
STATUS_BITS = (1 << TICKET_SHIFT) - 1
# list flags
LIST_KEYS_ONLY = 0x1  # keys alone in the page, no record read or sent
LIST_STRICT = 0x2  # not even the first record past max bytes (an aio list: no overflow)
# lock flags
LOCK_QUEUE = 0x1
# a lock's return value (lock_status)
LOCKED_GRANTED = 1
LOCKED_QUEUED = 2
WATCH_ARMED = 4  # a WATCH request found its entry still there (no write since)
LOCKED_ASK = 0x40  # queued behind an entry that may be kept cached: announce the wait
# layout bits of a SHARD lock's or a clear's return value (the client sent
# the shard's modulus): the shard is splitting; its modulus is another
LAYOUT_SPLITTING = 0x10
LAYOUT_MOVED = 0x20
NO_SHARD = 0xFFFFFFFF  # a header's index or split_to: none
# release flags
RELEASE_KEEP_WAITS = 0x1
# prune flags
PRUNE_CLEAR_STALE = 0x1

SHARD_HDR_VERSION = 5
REDO_VERSION = 2  # the redo log (ops.h RedoLog, RTDB_REDO_VERSION)
UNDO_VERSION = 1  # radostdb 0.2's undo log: the redo log's layout, version 1, compat 1
GET_BUFFER = 1 << 16

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HEAD = struct.Struct("<BBI")
_ENTRY_HEAD = struct.Struct("<BI")  # an apply entry's op and key length


# -- errors ---------------------------------------------------------------------
class Busy(RadostdbError):
    """Another owner holds (or waits for) a conflicting lock (-EBUSY); nothing
    was changed."""


class Unclean(RadostdbError):
    """The object needs a client's decision first (-EUCLEAN): a transaction
    pending on it that the caller does not know committed, or stale owners."""


class Canceled(RadostdbError):
    """A fenced transaction or owner (-ECANCELED)."""


class Stale(RadostdbError):
    """The shard does not hold the key (-ESTALE): the client's layout is out
    of date (a split moved it)."""


def errno_of(exc: BaseException) -> int:
    return abs(getattr(exc, "errno", 0) or 0)


def error_of(code: int, what: str, io: Any = None) -> Exception:
    """The exception for a failed class call (positive errno) on I/O context
    ``io``; ``.errno`` of the result is the errno. A timeout is noted in the
    session of ``io`` (cluster.py: closing then skips the network)."""
    exc: Exception
    if code == errno.EBUSY:
        exc = Busy(what)
    elif code == errno.EUCLEAN:
        exc = Unclean(what)
    elif code == errno.ECANCELED:
        exc = Canceled(what)
    elif code == errno.ESTALE:
        exc = Stale(what)
    elif code == errno.EEXIST:
        exc = TdbError(ERR_EXISTS)
    elif code == errno.ENOENT:
        exc = TdbError(ERR_NOEXIST)
    elif code == errno.EIO:
        exc = TdbError(ERR_CORRUPT, f"Corrupt database: {what}: stored data does not decode")
    elif code == errno.ENOLCK:
        exc = TdbError(ERR_LOCK)
    elif code == errno.EOPNOTSUPP:
        exc = TdbError(ERR_IO, f"{what}: the OSD's radostdb class is too old for this client")
    elif code in (errno.EPERM, errno.EACCES):
        exc = PermissionError(code, f"{what}: permission denied by the cluster")
    elif code == errno.ETIMEDOUT:
        session = clustermod.session_of(io)
        exc = (
            session.timed_out(what)
            if session is not None
            else TdbError(ERR_IO, f"{what}: timed out ({clustermod.OP_TIMEOUT_ENV})")
        )
    else:
        exc = TdbError(ERR_IO, f"{what}: {os.strerror(code)}")
    exc.errno = code  # type: ignore[attr-defined]
    return exc


class WireError(RadostdbError, ValueError):
    """A reply or stored struct that does not decode."""


def _decoded(decode: Callable[[bytes], Any], out: bytes, method: str, obj: str) -> Any:
    """``decode(out)``; a reply that does not decode (stored data the class
    passes through: a journal record, an object header) is TDB's corrupt
    error naming the object, with errno EIO, as the OSD's -EIO is."""
    try:
        return decode(out)
    except WireError as exc:
        err = TdbError(ERR_CORRUPT, f"Corrupt database: {method} on {obj}: {exc}")
        err.errno = errno.EIO  # type: ignore[attr-defined]
        raise err from None


# -- encoding ---------------------------------------------------------------------
def _frame(version: int, body: bytes, compat: int | None = None) -> bytes:
    return _HEAD.pack(version, version if compat is None else compat, len(body)) + body


def _b(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def _u32s(values: Sequence[int]) -> bytes:
    return _U32.pack(len(values)) + struct.pack(f"<{len(values)}I", *values)


def _u64s(values: Sequence[int]) -> bytes:
    return _U32.pack(len(values)) + struct.pack(f"<{len(values)}Q", *values)


def _owners(values: Sequence[bytes]) -> bytes:
    return _U32.pack(len(values)) + b"".join(values)


EMPTY_REQUEST = _frame(1, b"")


def apply_request(
    owner: bytes,
    wflags: int,
    entries: Iterable[tuple[int, bytes, bytes]],
    txid: int = 0,
    settle: int = 0,
    participants: Sequence[int] = (),
    epoch: int = 0,
    lease_ms: int = 0,
) -> bytes:
    """A batch of (op, key, data) entries applied in order, atomically; txid
    marks a part of multi-shard transaction ``txid`` on ``participants``.
    ``epoch`` (with ASSERT_TXN): the writing transaction's, and ``lease_ms``
    the lease of the isolation the write takes if the writer has none."""
    if epoch and lease_ms <= 0:
        raise ValueError("an epoch needs the lease of the isolation it may take")
    pack = _ENTRY_HEAD.pack
    parts = [b""]
    n = 0
    for op, key, data in entries:
        parts += (pack(op, len(key)), key, _U32.pack(len(data)), data)
        n += 1
    parts[0] = b"".join(
        (
            owner,
            bytes((wflags,)),
            _U64.pack(txid),
            _U64.pack(settle),
            _u32s(participants),
            _U32.pack(n),
        )
    )
    if epoch:
        parts.append(_U64.pack(epoch) + _U32.pack(lease_ms))
    body = b"".join(parts)
    return _HEAD.pack(1, 1, len(body)) + body


def clear_request(owner: bytes, wflags: int, settle: int = 0, modulus: int = 0) -> bytes:
    """``modulus``: the one the client's layout gives the shard (0: not sent;
    the reply's layout bits need it)."""
    tail = _U64.pack(modulus) if modulus else b""
    return _frame(1, owner + bytes((wflags,)) + _U64.pack(settle) + tail)


def txid_request(txid: int) -> bytes:
    return _frame(1, _U64.pack(txid))


def get_request(key: bytes, maxlen: int = GET_BUFFER, accept: int = 0) -> bytes:
    return _frame(1, _U32.pack(maxlen) + _U64.pack(accept) + _b(key))


def list_request(
    max_records: int,
    max_bytes: int,
    start_after: str,
    accept: int = 0,
    until: str = "",
    flags: int = 0,
) -> bytes:
    """``until``: no record after this encoded key (empty: no bound);
    ``flags``: LIST_KEYS_ONLY, LIST_STRICT."""
    return _frame(
        1,
        _U32.pack(max_records)
        + _U32.pack(max_bytes)
        + _U64.pack(accept)
        + _b(start_after.encode())
        + (_b(until.encode()) if until or flags else b"")
        + (bytes((flags,)) if flags else b""),
    )


def key_page(page: bytes) -> list[tuple[bytes, bytes]]:
    """The raw keys of a LIST_KEYS_ONLY page, as ``(key, b"")`` pairs (no
    record came, so none is verified); WireError if it does not parse."""
    out = []
    off, end = 0, len(page)
    unpack = _U32.unpack_from
    try:
        while off < end:
            (n,) = unpack(page, off)
            off += 4
            if off + n > end:
                raise WireError("a key runs past the end of the page")
            out.append((page[off : off + n], b""))
            off += n
    except struct.error:
        raise WireError("a truncated key length") from None
    return out


def lock_request(
    owner: bytes,
    lease_ms: int,
    kind: int,
    mode: int,
    key: bytes = b"",
    flags: int = 0,
    epoch: int = 0,
    modulus: int = 0,
    inbox: int = 0,
) -> bytes:
    """``epoch``: an ISOLATION request's transaction; ``modulus``: a SHARD
    request's, as the client's layout gives it; ``inbox``: where the waiter
    hears its grant (wakeup.py; 0: not sent)."""
    tail = _U64.pack(epoch) + _U64.pack(modulus) if epoch or modulus or inbox else b""
    tail += _U64.pack(inbox) if inbox else b""
    return _frame(1, owner + _U32.pack(lease_ms) + bytes((kind, mode, flags)) + _b(key) + tail)


def unlock_request(owner: bytes, kind: int, mode: int, key: bytes = b"") -> bytes:
    return _frame(1, owner + bytes((kind, mode)) + _b(key))


def release_request(owner: bytes, settle: int = 0, flags: int = 0, kind: int = 0) -> bytes:
    return _frame(1, owner + _U64.pack(settle) + bytes((flags, kind)))


def renew_request(owner: bytes) -> bytes:
    return _frame(1, owner)


def prune_request(flags: int = 0, owners: Sequence[bytes] = ()) -> bytes:
    return _frame(1, bytes((flags,)) + _owners(owners))


def stage_request(
    txid: int,
    owner: bytes,
    participants: Sequence[int],
    complete: Sequence[int] = (),
    forget: Sequence[int] = (),
) -> bytes:
    return _frame(
        1, _U64.pack(txid) + owner + _u32s(participants) + _u64s(complete) + _u64s(forget)
    )


def txn_abort_request(txid: int, owner: bytes, participants: Sequence[int]) -> bytes:
    return _frame(1, _U64.pack(txid) + owner + _u32s(participants))


def txn_mark_request(complete: Sequence[int] = (), forget: Sequence[int] = ()) -> bytes:
    return _frame(1, _u64s(complete) + _u64s(forget))


def owners_request(owners: Sequence[bytes]) -> bytes:
    return _frame(1, _owners(owners))


def journal_request(txid: int = 0) -> bytes:
    return _frame(1, _U64.pack(txid))


def split_begin_request(
    owner: bytes, wflags: int, index: int, modulus: int, child: int, child_modulus: int
) -> bytes:
    return _frame(
        1,
        owner
        + bytes((wflags,))
        + _U32.pack(index)
        + _U64.pack(modulus)
        + _U32.pack(child)
        + _U64.pack(child_modulus),
    )


def split_page_request(after: str, max_records: int) -> bytes:
    return _frame(1, _b(after.encode()) + _U32.pack(max_records))


def split_absorb_request(
    owner: bytes,
    takeover: bool,
    index: int,
    modulus: int,
    after: str,
    upto: str,
    end: bool,
    records: Sequence[tuple[str, bytes]],
) -> bytes:
    parts = [
        owner,
        bytes((int(takeover),)),
        _U32.pack(index),
        _U64.pack(modulus),
        _b(after.encode()),
        _b(upto.encode()),
        bytes((int(end),)),
        _U32.pack(len(records)),
    ]
    for okey, record in records:
        parts += (_b(okey.encode()), _b(record))
    return _frame(1, b"".join(parts))


def split_advance_request(
    owner: bytes,
    wflags: int,
    after: str,
    upto: str,
    end: bool,
    heads: Sequence[tuple[str, bytes]],
) -> bytes:
    parts = [
        owner,
        bytes((wflags,)),
        _b(after.encode()),
        _b(upto.encode()),
        bytes((int(end),)),
        _U32.pack(len(heads)),
    ]
    for okey, head in heads:
        parts += (_b(okey.encode()), _b(head))
    return _frame(1, b"".join(parts))


def count_request(limit: int) -> bytes:
    return _frame(1, _U32.pack(limit))


def epoch_request(epoch: int) -> bytes:
    return _frame(1, _U64.pack(epoch))


# -- decoding ---------------------------------------------------------------------
class _Reader:
    """Bounds-checked little-endian reader (raises WireError)."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None) -> None:
        self.buf, self.pos = buf, pos
        self.end = len(buf) if end is None else end

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise WireError("short struct")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.take(8))[0])

    def bytes(self) -> bytes:
        return self.take(self.u32())

    def owner(self) -> bytes:
        return self.take(OWNER_LEN)

    def count(self, item: int) -> int:
        n = self.u32()
        if n * item > self.end - self.pos:
            raise WireError("count larger than the struct")
        return n

    def u32s(self) -> list[int]:
        n = self.count(4)
        return list(struct.unpack(f"<{n}I", self.take(4 * n)))

    def owners(self) -> list[bytes]:
        return [self.owner() for _ in range(self.count(OWNER_LEN))]

    def open(self, known: int) -> _Reader:
        """The body of the framed struct at the current position."""
        _version, compat, length = _HEAD.unpack(self.take(6))
        if compat > known:
            raise WireError(f"struct compat {compat} is newer than {known}")
        body = _Reader(self.buf, self.pos, self.pos + length)
        self.take(length)
        return body


def _open(buf: bytes, known: int = 1) -> _Reader:
    return _Reader(buf).open(known)


@dataclass
class PendingInfo:
    """A transaction pending on a shard: its id, committer and participants."""

    txid: int
    owner: bytes
    participants: list[int]


def _pending(rd: _Reader) -> PendingInfo:
    return PendingInfo(rd.u64(), rd.owner(), rd.u32s())


@dataclass
class LockEntry:
    """One entry of an object's lock table: a holder or a queued waiter."""

    kind: int
    mode: int
    state: int
    owner: bytes
    lease_ms: int
    expiry_ms: int
    key: bytes
    flags: int = 0
    ticket: int = 0  # version 5: given by lock (types.h); 0: none
    inbox: int = 0  # version 5: the request's inbox (wakeup.py); 0: none

    @property
    def held(self) -> bool:
        return self.state == EntryState.HELD


@dataclass
class ShardHeader:
    """The object header the class keeps (types.h), decoded."""

    seq: int = 0
    applied: int = 0
    pending: int = 0
    settled: int = 0
    aborted: int = 0
    powner: bytes = NO_OWNER
    participants: list[int] = field(default_factory=list)
    stale: list[bytes] = field(default_factory=list)
    entries: list[LockEntry] = field(default_factory=list)
    version: int = SHARD_HDR_VERSION
    # version 4 (types.h): the transaction epoch, and the shard's layout
    epoch: int = 0
    modulus: int = 0
    index: int = NO_SHARD
    split_to: int = NO_SHARD
    split_modulus: int = 0
    moved_upto: str = ""
    split_owner: bytes = b""
    ticket_seq: int = 0  # version 5: the last ticket given out

    @property
    def splitting(self) -> bool:
        return self.split_to != NO_SHARD

    def has(self, txid: int) -> bool:
        """Has transaction txid reached this shard (applied, pending, settled)?"""
        return bool(txid) and txid in (self.pending, self.applied, self.settled)

    def pending_info(self) -> PendingInfo | None:
        return PendingInfo(self.pending, self.powner, self.participants) if self.pending else None


def _legacy_header(raw: bytes) -> ShardHeader:
    rd = _Reader(raw)
    version, compat = rd.u8(), rd.u8()
    rd.take(2)
    h = ShardHeader(seq=rd.u64(), version=version)
    if compat > 2:
        raise WireError(f"compat {compat}")
    if version < 2:
        return h
    h.applied, h.pending = rd.u64(), rd.u64()
    for _ in range(rd.count(10)):
        kind, mode = rd.u8(), rd.u8()
        key = rd.bytes()
        for _ in range(rd.count(24)):
            owner = rd.owner()
            h.entries.append(LockEntry(kind, mode, EntryState.HELD, owner, 30000, rd.u64(), key))
    if rd.pos != rd.end:
        raise WireError("trailing bytes")
    return h


def decode_header(raw: bytes) -> ShardHeader:
    """Decode a stored object header (empty: all zeros); WireError if it does
    not decode."""
    if not raw:
        return ShardHeader()
    try:
        if raw[0] < 3:
            return _legacy_header(raw)
        top = _Reader(raw)
        rd = top.open(SHARD_HDR_VERSION)
        if top.pos != top.end:
            raise WireError("trailing bytes")
        h = ShardHeader(
            rd.u64(), rd.u64(), rd.u64(), rd.u64(), rd.u64(), rd.owner(), rd.u32s(), rd.owners()
        )
        for _ in range(rd.count(32)):
            kind, mode, state, flags = rd.take(4)
            owner, lease_ms, expiry = rd.owner(), rd.u32(), rd.u64()
            h.entries.append(
                LockEntry(kind, mode, state, owner, lease_ms, expiry, rd.bytes(), flags)
            )
        h.version = raw[0]
        if rd.pos < rd.end:
            h.epoch, h.modulus, h.index, h.split_to = rd.u64(), rd.u64(), rd.u32(), rd.u32()
            h.split_modulus, h.moved_upto = rd.u64(), rd.bytes().decode()
            h.split_owner = rd.bytes()
        if rd.pos < rd.end:  # version 5: tickets
            h.ticket_seq = rd.u32()
            if rd.count(12) != len(h.entries):
                raise WireError("a ticket and an inbox per entry expected")
            for e in h.entries:
                e.ticket, e.inbox = rd.u32(), rd.u64()
        return h
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise WireError(str(exc)) from None


@dataclass
class ObjectState:
    """A ``state`` reply: OSD time (ms), object version, decoded header."""

    now_ms: int
    version: int
    header: ShardHeader
    raw: bytes = b""


def decode_state(out: bytes) -> ObjectState:
    rd = _open(out)
    now, version, raw = rd.u64(), rd.u64(), rd.bytes()
    return ObjectState(now, version, decode_header(raw), raw)


@dataclass
class TxnRecord:
    """A journal record: a multi-shard transaction's outcome so far."""

    txid: int
    state: int
    owner: bytes
    time_ms: int
    participants: list[int]


def _record(raw: bytes) -> TxnRecord:
    rd = _open(raw)
    return TxnRecord(rd.u64(), rd.u8(), rd.owner(), rd.u64(), rd.u32s())


@dataclass
class Journal:
    """A ``journal`` reply: records, fenced owners, and whether the object
    holds a radostdb 0.1 journal (``legacy``)."""

    records: dict[int, TxnRecord] = field(default_factory=dict)
    fenced: list[bytes] = field(default_factory=list)
    legacy: bool = False


def decode_journal(out: bytes) -> Journal:
    rd = _open(out)
    j = Journal()
    for _ in range(rd.count(4)):
        raw = rd.bytes()
        if not raw:
            j.legacy = True
            continue
        rec = _record(raw)
        j.records[rec.txid] = rec
    j.fenced = rd.owners()
    return j


def decode_seq(out: bytes | None) -> int:
    """A ``seq`` reply (None or empty: a missing object, seq 0)."""
    return _open(out).u64() if out else 0


def decode_watchers(out: bytes) -> list[tuple[int, int]]:
    rd = _open(out)
    return [(rd.u64(), rd.u64()) for _ in range(rd.count(16))]


@dataclass
class GetResult:
    """A ``get`` reply: status, the record (FOUND), the size needed
    (TOO_BIG) or the pending transaction (PENDING). ``unversioned``: not
    read from the OSD but known otherwise (a lock's giver sent it with the
    grant): the record's rseq is not known (0)."""

    status: int
    record: bytes = b""
    needed: int = 0
    pending: PendingInfo | None = None
    unversioned: bool = False


def decode_get(out: bytes) -> GetResult:
    rd = _open(out)
    status = rd.u8()
    if status == ReadStatus.FOUND:
        return GetResult(status, record=rd.bytes())
    if status == ReadStatus.TOO_BIG:
        return GetResult(status, needed=rd.u32())
    if status == ReadStatus.PENDING:
        return GetResult(status, pending=_pending(rd))
    return GetResult(status)


@dataclass
class ShardLayout:
    """A shard's place in the layout as its header records it (a list
    reply's trailer; types.h): modulus 0 = not recorded (never split)."""

    modulus: int = 0
    index: int = NO_SHARD
    split_to: int = NO_SHARD
    split_modulus: int = 0
    moved_upto: str = ""

    @property
    def splitting(self) -> bool:
        return self.split_to != NO_SHARD


def _layout(rd: _Reader) -> ShardLayout:
    if rd.pos >= rd.end:  # a class older than resharding
        return ShardLayout()
    return ShardLayout(rd.u64(), rd.u32(), rd.u32(), rd.u64(), rd.bytes().decode())


@dataclass
class ListResult:
    """A ``list`` reply: more pages follow, the page, or PENDING; and the
    shard's layout."""

    more: bool = False
    page: bytes = b""
    pending: PendingInfo | None = None
    layout: ShardLayout = field(default_factory=ShardLayout)


def decode_list(out: bytes) -> ListResult:
    rd = _open(out, 2)
    if rd.u8() == ReadStatus.PENDING:
        pending = _pending(rd)
        return ListResult(pending=pending, layout=_layout(rd))
    more = bool(rd.u8())
    page = rd.bytes()
    return ListResult(more, page, layout=_layout(rd))


@dataclass
class SplitPage:
    """A ``split_page`` reply: the moving records (omap key, record) after
    the page's start up to ``upto``, and whether the shard ends there."""

    upto: str
    end: bool
    records: list[tuple[str, bytes]]


def decode_split_page(out: bytes) -> SplitPage:
    rd = _open(out)
    upto, end = rd.bytes().decode(), bool(rd.u8())
    records = [(rd.bytes().decode(), rd.bytes()) for _ in range(rd.count(8))]
    return SplitPage(upto, end, records)


def decode_count(out: bytes) -> int:
    return _open(out).u32()


@dataclass
class RedoLog:
    """A shard's redo log (ops.h RedoLog), stored as the object's data while
    a multi-shard transaction is pending there: ``entries`` are (omap key,
    present, record) in omap key order; not present: the transaction removes
    the key (record empty). ``undo``: radostdb 0.2's undo log, the same
    layout holding the OLD records (not present: the key did not exist),
    which the class refuses."""

    txid: int
    prev_applied: int
    entries: list[tuple[str, bool, bytes]] = field(default_factory=list)
    undo: bool = False


def decode_redo_log(raw: bytes) -> RedoLog:
    """Decode a stored redo log (or 0.2's undo log, framed version 1 compat
    1); WireError if it does not, or is of any other version below 2."""
    rd = _open(raw, REDO_VERSION)
    version, compat = raw[0], raw[1]
    undo = version == compat == UNDO_VERSION
    if version < REDO_VERSION and not undo:
        raise WireError(f"redo log version {version}, compat {compat}")
    log = RedoLog(rd.u64(), rd.u64(), undo=undo)
    try:
        for _ in range(rd.count(9)):
            key, present, record = rd.bytes().decode(), rd.u8(), rd.bytes()
            log.entries.append((key, bool(present), record))
    except UnicodeDecodeError as exc:
        raise WireError(f"an omap key is not UTF-8 ({exc})") from None
    return log


# -- calls ------------------------------------------------------------------------
def _execute(io: Any, obj: str, method: str, req: bytes, length: int = 0) -> bytes:
    try:
        _, out = io.execute(obj, CLASS, method, req, length)
    except rados.Error as exc:
        raise error_of(errno_of(exc), f"{method} on {obj}", io) from None
    return bytes(out)


def _missing_ok(fn: Callable[[], bytes]) -> bytes | None:
    """Run a read call; None when the object does not exist."""
    try:
        return fn()
    except TdbError as exc:
        if getattr(exc, "errno", 0) == errno.ENOENT:
            return None
        raise


class Call:
    """One asynchronous class call; :meth:`wait` gives its decoded result or
    raises its mapped error. ``missing`` is what a missing object gives
    (a read of an object never written), instead of an error."""

    __slots__ = ("_out", "comp", "decode", "io", "method", "missing", "obj")

    _UNSET: Any = object()

    def __init__(
        self,
        io: Any,
        obj: str,
        method: str,
        req: bytes,
        length: int = 0,
        decode: Callable[[bytes], Any] | None = None,
        missing: Any = _UNSET,
    ) -> None:
        self.obj, self.method, self.decode, self.missing = obj, method, decode, missing
        self.io = io
        self._out: bytes = b""
        if not length:  # a write: no reply data, no callback to run
            self.comp = io.aio_execute(obj, CLASS, method, req, 0)
            return

        def done(_c: Any, data: Any) -> None:
            self._out = bytes(data) if data is not None else b""

        self.comp = io.aio_execute(obj, CLASS, method, req, length, oncomplete=done)

    def error(self) -> Exception | None:
        """Wait; the mapped error, or None on success (or a tolerated missing object)."""
        self.comp.wait_for_complete_and_cb()
        ret = self.comp.get_return_value()
        if ret >= 0 or (ret == -errno.ENOENT and self.missing is not Call._UNSET):
            return None
        return error_of(-ret, f"{self.method} on {self.obj}", self.io)

    def wait(self) -> Any:
        err = self.error()
        if err is not None:
            raise err
        if self.comp.get_return_value() < 0:  # tolerated missing object
            return self.missing
        return _decoded(self.decode, self._out, self.method, self.obj) if self.decode else self._out


def wait_all(calls: Iterable[Call]) -> list[Any]:
    """Wait for every call, then raise the first failure (or return results)."""
    calls = list(calls)
    errors = [c.error() for c in calls]
    for e in errors:
        if e is not None:
            raise e
    return [c.wait() for c in calls]


# per method: sync form, aio form (returns a Call) ---------------------------------
def version(io: Any, obj: str) -> int:
    return int(_execute(io, obj, "version", EMPTY_REQUEST, 16))


def apply(io: Any, obj: str, req: bytes) -> None:
    _execute(io, obj, "apply", req)


RETURNVEC = 1024  # LIBRADOS_OPERATION_RETURNVEC: a write method's return value reaches us


def write_status(io: Any, obj: str, method: str, req: bytes) -> int:
    """Run a write method and return its non-negative return value (the
    write op is sent with RETURNVEC, without which the OSD hides it);
    failures raise as every call's do."""
    op = io.create_write_op()
    try:
        op.execute(CLASS, method, req)
        comp = io.operate_aio_write_op(op, obj, flags=RETURNVEC)
        comp.wait_for_complete()
        ret = comp.get_return_value()
    finally:
        io.release_write_op(op)
    if ret < 0:
        raise error_of(-ret, f"{method} on {obj}", io)
    return int(ret)


class StatusCall:
    """An asynchronous write method whose non-negative return value we need
    (sent with RETURNVEC): :meth:`wait` gives it or raises the mapped error."""

    __slots__ = ("comp", "io", "method", "obj", "op")

    def __init__(self, io: Any, obj: str, method: str, req: bytes) -> None:
        self.io, self.obj, self.method = io, obj, method
        self.op = io.create_write_op()
        self.op.execute(CLASS, method, req)
        self.comp = io.operate_aio_write_op(self.op, obj, flags=RETURNVEC)

    def result(self) -> int | Exception:
        """The return value, or the mapped error."""
        op, self.op = self.op, None
        try:
            self.comp.wait_for_complete()
            ret = self.comp.get_return_value()
        finally:
            if op is not None:
                self.io.release_write_op(op)
        if ret < 0:
            return error_of(-ret, f"{self.method} on {self.obj}", self.io)
        return int(ret)

    def error(self) -> Exception | None:
        res = self.result()
        return res if isinstance(res, Exception) else None

    def wait(self) -> int:
        res = self.result()
        if isinstance(res, Exception):
            raise res
        return res


def apply_report(io: Any, obj: str, req: bytes) -> int:
    """``apply`` returning its APPLIED_* bits (CREATED with WRITE_REPORT,
    GRANTED with WRITE_RELEASE)."""
    return write_status(io, obj, "apply", req)


def aio_apply(io: Any, obj: str, req: bytes) -> Call:
    return Call(io, obj, "apply", req)


def compose_apply(op: Any, req: bytes) -> None:
    """Add an ``apply`` to a compound write op (beside assert_version etc.)."""
    op.execute(CLASS, "apply", req)


def clear(io: Any, obj: str, req: bytes) -> None:
    _execute(io, obj, "clear", req)


def aio_clear(io: Any, obj: str, req: bytes) -> Call:
    return Call(io, obj, "clear", req)


def settle(io: Any, obj: str, txid: int) -> None:
    _execute(io, obj, "settle", txid_request(txid))


def aio_settle(io: Any, obj: str, txid: int) -> Call:
    return Call(io, obj, "settle", txid_request(txid))


def rollback(io: Any, obj: str, txid: int) -> None:
    _execute(io, obj, "rollback", txid_request(txid))


def aio_rollback(io: Any, obj: str, txid: int) -> Call:
    return Call(io, obj, "rollback", txid_request(txid))


def reset(io: Any, obj: str) -> None:
    _execute(io, obj, "reset", EMPTY_REQUEST)


def get(io: Any, obj: str, key: bytes, accept: int = 0) -> GetResult:
    """The record of key (or MISSING, or PENDING); a missing object: MISSING."""
    size = GET_BUFFER
    while True:
        out = _missing_ok(lambda s=size: _execute(io, obj, "get", get_request(key, s, accept), s))
        if out is None:
            return GetResult(ReadStatus.MISSING)
        res = _decoded(decode_get, out, "get", obj)
        if res.status != ReadStatus.TOO_BIG:
            return res
        size = res.needed


def aio_get(io: Any, obj: str, key: bytes, accept: int = 0) -> Call:
    """A get with the default buffer (the caller handles TOO_BIG with :func:`get`)."""
    return Call(
        io,
        obj,
        "get",
        get_request(key, GET_BUFFER, accept),
        GET_BUFFER,
        decode_get,
        missing=GetResult(ReadStatus.MISSING),
    )


def list_page(
    io: Any,
    obj: str,
    start_after: str,
    max_records: int,
    max_bytes: int,
    accept: int = 0,
    until: str = "",
    flags: int = 0,
) -> ListResult:
    """A page of records after an encoded key; a missing shard is empty.

    A page holds at least one record, so one record larger than max_bytes
    overflows the reply buffer (-ERANGE): the call is repeated with a buffer
    four times larger."""
    req = list_request(max_records, max_bytes, start_after, accept, until, flags)
    size = max_bytes + (1 << 16)
    while True:
        try:
            _, out = io.execute(obj, CLASS, "list", req, size)
        except rados.ObjectNotFound:
            return ListResult()
        except rados.Error as exc:
            if errno_of(exc) == errno.ERANGE and size < (1 << 32):
                size *= 4
                continue
            raise error_of(errno_of(exc), f"list on {obj}", io) from None
        return _decoded(decode_list, bytes(out), "list", obj)


def aio_list(
    io: Any,
    obj: str,
    start_after: str,
    max_records: int,
    max_bytes: int,
    accept: int = 0,
    until: str = "",
) -> Call:
    """A page read with aio: LIST_STRICT, so the reply never outgrows its
    buffer (librados' aio exec would overrun it); a first record larger than
    ``max_bytes`` comes back as an empty page with ``more``."""
    req = list_request(max_records, max_bytes, start_after, accept, until, LIST_STRICT)
    return Call(io, obj, "list", req, max_bytes + (1 << 16), decode_list, missing=ListResult())


def seq(io: Any, obj: str) -> int:
    out = _missing_ok(lambda: _execute(io, obj, "seq", EMPTY_REQUEST, 64))
    return _decoded(decode_seq, out, "seq", obj) if out else 0


def aio_seq(io: Any, obj: str) -> Call:
    return Call(io, obj, "seq", EMPTY_REQUEST, 64, decode_seq, missing=0)


def bump(io: Any, obj: str) -> None:
    _execute(io, obj, "bump", EMPTY_REQUEST)


def lock(io: Any, obj: str, req: bytes) -> None:
    _execute(io, obj, "lock", req)


def aio_lock(io: Any, obj: str, req: bytes) -> Call:
    return Call(io, obj, "lock", req)


def ticket_of(status: int) -> int:
    """The ticket a lock, unlock, release or releasing apply returned (0: none)."""
    return status >> TICKET_SHIFT


def grants_of(status: int) -> int:
    """How many waiters an unlock or release granted (capped at GRANTS_MAX)."""
    return status & STATUS_BITS


def lock_status(io: Any, obj: str, req: bytes) -> int:
    """``lock``, returning LOCKED_GRANTED or LOCKED_QUEUED (| layout bits),
    and the entry's ticket (``ticket_of``)."""
    return write_status(io, obj, "lock", req)


def aio_lock_status(io: Any, obj: str, req: bytes) -> StatusCall:
    return StatusCall(io, obj, "lock", req)


def clear_status(io: Any, obj: str, req: bytes) -> int:
    """``clear``, returning its layout bits."""
    return write_status(io, obj, "clear", req)


def aio_apply_status(io: Any, obj: str, req: bytes) -> StatusCall:
    return StatusCall(io, obj, "apply", req)


def unlock(io: Any, obj: str, req: bytes) -> None:
    _execute(io, obj, "unlock", req)


def aio_unlock(io: Any, obj: str, req: bytes) -> Call:
    return Call(io, obj, "unlock", req)


def unlock_granted(io: Any, obj: str, req: bytes) -> int:
    """``unlock``, returning how many waiters it granted (``grants_of``)
    and the first one's ticket (``ticket_of``)."""
    return write_status(io, obj, "unlock", req)


def aio_unlock_granted(io: Any, obj: str, req: bytes) -> StatusCall:
    return StatusCall(io, obj, "unlock", req)


def release(io: Any, obj: str, req: bytes) -> None:
    _execute(io, obj, "release", req)


def aio_release_granted(io: Any, obj: str, req: bytes) -> StatusCall:
    """``release``, whose result is how many waiters it granted."""
    return StatusCall(io, obj, "release", req)


def aio_release(io: Any, obj: str, req: bytes) -> Call:
    return Call(io, obj, "release", req)


def aio_renew(io: Any, obj: str, owner: bytes) -> Call:
    return Call(io, obj, "renew", renew_request(owner))


def prune(io: Any, obj: str, flags: int = 0, owners: Sequence[bytes] = ()) -> None:
    _execute(io, obj, "prune", prune_request(flags, owners))


def aio_prune(io: Any, obj: str, flags: int = 0, owners: Sequence[bytes] = ()) -> Call:
    return Call(io, obj, "prune", prune_request(flags, owners))


STATE_BUFFER = 1 << 20


def state(io: Any, obj: str) -> ObjectState | None:
    """The object's header and the OSD's time; None for a missing object."""
    out = _missing_ok(lambda: _execute(io, obj, "state", EMPTY_REQUEST, STATE_BUFFER))
    return None if out is None else _decoded(decode_state, out, "state", obj)


def aio_state(io: Any, obj: str) -> Call:
    return Call(io, obj, "state", EMPTY_REQUEST, STATE_BUFFER, decode_state, missing=None)


def aio_watchers(io: Any, obj: str) -> Call:
    """``watchers`` of obj, in flight; a missing object gives None."""
    return Call(io, obj, "watchers", EMPTY_REQUEST, 1 << 16, decode_watchers, missing=None)


def watchers(io: Any, obj: str) -> list[tuple[int, int]]:
    """(client id, cookie) of every watch on ``obj``."""
    return _decoded(
        decode_watchers, _execute(io, obj, "watchers", EMPTY_REQUEST, 1 << 16), "watchers", obj
    )


def aio_stage(io: Any, obj: str, req: bytes) -> Call:
    return Call(io, obj, "stage", req)


def txn_abort(io: Any, obj: str, txid: int, owner: bytes, participants: Sequence[int]) -> None:
    _execute(io, obj, "txn_abort", txn_abort_request(txid, owner, participants))


def txn_mark(io: Any, obj: str, complete: Sequence[int] = (), forget: Sequence[int] = ()) -> None:
    _execute(io, obj, "txn_mark", txn_mark_request(complete, forget))


def aio_txn_mark(
    io: Any, obj: str, complete: Sequence[int] = (), forget: Sequence[int] = ()
) -> Call:
    return Call(io, obj, "txn_mark", txn_mark_request(complete, forget))


def fence_owners(io: Any, obj: str, owners: Sequence[bytes]) -> None:
    _execute(io, obj, "fence_owners", owners_request(owners))


JOURNAL_BUFFER = 4 << 20


def journal(io: Any, obj: str, txid: int = 0) -> Journal:
    """The journal's records (all, or txid's); a missing journal is empty."""
    out = _missing_ok(lambda: _execute(io, obj, "journal", journal_request(txid), JOURNAL_BUFFER))
    return Journal() if out is None else _decoded(decode_journal, out, "journal", obj)


def aio_journal(io: Any, obj: str, txid: int = 0) -> Call:
    return Call(
        io, obj, "journal", journal_request(txid), JOURNAL_BUFFER, decode_journal, missing=Journal()
    )


# resharding (cls/radostdb/reshard.cc) ------------------------------------------------------
def split_begin(io: Any, obj: str, req: bytes) -> int:
    """1: the shard's split is complete already; 0: recorded."""
    return write_status(io, obj, "split_begin", req)


SPLIT_PAGE_BUFFER = 64 << 20


def split_page(io: Any, obj: str, after: str, max_records: int) -> SplitPage:
    out = _execute(io, obj, "split_page", split_page_request(after, max_records), SPLIT_PAGE_BUFFER)
    return _decoded(decode_split_page, out, "split_page", obj)


def split_absorb(io: Any, obj: str, req: bytes) -> None:
    _execute(io, obj, "split_absorb", req)


def split_advance(io: Any, obj: str, req: bytes) -> int:
    """How many queued record-lock requests the advance dropped."""
    return write_status(io, obj, "split_advance", req)


def count(io: Any, obj: str, limit: int) -> int:
    """The shard's records, counted up to limit + 1; a missing shard: 0."""
    out = _missing_ok(lambda: _execute(io, obj, "count", count_request(limit), 64))
    return 0 if out is None else _decoded(decode_count, out, "count", obj)


def aio_count(io: Any, obj: str, limit: int) -> Call:
    return Call(io, obj, "count", count_request(limit), 64, decode_count, missing=0)


def aio_fence_epoch(io: Any, obj: str, epoch: int) -> Call:
    return Call(io, obj, "fence_epoch", epoch_request(epoch))

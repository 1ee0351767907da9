"""Fuzz the radostdb object class: malformed requests to every method, sent
with python-rados ``execute`` to real objects on the test cluster.

The class runs inside the OSD and any client can send it any bytes, so:
- every request is classified first by :func:`classify`, an independent
  reading of the parse rules of cls/radostdb/ops.h (framing, then each
  struct's fields and enums). A request it calls malformed must get exactly
  that refusal (-EINVAL, or -EOPNOTSUPP for a newer compat; -ENOENT from the
  OSD for a read of a missing object) and change nothing. A well-formed one
  must get 0 or an errno documented for the method (its comment, above
  its code in cls/radostdb/*.cc)
  (plus -EIO for stored data that does not decode, and for reads -ENOENT
  and -ERANGE), never -EOPNOTSUPP, and -EINVAL exactly when the method
  documents it for the request and the object's state (the resharding
  steps of cls/radostdb/reshard.cc: :func:`documented_einval`); a read's
  reply must decode with clsops (``count``'s must be the object's key
  count, capped);
- the requests: the golden vectors of tests/vectors/wire.json and requests
  built by clsops' encoders from hypothesis-drawn fields (bad enums, zero
  txids, huge leases and counts included), then mutated: truncated, body
  cut under a matching length, newer compat, later version with extra body
  bytes, a huge frame length, bytes after the frame, a u32 overwritten with
  a huge value (counts and lengths), a byte overwritten, or random bytes;
- the objects: a database ("fuzzed") with records, a shard that also holds
  record locks (held, queued, shared), its header object (watched by an open
  handle), its transaction-lock object (held), its journal with records and
  fenced owners, and a missing object. Only malformed writes and reads go to
  them: afterwards every object is byte for byte as before, the database
  opens, ``check`` finds it clean and every record reads back;
- well-formed writes go to scratch twins of those objects; all requests
  also go to scratch objects a client must decide on first (stale owners, a
  pending transaction) and to objects with corrupt stored data (a version 3
  and a version 2 header that do not decode, a bad omap key and a bad
  record, a journal with an undecodable fence key and record, a pending
  shard whose redo log does not decode) and to shards in the middle of a
  split (one splitting, with some keys moved; one filled as the new
  shard). Writes may change what they are sent to, but never make a
  header, record or journal record that decoded stop decoding (but
  split_absorb stores the records it is given as they are: what it stored
  is checked against the request instead); a changed scratch object is
  rebuilt before its next use;
- after each test the OSD has the PID it had before and answers a normal
  request.

``RADOSTDB_FUZZ_EXAMPLES=N`` runs N examples per method (default
DEFAULT_EXAMPLES, within ``make test``'s budget) with hypothesis' random
exploration and its example database (.hypothesis/); without it the run is
derandomized (the same examples every time).
"""

from __future__ import annotations

import errno
import json
import os
import re
import struct
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import rados
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import radostdb
from radostdb import admin, clsops, codec, kinds, layout
from radostdb import cluster as clustermod
from radostdb.errors import ERR_CORRUPT, TdbError
from radostdb.kinds import Kind, Mode
from radostdb.testing import ClusterInfo

REPO = Path(__file__).resolve().parents[2]
WIRE = json.loads((REPO / "tests" / "vectors" / "wire.json").read_text())
CLS_DIR = REPO / "cls" / "radostdb"
SERVER = (CLS_DIR / "server.cc").read_text()  # the registration table
METHOD_SOURCES = "\n".join(p.read_text() for p in sorted(CLS_DIR.glob("*.cc")))

DEFAULT_EXAMPLES = 150
EXAMPLES = int(os.environ.get("RADOSTDB_FUZZ_EXAMPLES", "0") or 0)
FUZZ = settings(
    max_examples=EXAMPLES or DEFAULT_EXAMPLES,
    deadline=None,
    derandomize=not EXAMPLES,
    database=None if not EXAMPLES else settings.default.database,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
OP_TIMEOUT = "20"  # a hung OSD fails the example with ETIMEDOUT instead of hanging the run
LEASE_MS = 3_600_000  # the fuzzed database's locks outlive the run
SHARDS = 4

# the request struct each method parses (the golden vectors say which); version parses none
METHOD_STRUCT = {m: v["struct"] for v in WIRE["requests"] for m in v["methods"]}
VECTORS: dict[str, list[bytes]] = {}
for _v in WIRE["requests"]:
    VECTORS.setdefault(_v["struct"], []).append(bytes.fromhex(_v["hex"]))


def registered_methods() -> dict[str, bool]:
    """Method -> is it a read method, from server.cc's registration table."""
    table = re.findall(r'\{"(\w+)", (RD|WR), \w+, nullptr\}', SERVER)
    return {name: flag == "RD" for name, flag in table}


METHODS = registered_methods()
READS = {m for m, rd in METHODS.items() if rd}
COMMON = {errno.EIO}  # stored data that does not decode (a malformed request: see classify)
READ_COMMON = {errno.ENOENT, errno.ERANGE}  # a missing object; a reply larger than the buffer
PARSE = {errno.EINVAL, errno.EOPNOTSUPP}  # the parse's refusals (see documented_einval)


def documented_errnos() -> dict[str, set[int]]:
    """Method -> the errnos its comment names (the comment above the method,
    starting "name (read|write)")."""
    out: dict[str, set[int]] = {}
    for method, text in re.findall(
        r"/\*\s*\n?\s*\*?\s*(\w+) \((?:read|write)\)(.*?)\*/", METHOD_SOURCES, re.S
    ):
        out[method] = {getattr(errno, e) for e in re.findall(r"-(E[A-Z]+)\b", text)}
    return out


DOCUMENTED = documented_errnos()
# what a method's comment documents by reference: split_advance's "other
# refusals as split_begin's (split_step)", and the reshard design's "Steps of
# any other owner are refused with -ECANCELED" (split_begin takes over instead)
REFERRED = {"split_advance": DOCUMENTED.get("split_begin", set()) | {errno.ECANCELED}}


def allowed(method: str) -> set[int]:
    """0 and every errno a well-formed request to ``method`` may get, but
    -EINVAL and -EOPNOTSUPP: those are the parse's, for malformed requests,
    and -EINVAL of a well-formed one only where :func:`documented_einval`
    says so."""
    documented = DOCUMENTED[method] | REFERRED.get(method, set())
    return ({0} | COMMON | documented | (READ_COMMON if method in READS else set())) - PARSE


# -- the parse rules of ops.h, read independently -----------------------------------
class _Malformed(Exception):
    pass


class _Body:
    """A struct body as ops.h's WireReader reads it."""

    def __init__(self, body: bytes) -> None:
        self.body, self.pos = body, 0
        self.fields: dict[str, Any] = {}  # what documented_einval needs of the request

    def left(self) -> int:
        return len(self.body) - self.pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.body):
            raise _Malformed
        self.pos += n
        return self.body[self.pos - n : self.pos]

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "little")

    def bytes(self) -> bytes:
        return self.take(self.u32())

    def owner(self) -> bytes:
        return self.take(clsops.OWNER_LEN)

    def items(self, size: int) -> int:
        """A count of items of ``size`` bytes each, then the items (skipped)."""
        n = self.u32()
        self.take(n * size)
        return n


def _apply(b: _Body) -> bool:
    b.owner()
    wflags = b.u8()
    b.u64(), b.u64(), b.items(4)
    n = b.u32()
    if n * 9 > b.left():
        return False
    for _ in range(n):
        if not kinds.Op.PUT <= b.u8() <= kinds.Op.DISCARD:
            return False
        b.bytes(), b.bytes()
    epoch = lease_ms = 0
    if b.left():  # optional: u64 epoch, u32 lease_ms (both, or neither)
        epoch, lease_ms = b.u64(), b.u32()
    # ASSERT_LOCK, ASSERT_TXN, RELEASE, REPORT; an epoch takes a lease
    return wflags < 16 and (not epoch or lease_ms > 0)


def _clear(b: _Body) -> bool:
    b.owner()
    wflags = b.u8()
    b.u64()
    if b.left():  # optional: u64 modulus
        b.u64()
    return wflags < 8


def _list(b: _Body) -> bool:
    most = b.u32()
    b.u32(), b.u64(), b.bytes()
    flags = 0
    if most and b.left():  # optional: bytes until, then u8 flags
        b.bytes()
        if b.left():
            flags = b.u8()
    return most > 0 and flags < 4  # LIST_KEYS_ONLY, LIST_STRICT


def _lock(b: _Body) -> bool:
    b.owner()
    lease, kind, mode, flags, key = b.u32(), b.u8(), b.u8(), b.u8(), b.bytes()
    for _ in ("epoch", "modulus", "inbox"):  # optional, each a whole u64
        if b.left():
            b.u64()
    return (
        lease > 0
        and Kind.RECORD <= kind <= Kind.WATCH
        and mode in (Mode.EXCL, Mode.SHARED)
        and flags < 2
        and (kind in (Kind.RECORD, Kind.WATCH) or not key)
    )


def _release(b: _Body) -> bool:
    b.owner(), b.u64()
    flags, kind = b.u8(), b.u8()
    return flags < 2 and kind <= Kind.COMMIT


SPLIT_WFLAGS = clsops.WRITE_ASSERT_LOCK | clsops.WRITE_RELEASE  # the only ones a split step takes
U64 = 1 << 64


def _split_begin(b: _Body) -> bool:
    b.owner()
    wflags, index, modulus, child, child_modulus = b.u8(), b.u32(), b.u64(), b.u32(), b.u64()
    b.fields.update(index=index, modulus=modulus, child=child, child_modulus=child_modulus)
    return (
        not wflags & ~SPLIT_WFLAGS
        and modulus > index
        and child == (index + modulus) % U64  # u64 arithmetic, as the class's
        and child_modulus == 2 * modulus % U64
        and child_modulus < clsops.NO_SHARD
    )


def _split_absorb(b: _Body) -> bool:
    owner, takeover, index, modulus = b.owner(), b.u8(), b.u32(), b.u64()
    after, upto, end, n = b.bytes(), b.bytes(), b.u8(), b.u32()
    if n * 8 > b.left() or takeover > 1 or end > 1 or not modulus or index >= modulus:
        return False
    records = []
    for _ in range(n):
        okey, record = b.bytes(), b.bytes()
        if not okey:
            return False
        records.append((okey, record))
    b.fields.update(
        owner=owner, takeover=takeover, index=index, modulus=modulus, after=after, upto=upto,
        end=end, records=records,
    )  # fmt: skip
    return True


def _split_advance(b: _Body) -> bool:
    owner = b.owner()
    wflags = b.u8()
    after, upto = b.bytes(), b.bytes()
    end, n = b.u8(), b.u32()
    if n * 8 > b.left() or end > 1 or wflags & ~SPLIT_WFLAGS:
        return False
    for _ in range(n):
        b.bytes(), b.bytes()
    b.fields.update(owner=owner, after=after, upto=upto, end=end)
    return True


BODY_RULES: dict[str, Callable[[_Body], bool]] = {
    "ApplyReq": _apply,
    "ClearReq": _clear,
    "TxidReq": lambda b: b.u64() != 0,
    "EmptyReq": lambda b: True,
    "GetReq": lambda b: (b.u32(), b.u64(), b.bytes()) is not None,
    "ListReq": _list,
    "LockReq": _lock,
    "UnlockReq": lambda b: (b.owner(), b.u8(), b.u8(), b.bytes()) is not None,
    "ReleaseReq": _release,
    "RenewReq": lambda b: b.owner() is not None,
    "PruneReq": lambda b: (b.u8() < 2, b.items(clsops.OWNER_LEN))[0],
    "StageReq": lambda b: (b.u64() != 0, b.owner(), b.items(4), b.items(8), b.items(8))[0],
    "TxnAbortReq": lambda b: (b.u64() != 0, b.owner(), b.items(4))[0],
    "TxnMarkReq": lambda b: (b.items(8), b.items(8)) is not None,
    "OwnersReq": lambda b: b.items(clsops.OWNER_LEN) is not None,
    "JournalReq": lambda b: b.u64() is not None,
    "SplitBeginReq": _split_begin,
    "SplitPageReq": lambda b: (b.bytes(), b.u32() > 0)[1],
    "SplitAbsorbReq": _split_absorb,
    "SplitAdvanceReq": _split_advance,
    "CountReq": lambda b: b.u32() < clsops.NO_SHARD,
    "EpochReq": lambda b: b.u64() != 0,
}


def classify(method: str, raw: bytes) -> int:
    """0 if the class must accept ``raw`` as a request of ``method``, else the
    errno its parse must refuse it with."""
    if method == "version":
        return 0  # reads no request: any client can ask
    if len(raw) < 6 or int.from_bytes(raw[2:6], "little") > len(raw) - 6:
        return errno.EINVAL
    if raw[1] > 1:  # every request struct is at version 1
        return errno.EOPNOTSUPP
    length = int.from_bytes(raw[2:6], "little")
    if len(raw) != 6 + length:
        return errno.EINVAL
    try:
        ok = BODY_RULES[METHOD_STRUCT[method]](_Body(raw[6:]))
    except _Malformed:
        ok = False
    return 0 if ok else errno.EINVAL


def request_fields(method: str, raw: bytes) -> dict[str, Any]:
    """The fields documented_einval needs of a well-formed request."""
    body = _Body(raw[6 : 6 + int.from_bytes(raw[2:6], "little")])
    assert BODY_RULES[METHOD_STRUCT[method]](body)
    return body.fields


def _begin_refused(h: clsops.ShardHeader, f: dict[str, Any]) -> bool:
    if not h.splitting and h.modulus == f["child_modulus"] and h.index == f["index"]:
        return False  # complete already: 1
    return bool(h.modulus and (h.modulus != f["modulus"] or h.index != f["index"])) or (
        h.splitting and (h.split_to != f["child"] or h.split_modulus != f["child_modulus"])
    )


def _absorb_refused(h: clsops.ShardHeader, f: dict[str, Any]) -> bool:
    if h.modulus and (h.modulus != f["modulus"] or h.index != f["index"]):
        return True
    if h.split_owner and h.split_owner != f["owner"] and not f["takeover"]:
        return False  # -ECANCELED comes first
    return any(
        okey <= f["after"] or (not f["end"] and okey > f["upto"]) for okey, _ in f["records"]
    )


def _advance_refused(h: clsops.ShardHeader, f: dict[str, Any]) -> bool:
    if not h.splitting:
        return True  # split_step
    if h.split_owner != f["owner"] or h.stale or h.pending:
        return False  # -ECANCELED, -EUCLEAN first
    if h.moved_upto.encode() != f["after"]:
        return False  # -ERANGE first
    return not f["end"] and f["upto"] <= f["after"]


# the -EINVAL a method documents for a well-formed request, given the object's
# header before it (reshard.cc; every one decided before anything else that
# method checks but the header's decoding)
SEMANTIC_EINVAL: dict[str, Callable[[clsops.ShardHeader, dict[str, Any]], bool]] = {
    "split_begin": _begin_refused,  # another shard, or one that splits differently
    "split_page": lambda h, f: not h.splitting,  # the shard is not splitting
    "split_absorb": _absorb_refused,  # another shard, or a record outside the page
    "split_advance": _advance_refused,  # not splitting; a page that ends before it starts
}


def documented_einval(method: str, raw: bytes, before: Snapshot) -> bool:
    """Must the class refuse the well-formed request ``raw`` with the -EINVAL
    that ``method`` documents, given the object as ``before``?"""
    rule = SEMANTIC_EINVAL.get(method)
    if rule is None or (method in READS and not before.exists):
        return False  # a read of a missing object: the OSD's -ENOENT
    try:
        header = clsops.decode_header(before.header)
    except clsops.WireError:
        return False  # -EIO first
    return rule(header, request_fields(method, raw))


# -- objects ---------------------------------------------------------------------
OWNER_A, OWNER_B, OWNER_C, OWNER_T = (bytes([i]) * 16 for i in (0xA1, 0xB2, 0xC3, 0xD4))
FENCED = bytes([0xEE]) * 16
LOCKED_KEY, SHARED_KEY = b"key-1", b"key-2"
SHAPES = ("shard+locks", "shard", "header", "txn-lock", "journal", "missing")
# scratch only: objects in states a client must first decide on, or with corrupt data
DECIDE = ("stale", "pending")
CORRUPT = ("bad-header", "bad-legacy-header", "bad-records", "bad-journal", "bad-redo")
# mid-split (reshard.cc): shard 0 of modulus 1 splitting into shard 1 (modulus 2),
# its first moving key moved; and shard 1 being filled
RESHARD = ("splitting", "split-child")
SCRATCH_ONLY = DECIDE + RESHARD + CORRUPT
PENDING_TXID = 0x5EED


def records_of(n: int) -> dict[bytes, bytes]:
    recs = {f"key-{i}".encode(): f"value-{i}".encode() * (i % 7) for i in range(n)}
    recs.update({b"": b"the empty key", b"\x00\xff\x7e\x7f": b"binary", b"big": b"B" * 70_000})
    return recs


SCRATCH_RECORDS = records_of(8)
# the split of the RESHARD shapes: the keys hashing to 1 mod 2 move
MOVING = sorted(codec.encode_key(k) for k in SCRATCH_RECORDS if codec.key_hash(k) % 2 == 1)
assert len(MOVING) > 2
SPLITTING_HEADS: list[tuple[str, bytes]] = []  # of the "splitting" shape's keys still to move


@dataclass
class Snapshot:
    """Everything of an object the class could change."""

    exists: bool
    header: bytes = b""
    omap: dict[str, bytes] = field(default_factory=dict)
    data: bytes = b""


def snapshot(io: Any, obj: str) -> Snapshot:
    try:
        size, _ = io.stat(obj)
    except rados.ObjectNotFound:
        return Snapshot(False)
    _, out = io.execute(obj, clsops.CLASS, "state", clsops.EMPTY_REQUEST, clsops.STATE_BUFFER)
    rd = clsops._open(bytes(out))  # the raw header: it may not decode
    rd.u64(), rd.u64()
    header = rd.bytes()
    with rados.ReadOpCtx() as op:
        it, _ = io.get_omap_vals(op, "", "", 1_000_000)
        io.operate_read_op(op, obj)
        omap = {k: bytes(v or b"") for k, v in it}  # an empty value reads as None
    return Snapshot(True, header, omap, io.read(obj, size or 1))


def set_omap(io: Any, obj: str, values: dict[str, bytes]) -> None:
    with rados.WriteOpCtx() as op:
        io.set_omap(op, tuple(values), tuple(values.values()))
        io.operate_write_op(op, obj)


def put_records(io: Any, obj: str, recs: dict[bytes, bytes]) -> None:
    entries = [(kinds.Op.PUT, k, v) for k, v in recs.items()]
    clsops.apply(io, obj, clsops.apply_request(OWNER_A, 0, entries))


def add_locks(io: Any, obj: str) -> None:
    """A held and a queued exclusive lock on one key, a shared one on another."""
    for owner, key, mode, flags in (
        (OWNER_A, LOCKED_KEY, Mode.EXCL, 0),
        (OWNER_B, LOCKED_KEY, Mode.EXCL, clsops.LOCK_QUEUE),
        (OWNER_C, SHARED_KEY, Mode.SHARED, 0),
    ):
        clsops.lock(io, obj, clsops.lock_request(owner, LEASE_MS, Kind.RECORD, mode, key, flags))


def add_journal(io: Any, obj: str, staged: int, participants: list[int]) -> None:
    """A staged record (``staged`` reached every participant), an aborted and
    a complete one, and a fenced owner."""
    clsops.aio_stage(io, obj, clsops.stage_request(staged, OWNER_T, participants)).wait()
    clsops.txn_abort(io, obj, 0xAB, OWNER_C, [1])
    clsops.aio_stage(io, obj, clsops.stage_request(0xC0, OWNER_A, [])).wait()
    clsops.txn_mark(io, obj, complete=[0xC0])
    clsops.fence_owners(io, obj, [FENCED])


def lock_txn(io: Any, obj: str) -> None:
    clsops.lock(io, obj, clsops.lock_request(OWNER_T, LEASE_MS, Kind.TXN, Mode.EXCL))


def split_first(io: Any, obj: str) -> None:
    """Shard 0 (modulus 1) of SCRATCH_RECORDS splits into shard 1 (modulus
    2), by OWNER_A; the first moving key has moved (the new shard is not
    written: the class does not look)."""
    assert clsops.split_begin(io, obj, clsops.split_begin_request(OWNER_A, 0, 0, 1, 1, 2)) == 0
    page = clsops.split_page(io, obj, "", 1)
    assert [k for k, _ in page.records] == MOVING[:1] and not page.end, page
    heads = [(k, r[: codec.REC_HDR]) for k, r in page.records]
    req = clsops.split_advance_request(OWNER_A, 0, "", page.upto, False, heads)
    assert clsops.split_advance(io, obj, req) == 0
    h = clsops.state(io, obj).header
    assert h.splitting and (h.split_to, h.split_modulus, h.moved_upto) == (1, 2, page.upto), h
    rest = clsops.split_page(io, obj, page.upto, 1000)
    assert [k for k, _ in rest.records] == MOVING[1:] and rest.end, rest
    SPLITTING_HEADS[:] = [(k, r[: codec.REC_HDR]) for k, r in rest.records]


def set_raw_header(conf: str, pool: str, obj: str, raw: bytes) -> None:
    """Store an omap header the class did not write (python-rados has no call for it)."""
    subprocess.run(
        ["rados", "-c", conf, "-p", pool, "setomapheader", obj, raw],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


@dataclass
class Target:
    """An object requests are sent to; ``build`` (re)creates it (scratch only)."""

    shape: str
    obj: str
    build: Callable[[], None] | None = None
    pristine: Snapshot | None = None
    dirty: bool = False


class Objects:
    """The fuzzed database's objects and the scratch twins."""

    def __init__(self, io: Any, cluster: ClusterInfo) -> None:
        self.io, self.cluster = io, cluster
        self.tag = uuid.uuid4().hex[:8]
        self.name = f"fuzzed-{self.tag}"
        self.records = records_of(40)
        self.precious: dict[str, Target] = {}
        self.scratch: dict[str, Target] = {}
        self.missing_seq = 0
        self.sent = 0
        self.handle: radostdb.Tdb | None = None

    # the fuzzed database
    def create(self) -> None:
        io, name = self.io, self.name
        # a watcher on the header object: a CLEAR_IF_FIRST handle (plain ones keep no
        # watch); opened first, so that its clearing finds nothing to clear
        create = os.O_CREAT | os.O_RDWR
        self.handle = radostdb.Tdb(name, 0, radostdb.CLEAR_IF_FIRST, create, shards=SHARDS)
        db = radostdb.Tdb(name, 0, 0, create, shards=SHARDS)
        for k, v in self.records.items():
            db.store(k, v)
        with db.transaction():  # a multi-shard commit: every shard settles it
            for i in range(SHARDS * 2):
                key = f"txn-{i}".encode()
                db.store(key, key * 3)
                self.records[key] = key * 3
        db.close()
        shards = layout.shard_objects(name, SHARDS)
        settled = [clsops.state(io, s).header.settled for s in shards]
        txid = max(settled)
        participants = [i for i, x in enumerate(settled) if x == txid]
        assert txid and len(participants) > 1, settled
        locked = shards[codec.shard_of(LOCKED_KEY, SHARDS)]
        other = next(s for s in shards if s != locked)
        add_locks(io, locked)
        header = layout.header_object(name)
        lock_txn(io, layout.wait_object(header))
        # its record again, as a committer that died before forgetting it leaves it
        add_journal(io, layout.journal_object(name), txid, participants)
        for shape, obj in (
            ("shard+locks", locked), ("shard", other), ("header", header),
            ("txn-lock", layout.wait_object(header)), ("journal", layout.journal_object(name)),
            ("missing", f"radostdb.s00000.{name}-absent"),
        ):  # fmt: skip
            self.precious[shape] = Target(shape, obj)
        for t in self.precious.values():
            t.pristine = snapshot(io, t.obj)
        assert [t.shape for t in self.precious.values() if not t.pristine.exists] == ["missing"]
        assert clsops.watchers(io, header), "the open handle watches the header object"
        assert len(clsops.journal(io, layout.journal_object(name)).records) == 3

    def release(self) -> None:
        """Drop the foreign locks, so the database is as a client leaves it."""
        io = self.io
        for owner in (OWNER_A, OWNER_B, OWNER_C):
            clsops.release(io, self.precious["shard+locks"].obj, clsops.release_request(owner))
        clsops.release(io, self.precious["txn-lock"].obj, clsops.release_request(OWNER_T))
        if self.handle is not None:
            self.handle.close()

    # scratch twins
    def scratch_target(self, shape: str) -> Target:
        t = self.scratch.get(shape)
        if t is None:
            t = self.scratch[shape] = Target(shape, f"fuzz-scratch-{self.tag}-{shape}")
            t.build = self._builder(t)
            t.dirty = True
        if shape == "missing":
            self.missing_seq += 1
            t.obj = f"fuzz-scratch-{self.tag}-missing-{self.missing_seq}"
            t.pristine = Snapshot(False)
            return t
        if t.dirty:
            try:
                self.io.remove_object(t.obj)
            except rados.ObjectNotFound:
                pass
            assert t.build is not None
            t.build()
            t.pristine, t.dirty = snapshot(self.io, t.obj), False
        return t

    def _builder(self, t: Target) -> Callable[[], None]:
        io, obj = self.io, t.obj
        recs = SCRATCH_RECORDS

        def build() -> None:
            if t.shape not in ("header", "txn-lock", "journal", "bad-journal", "split-child"):
                put_records(io, obj, recs)
            if t.shape == "shard+locks":
                add_locks(io, obj)
            elif t.shape == "header":
                set_omap(io, obj, {"format": b"1", "nshards": b"4", "hash": b"fnv1a64-splitmix"})
                clsops.bump(io, obj)
            elif t.shape == "txn-lock":
                io.write_full(obj, b"")
                lock_txn(io, obj)
            elif t.shape in ("journal", "bad-journal"):
                add_journal(io, obj, 0x51, [0, 1])
            if t.shape == "bad-records":
                good = codec.encode_record(b"bad-crc", b"data", 1)
                set_omap(
                    io, obj, {"~": b"not a key", codec.encode_key(b"bad-crc"): good[:-1] + b"X"}
                )
            elif t.shape == "stale":  # an isolation holder whose lease ran out
                req = clsops.lock_request(OWNER_T, 1, Kind.ISOLATION, Mode.SHARED)
                clsops.lock(io, obj, req)
                time.sleep(0.01)
                clsops.prune(io, obj)
                assert clsops.state(io, obj).header.stale == [OWNER_T]
            elif t.shape == "pending":
                entries = [(kinds.Op.PUT, b"key-1", b"new"), (kinds.Op.DELETE, b"key-2", b"")]
                req = clsops.apply_request(
                    OWNER_T, 0, entries, txid=PENDING_TXID, participants=[0, 1]
                )
                clsops.apply(io, obj, req)
            elif t.shape == "bad-header":
                raw = b"\x03\x03\xff\xff\xff\x7fgarbage"  # a body longer than the header
                set_raw_header(self.cluster.conf, self.cluster.pool, obj, raw)
            elif t.shape == "bad-legacy-header":  # version 2, a lock count far too large
                raw = b"\x02\x01\x01\x01" + b"\x01" * 24 + b"\xff\xff\xff\x7f"
                set_raw_header(self.cluster.conf, self.cluster.pool, obj, raw)
            elif t.shape == "bad-journal":
                set_omap(io, obj, {"f." + "zz" * 16: b"\x01" * 8, "t.00000000000000ff": b"junk"})
            elif t.shape == "bad-redo":
                req = clsops.apply_request(
                    OWNER_T, 0, [(kinds.Op.PUT, b"k", b"v")], txid=PENDING_TXID
                )
                clsops.apply(io, obj, req)
                io.write_full(obj, b"\x02\x02\x10\x00\x00\x00not a redo log")
            elif t.shape == "splitting":
                split_first(io, obj)
            elif t.shape == "split-child":
                moved = [
                    (k, codec.encode_record(codec.decode_key(k), b"mv", 1)) for k in MOVING[:2]
                ]
                req = clsops.split_absorb_request(OWNER_A, False, 1, 2, "", MOVING[1], False, moved)
                clsops.split_absorb(io, obj, req)
                h = clsops.state(io, obj).header
                assert (h.modulus, h.index, h.split_owner) == (2, 1, OWNER_A), h

        return build


# -- requests -----------------------------------------------------------------------
def u64s() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([0, 1, 0x51, 0xAB, 0xC0, PENDING_TXID, 2**64 - 1]),
                     st.integers(0, 2**64 - 1))  # fmt: skip


def u32s() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([0, 1, 9, 11, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1))


OWNERS = st.one_of(
    st.sampled_from([OWNER_A, OWNER_B, OWNER_C, OWNER_T, FENCED, clsops.NO_OWNER]),
    st.binary(min_size=16, max_size=16),
)
KEYS = st.one_of(
    st.sampled_from([LOCKED_KEY, SHARED_KEY, b"", b"big", b"k"]), st.binary(max_size=24)
)
DATA = st.binary(max_size=64)
SMALL = st.integers(0, 9) | st.just(255)  # enums and flags, in and out of range
INDEXES = st.lists(st.integers(0, 5) | u32s(), max_size=5)
TXIDS = st.lists(u64s(), max_size=5)
ENCODED_KEYS = st.sampled_from(
    ["", codec.encode_key(LOCKED_KEY), "~", "key-3", *MOVING[:3], MOVING[-1] + "~"]
)
MODULI = st.sampled_from([0, 1, 2, 4, 8, 2**31]) | u64s()


@st.composite
def split_begin_requests(draw: st.DrawFn) -> bytes:
    """Mostly a split consistent in itself (child = index + modulus, child
    modulus 2 x modulus), as only those get past the parse."""
    index = draw(st.sampled_from([0, 1, 3]) | u32s())
    modulus = draw(st.sampled_from([1, 2, 4, index + 1]) | MODULI)
    child, child_modulus = (index + modulus) % U64, 2 * modulus % U64
    if draw(st.booleans()):
        child, child_modulus = draw(u32s()), draw(u64s())
    wflags = draw(st.sampled_from([0, 1, 4, 5]) | SMALL)
    return clsops.split_begin_request(
        draw(OWNERS), wflags, index, modulus, child % 2**32, child_modulus
    )


MOVED = st.lists(st.tuples(ENCODED_KEYS, DATA), max_size=3)


@st.composite
def split_advance_requests(draw: st.DrawFn) -> bytes:
    """Half of them fit the "splitting" shape (its resharder, its
    moved_upto, the heads of its moving records in the page's range, or
    one of them dropped or changed): only those get past its checks."""
    if not SPLITTING_HEADS or draw(st.booleans()):
        heads = draw(st.lists(st.tuples(ENCODED_KEYS, st.binary(min_size=20, max_size=20)),
                              max_size=3))  # fmt: skip
        return clsops.split_advance_request(
            draw(OWNERS), draw(st.sampled_from([0, 1, 4, 5]) | SMALL), draw(ENCODED_KEYS),
            draw(ENCODED_KEYS), draw(st.booleans()), heads,
        )  # fmt: skip
    after, end = MOVING[0], draw(st.booleans())
    upto = draw(st.sampled_from([MOVING[0], MOVING[1], MOVING[-1], MOVING[-1] + "~", ""]))
    heads = [(k, h) for k, h in SPLITTING_HEADS if k > after and (end or k <= upto)]
    how = draw(st.sampled_from(["exact", "exact", "dropped", "changed"]))
    if how != "exact" and heads:
        i = draw(st.integers(0, len(heads) - 1))
        if how == "dropped":
            del heads[i]
        else:
            heads[i] = (heads[i][0], bytes(codec.REC_HDR))
    wflags = draw(st.sampled_from([0, 1, 4, 5]))
    return clsops.split_advance_request(OWNER_A, wflags, after, upto, end, heads)


def apply_with_tail(tail: tuple[int, int] | None, *args: Any, **kwargs: Any) -> bytes:
    """An apply request with (epoch, lease_ms) appended as given, an epoch
    without a lease included (clsops' encoder refuses to make one)."""
    raw = clsops.apply_request(*args, **kwargs)
    return raw if tail is None else reframe(1, 1, raw[6:] + struct.pack("<QI", *tail))


FIELD_REQUESTS: dict[str, st.SearchStrategy[bytes]] = {
    "ApplyReq": st.builds(
        apply_with_tail, st.none() | st.tuples(st.just(0) | u64s(), u32s()), OWNERS, SMALL,
        st.lists(st.tuples(SMALL, KEYS, DATA), max_size=4), txid=u64s(), settle=u64s(),
        participants=INDEXES,
    ),
    "ClearReq": st.builds(clsops.clear_request, OWNERS, SMALL, u64s(), MODULI),
    "TxidReq": st.builds(clsops.txid_request, u64s()),
    "EmptyReq": st.just(clsops.EMPTY_REQUEST),
    "GetReq": st.builds(clsops.get_request, KEYS, u32s(), u64s()),
    "ListReq": st.builds(
        clsops.list_request, u32s(), u32s(), ENCODED_KEYS, u64s(), ENCODED_KEYS, SMALL
    ),
    "LockReq": st.builds(
        clsops.lock_request, OWNERS, u32s(), SMALL, SMALL, KEYS, SMALL, st.just(0) | u64s(),
        MODULI,
    ),
    "UnlockReq": st.builds(clsops.unlock_request, OWNERS, SMALL, SMALL, KEYS),
    "ReleaseReq": st.builds(clsops.release_request, OWNERS, u64s(), SMALL, SMALL),
    "RenewReq": st.builds(clsops.renew_request, OWNERS),
    "PruneReq": st.builds(clsops.prune_request, SMALL, st.lists(OWNERS, max_size=3)),
    "StageReq": st.builds(clsops.stage_request, u64s(), OWNERS, INDEXES, TXIDS, TXIDS),
    "TxnAbortReq": st.builds(clsops.txn_abort_request, u64s(), OWNERS, INDEXES),
    "TxnMarkReq": st.builds(clsops.txn_mark_request, TXIDS, TXIDS),
    "OwnersReq": st.builds(clsops.owners_request, st.lists(OWNERS, max_size=3)),
    "JournalReq": st.builds(clsops.journal_request, u64s()),
    "SplitBeginReq": split_begin_requests(),
    "SplitPageReq": st.builds(clsops.split_page_request, ENCODED_KEYS, u32s()),
    "SplitAbsorbReq": st.builds(
        clsops.split_absorb_request, OWNERS, st.booleans(), st.sampled_from([1, 3]) | u32s(),
        MODULI, ENCODED_KEYS, ENCODED_KEYS, st.booleans(), MOVED,
    ),
    "SplitAdvanceReq": split_advance_requests(),
    "CountReq": st.builds(clsops.count_request, st.sampled_from([0, 1, 5, 2**32 - 2]) | u32s()),
    "EpochReq": st.builds(clsops.epoch_request, u64s()),
}  # fmt: skip
HUGE = st.sampled_from([0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0x10000000, 0x00FFFFFF])
MUTATIONS = (
    "as-is", "truncate", "short-body", "newer-compat", "later-version", "frame-length",
    "after-frame", "huge-u32", "byte", "random", "random-body",
)  # fmt: skip


def reframe(version: int, compat: int, body: bytes, length: int | None = None) -> bytes:
    return struct.pack("<BBI", version, compat, len(body) if length is None else length) + body


@st.composite
def requests(draw: st.DrawFn, method: str) -> tuple[str, bytes]:
    """(how it was made, request bytes) for ``method``."""
    kind = METHOD_STRUCT.get(method, "EmptyReq")
    raw = draw(st.sampled_from(VECTORS[kind]) | FIELD_REQUESTS[kind])
    how = draw(st.sampled_from(MUTATIONS))
    body = raw[6:]
    if how == "truncate":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif how == "short-body" and body:
        raw = reframe(raw[0], raw[1], body[: draw(st.integers(0, len(body) - 1))])
    elif how == "newer-compat":
        raw = reframe(draw(st.integers(2, 255)), draw(st.integers(2, 255)), body)
    elif how == "later-version":
        raw = reframe(draw(st.integers(2, 255)), draw(st.integers(0, 1)), body + draw(DATA))
    elif how == "frame-length":
        raw = reframe(raw[0], raw[1], body, draw(st.integers(len(body) + 1, 2**32 - 1) | HUGE))
    elif how == "after-frame":
        raw += draw(st.binary(min_size=1, max_size=16))
    elif how == "huge-u32" and len(raw) >= 4:
        at = draw(st.integers(0, len(raw) - 4))
        raw = raw[:at] + struct.pack("<I", draw(HUGE)) + raw[at + 4 :]
    elif how == "byte" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    elif how == "random":
        raw = draw(st.binary(max_size=96))
    elif how == "random-body":
        raw = reframe(1, draw(st.integers(0, 1)), draw(st.binary(max_size=96)))
    return how, raw


# -- sending -------------------------------------------------------------------------
def execute(io: Any, obj: str, method: str, req: bytes, outlen: int) -> tuple[int, bytes]:
    """(0, reply) or (errno, b"")."""
    try:
        _, out = io.execute(obj, clsops.CLASS, method, req, outlen)
    except rados.Error as exc:
        code = clsops.errno_of(exc)
        assert code, f"{method} on {obj}: an error without errno: {exc!r}"
        return code, b""
    return 0, bytes(out)


REPLY_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "get": clsops.decode_get, "list": clsops.decode_list, "seq": clsops.decode_seq,
    "state": clsops.decode_state, "watchers": clsops.decode_watchers,
    "journal": clsops.decode_journal, "version": lambda out: int(out),
    "split_page": clsops.decode_split_page, "count": clsops.decode_count,
}  # fmt: skip


def damage(before: Snapshot, after: Snapshot) -> list[str]:
    """What decoded in ``before`` and does not in ``after``: the class never
    makes good stored data bad."""
    out = []

    def header_ok(s: Snapshot) -> bool:
        try:
            clsops.decode_header(s.header)
            return True
        except clsops.WireError:
            return False

    if header_ok(before) and not header_ok(after):
        out.append(f"the header no longer decodes: {after.header.hex()}")
    elif header_ok(before):
        old, new = clsops.decode_header(before.header), clsops.decode_header(after.header)
        if old.splitting and new.split_to == old.split_to and new.moved_upto < old.moved_upto:
            # reshard.cc: "moved_upto only grows, so a key found moved stays moved"
            out.append(f"moved_upto went back from {old.moved_upto!r} to {new.moved_upto!r}")

    def bad_records(s: Snapshot) -> set[str]:
        bad = set()
        for k, v in s.omap.items():
            if k.startswith(("t.", "f.")):
                continue  # journal keys
            try:
                codec.decode_record(codec.decode_key(k), v)
            except codec.CodecError:
                bad.add(k)
        return bad

    new_bad = bad_records(after) - bad_records(before)
    if new_bad:
        out.append(f"records no longer verify: {sorted(new_bad)}")

    def journal_bad(s: Snapshot) -> set[str]:
        bad = set()
        for k, v in s.omap.items():
            if k.startswith("t."):
                try:
                    clsops._record(v)
                except clsops.WireError:
                    bad.add(k)
        return bad

    new_bad = journal_bad(after) - journal_bad(before)
    if new_bad:
        out.append(f"journal records no longer decode: {sorted(new_bad)}")
    return out


@dataclass
class Outcome:
    method: str
    target: str
    how: str
    expected: int
    got: int


def fuzz_one(objs: Objects, method: str, how: str, raw: bytes, shape: str, outlen: int) -> int:
    """Send one request and check what it did; the errno it got."""
    io = objs.io
    expected = classify(method, raw)
    write = method not in READS
    scratch = shape in SCRATCH_ONLY or (write and expected == 0)
    target = objs.scratch_target(shape) if scratch else objs.precious[shape]
    before = target.pristine if scratch else None
    if scratch and write:
        target.dirty = True  # until found unchanged: a failed check leaves it rebuilt
    got, out = execute(io, target.obj, method, raw, outlen)
    objs.sent += 1
    what = f"{method} {how} on {target.shape} ({target.obj}), request {raw.hex()}: errno {got}"
    state = target.pristine or Snapshot(False)
    missing = not state.exists
    if expected:
        if method in READS and missing:
            expected = errno.ENOENT  # the OSD answers before the class runs
        assert got == expected, f"{what}, expected {expected}"
    elif documented_einval(method, raw, state):
        assert got == errno.EINVAL, f"{what}, expected the -EINVAL documented for {method}"
    else:
        assert got in allowed(method), f"{what}, not documented for {method}"
        if got == 0 and method in REPLY_DECODERS and shape not in CORRUPT:
            try:
                reply = REPLY_DECODERS[method](out)
            except (clsops.WireError, ValueError) as exc:
                pytest.fail(f"{what}: the reply {out.hex()} does not decode: {exc}")
            if method == "count":  # the object's keys, counted up to limit + 1
                limit = int.from_bytes(raw[6:10], "little")
                assert reply == min(len(state.omap), limit + 1), f"{what}: count {reply}"
    if not scratch:
        if write:  # a refused write changes nothing
            assert snapshot(io, target.obj).header == state.header
        return got
    if write and got == 0:
        assert before is not None
        absorbed = request_fields(method, raw) if method == "split_absorb" else None
        if absorbed is not None and not all(readable_key(k) for k, _ in absorbed["records"]):
            check_absorb_count(io, target.obj, before, absorbed, what)
            target.dirty = True  # python-rados cannot read the keys it stored
            if shape == "missing":
                io.remove_object(target.obj)
            return got
        after = snapshot(io, target.obj)
        if absorbed is not None:
            hurt = check_absorb(before, after, absorbed)
            before, after = without_range(before, absorbed), without_range(after, absorbed)
        else:
            hurt = []
        hurt += damage(before, after)
        assert not hurt, f"{what}: {hurt}"
        target.dirty = after != before or absorbed is not None
        if target.dirty and shape == "missing" and after.exists:
            io.remove_object(target.obj)
    elif write:
        target.dirty = False  # refused: it changed nothing
    return got


# -- split_absorb: it stores the records it is given, as given (reshard.cc) -----------
def readable_key(okey: bytes) -> bool:
    """Can python-rados read back an omap key (UTF-8, no NUL: it cuts keys there)?"""
    try:
        okey.decode()
    except UnicodeDecodeError:
        return False
    return b"\x00" not in okey


def in_page(okey: bytes, f: dict[str, Any]) -> bool:
    """Is ``okey`` in the page's range (after, upto], or after ``after`` with end?"""
    return okey > f["after"] and (bool(f["end"]) or okey <= f["upto"])


def check_absorb(before: Snapshot, after: Snapshot, f: dict[str, Any]) -> list[str]:
    """split_absorb replaced the object's keys in the page's range by the
    records of the request, and changed no other key."""
    out = []
    given = {k.decode(): v for k, v in f["records"]}  # the last of a key wins
    stored = {k: v for k, v in after.omap.items() if in_page(k.encode(), f)}
    if stored != given:
        out.append(f"the page's range holds {stored}, not the records absorbed {given}")
    kept = {k: v for k, v in before.omap.items() if not in_page(k.encode(), f)}
    outside = {k: v for k, v in after.omap.items() if not in_page(k.encode(), f)}
    if kept != outside:
        out.append("keys outside the page's range changed")
    return out


def check_absorb_count(io: Any, obj: str, before: Snapshot, f: dict[str, Any], what: str) -> None:
    """check_absorb for keys python-rados cannot read: how many keys the class counts."""
    kept = [k for k in before.omap if not in_page(k.encode(), f)]
    expected = len(kept) + len({k for k, _ in f["records"]})
    assert clsops.count(io, obj, 1 << 20) == expected, f"{what}: keys after the absorb"


def without_range(s: Snapshot, f: dict[str, Any]) -> Snapshot:
    """The snapshot without the keys of an absorbed page (check_absorb's)."""
    omap = {k: v for k, v in s.omap.items() if not in_page(k.encode(), f)}
    return Snapshot(s.exists, s.header, omap, s.data)


# -- fixtures ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_io(ceph_cluster: ClusterInfo) -> Iterator[Any]:
    """An I/O context whose ops time out (a hung OSD fails instead of hanging)."""
    client = clustermod.connect(ceph_cluster.conf, ceph_cluster.client_id, float(OP_TIMEOUT))
    io = client.open_ioctx(ceph_cluster.pool)
    yield io
    io.close()
    client.shutdown()


@pytest.fixture(scope="module")
def objects(fuzz_io: Any, ceph_cluster: ClusterInfo) -> Iterator[Objects]:
    objs = Objects(fuzz_io, ceph_cluster)
    objs.create()
    yield objs
    if objs.handle is not None:
        objs.handle.close()


def osd_pids(cluster: ClusterInfo) -> dict[str, int]:
    assert cluster.dev is not None, "the fuzz needs the throwaway cluster (daemon PIDs)"
    pids = {d.name: d.pid for d in cluster.dev.daemons() if d.kind == "osd"}
    assert pids and all(cluster.dev.osd(int(n.split(".")[1])).alive() for n in pids)
    return pids


@pytest.fixture
def osd_watch(ceph_cluster: ClusterInfo, objects: Objects) -> Iterator[None]:
    """The OSD keeps its PID and answers a normal request."""
    before = osd_pids(ceph_cluster)
    yield
    assert osd_pids(ceph_cluster) == before, "an OSD restarted"
    io = objects.io
    shard = objects.precious["shard"].obj
    assert clsops.version(io, shard) == clsops.WIRE_VERSION
    assert objects.handle is not None
    assert objects.handle.get(b"key-5") == objects.records[b"key-5"]


# -- tests ---------------------------------------------------------------------------
def test_documented_errnos_parsed() -> None:
    """The documentation this fuzz holds the class to is found for every method."""
    assert set(DOCUMENTED) == set(METHODS)
    assert errno.EUCLEAN in DOCUMENTED["apply"] and errno.ENOLCK in DOCUMENTED["renew"]
    assert set(METHOD_STRUCT) | {"version"} == set(METHODS)
    assert set(BODY_RULES) == set(METHOD_STRUCT.values()) | {"EmptyReq"}
    assert {errno.ERANGE, errno.EREMCHG} <= DOCUMENTED["split_advance"]
    # server.cc: to the OSD they mean "requeued": it would send no reply at all
    assert not [m for m, d in DOCUMENTED.items() if {errno.EAGAIN, errno.EINPROGRESS} & d]
    # a well-formed request gets -EINVAL only where the method documents it
    for method in SEMANTIC_EINVAL:
        assert errno.EINVAL in DOCUMENTED[method] | REFERRED.get(method, set()), method
    assert not {m for m in METHODS if errno.EINVAL in DOCUMENTED[m]} - set(SEMANTIC_EINVAL)


def test_classify_agrees_with_the_vectors() -> None:
    for v in WIRE["requests"]:
        raw = bytes.fromhex(v["hex"])
        for m in v["methods"]:
            assert classify(m, raw) == 0, v["name"]
            assert classify(m, raw[:-1]) == errno.EINVAL, v["name"]
            assert classify(m, reframe(2, 2, raw[6:])) == errno.EOPNOTSUPP


# requests without their optional trailing fields (ops.h), to append them to
OPTIONAL_TAILS = {
    "apply": "apply-one-put",  # u64 epoch, u32 lease_ms (both, or neither)
    "clear": "clear",  # u64 modulus
    "list": "list-after",  # bytes until, then u8 flags
    "lock": "lock-record-queue",  # u64 epoch, then u64 modulus, then u64 inbox
}


def _vector(name: str) -> bytes:
    return bytes.fromhex(next(v["hex"] for v in WIRE["requests"] if v["name"] == name))


def _with_tail(method: str, tail: bytes) -> bytes:
    return reframe(1, 1, _vector(OPTIONAL_TAILS[method])[6:] + tail)


def test_classify_optional_fields() -> None:
    """The model: a trailing field is read whole or refused; bytes after the
    last one known are ignored (a later version's)."""
    epoch_lease = struct.pack("<QI", 7, 1000)
    cases = [
        *(("clear", bytes(n), errno.EINVAL) for n in range(1, 8)),
        ("clear", bytes(8), 0), ("clear", bytes(9), 0), ("clear", b"\xff" * 15, 0),
        *(("lock", bytes(n), errno.EINVAL) for n in (*range(1, 8), *range(9, 16), *range(17, 24))),
        ("lock", bytes(8), 0), ("lock", bytes(16), 0), ("lock", bytes(24), 0),
        ("lock", b"\xff" * 25, 0),
        *(("apply", bytes(n), errno.EINVAL) for n in range(1, 12)),
        ("apply", bytes(12), 0),  # epoch 0: none
        ("apply", struct.pack("<QI", 7, 0), errno.EINVAL),  # an epoch without a lease
        ("apply", epoch_lease, 0), ("apply", epoch_lease + b"later", 0),
        *(("list", bytes(n), errno.EINVAL) for n in range(1, 4)),
        ("list", bytes(4), 0), ("list", b"\x02\x00\x00\x00a", errno.EINVAL),
        ("list", b"\x02\x00\x00\x00ab", 0), ("list", b"\x02\x00\x00\x00abc", errno.EINVAL),
        ("list", b"\x02\x00\x00\x00ab\x01", 0), ("list", b"\x02\x00\x00\x00ab\x01later", 0),
    ]  # fmt: skip
    for method, tail, expected in cases:
        assert classify(method, _with_tail(method, tail)) == expected, (method, tail.hex())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_vectors_to_every_object(method: str, objects: Objects, osd_watch: None) -> None:
    """Every golden request of the method, as is and cut short, to every kind of object."""
    for raw in VECTORS[METHOD_STRUCT.get(method, "EmptyReq")]:
        for shape in SHAPES + SCRATCH_ONLY:
            fuzz_one(objects, method, "vector", raw, shape, 1 << 20)
            fuzz_one(objects, method, "vector-cut", raw[:-1], shape, 1 << 20)


def test_split_steps_fitting_a_split_in_progress(objects: Objects, osd_watch: None) -> None:
    """The resharding steps as a resharder sends them, and near misses, to
    shards mid-split (the "splitting" shape: shard 0 of modulus 1 splitting
    into 1, MOVING[0] moved; "split-child": shard 1 being filled), each
    checked as the fuzz checks any request, and the documented outcome of
    the fitting ones. Every step is sent; the failures are listed at the end."""
    failures: list[str] = []

    def step(method: str, how: str, raw: bytes, shape: str, expected: int) -> None:
        try:
            got = fuzz_one(objects, method, how, raw, shape, 1 << 20)
            assert got == expected, f"{method} {how} on {shape}: errno {got}, not {expected}"
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0])

    objects.scratch_target("splitting")  # built: SPLITTING_HEADS
    heads_after = dict(SPLITTING_HEADS)
    assert list(heads_after) == MOVING[1:]
    after = MOVING[0]  # its moved_upto
    for end in (False, True):
        for upto in (MOVING[0], MOVING[1], MOVING[-1], MOVING[-1] + "~", ""):
            exact = [(k, h) for k, h in heads_after.items() if k > after and (end or k <= upto)]
            backwards = not end and upto <= after  # a page must end past its start
            for wflags in (0, clsops.WRITE_RELEASE):
                raw = clsops.split_advance_request(OWNER_A, wflags, after, upto, end, exact)
                want = errno.EINVAL if backwards else 0
                step("split_advance", f"upto {upto!r} end {end}", raw, "splitting", want)
        exact = [(k, h) for k, h in heads_after.items() if k > after and (end or k <= MOVING[-1])]
        changed = [(k, bytes(codec.REC_HDR)) for k, _ in exact[-1:]]
        for how, heads in (
            ("dropped", exact[:-1]),
            ("changed", exact[:-1] + changed),
            ("extra", [*exact, (MOVING[-1] + "~", bytes(codec.REC_HDR))]),
        ):  # the records changed since the page was read
            raw = clsops.split_advance_request(OWNER_A, 0, after, MOVING[-1], end, heads)
            step("split_advance", f"{how} end {end}", raw, "splitting", errno.EREMCHG)
        raw = clsops.split_advance_request(OWNER_B, 0, after, MOVING[1], end, [])
        step("split_advance", "by another", raw, "splitting", errno.ECANCELED)
        raw = clsops.split_advance_request(OWNER_A, 0, "", MOVING[1], end, [])
        step("split_advance", "from an old view", raw, "splitting", errno.ERANGE)
    for start in ("", MOVING[0], MOVING[1], "~"):
        for most in (1, 2, 1000):
            raw = clsops.split_page_request(start, most)
            step("split_page", f"after {start!r} max {most}", raw, "splitting", 0)
    for owner, takeover in ((OWNER_A, False), (OWNER_B, False), (OWNER_B, True)):
        for start, upto, end in (("", MOVING[1], False), (MOVING[1], "", True), ("", "", True)):
            moved = [
                (k, codec.encode_record(codec.decode_key(k), b"absorbed", 3))
                for k in MOVING
                if k > start and (end or k <= upto)
            ]
            raw = clsops.split_absorb_request(owner, takeover, 1, 2, start, upto, end, moved)
            # another resharder fills the shard: refused unless it takes it over
            expected = errno.ECANCELED if owner != OWNER_A and not takeover else 0
            step("split_absorb", f"{start!r}..{upto!r} end {end}", raw, "split-child", expected)
    for shape, fits in (("splitting", (0, 1, 1, 2)), ("split-child", (1, 2, 3, 4))):
        for owner in (OWNER_A, OWNER_B):  # the same split again, or taken over
            raw = clsops.split_begin_request(owner, 0, *fits)
            step("split_begin", f"{fits} by {owner.hex()[:4]}", raw, shape, 0)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("method", sorted(OPTIONAL_TAILS))
def test_optional_fields_to_the_class(method: str, objects: Objects, osd_watch: None) -> None:
    """The class reads the optional trailing fields as the model does: a
    request with 1 to 26 extra body bytes (zeros, 0x01 then zeros, 0xff), to
    a shard and a missing object."""
    for extra in range(1, 27):
        for tail in (bytes(extra), b"\x01" + bytes(extra - 1), b"\xff" * extra):
            for shape in ("shard", "missing"):
                fuzz_one(objects, method, f"+{extra}", _with_tail(method, tail), shape, 1 << 20)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_fuzz_method(method: str, objects: Objects, osd_watch: None, record_figure: Any) -> None:
    shapes = st.sampled_from(SHAPES + SCRATCH_ONLY)
    outlens = st.sampled_from([1 << 20, 1 << 20, 4096, 16, 0])
    sent = objects.sent

    @FUZZ
    @given(req=requests(method), shape=shapes, outlen=outlens)
    def run(req: tuple[str, bytes], shape: str, outlen: int) -> None:
        fuzz_one(objects, method, req[0], req[1], shape, outlen)

    run()
    record_figure(f"{method} requests sent", objects.sent - sent)
    for t in objects.precious.values():
        assert snapshot(objects.io, t.obj) == t.pristine, f"{t.shape} ({t.obj}) changed"


def test_database_intact_after_fuzz(objects: Objects, osd_watch: None, record_figure: Any) -> None:
    """Runs last: nothing the fuzz sent changed the database; with the foreign
    locks released it opens, check finds it clean and every record is there."""
    for t in objects.precious.values():
        assert snapshot(objects.io, t.obj) == t.pristine, f"{t.shape} ({t.obj}) changed"
    record_figure("requests sent in all", objects.sent)
    site = admin.connect()
    report = admin.check(site, objects.name)
    assert report.clean, [f.describe() for f in report.findings]
    assert report.records == len(objects.records)
    objects.release()
    objects.handle = radostdb.Tdb(objects.name)
    assert dict(objects.handle.items()) == objects.records
    report = admin.check(site, objects.name)
    assert report.clean and report.records == len(objects.records)


# -- the redo log and bugs found --------------------------------------------------------
def test_redo_log_vector(fuzz_io: Any, ceph_cluster: ClusterInfo) -> None:
    """The OSD writes the redo log of tests/vectors/wire.json byte for byte
    (the omap untouched), reads through it for the committer, refuses a log
    of another transaction, installs it on settle and drops it on rollback."""
    vec = next(v for v in WIRE["stored"] if v["struct"] == "RedoLog")
    f, raw = vec["fields"], bytes.fromhex(vec["hex"])
    txid = f["txid"]
    io = fuzz_io
    objs = [f"fuzz-redo-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for obj in objs:
        old = [(kinds.Op.PUT, b"k1", b"v1"), (kinds.Op.PUT, b"k3", b"v9")]
        clsops.apply(io, obj, clsops.apply_request(OWNER_A, 0, old))
        part = [(kinds.Op.PUT, b"k1", b"v2"), (kinds.Op.PUT, b"k2", b"v3"),
                (kinds.Op.DISCARD, b"k3", b"")]  # fmt: skip
        clsops.apply(io, obj, clsops.apply_request(OWNER_A, 0, part, txid=txid))
        assert io.read(obj, 1 << 16) == raw
        assert clsops.state(io, obj).header.pending == txid
        assert clsops.get(io, obj, b"k1").status == clsops.ReadStatus.PENDING
        assert clsops.get(io, obj, b"k1", accept=txid).record == codec.encode_record(
            b"k1", b"v2", 2
        )
        assert clsops.get(io, obj, b"k3", accept=txid).status == clsops.ReadStatus.MISSING
        page = clsops.list_page(io, obj, "", 10, 1 << 20, accept=txid)
        assert codec.parse_page(page.page) == [(b"k1", b"v2"), (b"k2", b"v3")]
        assert snapshot(io, obj).omap == {
            codec.encode_key(b"k1"): codec.encode_record(b"k1", b"v1", 1),
            codec.encode_key(b"k3"): codec.encode_record(b"k3", b"v9", 1),
        }, "the omap is untouched while the transaction is pending"
    settled, rolled = objs
    io.write_full(settled, raw[:6] + struct.pack("<Q", txid + 1) + raw[14:])
    for call in (clsops.settle, clsops.rollback):  # a redo log of another transaction
        with pytest.raises(TdbError) as exc:
            call(io, settled, txid)
        assert exc.value.args[0] == ERR_CORRUPT
    io.write_full(settled, raw)
    clsops.settle(io, settled, txid)
    assert clsops.get(io, settled, b"k1").record == codec.encode_record(b"k1", b"v2", 2)
    assert clsops.get(io, settled, b"k2").record == codec.encode_record(b"k2", b"v3", 2)
    assert clsops.get(io, settled, b"k3").status == clsops.ReadStatus.MISSING
    clsops.rollback(io, rolled, txid)
    assert clsops.get(io, rolled, b"k1").record == codec.encode_record(b"k1", b"v1", 1)
    assert clsops.get(io, rolled, b"k2").status == clsops.ReadStatus.MISSING
    assert clsops.get(io, rolled, b"k3").record == codec.encode_record(b"k3", b"v9", 1)
    for obj in objs:
        assert io.stat(obj)[0] == 0
        io.remove_object(obj)


WRITES_AFTER = {  # a write carrying settle = X of the shard pending X -> what it must see
    "append": ([(kinds.Op.APPEND, b"new", b"+")], {b"new": b"n1+", b"gone": None}),
    "insert-existing": ([(kinds.Op.INSERT, b"new", b"x")], None),  # EEXIST
    "insert-removed": ([(kinds.Op.INSERT, b"gone", b"x")], {b"new": b"n1", b"gone": b"x"}),
    "modify": ([(kinds.Op.MODIFY, b"new", b"m")], {b"new": b"m", b"gone": None}),
    "modify-removed": ([(kinds.Op.MODIFY, b"gone", b"m")], None),  # ENOENT
    "delete": ([(kinds.Op.DELETE, b"new", b"")], {b"new": None, b"gone": None}),
    "delete-removed": ([(kinds.Op.DELETE, b"gone", b"")], None),  # ENOENT
    "append-removed": ([(kinds.Op.APPEND, b"gone", b"a")], {b"new": b"n1", b"gone": b"a"}),
}


@pytest.mark.parametrize("case", sorted(WRITES_AFTER))
def test_a_write_that_settles_sees_what_it_installs(fuzz_io: Any, case: str) -> None:
    """A write carrying ``settle = X`` installs X's redo log and then checks
    and applies its own entries in the same call: it must decide on the
    records X wrote (the OSD does not show a method its own omap writes)."""
    io = fuzz_io
    obj = f"fuzz-settle-{uuid.uuid4().hex[:8]}"
    txid = PENDING_TXID
    clsops.apply(io, obj, clsops.apply_request(OWNER_A, 0, [(kinds.Op.PUT, b"gone", b"g0")]))
    part = [(kinds.Op.PUT, b"new", b"n1"), (kinds.Op.DISCARD, b"gone", b"")]
    clsops.apply(io, obj, clsops.apply_request(OWNER_A, 0, part, txid=txid))
    entries, expected = WRITES_AFTER[case]
    req = clsops.apply_request(OWNER_A, 0, entries, settle=txid)
    if expected is None:
        with pytest.raises(TdbError):
            clsops.apply(io, obj, req)
        assert clsops.state(io, obj).header.pending == txid, "a refused write changes nothing"
        clsops.settle(io, obj, txid)
        expected = {b"new": b"n1", b"gone": None}
    else:
        clsops.apply(io, obj, req)
    assert clsops.state(io, obj).header.pending == 0
    assert io.stat(obj)[0] == 0, "the redo log is dropped once installed"
    for key, data in expected.items():
        got = clsops.get(io, obj, key)
        if data is None:
            assert got.status == clsops.ReadStatus.MISSING, key
        else:
            assert codec.decode_record(key, got.record)[1] == data, key
    io.remove_object(obj)


_KEYS = st.binary(min_size=0, max_size=3)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    before=st.dictionaries(_KEYS, st.binary(max_size=40), max_size=25),
    writes=st.dictionaries(_KEYS, st.one_of(st.none(), st.binary(max_size=40)), max_size=25),
    max_records=st.integers(1, 7),
    max_bytes=st.sampled_from([1, 60, 1 << 20]),
)
def test_reads_through_a_redo_log(
    fuzz_io: Any,
    before: dict[bytes, bytes],
    writes: dict[bytes, bytes | None],
    max_records: int,
    max_bytes: int,
) -> None:
    """The committer's reads of a shard pending its transaction (accept):
    every get, and the records listed page by page (few records, few bytes a
    page; the log removing whole pages), are those of the omap with the
    transaction's writes (None: DISCARD) installed."""
    io = fuzz_io
    obj = f"fuzz-through-{uuid.uuid4().hex[:8]}"
    txid = PENDING_TXID
    if before:
        clsops.apply(
            io,
            obj,
            clsops.apply_request(OWNER_A, 0, [(kinds.Op.PUT, k, v) for k, v in before.items()]),
        )
    part = [
        (kinds.Op.PUT, k, v) if v is not None else (kinds.Op.DISCARD, k, b"")
        for k, v in writes.items()
    ]
    if part:
        clsops.apply(io, obj, clsops.apply_request(OWNER_A, 0, part, txid=txid))
    expected = {**before, **{k: v for k, v in writes.items() if v is not None}}
    for k in writes:
        if writes[k] is None:
            expected.pop(k, None)
    for k in set(before) | set(writes):
        got = clsops.get(io, obj, k, accept=txid)
        if k in expected:
            assert codec.decode_record(k, got.record)[1] == expected[k]
        else:
            assert got.status == clsops.ReadStatus.MISSING
    listed: list[tuple[bytes, bytes]] = []
    after = ""
    while True:
        page = clsops.list_page(io, obj, after, max_records, max_bytes, accept=txid)
        assert page.pending is None
        records = codec.parse_page(page.page)
        assert len(records) <= max_records
        assert records or not page.more, "a page that says more holds a record"
        listed += records
        if not page.more:
            break
        after = codec.encode_key(records[-1][0])
    assert listed == sorted(expected.items())
    try:
        io.remove_object(obj)
    except rados.ObjectNotFound:
        pass


def test_journal_with_undecodable_fence_key(fuzz_io: Any, ceph_cluster: ClusterInfo) -> None:
    """A fence key that is not hex is corrupt data (-EIO), not an OSD crash
    (the class used to throw std::invalid_argument out of std::stoi)."""
    before = osd_pids(ceph_cluster)
    obj = f"fuzz-journal-{uuid.uuid4().hex[:8]}"
    clsops.fence_owners(fuzz_io, obj, [OWNER_A])
    set_omap(fuzz_io, obj, {"f." + "zz" * 16: b"\x00" * 8})
    with pytest.raises(TdbError) as exc:
        clsops.journal(fuzz_io, obj)
    assert exc.value.args[0] == ERR_CORRUPT
    assert osd_pids(ceph_cluster) == before
    assert clsops.journal(fuzz_io, obj, txid=5).records == {}  # one record: no fence scan
    fuzz_io.remove_object(obj)

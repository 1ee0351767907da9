"""Describing databases without changing them: ``radostdb ls`` and ``info``,
and the lock tables and unfinished commits they (and check) show.

inspect design:
- Sizes are read from the raw omap (scan.OmapPages, many shards at once),
  not verified: check verifies. Sequence numbers, lock tables and pending
  transactions come from the object class (clsops.seq, clsops.state).
- An object whose class metadata does not decode is skipped where a table
  is listed (held locks, unfinished commits) and reported as a finding
  where the database is described (info), so that describing a damaged
  database never fails on the damage: check and repair deal with it.
- A long name's objects are hashed, so listings read the name back from
  its header's name field.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import rados

from .. import clsops, codec, kinds, layout, scan
from .. import names as names_mod
from ..errors import ERR_CORRUPT, ERR_NOEXIST, TdbError
from ..router import Router, Split
from ..tdbdump import quoted
from .findings import Finding, Kind
from .serialize import KEY, converted, named
from .site import AdminError, Header, NoDatabase, Site, exists_object, read_header

# what reading class data can raise (stored data that does not decode: the
# OSD's -EIO is TDB's corrupt error, a reply the client cannot decode a
# WireError or, once clsops maps it, TDB's corrupt error too)
UNREADABLE = (TdbError, OSError, clsops.WireError)


def undecodable(exc: BaseException) -> bool:
    """Whether ``exc`` says that stored data does not decode."""
    return isinstance(exc, clsops.WireError) or (
        isinstance(exc, TdbError) and exc.code == ERR_CORRUPT
    )


# -- sizes ------------------------------------------------------------------------------
@dataclass
class ShardStats:
    """What one shard object holds."""

    index: int
    object: str
    records: int = 0
    key_bytes: int = 0  # raw keys
    data_bytes: int = 0  # record data
    omap_bytes: int = 0  # omap keys and values as stored (encoding, record headers)
    seq: int | None = None  # shard sequence number; None if its header did not decode

    def add(self, page: list[tuple[str, bytes]]) -> None:
        """Count a raw omap page of this shard."""
        eks = [ek for ek, _ in page]
        enc = sum(len(ek) for ek in eks)
        try:
            raw = sum(len(k) for k in codec.decode_keys(eks))
        except codec.CodecError:
            raw = enc
        vals = sum(len(v) for _, v in page)
        self.records += len(page)
        self.key_bytes += raw
        self.data_bytes += vals - codec.REC_HDR * len(page)
        self.omap_bytes += enc + vals


def shard_stats(
    site: Site,
    name: str,
    nshards: int,
    progress: Callable[[int], None] | None = None,
    split: Split | None = None,
) -> list[ShardStats]:
    """Record counts and sizes of every shard (reads every record, not
    verified); with a split under way, the new shard's copies in progress
    (past its moved_upto) are not counted."""
    out = [ShardStats(i, layout.shard_object(name, i)) for i in range(nshards)]
    opener = scan.omap_pages(site.io, [s.object for s in out])
    for index, page in scan.scan(nshards, opener, window=scan.SCAN_WINDOW):
        if split is not None and index == split.q and not split.done:
            page = [(ek, v) for ek, v in page if split.moved_upto and ek <= split.moved_upto]
        out[index].add(page)
        if progress is not None:
            progress(len(page))
    seqs = object_seqs(site.io, [s.object for s in out])
    for s in out:
        seq = seqs[s.object]
        s.seq = seq if isinstance(seq, int) else None
    return out


def object_seqs(io: Any, objs: list[str]) -> dict[str, int | Exception]:
    """Each object's sequence number (0 if missing), or the error reading it, in parallel."""
    calls = [(obj, clsops.aio_seq(io, obj)) for obj in objs]
    out: dict[str, int | Exception] = {}
    for obj, call in calls:
        try:
            out[obj] = call.wait()
        except UNREADABLE as exc:
            out[obj] = exc
    return out


def object_states(io: Any, objs: list[str]) -> dict[str, clsops.ObjectState | None]:
    """Each object's class state (``clsops.state``), read in parallel: None
    for a missing object; objects whose metadata does not decode are left out."""
    out = {}
    for obj, call in [(obj, clsops.aio_state(io, obj)) for obj in objs]:
        try:
            out[obj] = call.wait()
        except UNREADABLE:
            continue
    return out


def error_text(exc: Exception) -> str:
    """An exception as a short text for a finding."""
    if isinstance(exc, TdbError):
        return exc.message
    return str(exc) or type(exc).__name__


# -- ls ---------------------------------------------------------------------------------
@dataclass
class DbSummary:
    """One line of ``radostdb ls``."""

    name: str
    nshards: int | None
    records: int | None
    bytes: int | None  # raw keys and data
    omap_bytes: int | None
    problem: str | None = None
    # a name no caller can open (radostdb 0.2 stored it as given): what to do
    note: str | None = None


def header_objects(site: Site) -> list[str]:
    """The header objects in the site's pool and namespace, sorted."""
    try:
        return sorted(o.key for o in site.io.list_objects() if layout.is_header_object(o.key))
    except rados.Error as exc:
        raise AdminError(f"cannot list the objects of {site.where}: {exc}") from exc


def stored_name(site: Site, obj: str) -> str | None:
    """The database name a header object stands for: spelled out in the
    object name for a short name, read from the header's name key for a long
    (hashed) one. None when the header has gone, or a hashed header has no
    name key."""
    if obj.startswith(layout.HEADER_PREFIX):
        return obj[len(layout.HEADER_PREFIX) :]
    with rados.ReadOpCtx() as op:
        it, _ = site.io.get_omap_vals_by_keys(op, (layout.NAME_KEY,))
        try:
            site.io.operate_read_op(op, obj)
        except rados.ObjectNotFound:
            return None
        value = dict(it).get(layout.NAME_KEY)
    return None if value is None else value.decode("utf-8", "replace")


def database_names(site: Site) -> list[str]:
    """Names of the databases in the site's pool and namespace, sorted (full
    names, long ones read from their headers)."""
    names = (stored_name(site, obj) for obj in header_objects(site))
    return sorted(n for n in names if n is not None)


def list_databases(site: Site) -> list[DbSummary]:
    """Every database in the pool and namespace, with shard count, records and size.

    A hashed header object without a name key is listed under its object name
    with the problem said."""
    out: list[DbSummary] = []
    names: list[str] = []
    nameless: list[DbSummary] = []
    for obj in header_objects(site):
        name = stored_name(site, obj)
        if name is not None:
            names.append(name)
        elif exists_object(site, obj):
            problem = f"header object {obj} has no {layout.NAME_KEY!r} field"
            nameless.append(DbSummary(obj, None, None, None, None, problem))
    for name in sorted(names):
        try:
            header = read_header(site, name)
        except NoDatabase:
            continue  # removed while listing
        n = header.nshards
        lay = header.layout
        if header.problems or n is None or lay is None:
            out.append(DbSummary(name, n, None, None, None, "; ".join(header.problems)))
            continue
        homes = Router(lambda: site.io, name, lay)
        split = homes.learn_split()
        stats = shard_stats(site, name, homes.shard_count(), split=split)
        mapped = names_mod.unnormalised(name)
        note = (
            None
            if mapped is None
            else (
                f"stored under a name radostdb 0.2 did not normalise: no handle can open it; "
                f"radostdb rename --literal {shlex.quote(name)} {shlex.quote(mapped)}"
            )
        )
        out.append(
            DbSummary(
                name,
                n,
                sum(s.records for s in stats),
                sum(s.key_bytes + s.data_bytes for s in stats),
                sum(s.omap_bytes for s in stats),
                note=note,
            )
        )
    return out + nameless


# -- locks and unfinished commits ------------------------------------------------------------
_LOCK_KINDS = {
    kinds.Kind.RECORD: "record",
    kinds.Kind.SHARD: "shard",
    kinds.Kind.TXN: "transaction",
    kinds.Kind.ISOLATION: "isolation",
    kinds.Kind.COMMIT: "commit",
    kinds.Kind.USER: "lock-user",
    kinds.Kind.WATCH: "watch",
}
_LOCK_MODES = {kinds.Mode.EXCL: "exclusive", kinds.Mode.SHARED: "shared"}


@dataclass
class HeldLock:
    """One entry of a lock table (a shard's, or the transaction lock's): a
    holder, or a waiter queued for the lock."""

    object: str
    kind: str  # record, shard, transaction, isolation (a transaction's), commit, watch
    mode: str  # exclusive or shared
    key: bytes = field(default=b"", metadata=KEY)
    owner: bytes = b""  # the holding (or waiting) handle's id
    expires_in: float = 0.0  # seconds on the OSD clock; negative: the lease has run out
    queued: bool = False  # a waiter, not a holder

    @property
    def expired(self) -> bool:
        return self.expires_in < 0

    @property
    def watch(self) -> bool:
        """A watched record's entry (radostdb/watch.py), not a lock: it blocks
        nothing, and a lapsed one costs nothing (the next write drops it)."""
        return self.kind == _LOCK_KINDS[kinds.Kind.WATCH]

    def describe(self) -> str:
        """One line: what is locked, by whom, until when."""
        what = f"{self.mode} {self.kind} lock" + (" (queued)" if self.queued else "")
        if self.watch:
            what = f"watch on key {quoted(self.key)}"
        elif self.kind == "record":
            what += f" on key {quoted(self.key)}"
        when = (
            f"expired {-self.expires_in:.1f}s ago"
            if self.expired
            else f"expires in {self.expires_in:.1f}s"
        )
        return f"{what} in {self.object}, owner {self.owner.hex()}, {when}"


def held_locks(site: Site, objs: list[str]) -> list[HeldLock]:
    """Every holder and waiter in the lock tables of ``objs`` (unreadable
    tables skipped: check reports their headers)."""
    out = []
    for obj, st in object_states(site.io, objs).items():
        if st is None:
            continue
        for e in st.header.entries:
            out.append(
                HeldLock(
                    obj,
                    _LOCK_KINDS.get(e.kind, f"kind-{e.kind}"),
                    _LOCK_MODES.get(e.mode, f"mode-{e.mode}"),
                    e.key,
                    e.owner,
                    (e.expiry_ms - st.now_ms) / 1000,
                    not e.held,
                )
            )
    return out


TXN_KEY = re.compile(r"t\.([0-9a-f]{16})\Z")  # a journal record's omap key
FENCE_KEY = re.compile(r"f\.[0-9a-f]{32}\Z")  # a fenced owner's omap key
LEGACY_KEY = re.compile(r"(txid|state|part\..*)\Z", re.DOTALL)  # a radostdb 0.1 journal


def journal_keys(site: Site, obj: str) -> tuple[list[str], list[str]]:
    """(the journal's omap keys, those among them that are neither a record,
    a fenced owner nor part of a radostdb 0.1 journal), read raw.

    The class's ``journal`` method must never see the strays: it parses
    fence keys as hex and an OSD of radostdb up to now dies on one that is
    not (an uncaught std::invalid_argument)."""
    keys = [k for page in scan.OmapPages(site.io, obj, keys_only=True) for k, _ in page]
    strays = [
        k for k in keys if not (TXN_KEY.match(k) or FENCE_KEY.match(k) or LEGACY_KEY.match(k))
    ]
    return keys, strays


def unfinished_commit(site: Site, name: str, shard_objs: list[str]) -> list[str]:
    """The objects that show a multi-shard transaction not decided: shards
    marked pending, objects with stale owners, and the journal if one of its
    records is undecided (staged, and not every participant has it).
    Records of transactions settled everywhere are harmless: the next
    transaction start (or check --repair) forgets them. Objects that do not
    decode, and a journal holding keys the class does not expect, are left
    out (check reports them). Empty: none."""
    found = []
    wait_obj = layout.wait_object(layout.header_object(name))
    states = object_states(site.io, [*shard_objs, wait_obj])
    headers: dict[int, clsops.ShardHeader] = {}
    for i, obj in enumerate([*shard_objs, wait_obj]):
        st = states.get(obj)
        if st is None:
            continue
        headers[i] = st.header
        if st.header.pending or st.header.stale:
            found.append(obj)
    journal = layout.journal_object(name)
    if journal_keys(site, journal)[1]:
        return found
    try:
        records = clsops.journal(site.io, journal)
    except UNREADABLE:
        return found
    for rec in records.records.values():
        if rec.state == kinds.TxnState.STAGED and not all(
            headers.get(i, clsops.ShardHeader()).has(rec.txid) for i in rec.participants
        ):
            found.append(journal)
            break
    if records.legacy:
        found.append(journal)
    return found


# -- info -------------------------------------------------------------------------------------
@dataclass
class Opener:
    """A handle that has the database open: a watch on its header object."""

    client: int
    cookie: int

    def __str__(self) -> str:
        return f"client.{self.client} (watch {self.cookie:#x})"


def _fields(header: Header) -> dict[str, str]:
    return header.fields


@dataclass
class DbInfo:
    """What ``radostdb info`` shows."""

    name: str
    pool: str
    namespace: str
    header: Header = field(metadata=converted(_fields))
    seqnum: int | None
    shards: list[ShardStats]
    openers: list[Opener] = field(metadata=named("open_by"))
    locks: list[HeldLock]
    # objects that show an unfinished commit (journal, pending shards)
    unfinished: list[str] = field(metadata=named("unfinished_transaction"))
    findings: list[Finding] = field(metadata=named("problems"))
    split: Split | None = None  # a split under way (or done but not in the header)

    json_extra = ("records", "key_bytes", "data_bytes", "omap_bytes")

    def _total(self, what: str) -> int:
        return sum(getattr(s, what) for s in self.shards)

    records = property(lambda self: self._total("records"), doc="Records in every shard.")
    key_bytes = property(lambda self: self._total("key_bytes"), doc="Bytes of the raw keys.")
    data_bytes = property(lambda self: self._total("data_bytes"), doc="Bytes of the data.")
    omap_bytes = property(lambda self: self._total("omap_bytes"), doc="Bytes RADOS stores.")


def openers(site: Site, name: str) -> list[Opener]:
    """The CLEAR_IF_FIRST handles (on any host) that have the database open
    (plain handles keep no watch on the header: see storage.py)."""
    try:
        return [Opener(c, k) for c, k in clsops.watchers(site.io, layout.header_object(name))]
    except TdbError as exc:
        if exc.code == ERR_NOEXIST:
            raise site.missing(name) from None
        raise


def info(site: Site, name: str, progress: Callable[[int], None] | None = None) -> DbInfo:
    """Header, sequence number, records, sizes and open handles of a database."""
    header = read_header(site, name)
    findings = [Finding(Kind.HEADER, header.object, p) for p in header.problems]
    lay = header.layout
    split = None
    shards = []
    if lay is not None and not header.problems:
        homes = Router(lambda: site.io, name, lay)
        try:
            split = homes.learn_split()
        except UNREADABLE:
            pass  # its header does not decode: a finding below
        shards = shard_stats(site, name, homes.shard_count(), progress, split)
    for s in shards:
        if s.seq is None:
            findings.append(
                Finding(Kind.SHARD_HEADER, s.object, "omap header does not decode", shard=s.index)
            )
    wait_obj = layout.wait_object(header.object)
    seqs = object_seqs(site.io, [header.object, wait_obj])
    for obj, seq in seqs.items():
        if isinstance(seq, Exception):
            findings.append(Finding(Kind.OBJECT_HEADER, obj, "omap header does not decode"))
    seq = seqs[header.object]
    seqnum = None
    if not isinstance(seq, Exception) and all(s.seq is not None for s in shards):
        seqnum = seq + sum(s.seq or 0 for s in shards)
    objs = [s.object for s in shards]
    return DbInfo(
        name,
        site.pool,
        site.namespace,
        header,
        seqnum,
        shards,
        openers(site, name),
        held_locks(site, [header.object, wait_obj, *objs]),
        unfinished_commit(site, name, objs),
        findings,
        split,
    )

"""Administration beyond the Tdb API: the library behind the ``radostdb`` CLI.

It finds, describes, reads in key order, checks, repairs and removes
databases.

admin design:
- It reads a database's objects directly (layout, codec, clsops), so it adds
  no watcher of its own and works on databases a handle refuses to open (a
  bad header). Transactions a dead committer left undecided are decided
  with commit.decide / commit.settle_all, which need no lock. Record writes
  other than repairs go through radostdb.Tdb, in the CLI.
- Records (``records``, for dump and export) are read with the class
  ``list`` method: a shard in the middle of a multi-shard commit answers
  "pending" and the transaction is decided (or, in flight, waited for), so
  a reader never sees half a commit; pages
  are verified by the native codec. Each shard has its next page requested
  (in a worker thread) while the current one is consumed. A shard's omap is
  in encoded-key order, which is raw-key order, so a k-way merge of the
  shards gives every record in key order.
- Stats and check read the raw omap (aio, a page ahead), so that check sees
  what is stored even where the class would refuse it (corrupt entries).
- Page sizes adapt to the record size so that a page stays near a byte
  budget, shared between the shards read at once: memory is bounded by the
  budget, not by the database.
- Names: functions take database names, already mapped by names.py (the
  CLI maps its arguments); objects come from layout. A long name's objects
  are hashed, so listings read it back from its header's name key.
- Reads are not a snapshot: a database changed while it is read shows some
  changes and not others, as a TDB traversal without a lock would.
- ``check`` reports findings, each with a ``kind`` (FINDING_KINDS). A repair
  of a record rewrites a shard only if the shard has not changed since the
  bad entry was read again (assert_version), and goes through the object
  class (so the shard sequence number grows and the class's lock checks
  apply). An unfinished commit is finished by the transaction recovery;
  expired locks are pruned by the class. What cannot be undone is never
  done without being asked: corrupt records are dropped only with
  ``drop_corrupt``.
- A misplaced record (valid, in a shard other than its key's) is invisible
  to fetch but seen by traversal. Repair inserts it into its own shard, then
  drops the stray copy; if its shard already holds the key, that record is
  the one readers get, and only the stray copy is dropped. Interrupted
  between the two steps, the database holds both copies, and check again
  finishes the job.
"""

from __future__ import annotations

import concurrent.futures
import errno
import heapq
import itertools
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import rados

from . import clsops, codec, commit, layout
from . import cluster as clustermod
from .errors import ERR_EXISTS, ERR_NOEXIST, RadostdbError, TdbError
from .tdbdump import escape

# Reading: the first page is small (records may be large); later pages aim
# at PAGE_BYTES, at most PAGE_MAX records, and share READ_BUDGET between the
# shards read at once (each has a page in hand and one in flight). Memory
# is bounded by the budget, or by one page of PAGE_BYTES_MIN (or of a single
# record) per shard for databases with very many shards.
FIRST_PAGE = 4
PAGE_MAX = 1000
PAGE_BYTES = 8 << 20
PAGE_BYTES_MIN = 64 << 10
READ_BUDGET = 32 << 20
SCAN_WINDOW = 64  # shards scanned concurrently by stats and check
LIST_SLACK = 64 << 10  # reply buffer beyond the page bytes asked for
FIRST_PAGE_BYTES = 256 << 10
READ_THREADS = 8  # shards read at once by ShardRecords
MAX_REPLY = 1 << 32  # the largest reply buffer tried for one huge record
PENDING_TIMEOUT = 300.0  # how long a read waits for a pending shard
REPAIR_ATTEMPTS = 5
CONNECT_TIMEOUT = 30.0

# The lock owner id of repairs (they hold no lock; the class refuses them on a
# record another handle has locked).
_REPAIR_OWNER = uuid.uuid4().bytes
# shard object names, as layout.shard_object makes them: index and stem
SHARD_RE = re.compile(r"radostdb\.s(\d{5})([.#].+)\Z", re.DOTALL)

# check finding kinds
HEADER = "header"  # the header object is missing fields or has wrong values
SHARD_HEADER = "shard-header"  # a shard's omap header does not decode
BAD_KEY = "bad-key"  # an omap key that is not a radostdb key encoding
CORRUPT_RECORD = "corrupt-record"  # a record that fails its format or crc32c
MISPLACED = "misplaced"  # a record stored in a shard other than its key's
TRANSACTION = "transaction"  # a multi-shard commit left unfinished (journal, pending shard)
EXPIRED_LOCK = "expired-lock"  # a lock whose lease ran out, still in a lock table
FINDING_KINDS = (
    HEADER,
    SHARD_HEADER,
    BAD_KEY,
    CORRUPT_RECORD,
    MISPLACED,
    TRANSACTION,
    EXPIRED_LOCK,
)


class AdminError(RadostdbError):
    """A failure explained in one line for the operator."""


class NoDatabase(AdminError):
    """The named database does not exist."""


class CorruptDatabase(AdminError):
    """Stored data does not decode; ``radostdb check`` tells more."""


# -- where -----------------------------------------------------------------------
_connections: dict[tuple[str, str], Any] = {}


@dataclass
class Site:
    """A connected cluster, pool and namespace: where databases are looked for."""

    conf: str
    client_id: str
    pool: str
    namespace: str
    conn: Any = field(repr=False)
    io: Any = field(repr=False)

    @property
    def where(self) -> str:
        """'pool 'P'' or 'pool 'P' namespace 'N'', for messages."""
        ns = f" namespace {self.namespace!r}" if self.namespace else ""
        return f"pool {self.pool!r}{ns}"

    def tdb_kwargs(self) -> dict[str, Any]:
        """Keywords that make radostdb.Tdb open a database here, by its
        database name (already mapped: no path prefix taken off again)."""
        return {
            "conf": self.conf,
            "client_id": self.client_id,
            "pool": self.pool,
            "namespace": self.namespace,
            "cluster": self.conn,
            "path_prefix": "",
        }

    def missing(self, name: str) -> NoDatabase:
        """The error for a database that is not here, with what to do about it."""
        return NoDatabase(
            f"database {name!r} does not exist in {self.where} of the cluster of {self.conf} "
            "(list databases with 'radostdb ls'; create one with 'radostdb restore', "
            "'radostdb import' or 'radostdb store --create')"
        )


def connect(
    conf: str | None = None,
    client_id: str | None = None,
    pool: str | None = None,
    namespace: str | None = None,
    timeout: float | None = None,
) -> Site:
    """Connect to a cluster and check the pool; defaults as radostdb.Tdb's.

    Connections are kept for the life of the process, one per (conf, client id).
    """
    conf = conf or os.environ.get("CEPH_CONF") or clustermod.DEFAULT_CONF
    client_id = client_id or os.environ.get("RADOSTDB_ID") or clustermod.DEFAULT_ID
    pool = pool or os.environ.get("RADOSTDB_POOL") or clustermod.DEFAULT_POOL
    namespace = namespace or ""
    if not os.path.isfile(conf):
        raise AdminError(
            f"no Ceph configuration file at {conf} (point --conf or CEPH_CONF at the "
            "cluster's ceph.conf)"
        )
    conn = _connections.get((conf, client_id))
    if conn is None:
        conn = _connect(conf, client_id, timeout)
        _connections[(conf, client_id)] = conn
    try:
        if not conn.pool_exists(pool):
            raise AdminError(
                f"pool {pool!r} does not exist in the cluster of {conf} (create it with "
                f"'ceph osd pool create {pool}', or choose one with --pool or RADOSTDB_POOL)"
            )
        io = conn.open_ioctx(pool)
    except rados.Error as exc:
        raise AdminError(f"cannot open pool {pool!r} in the cluster of {conf}: {exc}") from exc
    io.set_namespace(namespace)
    return Site(conf, client_id, pool, namespace, conn, io)


def _connect(conf: str, client_id: str, timeout: float | None) -> Any:
    """A connection with the one timeout policy (cluster.connect)."""
    try:
        return clustermod.connect(conf, client_id, timeout)
    except OSError as exc:
        raise AdminError(str(exc.strerror or exc)) from None


def _rados_message(exc: rados.Error) -> str:
    code = clsops.errno_of(exc)
    return os.strerror(code) if code else str(exc)


# -- header ------------------------------------------------------------------------
@dataclass
class Header:
    """A database's header object: its fields as stored, and what is wrong with them."""

    name: str
    fields: dict[str, str]
    problems: list[str]

    @property
    def nshards(self) -> int | None:
        """The shard count, or None when the header does not give a usable one."""
        try:
            n = int(self.fields["nshards"])
        except (KeyError, ValueError):
            return None
        return n if 1 <= n <= layout.MAX_SHARDS else None

    @property
    def object(self) -> str:
        return layout.header_object(self.name)


def header_problems(fields: dict[str, str], name: str | None = None) -> list[str]:
    """What is wrong with header fields (of database ``name``, if given), as a
    list of one-line descriptions."""
    problems = []
    stored = fields.get(layout.NAME_KEY)
    if name is not None and stored is not None and stored != name:
        problems.append(f"the header names database {stored!r}")
    fmt = fields.get("format")
    if fmt is None:
        problems.append("no 'format' field")
    elif fmt != str(layout.FORMAT_VERSION):
        problems.append(f"format {fmt!r}; this radostdb reads format {layout.FORMAT_VERSION}")
    if fields.get("hash") != layout.HASH_NAME:
        problems.append(f"hash {fields.get('hash')!r}; this radostdb uses {layout.HASH_NAME!r}")
    n = fields.get("nshards")
    if n is None:
        problems.append("no 'nshards' field")
    elif not n.isdigit() or not 1 <= int(n) <= layout.MAX_SHARDS:
        problems.append(f"nshards {n!r} is not a number from 1 to {layout.MAX_SHARDS}")
    return problems


def read_header(site: Site, name: str) -> Header:
    """The header of database ``name``; NoDatabase if it has none."""
    layout.check_name(name)
    obj = layout.header_object(name)
    fields: dict[str, str] = {}
    start = ""
    while True:
        with rados.ReadOpCtx() as op:
            it, _ = site.io.get_omap_vals(op, start, "", PAGE_MAX)
            try:
                site.io.operate_read_op(op, obj)
            except rados.ObjectNotFound:
                raise site.missing(name) from None
            page = list(it)
        for k, v in page:
            fields[k] = v.decode("utf-8", "replace")
        if len(page) < PAGE_MAX:
            break
        start = page[-1][0]
    return Header(name, fields, header_problems(fields, name))


def usable_header(site: Site, name: str) -> Header:
    """As read_header, and CorruptDatabase when records cannot be found with it."""
    header = read_header(site, name)
    if header.problems:
        raise CorruptDatabase(
            f"database {name!r} has an unusable header: {'; '.join(header.problems)}"
        )
    return header


def exists(site: Site, name: str) -> bool:
    """Whether database ``name`` has a header object."""
    return exists_object(site, layout.header_object(name))


def exists_object(site: Site, obj: str) -> bool:
    """Whether object ``obj`` exists."""
    try:
        site.io.stat(obj)
    except rados.ObjectNotFound:
        return False
    return True


# -- reading -----------------------------------------------------------------------
class _PageRead:
    """One omap page read in flight (aio)."""

    def __init__(self, io: Any, obj: str, after: str, count: int, keys_only: bool) -> None:
        self.io, self.obj, self.count = io, obj, count
        self.op = io.create_read_op()
        if keys_only:
            self.it, _ = io.get_omap_keys(self.op, after, count)
        else:
            self.it, _ = io.get_omap_vals(self.op, after, "", count)
        self.completion = io.operate_aio_read_op(self.op, obj)

    def result(self) -> list[tuple[str, Any]] | None:
        """The page; None when the object does not exist."""
        try:
            self.completion.wait_for_complete()
            ret = self.completion.get_return_value()
            if ret == -errno.ENOENT:
                return None
            if ret < 0:
                raise clsops.error_of(-ret, f"reading {self.obj}")
            return list(self.it)
        finally:
            self.io.release_read_op(self.op)


def page_bytes(concurrent: int) -> int:
    """The byte size to aim a page at when ``concurrent`` shards are read at once."""
    return max(PAGE_BYTES_MIN, min(PAGE_BYTES, READ_BUDGET // (2 * max(1, concurrent))))


class ShardPages:
    """The omap of one object as pages of ``(omap key, value)``, in key order.

    The first page is requested on creation, and each next page as soon as
    the previous one arrives, so that many shards can be read in parallel.
    ``close`` (or garbage collection) waits out a read still in flight.
    """

    def __init__(self, io: Any, obj: str, *, keys_only: bool = False, concurrent: int = 1) -> None:
        self.io, self.obj, self.keys_only = io, obj, keys_only
        self.target = page_bytes(concurrent)
        self._pending: _PageRead | None = _PageRead(io, obj, "", FIRST_PAGE, keys_only)

    def __iter__(self) -> ShardPages:
        return self

    def __next__(self) -> list[tuple[str, Any]]:
        pending, self._pending = self._pending, None
        if pending is None:
            raise StopIteration
        page = pending.result()
        if not page:
            raise StopIteration
        if len(page) == pending.count:  # there may be more: ask now
            size = sum(len(k) for k, _ in page)
            if not self.keys_only:
                size += sum(len(v) for _, v in page)
            count = max(1, min(PAGE_MAX, self.target * len(page) // max(1, size)))
            self._pending = _PageRead(self.io, self.obj, page[-1][0], count, self.keys_only)
        return page

    def close(self) -> None:
        """Stop reading (idempotent)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                pending.result()
            except (TdbError, OSError):
                pass

    def __del__(self) -> None:
        self.close()


def _bad_key_error(obj: str, page: list[tuple[str, Any]]) -> CorruptDatabase:
    for ek, _ in page:
        try:
            codec.decode_key(ek)
        except codec.CodecError:
            return CorruptDatabase(
                f"{obj} holds omap key {ek!r}, which is not a radostdb key (run 'radostdb check')"
            )
    return CorruptDatabase(f"{obj}: a page of keys does not decode (run 'radostdb check')")


def _corrupt_error(obj: str, key: bytes, exc: Exception) -> CorruptDatabase:
    return CorruptDatabase(
        f"record {display_key(key)} in {obj} is corrupt ({exc}); run 'radostdb check'"
    )


class _Pending(RadostdbError):
    """A shard is pending a multi-shard transaction (``info``)."""

    def __init__(self, info: clsops.PendingInfo) -> None:
        super().__init__(f"transaction {info.txid:x} pending")
        self.info = info


def _list_page(io: Any, obj: str, after: str, page_bytes: int) -> tuple[bool, bytes]:
    """(more, page) of the class ``list`` method; the reply buffer grows for a
    record bigger than it. Raises _Pending while the shard is pending.

    Synchronous on purpose: librados' aio exec overruns the reply buffer of
    a reply that does not fit (python-rados then crashes), sync exec reports
    ERANGE. ShardRecords runs it in worker threads (the GIL is released).
    """
    try:
        res = clsops.list_page(io, obj, after, PAGE_MAX, page_bytes)
    except TdbError as exc:
        if getattr(exc, "errno", 0) == errno.EIO:
            where = f"after omap key {after!r}" if after else "at its start"
            raise CorruptDatabase(
                f"{obj} holds a record, key or header that does not decode ({where}); "
                "run 'radostdb check'"
            ) from None
        raise
    if res.pending is not None:
        raise _Pending(res.pending)
    return res.more, res.page


_readers: concurrent.futures.ThreadPoolExecutor | None = None


def _reader_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _readers
    if _readers is None:
        _readers = concurrent.futures.ThreadPoolExecutor(READ_THREADS, "radostdb-admin-read")
    return _readers


class ShardRecords:
    """The records of one shard as pages of ``(key, data)``, in key order.

    Read with the class ``list`` method, so that a shard in the middle of a
    multi-shard commit (pending) is waited for, never read half-committed;
    every record is verified by the native codec. The first page is asked
    for on creation and each next one as soon as the previous arrives (in a
    worker thread), so that shards are read in parallel. ``on_pending`` is
    called with the pending info while a shard is pending; it decides the
    transaction (commit.decide) and says whether it is still in flight.
    """

    def __init__(
        self,
        io: Any,
        obj: str,
        *,
        concurrent: int = 1,
        on_pending: Callable[[clsops.PendingInfo], bool] | None = None,
    ) -> None:
        self.io, self.obj, self.on_pending = io, obj, on_pending
        self.target = page_bytes(concurrent)
        self.after = ""
        self._next: concurrent.futures.Future[tuple[bool, bytes]] | None = self._start(
            min(self.target, FIRST_PAGE_BYTES)
        )

    def _start(self, size: int) -> concurrent.futures.Future[tuple[bool, bytes]]:
        return _reader_pool().submit(self._read, self.after, size)

    def _read(self, after: str, size: int) -> tuple[bool, bytes]:
        deadline = time.monotonic() + PENDING_TIMEOUT
        delay = 0.01
        while True:
            try:
                return _list_page(self.io, self.obj, after, size)
            except _Pending as pending:
                if time.monotonic() > deadline:
                    raise AdminError(
                        f"{self.obj} is still pending after {PENDING_TIMEOUT:.0f}s: a "
                        "transaction whose committer holds the transaction lock"
                    ) from None
                if self.on_pending is not None and not self.on_pending(pending.info):
                    continue  # decided: read again at once
                time.sleep(delay)
                delay = min(1.0, delay * 2)

    def __iter__(self) -> ShardRecords:
        return self

    def __next__(self) -> list[tuple[bytes, bytes]]:
        future, self._next = self._next, None
        if future is None:
            raise StopIteration
        more, page = future.result()
        try:
            records = codec.parse_page(page)
        except codec.CodecError as exc:
            raise CorruptDatabase(
                f"{self.obj}: record {exc.entry} of the page after omap key {self.after!r} "
                f"is corrupt ({exc}); run 'radostdb check'"
            ) from None
        if not records:
            raise StopIteration
        if more:
            self.after = codec.encode_key(records[-1][0])
            size = len(page) * PAGE_MAX // len(records) + len(page) // 4  # as many again
            self._next = self._start(max(PAGE_BYTES_MIN, min(self.target, size)))
        return records

    def close(self) -> None:
        """Stop reading (idempotent): wait out a read in flight."""
        future, self._next = self._next, None
        if future is not None:
            concurrent.futures.wait([future])

    def __del__(self) -> None:
        self.close()


def records(site: Site, name: str, *, ordered: bool = True) -> Iterator[tuple[bytes, bytes]]:
    """Every record ``(key, data)`` of a database; in raw-key order unless not ``ordered``.

    Ordered reading merges all shards at once; unordered reads them one after
    the other. Memory stays within the read budget either way.
    """
    header = usable_header(site, name)
    objs = layout.shard_objects(name, header.nshards or 1)

    db = _db_objects(site, name, header.nshards or 1)

    def resolve(info: clsops.PendingInfo) -> bool:
        return commit.decide(db, info) == commit.Outcome.IN_FLIGHT

    if not ordered:
        for obj in objs:
            yield from itertools.chain.from_iterable(ShardRecords(site.io, obj, on_pending=resolve))
        return
    streams = [
        itertools.chain.from_iterable(
            ShardRecords(site.io, obj, concurrent=len(objs), on_pending=resolve)
        )
        for obj in objs
    ]
    yield from heapq.merge(*streams)


def _db_objects(site: Site, name: str, nshards: int) -> commit.DbObjects:
    return commit.DbObjects(lambda: site.io, name, layout.shard_objects(name, nshards))


def finish_commit(site: Site, name: str, nshards: int) -> list[str]:
    """Decide every multi-shard transaction a dead committer left (rolled
    back or settled, commit.settle_all) and clear stale lock owners. Returns
    the objects still waiting for a live committer."""
    return commit.settle_all(_db_objects(site, name, nshards))


def _round_robin(streams: list[Iterator[Any]]) -> Iterator[tuple[int, Any]]:
    """(stream index, item), taking one item from each live stream in turn."""
    live = list(enumerate(streams))
    while live:
        still = []
        for i, stream in live:
            item = next(stream, None)
            if item is not None:
                still.append((i, stream))
                yield i, item
        live = still


def _windows(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


# -- sizes and description -------------------------------------------------------------
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


def _page_stats(stats: ShardStats, page: list[tuple[str, bytes]]) -> None:
    eks = [ek for ek, _ in page]
    enc = sum(len(ek) for ek in eks)
    try:
        raw = sum(len(k) for k in codec.decode_keys(eks))
    except codec.CodecError:
        raw = enc
    vals = sum(len(v) for _, v in page)
    stats.records += len(page)
    stats.key_bytes += raw
    stats.data_bytes += vals - codec.REC_HDR * len(page)
    stats.omap_bytes += enc + vals


def shard_stats(
    site: Site, name: str, nshards: int, progress: Callable[[int], None] | None = None
) -> list[ShardStats]:
    """Record counts and sizes of every shard (reads every record, not verified)."""
    out = [ShardStats(i, layout.shard_object(name, i)) for i in range(nshards)]
    for window in _windows(nshards, SCAN_WINDOW):
        streams = [ShardPages(site.io, out[i].object, concurrent=len(window)) for i in window]
        for j, page in _round_robin(streams):
            _page_stats(out[window[j]], page)
            if progress is not None:
                progress(len(page))
    seqs = object_seqs(site.io, [s.object for s in out])
    for s in out:
        seq = seqs[s.object]
        s.seq = seq if isinstance(seq, int) else None
    return out


def count_records(site: Site, name: str) -> int:
    """The number of records (omap keys only are read, shards in parallel)."""
    n = usable_header(site, name).nshards or 1
    objs = layout.shard_objects(name, n)
    total = 0
    for window in _windows(n, SCAN_WINDOW):
        streams = [
            ShardPages(site.io, objs[i], keys_only=True, concurrent=len(window)) for i in window
        ]
        total += sum(len(page) for _, page in _round_robin(streams))
    return total


def object_seqs(io: Any, objs: list[str]) -> dict[str, int | Exception]:
    """Each object's sequence number (0 if missing), or the error reading it, in parallel."""
    calls = [(obj, clsops.aio_seq(io, obj)) for obj in objs]
    out: dict[str, int | Exception] = {}
    for obj, call in calls:
        try:
            out[obj] = call.wait()
        except (TdbError, OSError) as exc:
            out[obj] = exc
    return out


@dataclass
class DbSummary:
    """One line of ``radostdb ls``."""

    name: str
    nshards: int | None
    records: int | None
    bytes: int | None  # raw keys and data
    omap_bytes: int | None
    problem: str | None = None


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
        if header.problems or n is None:
            out.append(DbSummary(name, n, None, None, None, "; ".join(header.problems)))
            continue
        stats = shard_stats(site, name, n)
        out.append(
            DbSummary(
                name,
                n,
                sum(s.records for s in stats),
                sum(s.key_bytes + s.data_bytes for s in stats),
                sum(s.omap_bytes for s in stats),
            )
        )
    return out + nameless


@dataclass
class Opener:
    """A handle that has the database open: a watch on its header object."""

    client: int
    cookie: int

    def __str__(self) -> str:
        return f"client.{self.client} (watch {self.cookie:#x})"


@dataclass
class DbInfo:
    """What ``radostdb info`` shows."""

    name: str
    pool: str
    namespace: str
    header: Header
    seqnum: int | None
    shards: list[ShardStats]
    openers: list[Opener]
    locks: list[HeldLock]
    unfinished: list[str]  # objects that show an unfinished commit (journal, pending shards)
    findings: list[Finding]

    @property
    def records(self) -> int:
        return sum(s.records for s in self.shards)

    @property
    def key_bytes(self) -> int:
        return sum(s.key_bytes for s in self.shards)

    @property
    def data_bytes(self) -> int:
        return sum(s.data_bytes for s in self.shards)

    @property
    def omap_bytes(self) -> int:
        return sum(s.omap_bytes for s in self.shards)


def openers(site: Site, name: str) -> list[Opener]:
    """The handles (on any host) that have the database open."""
    try:
        return [Opener(c, k) for c, k in clsops.watchers(site.io, layout.header_object(name))]
    except TdbError as exc:
        if exc.code == ERR_NOEXIST:
            raise site.missing(name) from None
        raise


def info(site: Site, name: str, progress: Callable[[int], None] | None = None) -> DbInfo:
    """Header, sequence number, records, sizes and open handles of a database."""
    header = read_header(site, name)
    findings = [Finding(HEADER, header.object, p) for p in header.problems]
    n = header.nshards
    shards = shard_stats(site, name, n, progress) if n is not None and not header.problems else []
    for s in shards:
        if s.seq is None:
            findings.append(
                Finding(SHARD_HEADER, s.object, "omap header does not decode", shard=s.index)
            )
    seq = object_seqs(site.io, [header.object])[header.object]
    if isinstance(seq, Exception):
        findings.append(Finding(HEADER, header.object, "omap header does not decode"))
        seqnum = None
    else:
        seqnum = (
            None if any(s.seq is None for s in shards) else seq + sum(s.seq or 0 for s in shards)
        )
    objs = [s.object for s in shards]
    unfinished = unfinished_commit(site, name, objs)
    return DbInfo(
        name,
        site.pool,
        site.namespace,
        header,
        seqnum,
        shards,
        openers(site, name),
        held_locks(site, [header.object, layout.wait_object(header.object), *objs]),
        unfinished,
        findings,
    )


# -- locks and transactions -------------------------------------------------------
_LOCK_KINDS = {
    clsops.Kind.RECORD: "record",
    clsops.Kind.SHARD: "shard",
    clsops.Kind.TXN: "transaction",
    clsops.Kind.ISOLATION: "isolation",
    clsops.Kind.COMMIT: "commit",
}
_LOCK_MODES = {clsops.Mode.EXCL: "exclusive", clsops.Mode.SHARED: "shared"}


@dataclass
class HeldLock:
    """One entry of a lock table (a shard's, or the transaction lock's): a
    holder, or a waiter queued for the lock."""

    object: str
    kind: str  # record, shard, transaction, isolation (a transaction's), commit
    mode: str  # exclusive or shared
    key: bytes
    owner: bytes  # the holding (or waiting) handle's id
    expires_in: float  # seconds on the OSD clock; negative: the lease has run out
    queued: bool = False  # a waiter, not a holder

    @property
    def expired(self) -> bool:
        return self.expires_in < 0

    def describe(self) -> str:
        """One line: what is locked, by whom, until when."""
        what = f"{self.mode} {self.kind} lock" + (" (queued)" if self.queued else "")
        if self.kind == "record":
            what += f" on key {display_key(self.key)}"
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
    calls = [(obj, clsops.aio_state(site.io, obj)) for obj in objs]
    for obj, call in calls:
        try:
            st = call.wait()
        except (TdbError, OSError, clsops.WireError):
            continue
        if st is None:
            continue
        for e in st.header.entries:
            out.append(HeldLock(obj, _LOCK_KINDS.get(e.kind, f"kind-{e.kind}"),
                                _LOCK_MODES.get(e.mode, f"mode-{e.mode}"), e.key, e.owner,
                                (e.expiry_ms - st.now_ms) / 1000, not e.held))
    return out


def unfinished_commit(site: Site, name: str, shard_objs: list[str]) -> list[str]:
    """The objects that show a multi-shard transaction not decided: shards
    marked pending, objects with stale owners, and the journal if one of its
    records is undecided (staged, and not every participant has it).
    Records of transactions settled everywhere are harmless: the next
    transaction start (or check --repair) forgets them. Empty: none."""
    found = []
    wait_obj = layout.wait_object(layout.header_object(name))
    calls = [(obj, clsops.aio_state(site.io, obj)) for obj in [*shard_objs, wait_obj]]
    headers: dict[int, clsops.ShardHeader] = {}
    for i, (obj, call) in enumerate(calls):
        try:
            st = call.wait()
        except (TdbError, OSError, clsops.WireError):
            continue  # an unreadable shard: check reports it
        if st is None:
            continue
        headers[i] = st.header
        if st.header.pending or st.header.stale:
            found.append(obj)
    journal = layout.journal_object(name)
    try:
        records = clsops.journal(site.io, journal)
    except (TdbError, OSError):
        return found
    for rec in records.records.values():
        if rec.state == clsops.TxnState.STAGED and not all(
                headers.get(i, clsops.ShardHeader()).has(rec.txid) for i in rec.participants):
            found.append(journal)
            break
    if records.legacy:
        found.append(journal)
    return found


# -- check and repair ------------------------------------------------------------
@dataclass
class Finding:
    """One problem found by check; ``repair`` says what was done about it, if anything."""

    kind: str
    object: str
    message: str
    key: bytes | None = None
    shard: int | None = None
    omap_key: str | None = None
    repairable: bool = False
    repair: str | None = None
    repaired: bool = False

    def describe(self) -> str:
        """One line: kind, where, what."""
        where = self.object if self.shard is None else f"shard {self.shard} ({self.object})"
        what = f" key {display_key(self.key)}" if self.key is not None else ""
        if self.key is None and self.omap_key is not None:
            what = f" omap key {self.omap_key!r}"
        return f"{self.kind}: {where}{what}: {self.message}"


@dataclass
class CheckReport:
    """The outcome of check: what was looked at and what was found."""

    name: str
    nshards: int | None
    records: int = 0
    shards_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when nothing is wrong (any more): every finding was repaired."""
        return all(f.repaired for f in self.findings)


def check(
    site: Site,
    name: str,
    *,
    repair: bool = False,
    drop_corrupt: bool = False,
    progress: Callable[[int], None] | None = None,
) -> CheckReport:
    """Verify a database; with ``repair``, fix what can be fixed safely.

    Checks the header, every shard's metadata, and every record's key
    encoding, crc and shard. Corrupt entries are removed only with
    ``drop_corrupt`` as well.
    """
    header = read_header(site, name)
    n = header.nshards
    report = CheckReport(name, n)
    report.findings += [Finding(HEADER, header.object, p) for p in header.problems]
    hseq = object_seqs(site.io, [header.object])[header.object]
    if isinstance(hseq, Exception):
        report.findings.append(Finding(HEADER, header.object, "omap header does not decode"))
    if n is None or header.problems:
        return report  # without a trusted shard count, records cannot be placed
    objs = layout.shard_objects(name, n)
    for obj, seq in object_seqs(site.io, objs).items():
        if isinstance(seq, Exception):
            report.findings.append(
                Finding(
                    SHARD_HEADER,
                    obj,
                    f"omap header does not decode ({_error_text(seq)})",
                    shard=_shard_index(obj),
                )
            )
    report.findings += _check_transaction(site, name, objs, repair)
    lock_objs = [header.object, layout.wait_object(header.object), *objs]
    report.findings += _check_locks(site, lock_objs, repair)
    for window in _windows(n, SCAN_WINDOW):
        streams = [ShardPages(site.io, objs[i], concurrent=len(window)) for i in window]
        for j, page in _round_robin(streams):
            shard = window[j]
            report.findings += _check_page(objs[shard], shard, n, page)
            report.records += len(page)
            if progress is not None:
                progress(len(page))
        report.shards_checked += len(window)
    if repair:
        for f in report.findings:
            if f.kind in (BAD_KEY, CORRUPT_RECORD, MISPLACED):
                _repair(site, name, n, f, drop_corrupt)
    return report


def _check_transaction(site: Site, name: str, objs: list[str], repair: bool) -> list[Finding]:
    """A finding per object showing an unfinished commit; with ``repair``, the
    commit is finished first (rolled forward or back, by the recovery of txn.py)."""
    found = [
        Finding(
            TRANSACTION,
            obj,
            "journal records of multi-shard transactions not yet settled"
            if obj == layout.journal_object(name)
            else "pending (or stale owners): a multi-shard transaction not yet decided",
            shard=_shard_index(obj),
            repairable=True,
        )
        for obj in unfinished_commit(site, name, objs)
    ]
    if found and repair:
        if finish_commit(site, name, len(objs)):
            outcome, done = (
                (
                    "not repaired: a live handle holds the transaction lock (its "
                    "commit is under way); run check again"
                ),
                False,
            )
        elif unfinished_commit(site, name, objs):
            outcome, done = "not repaired: still unfinished after recovery", False
        else:
            outcome, done = "finished: the transaction was settled or rolled back", True
        for f in found:
            f.repair, f.repaired = outcome, done
    return found


def _check_locks(site: Site, objs: list[str], repair: bool) -> list[Finding]:
    """A finding per expired lock entry; with ``repair``, they are pruned."""
    found = []
    expired = [lk for lk in held_locks(site, objs) if lk.expired]
    for lk in expired:
        found.append(
            Finding(
                EXPIRED_LOCK,
                lk.object,
                lk.describe(),
                key=lk.key if lk.kind == "record" else None,
                shard=_shard_index(lk.object),
                repairable=True,
            )
        )
    if repair:
        pruned: dict[str, str | None] = {}
        for obj in {lk.object for lk in expired}:
            try:
                clsops.prune(site.io, obj)
                pruned[obj] = None
            except (TdbError, OSError, clsops.Busy) as exc:
                pruned[obj] = _error_text(exc)
        for f in found:
            error = pruned[f.object]
            f.repair = "dropped" if error is None else f"not repaired: {error}"
            f.repaired = error is None
    return found


def _shard_index(obj: str) -> int | None:
    m = SHARD_RE.match(obj)
    return int(m.group(1)) if m else None


def _error_text(exc: Exception) -> str:
    if isinstance(exc, TdbError):
        return exc.message
    return str(exc)


def _check_page(obj: str, shard: int, nshards: int, page: list[tuple[str, bytes]]) -> list[Finding]:
    found = []
    for ek, rec in page:
        try:
            key = codec.decode_key(ek)
        except codec.CodecError:
            found.append(
                Finding(
                    BAD_KEY,
                    obj,
                    "not a radostdb key encoding",
                    shard=shard,
                    omap_key=ek,
                    repairable=True,
                )
            )
            continue
        try:
            codec.decode_record(key, rec)
        except codec.CorruptRecord:
            found.append(
                Finding(
                    CORRUPT_RECORD,
                    obj,
                    "crc32c does not match key and data",
                    key=key,
                    shard=shard,
                    omap_key=ek,
                    repairable=True,
                )
            )
            continue
        except codec.CodecError:
            found.append(
                Finding(
                    CORRUPT_RECORD,
                    obj,
                    "malformed record",
                    key=key,
                    shard=shard,
                    omap_key=ek,
                    repairable=True,
                )
            )
            continue
        home = codec.shard_of(key, nshards)
        if home != shard:
            found.append(
                Finding(
                    MISPLACED,
                    obj,
                    f"belongs in shard {home}",
                    key=key,
                    shard=shard,
                    omap_key=ek,
                    repairable=True,
                )
            )
    return found


def _read_entry(io: Any, obj: str, ek: str) -> tuple[bytes | None, int]:
    """(stored value of omap key ``ek`` or None, object version when read)."""
    with rados.ReadOpCtx() as op:
        it, _ = io.get_omap_vals_by_keys(op, (ek,))
        try:
            io.operate_read_op(op, obj)
        except rados.ObjectNotFound:
            return None, 0
        version = io.get_last_version()
        for _, value in it:
            return bytes(value), version
    return None, version


class _Changed(RadostdbError):
    """The object changed since it was read: read it again."""


def _apply_request(entries: Iterable[tuple[int, bytes, bytes]]) -> bytes:
    """A class ``apply`` request from this process's repair owner, holding no lock."""
    return clsops.apply_request(_REPAIR_OWNER, 0, list(entries))


def _write_if_unchanged(
    io: Any,
    obj: str,
    version: int,
    *,
    remove_omap_key: str | None = None,
    entries: Iterable[tuple[int, bytes, bytes]] = (),
) -> None:
    """One atomic op on ``obj``, refused (_Changed) unless it is still at ``version``.

    It removes a raw omap key and/or applies class batch entries; the class
    bumps the shard sequence number either way.
    """
    with rados.WriteOpCtx() as op:
        op.assert_version(version)
        if remove_omap_key is not None:
            io.remove_omap_keys(op, (remove_omap_key,))
        clsops.compose_apply(op, _apply_request(entries))
        try:
            io.operate_write_op(op, obj)
        except rados.Error as exc:
            code = clsops.errno_of(exc)
            if code in (errno.ERANGE, errno.EOVERFLOW):
                raise _Changed from None
            raise clsops.error_of(code, f"repairing {obj}") from None


def _still_bad(f: Finding, nshards: int, value: bytes) -> bool:
    if f.kind == BAD_KEY:
        return True
    assert f.key is not None
    try:
        codec.decode_record(f.key, value)
    except codec.CodecError:
        return f.kind == CORRUPT_RECORD
    return f.kind == MISPLACED and codec.shard_of(f.key, nshards) != f.shard


def _repair(site: Site, name: str, nshards: int, f: Finding, drop_corrupt: bool) -> None:
    if not f.repairable or f.omap_key is None:
        return
    if f.kind in (BAD_KEY, CORRUPT_RECORD) and not drop_corrupt:
        f.repair = "not repaired: its data cannot be recovered; --drop-corrupt removes it"
        return
    moved = False
    try:
        for _ in range(REPAIR_ATTEMPTS):
            value, version = _read_entry(site.io, f.object, f.omap_key)
            if value is None or not _still_bad(f, nshards, value):
                f.repair, f.repaired = "resolved since the check (the entry changed)", True
                return
            try:
                if f.kind == BAD_KEY:
                    _write_if_unchanged(site.io, f.object, version, remove_omap_key=f.omap_key)
                    f.repair = "removed the entry"
                elif f.kind == CORRUPT_RECORD:
                    assert f.key is not None
                    _write_if_unchanged(
                        site.io, f.object, version, entries=[(clsops.Op.DISCARD, f.key, b"")]
                    )
                    f.repair = "removed the record"
                else:
                    moved = _move_home(site, name, nshards, f, value) or moved
                    _write_if_unchanged(
                        site.io, f.object, version, entries=[(clsops.Op.DISCARD, f.key, b"")]
                    )
                    home = codec.shard_of(f.key, nshards)  # type: ignore[arg-type]
                    f.repair = (
                        f"moved to shard {home}"
                        if moved
                        else f"removed: shard {home} already holds a record for the key"
                    )
            except _Changed:
                continue
            f.repaired = True
            return
        f.repair = "not repaired: the shard kept changing; run check again"
    except clsops.Busy:
        f.repair = "not repaired: a handle holds a lock on it; run check again later"
    except (TdbError, OSError) as exc:
        f.repair = f"not repaired: {_error_text(exc)}"


def _move_home(site: Site, name: str, nshards: int, f: Finding, value: bytes) -> bool:
    """Insert a misplaced record into its own shard; False if that shard has the key."""
    assert f.key is not None
    data = codec.decode_record(f.key, value)[1]
    home = layout.shard_object(name, codec.shard_of(f.key, nshards))
    try:
        clsops.apply(site.io, home, _apply_request([(clsops.Op.INSERT, f.key, data)]))
    except TdbError as exc:
        if exc.code == ERR_EXISTS:
            return False
        raise
    return True


# -- removal --------------------------------------------------------------------------
def database_objects(site: Site, name: str) -> list[str]:
    """Every object of a database, shards first and the header last.

    Uses the header's shard count; with no usable header, lists the pool.
    """
    layout.check_name(name)
    hobj = layout.header_object(name)
    try:
        n = read_header(site, name).nshards
    except NoDatabase:
        n = None
        has_header = False
    else:
        has_header = True
    journal = [
        o for o in (layout.journal_object(name), layout.wait_object(hobj))
        if exists_object(site, o)
    ]
    if n is not None:
        return [*layout.shard_objects(name, n), *journal, hobj]
    shards = []
    stem = layout.stem(name)
    for o in site.io.list_objects():
        m = SHARD_RE.match(o.key)
        if m and m.group(2) == stem:
            shards.append(o.key)
    if not shards and not has_header:
        raise site.missing(name)
    return [*sorted(shards), *journal, *([hobj] if has_header else [])]


def remove(site: Site, name: str, *, force: bool = False) -> int:
    """Remove every object of a database; return how many existed.

    Refuses while a handle has it open, unless ``force``.
    """
    objs = database_objects(site, name)
    if not force and objs[-1] == layout.header_object(name):
        users = openers(site, name)
        if users:
            raise AdminError(
                f"database {name!r} is open by {len(users)} handle(s): "
                f"{', '.join(map(str, users[:5]))}{' …' if len(users) > 5 else ''}; "
                "close them first, or pass --force"
            )
    removed = 0
    pending = [(obj, site.io.aio_remove(obj)) for obj in objs[:-1]]
    for obj, c in pending:
        c.wait_for_complete()
        ret = c.get_return_value()
        if ret == 0:
            removed += 1
        elif ret != -errno.ENOENT:
            raise AdminError(f"cannot remove {obj}: {os.strerror(-ret)}")
    try:
        site.io.remove_object(objs[-1])  # header last: an interrupted rm can be rerun
        removed += 1
    except rados.ObjectNotFound:
        pass
    return removed


# -- display --------------------------------------------------------------------------
def display_key(key: bytes) -> str:
    """A key in double quotes, escaped as tdbdump escapes it."""
    return '"' + escape(key).decode("ascii") + '"'

"""Storage backends behind a Tdb handle: RADOS shards, or memory (TDB_INTERNAL).

The Tdb class (database.py) speaks only this interface; transactions
(txn.py) wrap it with a buffering layer. Both backends take raw bytes keys
and values and raise TdbError with TDB's codes.

RADOS backend decisions:
- The backend maps keys to shards (router.py: the layout, and a split under
  way) and asks the shard's client (shardclient.py), which owns the
  conversation with the object class and its policy for what the class
  answers (a lock in the way: queue; a transaction pending or owners gone
  stale: the resolver decides; deadlines from the session). A shard that
  does not hold the key (resharded) answers -ESTALE, and the router routes
  again. Nothing below calls back into the backend: a store goes Tdb.store
  -> RadosStorage.store -> Router.route -> ShardClient.write -> clsops.apply.
- Shards split as the database grows (reshard.py): each handle counts its
  writes per shard and, every SPLIT_CHECK of them, asks the shard for its
  record count; past the threshold a background resharder splits.
- One round trip per single-record operation: a write is one `apply` call on
  the key's shard (the decision INSERT/MODIFY/exists is made in the OSD), a
  read one `get` call. No client-side read-modify-write.
- Records are verified (format, crc32c over key and data) on every read; a
  record that fails is reported as TDB's corrupt error, never returned.
- Traversal reads pages of PAGE records (class `list`) shard by shard,
  following a split under way (traverse.py): every record that exists
  throughout is returned once.
- Openers: as tdb (which holds its ACTIVE_LOCK only for CLEAR_IF_FIRST
  handles), only handles opened with CLEAR_IF_FIRST count as having the
  database open: they watch the header object while open, and a
  CLEAR_IF_FIRST open clears the records when no other such handle, on any
  host, watches it. A plain handle keeps no watch: idle, it costs the
  cluster nothing.
- Fork: a handle inherited through fork() is adopted on its first use in
  the child (``adopt``): everything it knew of the parent's locks, cached
  transaction lock, lazily settled commits and watch is forgotten (never
  used, never released: they are the parent's), it takes a new owner id
  and a connection of the child's own. If the parent held record or
  database locks or was inside a transaction on it, the handle refuses
  every call with TDB's lock error (the child would otherwise believe it
  holds the parent's locks, as with tdb, whose child writes unlocked): it
  can only be closed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
import weakref
from collections.abc import Iterator
from typing import Any

import rados

from . import (
    clsops,
    codec,
    commit,
    dbheader,
    forks,
    intent,
    layout,
    locking,
    reshard,
    resolver,
    router,
    shardclient,
    traverse,
    txnlock,
)
from . import cluster as clustermod
from . import watch as watchmod
from .errors import (
    ERR_CORRUPT,
    ERR_EINVAL,
    ERR_EXISTS,
    ERR_LOCK,
    ERR_NOEXIST,
    KeyMissing,
    TdbError,
    forked_error,
)
from .kinds import Kind, Mode, Op, store_op

PAGE = 1000
PAGE_BYTES = 4 << 20
OPEN_LOCK = "radostdb.open"
OPEN_LOCK_SECONDS = 30


def corrupt(key: bytes, where: str, exc: Exception) -> TdbError:
    return TdbError(ERR_CORRUPT, f"Corrupt database: record {key!r} in {where}: {exc}")


class Storage:
    """The interface both backends implement (see RadosStorage for semantics)."""

    nshards: int = 1

    def fetch(self, key: bytes) -> bytes | None:
        raise NotImplementedError

    def watch(self, key: bytes) -> watchmod.Watch:
        raise TdbError(
            ERR_EINVAL,
            "Invalid parameter: a TDB_INTERNAL database has no other writer to watch for "
            "(watches need a database in RADOS)",
        )

    def fetch_version(self, key: bytes) -> tuple[int, bytes | None]:
        raise NotImplementedError

    def store(self, key: bytes, data: bytes, flag: int) -> bool:
        """Store; True when it created the record (tdb's error code after it)."""
        raise NotImplementedError

    def append(self, key: bytes, data: bytes) -> bool:
        """Append; True when it created the record."""
        raise NotImplementedError

    def delete(self, key: bytes) -> None:
        raise NotImplementedError

    def commit(self, ops: list[tuple[int, bytes, bytes]]) -> None:
        """Apply a batch of ``(kinds.Op, key, data)``; atomic per shard."""
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def keys(self) -> Iterator[bytes]:
        raise NotImplementedError

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        raise NotImplementedError

    def first_key(self) -> bytes | None:
        raise NotImplementedError

    def next_key(self, key: bytes) -> bytes | None:
        """The key after ``key`` (None: the end); KeyMissing if ``key`` is not there."""
        raise NotImplementedError

    def seqnum(self) -> int:
        raise NotImplementedError

    def bump_seqnum(self) -> None:
        raise NotImplementedError

    def lock(self, key: bytes, shared: bool, nonblock: bool) -> None:
        """Lock a record for this handle (counted)."""
        raise NotImplementedError

    def unlock(self, key: bytes, shared: bool) -> None:
        raise NotImplementedError

    def lock_all(self, shared: bool, nonblock: bool) -> None:
        """Lock the whole database for this handle (counted)."""
        raise NotImplementedError

    def unlock_all(self, shared: bool) -> None:
        raise NotImplementedError

    def fetch_locked(self, key: bytes) -> bytes | None:
        """Lock the record and read it, in one round trip."""
        self.lock(key, False, False)
        return self.fetch(key)

    def write_unlock(self, key: bytes, entry: tuple[int, bytes, bytes] | None) -> None:
        """Apply a do_locked change (None: none) to the record we locked
        exclusively, and release the lock."""
        try:
            if entry is not None:
                self.commit([entry])
        finally:
            self.unlock(key, False)

    def txn_lock(self, nonblock: bool) -> None:
        """Take the database's transaction lock (nothing to take in memory)."""

    def txn_unlock(self, ok: bool = True) -> None:
        """End the transaction's hold on the database (ok: it committed or
        was cancelled normally)."""

    def commit_transaction(self, ops: list[tuple[int, bytes, bytes]]) -> None:
        """Commit a transaction's batch entries, all or nothing."""
        self.commit(ops)

    def close(self) -> None:
        """Release what the backend holds, locks included (idempotent)."""

    def reopen(self) -> None:
        """Re-establish the backend's cluster state (tdb_reopen)."""

    def holds_user_locks(self) -> bool:
        """Record or whole-database locks taken and not yet unlocked."""
        return False

    def adopt(self, in_transaction: bool = False) -> str | None:
        """In a forked child, make the inherited backend this process's:
        None when usable, else what of the parent's it carried."""
        return None


class MemoryStorage(Storage):
    """TDB_INTERNAL: a database in this process's memory."""

    def __init__(self) -> None:
        self.records: dict[bytes, bytes] = {}
        self.seq = 0
        self.locks: dict[tuple[object, ...], int] = {}

    def fetch(self, key: bytes) -> bytes | None:
        return self.records.get(key)

    def store(self, key: bytes, data: bytes, flag: int) -> bool:
        created = key not in self.records
        self.commit([(store_op(flag), key, data)])
        return created

    def append(self, key: bytes, data: bytes) -> bool:
        created = key not in self.records
        self.commit([(Op.APPEND, key, data)])
        return created

    def delete(self, key: bytes) -> None:
        self.commit([(Op.DELETE, key, b"")])

    def commit(self, ops: list[tuple[int, bytes, bytes]]) -> None:
        new = dict(self.records)
        for op, key, data in ops:
            apply_one(new, op, key, data)
        self.records = new
        self.seq += 1

    def clear(self) -> None:
        self.records = {}
        self.seq += 1

    def keys(self) -> Iterator[bytes]:
        return iter(sorted(self.records))

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted(self.records.items()))

    def first_key(self) -> bytes | None:
        return min(self.records, default=None)

    def next_key(self, key: bytes) -> bytes | None:
        if key not in self.records:
            raise KeyMissing(key)
        return min((k for k in self.records if k > key), default=None)

    def seqnum(self) -> int:
        return self.seq

    def bump_seqnum(self) -> None:
        self.seq += 1

    # TDB_INTERNAL has one user, this process: locks are counts (as TDB_NOLOCK)
    def _count(self, name: tuple[object, ...], delta: int) -> None:
        n = self.locks.get(name, 0) + delta
        if n < 0:
            raise TdbError(ERR_LOCK)
        if n:
            self.locks[name] = n
        else:
            self.locks.pop(name, None)

    def lock(self, key: bytes, shared: bool, nonblock: bool) -> None:
        self._count(("record", shared, key), 1)

    def unlock(self, key: bytes, shared: bool) -> None:
        self._count(("record", shared, key), -1)

    def lock_all(self, shared: bool, nonblock: bool) -> None:
        self._count(("all", shared), 1)

    def holds_user_locks(self) -> bool:
        return bool(self.locks)

    def unlock_all(self, shared: bool) -> None:
        self._count(("all", shared), -1)


def apply_one(records: dict[bytes, bytes], op: int, key: bytes, data: bytes) -> None:
    """The semantics of one batch entry, as the object class applies it."""
    exists = key in records
    if op == Op.INSERT and exists:
        raise TdbError(ERR_EXISTS)
    if op in (Op.MODIFY, Op.DELETE) and not exists:
        raise TdbError(ERR_NOEXIST)
    if op in (Op.PUT, Op.INSERT, Op.MODIFY):
        records[key] = data
    elif op == Op.APPEND:
        records[key] = records.get(key, b"") + data
    else:
        records.pop(key, None)


class RadosStorage(Storage):
    """A database in RADOS: a header object and ``nshards`` shard objects."""

    def __init__(
        self,
        target: clustermod.Target,
        *,
        create: bool,
        exclusive: bool,
        hash_size: int,
        clear_if_first: bool,
        counted: bool = False,
        lock_lease: float | None = None,
        txn_lease: float | None = None,
        shards: int | None = None,
    ) -> None:
        self.target = target
        self.name = target.name
        self.header_obj = layout.header_object(self.name)
        self._gen = forks.generation
        self._forked_with: str | None = None  # what of the parent's an inherited handle held
        self._io: Any = None
        self._watch: Any = None
        self.io()  # connect now: a bad pool or cluster fails the open
        self.session = target.session
        self.locks = locking.LockTable(self.io, lock_lease, txn_lease)
        clustermod.track_handle(self)
        header = dbheader.Header(self.name, self._open_header(create, exclusive, hash_size, shards))
        lay = header.layout
        assert lay is not None  # checked by _open_header
        self.hash_size = header.hash_size
        self.router = router.Router(self.io, self.name, lay, self._layout_grew)
        self.db = resolver.DbObjects(
            self.io,
            self.name,
            lay.objects(self.name),
            relayout=lambda: self.router.refresh().nshards,
        )
        t = self.session.op_timeout
        self.resolver = resolver.Resolver(self.db, None if t is None else t + self.locks.txn_lease)
        self.shards = shardclient.Shards(self.io, self.session, self.db, self.locks, self.resolver)
        self.committer = commit.Committer(self.shards)
        self.txnlock = txnlock.TxnLock(self.shards, self.committer, self.router.shard_count)
        self.intent = intent.UserIntent(self.shards)
        self.splits = reshard.Trigger(self.target, self.router, header.split_threshold)
        self.watches: weakref.WeakSet[watchmod.Watch] = weakref.WeakSet()  # armed by us
        self._all_locked: dict[int, list[str]] = {}  # lock_all mode -> the objects it locked
        self._watched = counted  # an opener for CLEAR_IF_FIRST: watch the header while open
        if clear_if_first:
            self._clear_if_first()
        elif counted:
            self._start_watch()

    # -- connection ---------------------------------------------------------
    def io(self) -> Any:
        """The I/O context; in a forked child, one on the child's own connection."""
        if clustermod.exiting():
            raise OSError(errno.ESHUTDOWN, "the process is exiting: radostdb handles are closed")
        if self._gen != forks.generation:
            self.adopt()
        if self._forked_with is not None:
            raise forked_error(self._forked_with)
        if self._io is None:
            self._io = self.target.ioctx()
        return self._io

    def adopt(self, in_transaction: bool = False) -> str | None:
        """First use in a forked child (see the module comment): forget the
        parent's state; None when the handle is usable here, else what the
        parent held on it (every call then fails; close works)."""
        if self._gen == forks.generation:
            return self._forked_with
        held = []
        if self.locks.holds_user_locks():
            held.append("record or database locks")
        if in_transaction or self.txnlock.in_transaction():
            held.append("a transaction")
        self._gen = forks.generation
        self._forked_with = " and ".join(held) or None
        self._io = None
        self._watch = None  # the parent's: abandoned with its connection
        self.locks.forget_after_fork()
        self.txnlock.forget_after_fork()
        self.intent.forget_after_fork()
        self.committer.forget_after_fork()
        self.splits.forget_after_fork()
        if self._forked_with is None and self._watched:
            self._start_watch()  # this process has the database open too
        return self._forked_with

    def reopen(self) -> None:
        if self._watched:
            self._start_watch()

    def holds_user_locks(self) -> bool:
        return self.locks.holds_user_locks()

    @property
    def nshards(self) -> int:
        return self.router.layout.nshards

    @property
    def shard_objs(self) -> list[str]:
        return self.db.shard_objs

    def _layout_grew(self, lay: layout.Layout) -> None:
        self.db.grow(lay.nshards)

    def _start_watch(self) -> None:
        """Watch the header object: the watcher list says who has it open.

        Ceph counts a watch as a write: a client with read-only caps cannot
        watch, and its handles (which can only read) are not counted."""
        if self._watch is None:
            try:
                watch = self.io().watch(self.header_obj, _ignore_notify)
            except rados.PermissionError:
                return
            except rados.Error as exc:
                raise self.session.io_error(exc, f"watching {self.header_obj}") from None
            self._watch = clustermod.track_watch(watch, self.io())

    def close(self) -> None:
        if clustermod.exiting():
            return
        mine = self._gen == forks.generation and self._forked_with is None
        if not mine:
            return  # inherited through fork, unused or holding the parent's locks: nothing here
        self.splits.close()
        for w in list(self.watches):
            w.cancel(network=not self.session.cut_off())
        if not self.session.cut_off():
            try:
                self.txnlock.close()
            finally:
                if self.locks.objects():
                    self.shards.release_all()
                self.intent.state = intent.State.NONE  # released with the rest
        # else: the cluster does not answer; our locks expire with their leases
        watch, self._watch = self._watch, None
        if watch is not None:
            clustermod.close_watch(watch)

    # -- header -------------------------------------------------------------
    def _open_header(
        self, create: bool, exclusive: bool, hash_size: int, shards: int | None
    ) -> dict[str, str]:
        where = self.target.place.where
        for _ in range(5):
            header = dbheader.read(self.io(), self.name)
            if header is not None:
                if create and exclusive:
                    raise FileExistsError(
                        errno.EEXIST, f"database {self.name!r} already exists in {where}"
                    )
                return header.check().fields
            if not create:
                raise FileNotFoundError(
                    errno.ENOENT,
                    f"database {self.name!r} does not exist in {where} "
                    "(open with O_CREAT to create it)",
                )
            meta = dbheader.new_fields(self.name, shards or layout.DEFAULT_SHARDS, hash_size)
            with rados.WriteOpCtx() as op:
                op.new(rados.LIBRADOS_CREATE_EXCLUSIVE)
                self.io().set_omap(op, tuple(meta), tuple(v.encode() for v in meta.values()))
                try:
                    self.io().operate_write_op(op, self.header_obj)
                    return meta
                except rados.ObjectExists:
                    continue  # created concurrently: read theirs
                except rados.Error as exc:
                    raise self.session.io_error(exc, f"creating {self.header_obj}") from None
        raise OSError(errno.EIO, f"cannot open or create database {self.name!r} in {where}")

    def _clear_if_first(self) -> None:
        """Clear the records if no other handle, anywhere, has the database open.

        Opens with CLEAR_IF_FIRST serialise on a short RADOS lock on the
        header; inside it the handle watches the header, then counts the
        watchers: only itself means it is first.
        """
        cookie = os.urandom(16).hex()
        deadline = time.monotonic() + OPEN_LOCK_SECONDS * 2
        while True:
            try:
                self.io().lock_exclusive(
                    self.header_obj,
                    OPEN_LOCK,
                    cookie,
                    desc="CLEAR_IF_FIRST open",
                    duration=OPEN_LOCK_SECONDS,
                )
                break
            except rados.ObjectBusy:
                if time.monotonic() > deadline:
                    raise TdbError(ERR_LOCK) from None
                time.sleep(0.01)
            except rados.Error as exc:
                raise self.session.io_error(exc, f"locking {self.header_obj} to open it") from None
        try:
            self._start_watch()
            if len(clsops.watchers(self.io(), self.header_obj)) == 1:
                self.clear()
        finally:
            with contextlib.suppress(rados.Error):  # a lost unlock expires with its duration
                self.io().unlock(self.header_obj, OPEN_LOCK, cookie)

    def openers(self) -> list[tuple[int, int]]:
        return clsops.watchers(self.io(), self.header_obj)

    # -- records ------------------------------------------------------------
    def fetch(self, key: bytes) -> bytes | None:
        """The record's data; inside a transaction with the shard's
        isolation (taken in the same round trip the first time: txnlock.py),
        from the transaction's snapshot of the shard if it is small."""
        txn = self.txnlock

        def call(index: int) -> bytes | None:
            if not txn.active():
                res = self.shards[index].get(key)
            elif (snap := txn.recall(index, key)) is not None:
                return snap.get(key)  # a small shard read whole (snapshot.py)
            else:
                res = txn.read(index, key)
            if res.status == clsops.ReadStatus.MISSING:
                return None
            return self._decode(key, res.record, self.db.shard(index))

        return self.router.route(key, call)

    def watch(self, key: bytes) -> watchmod.Watch:
        """An armed watch of the record (watch.py), cancelled at close at the latest."""
        w = watchmod.Watch(self.shards, self.router, key)
        self.watches.add(w)
        return w

    def fetch_version(self, key: bytes) -> tuple[int, bytes | None]:
        """``(rseq, data)`` of the record as stored, outside any transaction
        (``(0, None)``: missing): rseq tells one change from the next."""

        def call(index: int) -> tuple[int, bytes | None]:
            res = self.shards[index].get(key, versioned=True)
            if res.status == clsops.ReadStatus.MISSING:
                return 0, None
            return self._decode_versioned(key, res.record, self.db.shard(index))

        return self.router.route(key, call)

    @staticmethod
    def _decode_versioned(key: bytes, rec: bytes, obj: str) -> tuple[int, bytes]:
        """``(rseq, data)`` of a record read from ``obj``, verified."""
        try:
            return codec.decode_record(key, rec)
        except codec.CodecError as exc:
            raise corrupt(key, obj, exc) from None

    @classmethod
    def _decode(cls, key: bytes, rec: bytes, obj: str) -> bytes:
        return cls._decode_versioned(key, rec, obj)[1]

    def _write_key(self, key: bytes, op: int, data: bytes, report: bool = False) -> int:
        def call(index: int) -> int:
            status = self.shards[index].write([(op, key, data)], report=report)
            self.splits.wrote(index, 1)
            return status

        return self.router.route(key, call)

    def store(self, key: bytes, data: bytes, flag: int) -> bool:
        op = store_op(flag)
        status = self._write_key(key, op, data, report=op == Op.PUT)
        return bool(status & clsops.APPLIED_CREATED)

    def append(self, key: bytes, data: bytes) -> bool:
        status = self._write_key(key, Op.APPEND, data, report=True)
        return bool(status & clsops.APPLIED_CREATED)

    def delete(self, key: bytes) -> None:
        self._write_key(key, Op.DELETE, b"")

    def commit(self, ops: list[tuple[int, bytes, bytes]]) -> None:
        """Apply a batch, one call per shard (atomic per shard only); a
        shard's entries that moved are sent again where they are."""
        todo = ops
        for _ in range(router.ROUTE_TRIES):
            moved: list[tuple[int, bytes, bytes]] = []
            for index, entries in self.group(todo).items():
                try:
                    self.shards[index].write(entries)
                except clsops.Stale:
                    self.router.stale(index)
                    moved += entries
                else:
                    self.splits.wrote(index, len(entries))
            if not moved:
                return
            todo = moved
        raise self.router.lost(todo[0][1])

    def clear(self) -> None:
        """Clear every shard, and those a split under way adds."""
        done: set[int] = set()
        self.router.refresh()
        while True:
            todo = [i for i in range(self.router.shard_count()) if i not in done]
            if not todo:
                return
            bits = 0
            for index in todo:
                bits |= self.shards[index].write(
                    [], whole=True, modulus=self.router.shard_modulus(index)
                )
                done.add(index)
            if bits:
                self.router.stale(self.router.layout.next_split()[0])

    def group(
        self, ops: list[tuple[int, bytes, bytes]]
    ) -> dict[int, list[tuple[int, bytes, bytes]]]:
        """Batch entries by shard index."""
        by_shard: dict[int, list[tuple[int, bytes, bytes]]] = {}
        for entry, index in zip(ops, self.router.shards([e[1] for e in ops]), strict=True):
            by_shard.setdefault(index, []).append(entry)
        return by_shard

    # -- transactions (txnlock.py, commit.py) ------------------------------------------
    def txn_lock(self, nonblock: bool) -> None:
        self.txnlock.start(nonblock)

    def txn_unlock(self, ok: bool = True) -> None:
        self.txnlock.end(ok)

    def commit_transaction(self, ops: list[tuple[int, bytes, bytes]]) -> None:
        self.txnlock.look_behind()  # beside the commit: who waits, for an early handoff
        self.txnlock.check_fenced()
        self.committer.commit(ops, self.group, self.router.stale)
        by_shard = self.group(ops)
        self.txnlock.committed(by_shard)
        for index, entries in by_shard.items():
            self.splits.wrote(index, len(entries), settled=False)

    # -- locks --------------------------------------------------------------
    def _held_at(self, key: bytes, kind: int, mode: int) -> str:
        """The object where we hold (or lost) the lock on key: where it was
        taken, whatever the layout says now."""
        obj = self.db.shard(self.router.shard(key))
        books = self.locks
        if (obj, kind, mode, key) in books.held or (obj, kind, mode, key) in books.lost:
            return obj
        for hk in [*books.held, *books.lost]:
            if hk[1:] == (kind, mode, key):
                return hk[0]
        return obj

    def lock(self, key: bytes, shared: bool, nonblock: bool) -> None:
        mode = Mode.SHARED if shared else Mode.EXCL
        if shared:
            self.router.route(key, lambda i: self.shards[i].lock(Kind.RECORD, mode, key, nonblock))
            return
        self.intent.take(nonblock)  # record EXCL locks exclude transactions (intent.py)
        try:
            self.router.route(key, lambda i: self.shards[i].lock(Kind.RECORD, mode, key, nonblock))
        except BaseException:
            self.intent.done()
            raise

    def unlock(self, key: bytes, shared: bool) -> None:
        mode = Mode.SHARED if shared else Mode.EXCL
        try:
            self.shards.client(self._held_at(key, Kind.RECORD, mode)).unlock(Kind.RECORD, mode, key)
        finally:
            if not shared:
                self.intent.done()

    def fetch_locked(self, key: bytes) -> bytes | None:
        self.intent.take(False)
        try:

            def call(index: int) -> clsops.GetResult:
                return self.shards[index].lock_and_read(key)

            res = self.router.route(key, call)
        except BaseException:
            self.intent.done()
            raise
        if res.status == clsops.ReadStatus.MISSING:
            return None
        return self._decode(key, res.record, self._held_at(key, Kind.RECORD, Mode.EXCL))

    def write_unlock(self, key: bytes, entry: tuple[int, bytes, bytes] | None) -> None:
        """The change and the unlock in one class call (locked.py)."""
        if entry is None:
            self.unlock(key, False)
            return
        obj = self._held_at(key, Kind.RECORD, Mode.EXCL)
        try:
            self.shards.client(obj).write_and_unlock([entry], key)
        finally:
            self.intent.done()

    def lock_all(self, shared: bool, nonblock: bool) -> None:
        mode = Mode.SHARED if shared else Mode.EXCL
        other = Mode.EXCL if shared else Mode.SHARED
        if self.locks.holds_any(Kind.RECORD) or other in self._all_locked:
            # as tdb: no allrecord lock with chain locks held, nor of the other type
            raise TdbError(ERR_LOCK)
        if mode in self._all_locked:  # counted again
            self.shards.lock_each(self._all_locked[mode], Kind.SHARD, mode, nonblock)
            return
        if not shared:
            self.intent.take(nonblock)
        try:
            self._all_locked[mode] = self._lock_every_shard(mode, nonblock)
        except BaseException:
            if not shared:
                self.intent.done()
            raise

    def _lock_every_shard(self, mode: int, nonblock: bool) -> list[str]:
        """SHARD locks on every shard that may hold records: the layout's,
        and those a split under way adds (the shards say so: layout bits)."""
        locked: list[str] = []
        while True:
            count = self.router.shard_count()
            todo = [i for i in range(count) if self.db.shard(i) not in locked]
            if not todo:
                return locked
            objs = [self.db.shard(i) for i in todo]
            moduli = [self.router.shard_modulus(i) for i in todo]
            try:
                bits = self.shards.lock_each(objs, Kind.SHARD, mode, nonblock, moduli=moduli)
            except BaseException:
                if locked:
                    self.shards.release_each(locked, Kind.SHARD, mode)
                raise
            locked += objs
            if bits:
                self.router.stale(self.router.layout.next_split()[0])

    def unlock_all(self, shared: bool) -> None:
        mode = Mode.SHARED if shared else Mode.EXCL
        objs = self._all_locked.get(mode, [])
        try:
            self._unlock_all(objs, mode)
        finally:
            if objs and objs[0] not in {hk[0] for hk in self.locks.held if hk[1] == Kind.SHARD}:
                self._all_locked.pop(mode, None)
                if not shared:
                    self.intent.done()

    def _unlock_all(self, objs: list[str], mode: int) -> None:
        if self.locks.forget_lost([(o, Kind.SHARD, mode, b"") for o in objs]):
            # a shard's lock expired and was taken: give back the rest, refuse
            self.shards.release_each(
                [o for o in objs if (o, Kind.SHARD, mode, b"") in self.locks.held],
                Kind.SHARD,
                mode,
            )
            raise TdbError(ERR_LOCK)
        if not objs or (objs[0], Kind.SHARD, mode, b"") not in self.locks.held:
            raise TdbError(ERR_LOCK)
        if self.locks.held[(objs[0], Kind.SHARD, mode, b"")] > 1:
            for obj in objs:
                self.locks.held[(obj, Kind.SHARD, mode, b"")] -= 1
            return
        if not self.shards.release_each(objs, Kind.SHARD, mode):
            # a shard's entry was gone: the lock expired before the renewal noticed
            raise TdbError(ERR_LOCK)

    # -- traversal ----------------------------------------------------------
    def _walk(self, keys_only: bool = False) -> traverse.Walk:
        """A traversal of every shard (traverse.py; of keys alone with
        ``keys_only``); inside a transaction,
        with the isolation of every shard of the current layout first (held,
        they keep a split from going on: traverse.py then finds no child
        the isolation misses)."""
        if self.txnlock.active():
            while True:
                lay = self.router.refresh()
                self.txnlock.isolate(list(range(self.router.shard_count())))
                if self.router.refresh() == lay:
                    break
        return traverse.Walk(
            self.shards, self.router, self.router.shard_count(), keys_only=keys_only
        )

    def keys(self) -> Iterator[bytes]:
        for page in self._walk(keys_only=True):
            yield from (k for k, _ in page)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for page in self._walk():
            yield from page

    def first_key(self) -> bytes | None:
        return self._walk(keys_only=True).first_after(None)

    def next_key(self, key: bytes) -> bytes | None:
        if self.fetch(key) is None:
            raise KeyMissing(key)
        return self._walk(keys_only=True).first_after(key)

    # -- sequence numbers ---------------------------------------------------
    def seqnum(self) -> int:
        io = self.io()
        objs = [self.header_obj, *(self.db.shard(i) for i in range(self.router.shard_count()))]
        return sum(clsops.wait_all(clsops.aio_seq(io, obj) for obj in objs))

    def bump_seqnum(self) -> None:
        clsops.bump(self.io(), self.header_obj)


def _ignore_notify(*_args: Any) -> None:
    """Watch callback: open-handle watches carry no events yet."""

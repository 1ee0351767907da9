"""Storage backends behind a Tdb handle: RADOS shards, or memory (TDB_INTERNAL).

The Tdb class (database.py) speaks only this interface; transactions
(txn.py) wrap it with a buffering layer. Both backends take raw bytes keys
and values and raise TdbError with TDB's codes.

RADOS backend decisions:
- One round trip per single-record operation: writes are one class call on
  the key's shard (the decision INSERT/MODIFY/exists is made in the OSD),
  reads one omap read. No client-side read-modify-write.
- Records are verified (format, crc32c over key and data) on every read; a
  record that fails is reported as TDB's corrupt error, never returned.
- Traversal reads omap pages of PAGE records and starts reading the next
  shard while the current one is being consumed.
"""

from __future__ import annotations

import errno
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import rados

from . import clsops, codec, layout, locking, txn
from . import cluster as clustermod
from .errors import ERR_CORRUPT, ERR_EXISTS, ERR_LOCK, ERR_NOEXIST, TdbError

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

    def store(self, key: bytes, data: bytes, flag: int) -> None:
        raise NotImplementedError

    def append(self, key: bytes, data: bytes) -> None:
        raise NotImplementedError

    def delete(self, key: bytes) -> None:
        raise NotImplementedError

    def commit(self, ops: list[tuple[int, bytes, bytes]]) -> None:
        """Apply a batch of ``(clsops.OP_*, key, data)``; atomic per shard."""
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

    def txn_lock(self, nonblock: bool) -> None:
        """Take the database's transaction lock (nothing to take in memory)."""

    def txn_unlock(self) -> None:
        """Release the transaction lock."""

    def commit_transaction(self, ops: list[tuple[int, bytes, bytes]]) -> None:
        """Commit a transaction's batch entries, all or nothing."""
        self.commit(ops)

    def close(self) -> None:
        """Release what the backend holds, locks included (idempotent)."""

    def reopen(self) -> None:
        """Re-establish the backend's cluster state (after fork)."""


class MemoryStorage(Storage):
    """TDB_INTERNAL: a database in this process's memory."""

    def __init__(self) -> None:
        self.records: dict[bytes, bytes] = {}
        self.seq = 0
        self.locks: dict[tuple[object, ...], int] = {}

    def fetch(self, key: bytes) -> bytes | None:
        return self.records.get(key)

    def store(self, key: bytes, data: bytes, flag: int) -> None:
        self.commit([(flag_to_op(flag), key, data)])

    def append(self, key: bytes, data: bytes) -> None:
        self.commit([(clsops.OP_APPEND, key, data)])

    def delete(self, key: bytes) -> None:
        self.commit([(clsops.OP_DELETE, key, b"")])

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

    def unlock_all(self, shared: bool) -> None:
        self._count(("all", shared), -1)


def flag_to_op(flag: int) -> int:
    return {clsops.INSERT: clsops.OP_INSERT, clsops.MODIFY: clsops.OP_MODIFY}.get(
        flag, clsops.OP_PUT
    )


def apply_one(records: dict[bytes, bytes], op: int, key: bytes, data: bytes) -> None:
    """The semantics of one batch entry, as the object class applies it."""
    exists = key in records
    if op == clsops.OP_INSERT and exists:
        raise TdbError(ERR_EXISTS)
    if op in (clsops.OP_MODIFY, clsops.OP_DELETE) and not exists:
        raise TdbError(ERR_NOEXIST)
    if op in (clsops.OP_PUT, clsops.OP_INSERT, clsops.OP_MODIFY):
        records[key] = data
    elif op == clsops.OP_APPEND:
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
        lock_lease: float | None = None,
    ) -> None:
        self.target = target
        self.name = target.name
        self.header_obj = layout.header_object(self.name)
        self._gen = -1
        self._io: Any = None
        self._watch: Any = None
        self.io()  # connect now: a bad pool or cluster fails the open
        self.locks = locking.LockTable(self.io, lock_lease)
        clustermod.track_handle(self)
        self.meta = self._open_header(create, exclusive, hash_size)
        self.nshards = int(self.meta["nshards"])
        self.shard_objs = layout.shard_objects(self.name, self.nshards)
        if clear_if_first:
            self._clear_if_first()
        else:
            self._start_watch()

    # -- connection ---------------------------------------------------------
    def io(self) -> Any:
        """The I/O context; after a fork, a fresh one on a fresh connection."""
        if clustermod.exiting:
            raise OSError(errno.ESHUTDOWN, "the process is exiting: radostdb handles are closed")
        if self._gen != clustermod.generation:
            self._io = self.target.ioctx()
            if self._gen != -1 and self._watch is not None:
                clustermod.abandon([self._watch])
                self._watch = None
                self._gen = clustermod.generation
                self._start_watch()
            self._gen = clustermod.generation
        return self._io

    def reopen(self) -> None:
        self.io()

    def _start_watch(self) -> None:
        """Watch the header object: the watcher list says who has it open."""
        if self._watch is None:
            self._watch = clustermod.track_watch(
                self.io().watch(self.header_obj, _ignore_notify))

    def close(self) -> None:
        if clustermod.exiting:
            return
        if self.locks.held and self._gen == clustermod.generation:
            self.locks.release_all()
        watch, self._watch = self._watch, None
        if watch is not None and self._gen == clustermod.generation:
            clustermod.close_watch(watch)

    # -- header -------------------------------------------------------------
    def _read_header(self) -> dict[str, str] | None:
        with rados.ReadOpCtx() as op:
            it, _ = self.io().get_omap_vals(op, "", "", 100)
            try:
                self.io().operate_read_op(op, self.header_obj)
            except rados.ObjectNotFound:
                return None
            return {k: v.decode() for k, v in it}

    def _open_header(self, create: bool, exclusive: bool, hash_size: int) -> dict[str, str]:
        where = f"pool {self.target.pool!r}" + (
            f" namespace {self.target.namespace!r}" if self.target.namespace else ""
        )
        for _ in range(5):
            meta = self._read_header()
            if meta is not None:
                if create and exclusive:
                    raise FileExistsError(
                        errno.EEXIST, f"database {self.name!r} already exists in {where}"
                    )
                return self._check_header(meta)
            if not create:
                raise FileNotFoundError(
                    errno.ENOENT,
                    f"database {self.name!r} does not exist in {where} "
                    "(open with O_CREAT to create it)",
                )
            nshards = hash_size or layout.DEFAULT_SHARDS
            meta = {
                "format": str(layout.FORMAT_VERSION),
                "nshards": str(nshards),
                "hash": layout.HASH_NAME,
                "created": f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
                f"by {socket.gethostname()} pid {os.getpid()}",
                layout.NAME_KEY: self.name,  # a hashed name is read back from here
            }
            with rados.WriteOpCtx() as op:
                op.new(rados.LIBRADOS_CREATE_EXCLUSIVE)
                self.io().set_omap(op, tuple(meta), tuple(v.encode() for v in meta.values()))
                try:
                    self.io().operate_write_op(op, self.header_obj)
                    return meta
                except rados.ObjectExists:
                    continue  # created concurrently: read theirs
        raise OSError(errno.EIO, f"cannot open or create database {self.name!r} in {where}")

    def _check_header(self, meta: dict[str, str]) -> dict[str, str]:
        try:
            fmt, nshards = int(meta["format"]), int(meta["nshards"])
        except (KeyError, ValueError) as exc:
            raise TdbError(
                ERR_CORRUPT, f"Corrupt database: header of {self.name!r} is unreadable ({exc})"
            ) from None
        if fmt != layout.FORMAT_VERSION or meta.get("hash") != layout.HASH_NAME:
            raise OSError(
                errno.EPROTO,
                f"database {self.name!r} has format {fmt} / hash {meta.get('hash')}; this "
                f"radostdb reads format {layout.FORMAT_VERSION} / {layout.HASH_NAME}",
            )
        if not 1 <= nshards <= layout.MAX_SHARDS:
            raise TdbError(ERR_CORRUPT, f"Corrupt database: {nshards} shards in header")
        return meta

    def _clear_if_first(self) -> None:
        """Clear the records if no other handle, anywhere, has the database open.

        Opens with CLEAR_IF_FIRST serialise on a short RADOS lock on the
        header; inside it the handle watches the header, then counts the
        watchers: only itself means it is first.
        """
        cookie = uuid.uuid4().hex
        deadline = time.monotonic() + OPEN_LOCK_SECONDS * 2
        while True:
            try:
                self.io().lock_exclusive(self.header_obj, OPEN_LOCK, cookie,
                                         desc="CLEAR_IF_FIRST open",
                                         duration=OPEN_LOCK_SECONDS)
                break
            except rados.ObjectBusy:
                if time.monotonic() > deadline:
                    raise TdbError(ERR_LOCK) from None
                time.sleep(0.01)
        try:
            self._start_watch()
            if len(clsops.watchers(self.io(), self.header_obj)) == 1:
                self.clear()
        finally:
            self.io().unlock(self.header_obj, OPEN_LOCK, cookie)

    def openers(self) -> list[tuple[int, int]]:
        return clsops.watchers(self.io(), self.header_obj)

    # -- records ------------------------------------------------------------
    def _shard(self, key: bytes) -> str:
        return self.shard_objs[codec.shard_of(key, self.nshards)]

    def fetch(self, key: bytes) -> bytes | None:
        obj = self._shard(key)
        io = self.io()
        rec = locking.blocking(io, obj, lambda: clsops.get(io, obj, key),
                               on_pending=self.resolve)
        return None if rec is None else self._decode(key, rec, obj)

    @staticmethod
    def _decode(key: bytes, rec: bytes, obj: str) -> bytes:
        try:
            return codec.decode_record(key, rec)[1]
        except codec.CodecError as exc:
            raise corrupt(key, obj, exc) from None

    def _write(self, obj: str, method: str, request: bytes) -> None:
        """One write class call, waiting while another handle's lock or an
        unfinished transaction blocks it."""
        io = self.io()
        locking.blocking(io, obj, lambda: clsops.call(io, obj, method, request),
                         on_pending=self.resolve)

    def store(self, key: bytes, data: bytes, flag: int) -> None:
        obj = self._shard(key)
        locks = self.locks
        self._write(obj, "store",
                    clsops.store_request(locks.owner, locks.wflags(obj, key), key, data, flag))

    def append(self, key: bytes, data: bytes) -> None:
        obj = self._shard(key)
        locks = self.locks
        self._write(obj, "append",
                    clsops.append_request(locks.owner, locks.wflags(obj, key), key, data))

    def delete(self, key: bytes) -> None:
        obj = self._shard(key)
        locks = self.locks
        self._write(obj, "delete", clsops.delete_request(locks.owner, locks.wflags(obj, key), key))

    def _batch_wflags(self, obj: str, entries: list[tuple[int, bytes, bytes]]) -> int:
        flags = {self.locks.wflags(obj, key) for _, key, _ in entries}
        return clsops.WRITE_ASSERT_LOCK if flags == {clsops.WRITE_ASSERT_LOCK} else 0

    def _each_shard(self, requests: dict[str, tuple[str, bytes]]) -> None:
        """Run class calls on several shards in parallel; wait out lock conflicts."""
        if len(requests) == 1:
            ((obj, (method, req)),) = requests.items()
            self._write(obj, method, req)
            return
        batch = clsops.Batch(self.io())
        for obj, (method, req) in requests.items():
            batch.start(obj, method, req)
        results = batch.wait_each()
        for obj, err in results.items():
            if isinstance(err, clsops.Busy):
                self._write(obj, *requests[obj])
        errors = [e for e in results.values() if e is not None and not isinstance(e, clsops.Busy)]
        if errors:
            raise errors[0]

    def commit(self, ops: list[tuple[int, bytes, bytes]]) -> None:
        """Apply a batch, one call per shard (atomic per shard only)."""
        self.apply_parts(self.apply_requests(self.group(ops), 0))

    def apply_requests(self, by_shard: dict[str, list[tuple[int, bytes, bytes]]],
                       txid: int) -> dict[str, bytes]:
        """``apply`` requests per shard. Parts of a multi-shard transaction
        (txid) assert no lock: recovery may resend them for a dead owner."""
        owner = self.locks.owner
        return {obj: clsops.apply_request(
                    owner, 0 if txid else self._batch_wflags(obj, entries), entries, txid)
                for obj, entries in by_shard.items()}

    def clear(self) -> None:
        owner = self.locks.owner
        self._each_shard({
            obj: ("clear", clsops.clear_request(
                owner, clsops.WRITE_ASSERT_LOCK if self.locks.holds_shard(obj) else 0))
            for obj in self.shard_objs
        })

    # -- transactions (protocol in txn.py) -------------------------------------
    def txn_lock(self, nonblock: bool) -> None:
        """Take the database's transaction lock (a lease-based lock on the
        header object), then finish any commit a dead holder left behind."""
        self.locks.acquire(self.header_obj, clsops.LOCK_SHARD, clsops.LOCK_EXCL, b"", nonblock)
        try:
            txn.recover(self)
        except BaseException:
            self.txn_unlock()
            raise

    def txn_unlock(self) -> None:
        """Release the transaction lock without waiting for the answer."""
        self.locks.release(self.header_obj, clsops.LOCK_SHARD, clsops.LOCK_EXCL, b"",
                           wait=False)

    def holds_txn_lock(self) -> bool:
        return (self.header_obj, clsops.LOCK_SHARD, clsops.LOCK_EXCL, b"") in self.locks.held

    def commit_transaction(self, ops: list[tuple[int, bytes, bytes]]) -> None:
        txn.commit(self, ops)

    def resolve(self) -> None:
        """Called while waiting on a shard whose commit is unfinished: if the
        committer's transaction lock is free (it died and its lease ran out),
        finish its commit."""
        if self.holds_txn_lock():
            txn.recover(self)
            return
        try:
            self.txn_lock(nonblock=True)  # recovers on success
        except TdbError:
            return  # the committer is alive: keep waiting
        self.txn_unlock()

    def group(
        self, ops: list[tuple[int, bytes, bytes]]
    ) -> dict[str, list[tuple[int, bytes, bytes]]]:
        """Batch entries by shard object."""
        by_shard: dict[str, list[tuple[int, bytes, bytes]]] = {}
        for entry in ops:
            by_shard.setdefault(self._shard(entry[1]), []).append(entry)
        return by_shard

    def apply_parts(self, requests: dict[str, bytes]) -> None:
        """Send ``apply`` requests to their shards in parallel; wait out locks."""
        self._each_shard({obj: ("apply", req) for obj, req in requests.items()})

    # -- locks --------------------------------------------------------------
    def lock(self, key: bytes, shared: bool, nonblock: bool) -> None:
        mode = clsops.LOCK_SHARED if shared else clsops.LOCK_EXCL
        self.locks.acquire(self._shard(key), clsops.LOCK_RECORD, mode, key, nonblock)

    def unlock(self, key: bytes, shared: bool) -> None:
        mode = clsops.LOCK_SHARED if shared else clsops.LOCK_EXCL
        self.locks.release(self._shard(key), clsops.LOCK_RECORD, mode, key)

    def fetch_locked(self, key: bytes) -> bytes | None:
        obj = self._shard(key)
        io = self.io()

        def start_read() -> Callable[[], bytes | None]:
            op = io.create_read_op()
            it, _ = io.get_omap_vals_by_keys(op, (codec.encode_key(key),))
            comp = io.operate_aio_read_op(op, obj)

            def collect() -> bytes | None:
                comp.wait_for_complete_and_cb()
                try:
                    if comp.get_return_value() < 0:
                        return None  # a missing shard object: no record
                    for _, rec in it:
                        return self._decode(key, rec, obj)
                    return None
                finally:
                    io.release_read_op(op)

            return collect

        return self.locks.acquire_with_read(obj, key, start_read)

    def lock_all(self, shared: bool, nonblock: bool) -> None:
        mode = clsops.LOCK_SHARED if shared else clsops.LOCK_EXCL
        taken: list[str] = []
        try:
            for obj in self.shard_objs:  # in order: two lock_all callers cannot deadlock
                self.locks.acquire(obj, clsops.LOCK_SHARD, mode, b"", nonblock)
                taken.append(obj)
        except BaseException:
            for obj in taken:
                self.locks.release(obj, clsops.LOCK_SHARD, mode, b"")
            raise

    def unlock_all(self, shared: bool) -> None:
        mode = clsops.LOCK_SHARED if shared else clsops.LOCK_EXCL
        if (self.shard_objs[0], clsops.LOCK_SHARD, mode, b"") not in self.locks.held:
            raise TdbError(ERR_LOCK)
        for obj in self.shard_objs:
            self.locks.release(obj, clsops.LOCK_SHARD, mode, b"")

    # -- traversal ----------------------------------------------------------
    def _pages(self, obj: str, start_after: str = "", limit: int = PAGE
               ) -> Iterator[list[tuple[bytes, bytes]]]:
        """(raw key, data) pages of one shard, every record verified."""
        io = self.io()
        while True:
            more, page = locking.blocking(
                io, obj, lambda s=start_after: clsops.list_page(io, obj, s, limit, PAGE_BYTES),
                on_pending=self.resolve)
            try:
                records = codec.parse_page(page)
            except codec.CodecError as exc:
                raise TdbError(ERR_CORRUPT, f"Corrupt database: {obj}: {exc}") from None
            if records:
                yield records
            if not more or not records:
                return
            start_after = codec.encode_key(records[-1][0])

    def keys(self) -> Iterator[bytes]:
        for obj in self.shard_objs:
            for page in self._pages(obj):
                yield from (k for k, _ in page)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for obj in self.shard_objs:
            for page in self._pages(obj):
                yield from page

    def _first_from(self, shard: int, start_after: str) -> bytes | None:
        for obj in self.shard_objs[shard:]:
            for page in self._pages(obj, start_after, limit=1):
                return page[0][0]
            start_after = ""
        return None

    def first_key(self) -> bytes | None:
        return self._first_from(0, "")

    def next_key(self, key: bytes) -> bytes | None:
        return self._first_from(codec.shard_of(key, self.nshards), codec.encode_key(key))

    # -- sequence numbers ---------------------------------------------------
    def seqnum(self) -> int:
        batch = clsops.Batch(self.io())
        for obj in [self.header_obj, *self.shard_objs]:
            batch.seq(obj)
        outs = batch.wait()
        return sum(clsops.seq_value(outs.get(o)) for o in [self.header_obj, *self.shard_objs])

    def bump_seqnum(self) -> None:
        clsops.bump(self.io(), self.header_obj)

    # -- removal ------------------------------------------------------------
    def remove_objects(self) -> None:
        for obj in [*self.shard_objs, self.header_obj]:
            try:
                self.io().remove_object(obj)
            except rados.ObjectNotFound:
                pass


def _ignore_notify(*_args: Any) -> None:
    """Watch callback: open-handle watches carry no events yet."""

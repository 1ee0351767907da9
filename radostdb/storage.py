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
from collections.abc import Iterable, Iterator
from typing import Any

import rados

from . import clsops, codec, layout
from . import cluster as clustermod
from .errors import ERR_CORRUPT, ERR_EXISTS, ERR_LOCK, ERR_NOEXIST, TdbError

PAGE = 1000
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

    def close(self) -> None:
        """Release what the backend holds (idempotent)."""

    def reopen(self) -> None:
        """Re-establish the backend's cluster state (after fork)."""


class MemoryStorage(Storage):
    """TDB_INTERNAL: a database in this process's memory."""

    def __init__(self) -> None:
        self.records: dict[bytes, bytes] = {}
        self.seq = 0

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
    ) -> None:
        self.target = target
        self.name = target.name
        self.header_obj = layout.header_object(self.name)
        self._gen = -1
        self._io: Any = None
        self._watch: Any = None
        self.io()  # connect now: a bad pool or cluster fails the open
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
        if self._gen != clustermod.generation:
            self._io = self.target.ioctx()
            if self._gen != -1 and self._watch is not None:
                clustermod._abandoned.append(self._watch)
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
            self._watch = self.io().watch(self.header_obj, _ignore_notify)

    def close(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and self._gen == clustermod.generation:
            try:
                watch.close()
            except rados.Error:
                pass

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
        with rados.ReadOpCtx() as op:
            it, _ = io.get_omap_vals_by_keys(op, (codec.encode_key(key),))
            try:
                io.operate_read_op(op, obj)
            except rados.ObjectNotFound:
                return None
            for _, rec in it:
                try:
                    return codec.decode_record(key, rec)[1]
                except codec.CodecError as exc:
                    raise corrupt(key, obj, exc) from None
        return None

    def store(self, key: bytes, data: bytes, flag: int) -> None:
        clsops.store(self.io(), self._shard(key), key, data, flag)

    def append(self, key: bytes, data: bytes) -> None:
        clsops.append(self.io(), self._shard(key), key, data)

    def delete(self, key: bytes) -> None:
        clsops.delete(self.io(), self._shard(key), key)

    def commit(self, ops: list[tuple[int, bytes, bytes]]) -> None:
        by_shard: dict[str, list[tuple[int, bytes, bytes]]] = {}
        for entry in ops:
            by_shard.setdefault(self._shard(entry[1]), []).append(entry)
        if len(by_shard) == 1:
            ((obj, entries),) = by_shard.items()
            clsops.apply(self.io(), obj, entries)
            return
        batch = clsops.Batch(self.io())
        for obj, entries in by_shard.items():
            batch.apply(obj, entries)
        batch.wait()

    def clear(self) -> None:
        batch = clsops.Batch(self.io())
        for obj in self.shard_objs:
            batch.clear(obj)
        batch.wait()

    # -- traversal ----------------------------------------------------------
    def _pages(self, obj: str, keys_only: bool) -> Iterator[list[tuple[str, bytes]]]:
        io = self.io()
        start = ""
        while True:
            with rados.ReadOpCtx() as op:
                if keys_only:
                    it, _ = io.get_omap_keys(op, start, PAGE)
                else:
                    it, _ = io.get_omap_vals(op, start, "", PAGE)
                try:
                    io.operate_read_op(op, obj)
                except rados.ObjectNotFound:
                    return
                page = list(it)
            if page:
                yield page
            if len(page) < PAGE:
                return
            start = page[-1][0]

    def keys(self) -> Iterator[bytes]:
        for obj in self.shard_objs:
            for page in self._pages(obj, keys_only=True):
                try:
                    yield from codec.decode_keys([k for k, _ in page])
                except codec.CodecError as exc:
                    raise TdbError(
                        ERR_CORRUPT, f"Corrupt database: bad key in {obj}: {exc}"
                    ) from None

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for obj in self.shard_objs:
            for page in self._pages(obj, keys_only=False):
                for ek, rec in page:
                    try:
                        key = codec.decode_key(ek)
                        yield key, codec.decode_record(key, rec)[1]
                    except codec.CodecError as exc:
                        raise corrupt(ek.encode(), obj, exc) from None

    def _first_from(self, shard: int, start_after: str) -> bytes | None:
        io = self.io()
        for obj in self.shard_objs[shard:]:
            with rados.ReadOpCtx() as op:
                it, _ = io.get_omap_keys(op, start_after, 1)
                try:
                    io.operate_read_op(op, obj)
                except rados.ObjectNotFound:
                    it = iter(())
                for ek, _ in it:
                    try:
                        return codec.decode_key(ek)
                    except codec.CodecError as exc:
                        raise corrupt(ek.encode(), obj, exc) from None
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


def iter_ops(overlay: Iterable[tuple[bytes, bytes | None]]) -> list[tuple[int, bytes, bytes]]:
    """Batch entries that make the records equal to an overlay (None = deleted)."""
    return [
        (clsops.OP_PUT, k, v) if v is not None else (clsops.OP_DISCARD, k, b"")
        for k, v in overlay
    ]

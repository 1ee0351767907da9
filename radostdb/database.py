"""The Tdb class: Samba's tdb Python API on a storage backend.

Holds no protocol logic: it checks arguments and handle state, keeps TDB's
error bookkeeping, and delegates to the backend (storage.py) or, inside a
transaction, to the transaction's buffer (txn.py). Which database a name
means is names.py's mapping (through cluster.resolve).

error bookkeeping (tdb's ``ecode``, which a commit, prepare or cancel with no
transaction active reports again), as tdb 1.4 keeps it, checked against
python3-tdb (tests/cluster/test_differential.py; TDB_INTERNAL handles in
tests/unit/test_memory_backend.py):
- a failing call sets its own code. On a read-only handle writes give
  TDB_ERR_RDONLY (10), a transaction or repack TDB_ERR_EINVAL (9), whole
  database locks and clear TDB_ERR_LOCK (3); increment_seqnum_nonblock fails
  silently (code 10 when SEQNUM is set). TDB_INTERNAL handles refuse
  transactions and repack with 9, as tdb's do.
- a fetch (get, ``in``, ``db[key]``, fetch_locked) of a missing key sets
  TDB_ERR_NOEXIST (8) though nothing is raised; a hit leaves the code alone.
- firstkey/nextkey returning None at the end, a traversal or key iteration
  that runs to the end, and a successful repack reset it to 0; nextkey of a
  key the database does not hold returns None and sets 8, as tdb_nextkey.
- a successful store, storev or append resets it to 0, except that, as in
  tdb (whose internal delete of the old record misses), one that created
  the record with REPLACE or append leaves 8: the OSD reports it
  (clsops.WRITE_REPORT, one omap lookup). What radostdb does not
  reproduce: inside a transaction a REPLACE store does not know whether it
  creates (that would cost a read per store; append reads anyway and
  matches), and tdb leaves the code alone when it rewrites a record in
  place (the new value fits the old record's space in its file, which tdb
  allocates a quarter larger than the record), a fact of tdb's allocator
  with nothing to match here.
- transaction start, commit and cancel, delete of an existing key, clear,
  locks and seqnum calls leave it alone. (Inside a transaction, a tdb write
  that has to grow the file leaves TDB_ERR_IO (2) though it succeeds: a
  file-format artefact with no counterpart here.)
- transaction_start_nonblock finding the transaction lock taken gives
  TDB_ERR_NOLOCK (6), as tdb_transaction_start_nonblock does.
- a write (or repack) refused with TDB_ERR_EINVAL because the transaction
  is prepared also dooms the transaction: its commit fails with TDB_ERR_IO,
  as in tdb.

fork (forks.py, storage.py): a handle inherited through fork() is adopted
by the child on its first call: it works as the child's own (a connection,
owner id and watch of the child's), unless the parent held record or
database locks or a transaction on it: then every call raises TDB's lock
error saying so. ``reopen()`` (tdb_reopen) refuses, as tdb's does, a handle
with locks held or inside a transaction: it closes the handle and raises
``(2, 'Failed to reopen database')``; otherwise it re-establishes the
presence of a CLEAR_IF_FIRST handle (its header watch, as tdb_reopen
takes its ACTIVE_LOCK again).
"""

from __future__ import annotations

import errno
import functools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from . import cluster as clustermod
from . import flags as F
from . import forks, layout, names, service
from .errors import (
    ERR_EINVAL,
    ERR_IO,
    ERR_LOCK,
    ERR_NESTING,
    ERR_NOEXIST,
    ERR_RDONLY,
    REOPEN_REFUSED,
    SUCCESS,
    KeyMissing,
    TdbError,
    closed_error,
    forked_error,
)
from .kinds import Op
from .locked import LockedRecord
from .storage import MemoryStorage, RadosStorage, Storage
from .txn import Transaction
from .watch import Watch

INTERNAL_NAME = "__TDB_INTERNAL__"
INTERNAL_HASH_SIZE = 131
KNOWN_TDB_FLAGS = (
    F.CLEAR_IF_FIRST
    | F.INTERNAL
    | F.NOLOCK
    | F.NOMMAP
    | F.CONVERT
    | F.BIGENDIAN
    | F.NOSYNC
    | F.SEQNUM
    | F.VOLATILE
    | F.ALLOW_NESTING
    | F.DISALLOW_NESTING
    | F.INCOMPATIBLE_HASH
)
STORE_FLAGS = {0: F.REPLACE, F.REPLACE: F.REPLACE, F.INSERT: F.INSERT, F.MODIFY: F.MODIFY}

T = TypeVar("T")


def _unmigrated(exc: FileNotFoundError, name: str) -> FileNotFoundError:
    """A database missing from the pool, opened by a path: if this host still
    has that path as a local .tdb file (an unmigrated host), say so, and how
    to move it in."""
    local = names.local_path(name)
    if local is None or not os.path.isfile(local):
        return exc
    return FileNotFoundError(
        errno.ENOENT,
        f"{exc.strerror}; this host has the file {local}, not yet in the cluster: move it in "
        f"with 'radostdb import {local}'",
    )


def _check_bytes(*values: object) -> None:
    for v in values:
        if not isinstance(v, bytes):
            raise TypeError(f"expected bytes, {type(v).__name__} found")


def _failed(self: Tdb, exc: TdbError) -> None:
    """Bookkeeping of a failed call: tdb reports the code again when a later
    call fails without setting one."""
    self._ecode = exc.code
    if exc.code == ERR_EINVAL and self._txn is not None and self._txn.prepared:
        self._txn.poisoned = True  # as tdb: a write refused once prepared dooms it


def _op(method: Callable[..., T]) -> Callable[..., T]:
    """Refuse calls on a closed handle; remember the TDB error code of a failure."""

    @functools.wraps(method)
    def wrapper(self: Tdb, *args: Any, **kwargs: Any) -> T:
        if self._storage is None:
            raise closed_error()
        if self._gen != forks.generation:
            self._adopt()
        try:
            return method(self, *args, **kwargs)
        except TdbError as exc:
            _failed(self, exc)
            raise

    return wrapper


def _writer(method: Callable[..., T]) -> Callable[..., T]:
    """As _op, and refuse writes on a read-only handle (TDB's RDONLY error).
    One wrapper, not two: writes are the hot path of transactions."""

    @functools.wraps(method)
    def wrapper(self: Tdb, *args: Any, **kwargs: Any) -> T:
        if self._storage is None:
            raise closed_error()
        if self._gen != forks.generation:
            self._adopt()
        try:
            if self._readonly:
                raise TdbError(ERR_RDONLY)
            return method(self, *args, **kwargs)
        except TdbError as exc:
            _failed(self, exc)
            raise

    return wrapper


class Tdb:
    """A TDB database in RADOS (or in memory, with no name).

    ``Tdb(name=None, hash_size=0, tdb_flags=DEFAULT, flags=O_RDWR, mode=0o600)``
    as Samba's ``tdb.Tdb``. ``hash_size`` is tdb's chain count: a database
    created with it keeps it to answer :attr:`hash_size` (0: tdb's 131); it
    does not size the database, whose shards split as records come
    (radostdb.reshard). ``shards`` sets the shard count a database is
    created with (default 8). Keywords ``conf``,
    ``client_id``, ``pool``, ``namespace`` and ``cluster`` (a connected
    ``rados.Rados`` to use instead of the shared connection) choose where it
    lives, ``session`` (a :class:`radostdb.cluster.Session`) how it is
    reached; see :mod:`radostdb.cluster`. A name that looks like a path is
    normalised as a filesystem path (see :mod:`radostdb.names`);
    ``path_prefix`` overrides RADOSTDB_PATH_PREFIX. ``lock_lease`` (seconds;
    default RADOSTDB_LOCK_LEASE or 30) is how long a lock outlives a holder
    that died; ``txn_lease`` (default RADOSTDB_TXN_LEASE or 5, at most
    ``lock_lease``) the same for the transaction lock, which a handle keeps
    between transactions until another handle asks for it.
    """

    def __init__(
        self,
        name: str | bytes | None = None,
        hash_size: int = 0,
        tdb_flags: int = F.DEFAULT,
        flags: int = os.O_RDWR,
        mode: int = 0o600,
        *,
        conf: str | None = None,
        client_id: str | None = None,
        pool: str | None = None,
        namespace: str | None = None,
        cluster: Any = None,
        session: Any = None,
        lock_lease: float | None = None,
        txn_lease: float | None = None,
        path_prefix: str | None = None,
        shards: int | None = None,
    ) -> None:
        self._storage: Storage | None = None
        self._gen = forks.generation
        self._txn: Transaction | None = None
        self._repacked_in_txn = False
        self._ecode = SUCCESS
        self._max_dead = 0
        for what, value in (
            ("hash_size", hash_size),
            ("tdb_flags", tdb_flags),
            ("flags", flags),
            ("mode", mode),
        ):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{what} must be an int, not {type(value).__name__}")
        if tdb_flags & ~KNOWN_TDB_FLAGS:
            raise ValueError(f"unknown tdb_flags bits {tdb_flags & ~KNOWN_TDB_FLAGS:#x}")
        if not 0 <= hash_size <= 65536:
            raise ValueError(f"hash_size {hash_size} is out of range (0 to 65536)")
        if shards is not None and (
            not isinstance(shards, int) or not 1 <= shards <= layout.MAX_SHARDS
        ):
            raise ValueError(f"shards {shards!r} is not a shard count (1 to {layout.MAX_SHARDS})")
        accmode = flags & os.O_ACCMODE
        if accmode == os.O_WRONLY:
            raise OSError(errno.EINVAL, "a TDB cannot be opened write-only")
        self._readonly = accmode == os.O_RDONLY
        if isinstance(name, bytes):
            name = name.decode()
        if name is None or tdb_flags & F.INTERNAL:
            self._name = None
            self._tdb_flags = tdb_flags | F.INTERNAL | F.NOLOCK | F.NOMMAP | F.INCOMPATIBLE_HASH
            self._hash_size = hash_size or INTERNAL_HASH_SIZE
            storage: Storage = MemoryStorage()
        else:
            target = clustermod.resolve(
                name,
                conf=conf,
                client_id=client_id,
                pool=pool,
                namespace=namespace,
                cluster=cluster,
                path_prefix=path_prefix,
                session_=session,
            )
            self._name = name
            self._tdb_flags = tdb_flags
            try:
                rs = self._open_rados(
                    target, hash_size, tdb_flags, flags, lock_lease, txn_lease, shards
                )
            except FileNotFoundError as exc:
                raise _unmigrated(exc, name) from None
            self._hash_size = rs.hash_size
            storage = rs
            if flags & os.O_TRUNC and not self._readonly:
                rs.clear()
        if not self._tdb_flags & (F.ALLOW_NESTING | F.DISALLOW_NESTING):
            self._tdb_flags |= F.ALLOW_NESTING
        self._storage = storage

    def _open_rados(
        self,
        target: Any,
        hash_size: int,
        tdb_flags: int,
        flags: int,
        lock_lease: float | None,
        txn_lease: float | None,
        shards: int | None = None,
    ) -> RadosStorage:
        return RadosStorage(
            target,
            create=bool(flags & os.O_CREAT) and not self._readonly,
            exclusive=bool(flags & os.O_EXCL),
            hash_size=hash_size,
            shards=shards,
            clear_if_first=bool(tdb_flags & F.CLEAR_IF_FIRST) and not self._readonly,
            counted=bool(tdb_flags & F.CLEAR_IF_FIRST),
            lock_lease=lock_lease,
            txn_lease=txn_lease,
        )

    # -- handle ---------------------------------------------------------------
    @property
    def _db(self) -> Storage | Transaction:
        """Where reads and writes go: the transaction's buffer, or the backend."""
        if self._storage is None:
            raise closed_error()
        return self._txn if self._txn is not None else self._storage

    def close(self) -> None:
        """Close the handle (tdb_close); a second close does nothing. An open
        transaction is cancelled and every lock released."""
        storage, self._storage = self._storage, None
        self._txn = None
        if storage is not None:
            storage.close()

    def __enter__(self) -> Tdb:
        """``with radostdb.Tdb(...) as db:`` closes the handle at the end."""
        if self._storage is None:
            raise closed_error()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # The garbage collector runs this on whatever thread allocates, also a
        # librados callback thread: close where that cannot deadlock.
        storage, self._storage = self._storage, None
        self._txn = None
        if storage is not None:
            service.close_safely(storage.close)

    def _adopt(self) -> None:
        """The first call in a forked child (see the module comment)."""
        assert self._storage is not None
        held = self._storage.adopt(in_transaction=self._txn is not None)
        if held is not None:
            raise forked_error(held)
        self._gen = forks.generation

    def reopen(self) -> None:
        """tdb_reopen, for use after fork(): with locks held or inside a
        transaction it closes the handle and fails, as tdb's does; otherwise
        the handle is this process's (done on first use anyway) and counts
        as an opener for CLEAR_IF_FIRST."""
        storage = self._storage
        if storage is None:
            raise closed_error()
        if self._name is None:
            return  # TDB_INTERNAL: nothing to do, as tdb
        held = storage.adopt(in_transaction=self._txn is not None)
        if held is None and (self._txn is not None or storage.holds_user_locks()):
            held = "locks or a transaction"
        if held is not None:
            self.close()
            raise TdbError(
                ERR_IO,
                f"{REOPEN_REFUSED}: not allowed with {held} held "
                "(the handle is closed, as tdb_reopen does)",
            )
        self._gen = forks.generation
        storage.reopen()

    def __repr__(self) -> str:
        if self._storage is None:
            raise closed_error()
        return "Tdb(<internal>)" if self._name is None else f"Tdb({self._name!r})"

    # -- attributes -------------------------------------------------------------
    @property
    def filename(self) -> bytes:
        if self._storage is None:
            raise closed_error()
        return (self._name or INTERNAL_NAME).encode()

    @property
    def hash_size(self) -> int:
        if self._storage is None:
            raise closed_error()
        return self._hash_size

    @property
    def map_size(self) -> int:
        """0: a RADOS database has no memory map."""
        if self._storage is None:
            raise closed_error()
        return 0

    @property
    def freelist_size(self) -> int:
        """0: RADOS omap has no free list to report."""
        if self._storage is None:
            raise closed_error()
        return 0

    @property
    def flags(self) -> int:
        if self._storage is None:
            raise closed_error()
        return self._tdb_flags

    @property
    def seqnum(self) -> int:
        """The database sequence number: it grows with every change."""
        if self._storage is None:
            raise closed_error()
        return self._storage.seqnum()

    def _set_max_dead(self, value: int) -> None:
        if self._storage is None:
            raise closed_error()
        self._max_dead = int(value)

    max_dead = property(None, _set_max_dead, doc="Write-only, as in tdb (no effect in RADOS).")

    @_op
    def add_flags(self, flags: int) -> None:
        self._tdb_flags |= flags

    @_op
    def remove_flags(self, flags: int) -> None:
        self._tdb_flags &= ~flags

    @_op
    def enable_seqnum(self) -> None:
        self._tdb_flags |= F.SEQNUM

    @_op
    def increment_seqnum_nonblock(self) -> None:
        """Bump the sequence number without a change (only with SEQNUM set).

        As tdb's, it never raises: on a read-only handle it only sets the
        error code."""
        if self._tdb_flags & F.SEQNUM:
            if self._readonly:
                self._ecode = ERR_RDONLY
                return
            assert self._storage is not None
            self._storage.bump_seqnum()

    # -- records ------------------------------------------------------------
    @_op
    def get(self, key: bytes) -> bytes | None:
        """tdb_fetch: the value, or None."""
        _check_bytes(key)
        return self._fetched(self._db.fetch(key))

    def _fetched(self, value: bytes | None) -> bytes | None:
        if value is None:
            self._ecode = ERR_NOEXIST  # tdb_fetch of a missing key sets it, raising nothing
        return value

    def _to_end(self, it: Iterator[T]) -> Iterator[T]:
        """``it``, resetting the error code when it runs to its end (as tdb's
        traversal does) and keeping the code of a failure. Closing the handle
        ends it: its next step raises the closed-handle error."""
        storage = self._storage  # now, not at the first step

        def run() -> Iterator[T]:
            try:
                for item in it:
                    if self._storage is not storage:
                        raise closed_error()
                    yield item
            except TdbError as exc:
                self._ecode = exc.code
                raise
            if self._storage is not storage:
                raise closed_error()
            self._ecode = SUCCESS

        return run()

    @_writer
    def store(self, key: bytes, data: bytes, flag: int = F.REPLACE) -> None:
        """tdb_store with REPLACE, INSERT (exists: error 5) or MODIFY (missing: 8)."""
        if not (isinstance(key, bytes) and isinstance(data, bytes)):
            _check_bytes(key, data)
        try:
            flag = STORE_FLAGS[flag]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown store flag {flag!r}: use REPLACE, INSERT or MODIFY"
            ) from None
        created = self._db.store(key, data, flag)
        # as tdb: its delete of the old record misses when REPLACE created one
        self._ecode = ERR_NOEXIST if created and flag == F.REPLACE else SUCCESS

    @_writer
    def storev(self, key: bytes, values: list[bytes]) -> None:
        """tdb_storev: store the concatenation of a list of bytes."""
        _check_bytes(key)
        if not isinstance(values, list):
            raise TypeError(f"argument 2 must be list, not {type(values).__name__}")
        _check_bytes(*values)
        created = self._db.store(key, b"".join(values), F.REPLACE)
        self._ecode = ERR_NOEXIST if created else SUCCESS

    @_writer
    def append(self, key: bytes, data: bytes) -> None:
        """tdb_append: add data to the end of the record (created if missing)."""
        _check_bytes(key, data)
        created = self._db.append(key, data)
        self._ecode = ERR_NOEXIST if created else SUCCESS

    @_writer
    def delete(self, key: bytes) -> None:
        """tdb_delete (missing key: error 8)."""
        _check_bytes(key)
        self._db.delete(key)

    @_op
    def clear(self) -> None:
        """tdb_wipe_all: remove every record (read-only handle: TDB's lock
        error, as tdb_wipe_all cannot lock the whole database)."""
        self._whole_db_locks()
        self._db.clear()

    @_op
    def firstkey(self) -> bytes | None:
        return self._ended(self._db.first_key())

    @_op
    def nextkey(self, key: bytes) -> bytes | None:
        """tdb_nextkey: the key after ``key``; None at the end, or (code 8, as
        tdb) when ``key`` is not in the database."""
        _check_bytes(key)
        try:
            return self._ended(self._db.next_key(key))
        except KeyMissing:
            self._ecode = ERR_NOEXIST
            return None

    def _ended(self, key: bytes | None) -> bytes | None:
        if key is None:
            self._ecode = SUCCESS  # tdb's traversal reached the end
        return key

    @_op
    def keys(self) -> Iterator[bytes]:
        return self._to_end(self._db.keys())

    def __iter__(self) -> Iterator[bytes]:
        return self.keys()

    @_op
    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) pair, read in pages."""
        return self._to_end(self._db.items())

    @_op
    def traverse(self, fn: Callable[[bytes, bytes], Any]) -> int:
        """tdb_traverse: call fn(key, value) per record until it returns true.

        Returns the number of records visited."""
        n = 0
        for key, value in self._to_end(self._db.items()):  # resets the code at the end
            n += 1
            if fn(key, value):
                return n
        return n

    def __getitem__(self, key: bytes) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.store(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, bytes):
            raise TypeError("bad argument type for built-in operation")
        return self.get(key) is not None

    @_op
    def repack(self) -> None:
        """tdb_repack: nothing to do, the OSD's omap store compacts itself.

        As tdb's (a repack is a transaction there, which rewrites every
        record), it fails with TDB's invalid-parameter error on a read-only
        or TDB_INTERNAL handle and inside a prepared transaction (which it
        then dooms, as any write does), and with TDB's IO error inside a
        transaction whose inner part was cancelled."""
        if self._readonly or self._name is None:
            raise TdbError(ERR_EINVAL)
        if self._txn is not None:
            if self._txn.prepared:
                raise TdbError(ERR_EINVAL)
            if self._txn.poisoned:  # tdb's repack is a nested transaction: its commit fails
                raise TdbError(ERR_IO)
            self._repacked_in_txn = True  # tdb's repack rewrote every record
        self._ecode = SUCCESS

    # -- locks ----------------------------------------------------------------
    @_op
    def chainlock(self, key: bytes) -> None:
        """tdb_chainlock: lock the record against other handles' writes and
        locks, everywhere; waits while another handle holds it."""
        _check_bytes(key)
        self._storage_or_closed().lock(key, False, False)

    @_op
    def chainlock_nonblock(self, key: bytes) -> None:
        """tdb_chainlock_nonblock: TDB's lock error at once when contended."""
        _check_bytes(key)
        self._storage_or_closed().lock(key, False, True)

    @_op
    def chainlock_read(self, key: bytes) -> None:
        """tdb_chainlock_read: a shared lock; other shared locks are admitted."""
        _check_bytes(key)
        self._storage_or_closed().lock(key, True, False)

    @_op
    def chainlock_read_nonblock(self, key: bytes) -> None:
        _check_bytes(key)
        self._storage_or_closed().lock(key, True, True)

    @_op
    def chainunlock(self, key: bytes) -> None:
        """tdb_chainunlock (not held: TDB's lock error)."""
        _check_bytes(key)
        self._storage_or_closed().unlock(key, False)

    @_op
    def chainunlock_read(self, key: bytes) -> None:
        _check_bytes(key)
        self._storage_or_closed().unlock(key, True)

    @contextmanager
    def lock(self, key: bytes, shared: bool = False) -> Iterator[Tdb]:
        """``with db.lock(key):`` chainlock (or chainlock_read) for the block."""
        if shared:
            self.chainlock_read(key)
        else:
            self.chainlock(key)
        try:
            yield self
        finally:
            if self._storage is not None:
                if shared:
                    self.chainunlock_read(key)
                else:
                    self.chainunlock(key)

    @_op
    def fetch_locked(self, key: bytes) -> bytes | None:
        """dbwrap's fetch_locked: lock the record and return its value (or None)
        in one round trip; release with chainunlock(key)."""
        _check_bytes(key)
        return self._fetched(self._storage_or_closed().fetch_locked(key))

    # -- watched records (watch.py) -------------------------------------------
    @_op
    def watch(self, key: bytes) -> Watch:
        """Watch the record (Samba's dbwrap_watch_record): returns an armed
        :class:`radostdb.watch.Watch` whose ``wait(timeout=None)`` returns
        once the record was stored, appended, deleted or written by a
        committed transaction, by any handle on any host, after this call
        (TimeoutError after ``timeout``). Made while holding the record's
        chainlock, it sees every change after the lock is released. Wakeups
        may be spurious: look at the record again. ``rearm()`` waits for the
        next change; ``cancel()`` (or ``with``) ends it."""
        _check_bytes(key)
        return self._storage_or_closed().watch(key)

    @_op
    def watch_iter(self, key: bytes, timeout: float | None = None) -> Iterator[bytes | None]:
        """The record's changes after this call, each as its new value (None:
        deleted). Changes in quick succession may reach it as one, the
        latest: every change is followed by a value at least as new. With
        ``timeout`` the iteration ends ``timeout`` seconds after this call;
        ending or closing the iterator cancels the watch."""
        _check_bytes(key)
        storage = self._storage_or_closed()
        w = storage.watch(key)
        try:
            last = storage.fetch_version(key)
        except BaseException:
            w.cancel()
            raise

        deadline = None if timeout is None else time.monotonic() + timeout

        def run() -> Iterator[bytes | None]:
            nonlocal last
            try:
                while True:
                    try:
                        w.wait(None if deadline is None else deadline - time.monotonic())
                    except TimeoutError:
                        return
                    w.rearm()  # before the read: a change after it fires again
                    now = storage.fetch_version(key)
                    if now[0] != last[0]:
                        last = now
                        yield now[1]
            finally:
                if self._storage is storage:
                    w.cancel()

        return run()

    @_op
    def do_locked(self, key: bytes, fn: Callable[[LockedRecord], T]) -> T:
        """Samba's dbwrap_do_locked: run ``fn(record)`` with the record locked
        exclusively and return what it returns. ``record.value`` is the
        data (None: missing); ``record.store(data, flag=REPLACE)``,
        ``record.append(data)`` and ``record.delete()`` change it when ``fn``
        returns, in the same round trip as the unlock: the whole call costs
        two round trips (lock and read, change and unlock). If ``fn`` raises,
        nothing is changed and the lock is released. Inside a transaction,
        the change is the transaction's."""
        _check_bytes(key)
        storage = self._storage_or_closed()
        if self._txn is not None:
            return self._do_locked_in_txn(key, fn)
        rec = LockedRecord(key, self._fetched(storage.fetch_locked(key)))
        try:
            result = fn(rec)
            entry = rec.entry()
            if entry is not None and self._readonly:
                raise TdbError(ERR_RDONLY)
        except BaseException:
            storage.unlock(key, False)
            raise
        storage.write_unlock(key, entry)
        return result

    def _do_locked_in_txn(self, key: bytes, fn: Callable[[LockedRecord], T]) -> T:
        with self.lock(key):
            rec = LockedRecord(key, self.get(key))
            result = fn(rec)
            entry = rec.entry()
            if entry is not None and entry[0] == Op.PUT:
                self.store(key, entry[2])
            elif entry is not None and key in self:
                self.delete(key)
            return result

    @_op
    def lock_all(self) -> None:
        """tdb_lockall: block every other handle's writes and locks."""
        self._whole_db_locks().lock_all(False, False)

    @_op
    def lock_all_nonblock(self) -> None:
        self._whole_db_locks().lock_all(False, True)

    @_op
    def unlock_all(self) -> None:
        self._whole_db_locks().unlock_all(False)

    @_op
    def read_lock_all(self) -> None:
        """tdb_lockall_read: block other handles' writes, not their reads."""
        self._whole_db_locks().lock_all(True, False)

    @_op
    def read_lock_all_nonblock(self) -> None:
        self._whole_db_locks().lock_all(True, True)

    @_op
    def read_unlock_all(self) -> None:
        self._whole_db_locks().unlock_all(True)

    def _storage_or_closed(self) -> Storage:
        if self._storage is None:
            raise closed_error()
        return self._storage

    def _whole_db_locks(self) -> Storage:
        """The backend, for whole-database locks: a read-only handle has none
        (tdb: "There are no locks on read-only dbs", TDB's lock error)."""
        if self._readonly:
            raise TdbError(ERR_LOCK)
        return self._storage_or_closed()

    # -- transactions ---------------------------------------------------------
    @_op
    def transaction_start(self) -> None:
        """tdb_transaction_start: waits for the database's transaction lock;
        nests under ALLOW_NESTING (the default)."""
        self._start_transaction(nonblock=False)

    @_op
    def transaction_start_nonblock(self) -> None:
        """tdb_transaction_start_nonblock: TDB_ERR_NOLOCK (6) at once when another
        handle's transaction is active."""
        self._start_transaction(nonblock=True)

    def _start_transaction(self, nonblock: bool) -> None:
        if self._txn is not None:
            if self._tdb_flags & F.DISALLOW_NESTING:
                raise TdbError(ERR_NESTING)
            self._txn.depth += 1
            return
        if self._readonly or self._name is None:
            # tdb: "cannot start a transaction on a read-only or internal db"
            raise TdbError(ERR_EINVAL)
        storage = self._storage_or_closed()
        # nonblock and taken: TDB_ERR_NOLOCK (txnlock.py), as tdb_transaction_start_nonblock;
        # with the handle's own locks held: TDB_ERR_LOCK, as tdb
        storage.txn_lock(nonblock)
        self._txn = Transaction(storage)
        self._repacked_in_txn = False

    def _end_transaction(self, ok: bool = True) -> None:
        self._txn = None
        if self._storage is not None:
            self._storage.txn_unlock(ok)

    def _active(self) -> Transaction:
        if self._txn is None:
            # tdb sets no new error code here: it reports the last one
            raise TdbError(self._ecode)
        return self._txn

    def _cancel_level(self, txn: Transaction) -> None:
        """tdb's cancel: an inner level only uncounts and dooms the
        transaction (its commit will fail); the outermost ends it."""
        if txn.depth > 1:
            txn.depth -= 1
            txn.poisoned = True
        else:
            self._end_transaction()

    @_op
    def transaction_prepare_commit(self) -> None:
        txn = self._active()
        if txn.prepared or txn.poisoned:
            # as tdb: preparing twice, or a transaction whose inner part was
            # cancelled, fails and cancels (this level of) the transaction
            self._cancel_level(txn)
            raise TdbError(ERR_EINVAL if txn.prepared else ERR_IO)
        if txn.depth == 1 and (txn.overlay or txn.cleared or self._repacked_in_txn):
            txn.prepared = True  # as tdb: a transaction that wrote nothing is never prepared

    @_op
    def transaction_commit(self) -> None:
        txn = self._active()
        if txn.poisoned:  # as tdb, at any level: TDB's IO error, and that level cancelled
            self._cancel_level(txn)
            raise TdbError(ERR_IO)
        if txn.depth > 1:
            txn.depth -= 1
            return
        ok = False
        try:
            txn.commit()
            ok = True
        finally:
            self._end_transaction(ok)

    @_op
    def transaction_cancel(self) -> None:
        self._cancel_level(self._active())

    @contextmanager
    def transaction(self) -> Iterator[Tdb]:
        """``with db.transaction():`` commits on success, cancels on exception."""
        self.transaction_start()
        try:
            yield self
        except BaseException:
            if self._storage is not None and self._txn is not None:
                self.transaction_cancel()
            raise
        self.transaction_commit()

    # -- text -----------------------------------------------------------------
    @property
    def text(self) -> TdbTextWrapper:
        """The same database with str keys and values (UTF-8)."""
        if self._storage is None:
            raise closed_error()
        return TdbTextWrapper(self)


class TdbTextWrapper:
    """tdb's ``.text`` view: str in, str out; ``.raw`` is the Tdb."""

    def __init__(self, db: Tdb) -> None:
        self._tdb = db

    @property
    def raw(self) -> Tdb:
        return self._tdb

    @property
    def text(self) -> TdbTextWrapper:
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tdb, name)

    def __repr__(self) -> str:
        return f"<TdbTextWrapper for {self._tdb!r}>"

    def get(self, key: str) -> str | None:
        value = self._tdb.get(key.encode())
        return None if value is None else value.decode()

    def __getitem__(self, key: str) -> str:
        return self._tdb[key.encode()].decode()

    def store(self, key: str, data: str, flag: int = F.REPLACE) -> None:
        self._tdb.store(key.encode(), data.encode(), flag)

    def __setitem__(self, key: str, data: str) -> None:
        self._tdb[key.encode()] = data.encode()

    def append(self, key: str, data: str) -> None:
        self._tdb.append(key.encode(), data.encode())

    def delete(self, key: str) -> None:
        self._tdb.delete(key.encode())

    def __delitem__(self, key: str) -> None:
        del self._tdb[key.encode()]

    def __contains__(self, key: str) -> bool:
        return key.encode() in self._tdb

    def firstkey(self) -> str | None:
        key = self._tdb.firstkey()
        return None if key is None else key.decode()

    def nextkey(self, key: str) -> str | None:
        nxt = self._tdb.nextkey(key.encode())
        return None if nxt is None else nxt.decode()

    def keys(self) -> Iterator[str]:
        return (k.decode() for k in self._tdb.keys())

    def __iter__(self) -> Iterator[str]:
        return self.keys()


def open(
    name: str | bytes | None = None,
    hash_size: int = 0,
    tdb_flags: int = F.DEFAULT,
    flags: int = os.O_RDWR,
    mode: int = 0o600,
    **kwargs: Any,
) -> Tdb:
    """open(name, hash_size=0, tdb_flags=TDB_DEFAULT, flags=O_RDWR, mode=0600)"""
    return Tdb(name, hash_size, tdb_flags, flags, mode, **kwargs)

"""Record locks, whole-database locks, leases, and waiting via watch/notify.

lock design:
- The lock table of a shard lives in the shard object's omap header and is
  changed only by the object class (cls/radostdb/locks.h). Taking a lock is
  one class call; so is releasing it. The check that guards a write is made
  in the OSD, in the same atomic operation as the write.
- A lock belongs to a handle: its owner id (16 random bytes, new after
  fork). The handle counts re-locks of a key it already holds (as TDB does)
  and talks to the OSD only for the first lock and the last unlock.
- Leases: every lock carries an expiry on the OSD clock (lease: ``lock_lease=``
  or RADOSTDB_LOCK_LEASE seconds, default 30). One background thread per
  process renews the leases of every handle holding locks, every third of a
  lease. A holder that dies stops renewing; its locks stop counting when the
  lease ends. A holder that was stopped past its lease and lost a lock to
  someone else is fenced: its writes under that lock carry an assertion the
  OSD checks, and fail with TDB's lock error.
- Waiting: a refused lock or write (-EBUSY) makes the waiter watch the shard
  object, announce itself with a "wait" notify (holders in any process note
  that someone waits on that shard), retry once, then sleep until a "free"
  notify or a fallback timeout (a second, against lost notifies and dead
  holders whose lease must run out). A holder releasing a lock on a shard
  where somebody announced a wait sends "free". An uncontended lock/unlock
  pair therefore costs two class calls and nothing else (plus, once per
  process and shard, establishing the watch).
- Whole-database locks (lock_all, read_lock_all) take a shard lock on every
  shard, in shard order so that two of them cannot deadlock.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import rados

from . import clsops, layout
from . import cluster as clustermod
from .errors import ERR_LOCK, TdbError

DEFAULT_LEASE = 30.0
FALLBACK_WAIT = 1.0
NOTIFY_TIMEOUT_MS = 1000
WAIT_MSG = "wait"
FREE_MSG = "free"

T = TypeVar("T")


def default_lease() -> float:
    """RADOSTDB_LOCK_LEASE seconds, or 30."""
    raw = os.environ.get("RADOSTDB_LOCK_LEASE", "")
    try:
        value = float(raw) if raw else DEFAULT_LEASE
    except ValueError:
        raise ValueError(f"RADOSTDB_LOCK_LEASE={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"RADOSTDB_LOCK_LEASE={raw!r} must be positive")
    return value


class _Waits:
    """Process-wide watches on shard objects and the state they deliver."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.watches: dict[tuple[int, str], Any] = {}
        self.freed: dict[str, int] = {}  # obj -> count of "free" notifies seen
        self.waited: set[str] = set()  # shards on which somebody announced a wait
        self.inflight: list[Any] = []  # "free" notifies not yet completed

    def ensure_watch(self, io: Any, obj: str) -> None:
        obj = layout.wait_object(obj)
        key = (id(io), obj)
        if key in self.watches:
            return

        def on_notify(_nid: int, _notifier: int, _wid: int, data: bytes) -> None:
            msg = bytes(data or b"")
            with self.cond:
                if msg == WAIT_MSG.encode():
                    self.waited.add(obj)
                elif msg == FREE_MSG.encode():
                    self.freed[obj] = self.freed.get(obj, 0) + 1
                    self.cond.notify_all()

        try:
            watch = io.watch(obj, on_notify)
        except rados.ObjectNotFound:  # a shard never written: create it empty
            with rados.WriteOpCtx() as op:
                op.new(rados.LIBRADOS_CREATE_IDEMPOTENT)
                io.operate_write_op(op, obj)
            watch = io.watch(obj, on_notify)
        with self.lock:
            if key in self.watches:  # raced with another thread
                clustermod.abandon([watch])
            else:
                self.watches[key] = clustermod.track_watch(watch)

    def generation(self, obj: str) -> int:
        obj = layout.wait_object(obj)
        with self.lock:
            return self.freed.get(obj, 0)

    def sleep(self, obj: str, since: int, timeout: float) -> None:
        """Until a "free" notify for obj arrived after `since`, or timeout."""
        obj = layout.wait_object(obj)
        with self.cond:
            self.cond.wait_for(lambda: self.freed.get(obj, 0) != since, timeout)

    def announce(self, io: Any, obj: str) -> None:
        """Tell the holders on obj that somebody waits (they send "free")."""
        obj = layout.wait_object(obj)
        try:
            io.notify(obj, WAIT_MSG, NOTIFY_TIMEOUT_MS)
        except rados.Error:
            pass  # a dead watcher timed out: its lease will end

    def released(self, io: Any, obj: str, always: bool = False) -> None:
        """After a release on obj: wake waiters if any announced themselves
        (or ``always``: after a commit, whose waiters may be in any process)."""
        obj = layout.wait_object(obj)
        with self.lock:
            if obj not in self.waited and not always:
                return
            self.waited.discard(obj)
        self.track(io.aio_notify(obj, _ignore_completion, FREE_MSG, NOTIFY_TIMEOUT_MS))

    def track(self, comp: Any) -> None:
        """Keep an unwaited aio completion until it is done (drained at exit)."""
        with self.lock:
            self.inflight = [c for c in self.inflight if not c.is_complete()]
            self.inflight.append(comp)

    def drain(self) -> None:
        """Wait for notifies still in flight (their callbacks must not run
        after the connection is gone)."""
        with self.lock:
            inflight, self.inflight = self.inflight, []
        for comp in inflight:
            comp.wait_for_complete_and_cb()


def wake(io: Any, obj: str) -> None:
    """Tell every waiter on obj to retry now."""
    _waits.released(io, obj, always=True)


_waits = _Waits()


def _ignore_completion(*_args: Any) -> None:
    """aio notify completions need no handling."""


def blocking(io: Any, obj: str, attempt: Callable[[], T], nonblock: bool = False,
             on_pending: Callable[[], None] | None = None) -> T:
    """Run ``attempt`` (a class call), waiting while it raises clsops.Busy.

    With ``nonblock`` a lock refusal raises TDB's lock error at once. While
    the shard has an unfinished transaction (clsops.Pending), ``on_pending``
    runs after each fallback wait: it recovers the transaction if its
    committer died."""
    try:
        return attempt()
    except clsops.Pending:
        pass
    except clsops.Busy:
        if nonblock:
            raise TdbError(ERR_LOCK) from None
    _waits.ensure_watch(io, obj)
    while True:
        since = _waits.generation(obj)
        _waits.announce(io, obj)
        try:
            return attempt()
        except clsops.Pending:
            pending = True
        except clsops.Busy:
            pending = False
        _waits.sleep(obj, since, FALLBACK_WAIT)
        if pending and on_pending is not None:
            on_pending()


class _Renewer:
    """The process's lease-renewal thread, serving every LockTable."""

    def __init__(self) -> None:
        self.tables: weakref.WeakSet[LockTable] = weakref.WeakSet()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.stopped = False
        self.interval = 3600.0  # seconds between renewals, set by run()

    def add(self, table: LockTable) -> None:
        """Renew this table's leases from now on. Wakes the thread only when it
        must start, or must now renew more often: no renewal per lock."""
        with self.lock:
            self.tables.add(table)
            if self.stopped:
                return
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="radostdb-lease",
                                               daemon=True)
                self.interval = table.lease / 3
                self.thread.start()
                return
            if table.lease / 3 >= self.interval:
                return
        self.wake.set()

    def stop(self) -> None:
        """End the thread (before the process's connections shut down)."""
        with self.lock:
            self.stopped = True
            thread = self.thread
        self.wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(30)

    def run(self) -> None:
        while True:
            with self.lock:
                if self.stopped:
                    return
                tables = [t for t in self.tables if t.held]
            # the first pass after a (re)start sleeps first: fresh locks need
            # no renewal yet
            interval = min((t.lease for t in tables), default=3 * 3600.0) / 3
            with self.lock:
                self.interval = interval
            self.wake.wait(interval)
            self.wake.clear()
            with self.lock:
                if self.stopped:
                    return
                tables = [t for t in self.tables if t.held]
            for t in tables:
                with contextlib.suppress(Exception):
                    t.renew()


_renewer = _Renewer()

HeldKey = tuple[str, int, int, bytes]  # (shard object, kind, mode, key)


class LockTable:
    """The locks one handle holds, by shard object; talks to the class."""

    def __init__(self, io_getter: Callable[[], Any], lease: float | None = None) -> None:
        self._io = io_getter
        self.lease = default_lease() if lease is None else float(lease)
        if self.lease <= 0:
            raise ValueError(f"lock_lease must be positive, not {lease!r}")
        self.held: dict[HeldKey, int] = {}
        self._gen = clustermod.generation
        self.owner = uuid.uuid4().bytes
        self._mutex = threading.Lock()

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.lease * 1000))

    def _check_fork(self) -> None:
        """A forked child does not hold its parent's locks (as with fcntl)."""
        if self._gen != clustermod.generation:
            self._gen = clustermod.generation
            self.held = {}
            self.owner = uuid.uuid4().bytes

    # -- what the handle holds ------------------------------------------------
    def wflags(self, obj: str, key: bytes) -> int:
        """Write flags for a write of key on obj: assert the lock we hold."""
        if not self.held:
            return 0
        self._check_fork()
        h = self.held
        if ((obj, clsops.LOCK_RECORD, clsops.LOCK_EXCL, key) in h
                or (obj, clsops.LOCK_RECORD, clsops.LOCK_SHARED, key) in h
                or (obj, clsops.LOCK_SHARD, clsops.LOCK_EXCL, b"") in h
                or (obj, clsops.LOCK_SHARD, clsops.LOCK_SHARED, b"") in h):
            return clsops.WRITE_ASSERT_LOCK
        return 0

    def holds_shard(self, obj: str) -> bool:
        return any(k[0] == obj and k[1] == clsops.LOCK_SHARD for k in self.held)

    # -- lock and unlock --------------------------------------------------------
    def acquire(self, obj: str, kind: int, mode: int, key: bytes,
                nonblock: bool = False) -> None:
        """Take a lock (or count it again), waiting while another owner holds it."""
        self._check_fork()
        hk = (obj, kind, mode, key)
        if hk in self.held:
            self.held[hk] += 1
            return
        io = self._io()
        _waits.ensure_watch(io, obj)  # a holder must hear "wait" announcements
        req = clsops.lock_request(self.owner, self.lease_ms, kind, mode, key)
        blocking(io, obj, lambda: clsops.call(io, obj, "lock", req), nonblock)
        self._note(hk)

    def acquire_with_read(self, obj: str, key: bytes, start_read: Callable[[], Any]) -> Any:
        """Lock a record exclusively and read it in one round trip.

        ``start_read()`` starts an aio read of the record on ``obj`` and returns
        a function collecting it. The read is sent right behind the lock
        request on the same object, and the OSD orders a read after a write it
        received earlier, so the value is the one under the lock. Returns the
        collected read; if the lock was contended, waits for it and reads again.
        """
        self._check_fork()
        hk = (obj, clsops.LOCK_RECORD, clsops.LOCK_EXCL, key)
        if hk in self.held:
            self.held[hk] += 1
            return start_read()()
        io = self._io()
        _waits.ensure_watch(io, obj)
        req = clsops.lock_request(self.owner, self.lease_ms, clsops.LOCK_RECORD,
                                  clsops.LOCK_EXCL, key)
        comp = io.aio_execute(obj, clsops.CLASS, "lock", req, 0)
        collect = start_read()
        comp.wait_for_complete_and_cb()
        ret = comp.get_return_value()
        value = collect()
        if ret < 0:
            err = clsops.tdb_error(-ret, f"lock on {obj}")
            if not isinstance(err, clsops.Busy):
                raise err
            blocking(io, obj, lambda: clsops.call(io, obj, "lock", req))
            value = start_read()()
        self._note(hk)
        return value

    def _note(self, hk: HeldKey) -> None:
        with self._mutex:
            self.held[hk] = self.held.get(hk, 0) + 1
        _renewer.add(self)

    def release(self, obj: str, kind: int, mode: int, key: bytes, wait: bool = True) -> None:
        """Count down a lock; release it in the OSD at zero.

        Releasing a lock the handle does not hold, or one that was lost (its
        lease ran out and another took it), is TDB's lock error. With
        ``wait=False`` the release is sent without waiting for its answer (the
        handle's next request on obj is ordered after it; a lost lock then
        goes unreported)."""
        self._check_fork()
        hk = (obj, kind, mode, key)
        count = self.held.get(hk, 0)
        if count == 0:
            raise TdbError(ERR_LOCK)
        if count > 1:
            self.held[hk] = count - 1
            return
        with self._mutex:
            del self.held[hk]
        io = self._io()
        req = clsops.unlock_request(self.owner, kind, mode, key)
        if wait:
            clsops.call(io, obj, "unlock", req)
        else:
            _waits.track(io.aio_execute(obj, clsops.CLASS, "unlock", req, 0))
        _waits.released(io, obj)

    def release_all(self) -> None:
        """Release every lock the handle holds (close); errors are ignored:
        a lock that cannot be released expires with its lease."""
        self._check_fork()
        io = self._io()
        with self._mutex:
            held, self.held = list(self.held), {}
        batch = clsops.Batch(io)
        for obj, kind, mode, key in held:
            batch.start(obj, "unlock", clsops.unlock_request(self.owner, kind, mode, key))
        batch.wait_each()
        for obj in {h[0] for h in held}:
            _waits.released(io, obj)

    def renew(self) -> None:
        """Extend the lease of every lock held (one call per shard, in parallel)."""
        if self._gen != clustermod.generation:
            return
        objs = {h[0] for h in list(self.held)}
        if not objs:
            return
        batch = clsops.Batch(self._io())
        req = clsops.renew_request(self.owner, self.lease_ms)
        for obj in objs:
            batch.start(obj, "renew", req)
        batch.wait_each()


def _after_fork_in_child() -> None:
    global _waits, _renewer
    clustermod.abandon(_waits.watches.values())
    _waits = _Waits()
    _renewer = _Renewer()


def _quiesce() -> None:
    """Before connections shut down: no renewals, no notifies in flight. A
    later renewal need (handles used after a test session's reset) starts a
    fresh thread."""
    global _renewer
    _renewer.stop()
    _waits.drain()
    _renewer = _Renewer()


os.register_at_fork(after_in_child=_after_fork_in_child)
clustermod.before_shutdown(_quiesce)

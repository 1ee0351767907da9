"""The lock books of a handle: which locks it holds (counted), which it
lost, and the leases that keep them; waking lock waiters is wakeup.py's,
the conversation that takes and gives locks is shardclient.py's.

lock design:
- The lock table of an object lives in its omap header and is changed only
  by the object class (cls/radostdb/locks.h), which also keeps the FIFO queue
  of waiters and decides every grant: a request is granted only if it
  conflicts with no holder and no queued waiter; a release hands the lock to
  the head of the queue in the same atomic operation. Nobody barges: not a
  newcomer, not the owner that just released.
- A lock belongs to a handle: its owner id (16 random bytes; a handle a
  forked child adopts takes a new one and forgets the parent's books). The
  handle counts re-locks of a key it already holds (as TDB does) and talks
  to the OSD only for the first lock and the last unlock.
- Leases: every entry (held or queued) carries a lease on the OSD clock. One
  service thread per process (service.py) renews, for every handle, each
  object where the handle has entries, a third of a lease after the last
  renewal (deadline-driven: taking a lock schedules its renewal, nothing
  polls; the thread never waits for the main thread). A holder that dies
  stops renewing; its entries stop counting when the lease ends, and a
  waiter that died leaves the queue then. A renewal that finds the owner's
  entries gone marks those locks lost: the handle keeps the user's
  (record, shard; a transaction's are forgotten and taken anew) with their
  counts apart from the held ones, writes under them still assert the lock
  and are refused by the OSD (fencing, ERR_LOCK; never sent as plain writes
  that would queue behind the new owner and then land), and so is each
  unlock of them, which forgets them.
- A holder that hears a wait announced on one of its objects renews it at
  once (at most once a second): a waiter with a deadline tells a live
  holder (whose lease moved) from a dead one (whose lease did not).
- Thread safety: the service thread renews while the application's thread
  takes and gives locks; every change of the books and every scan of them
  holds the table's mutex (scans read a snapshot).
"""

from __future__ import annotations

import errno
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from . import clsops, forks, service, wakeup
from . import cluster as clustermod
from .errors import ERR_LOCK, TdbError
from .kinds import Kind, Mode

DEFAULT_LEASE = 30.0
DEFAULT_TXN_LEASE = 5.0
RENEW_ON_WAIT = 1.0  # a holder renews at once on a wait announcement, at most this often

HeldKey = tuple[str, int, int, bytes]  # (object, kind, mode, key)


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return value


def default_lease() -> float:
    """RADOSTDB_LOCK_LEASE seconds, or 30: how long a record or database lock
    outlives a holder that died."""
    return _env_seconds("RADOSTDB_LOCK_LEASE", DEFAULT_LEASE)


def default_txn_lease(lock_lease: float) -> float:
    """RADOSTDB_TXN_LEASE seconds, or 5 (never more than the lock lease): how
    long the transaction lock and a transaction's isolation outlive a holder
    that died, cached between transactions or not."""
    return min(_env_seconds("RADOSTDB_TXN_LEASE", DEFAULT_TXN_LEASE), lock_lease)


class LockTable:
    """The locks one handle holds or waits for, by object: counts, losses,
    leases (see the module comment)."""

    def __init__(
        self,
        io_getter: Callable[[], Any],
        lease: float | None = None,
        txn_lease: float | None = None,
    ) -> None:
        self._io = io_getter
        self.lease = default_lease() if lease is None else float(lease)
        if self.lease <= 0:
            raise ValueError(f"lock_lease must be positive, not {lease!r}")
        self.txn_lease = (
            default_txn_lease(self.lease)
            if txn_lease is None
            else min(float(txn_lease), self.lease)
        )
        if self.txn_lease <= 0:
            raise ValueError(f"txn_lease must be positive, not {txn_lease!r}")
        self.held: dict[HeldKey, int] = {}
        self._gen = forks.generation
        self.owner = os.urandom(clsops.OWNER_LEN)
        self._mutex = threading.RLock()
        # renewal: object -> (lease in ms of our shortest entry there, next due)
        self._objects: dict[str, tuple[int, float]] = {}
        self._scheduled: float | None = None  # when the service thread will renew us
        self._listening: set[str] = set()
        # told when somebody announces a wait on one of our objects; weak, so
        # a handle is freed (and closed) as soon as its user drops it
        self.wait_listeners: list[weakref.WeakMethod[Callable[[str], None]]] = []
        # locks a renewal found gone (lease expired, taken by another), as
        # held: the user still counts them until unlocking each
        self.lost: dict[HeldKey, int] = {}

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.lease * 1000))

    @property
    def txn_lease_ms(self) -> int:
        return max(1, int(self.txn_lease * 1000))

    # -- fork -------------------------------------------------------------------------------
    def check_fork(self) -> None:
        """In a forked child, the handle adopts the table first (storage.py:
        the books are forgotten, or the handle refuses every call)."""
        if self._gen != forks.generation:
            self._io()

    def forget_after_fork(self) -> None:
        """A forked child holds none of its parent's locks (as with fcntl):
        forget them (never released here), under a new owner id."""
        self._gen = forks.generation
        self._mutex = threading.RLock()  # a parent thread may have held it at fork time
        self.held = {}
        self.lost = {}
        self._objects = {}
        self._scheduled = None
        self._listening = set()  # the child's notices are new
        self.owner = os.urandom(clsops.OWNER_LEN)

    def new_owner(self) -> None:
        """Take a fresh owner id (after this one was fenced). Only when
        nothing is held under the old one."""
        with self._mutex:
            if not self.held:
                self.owner = os.urandom(clsops.OWNER_LEN)
                self._objects = {}

    # -- counting ------------------------------------------------------------------------------
    def count_again(self, hk: HeldKey) -> bool:
        """A lock requested again: True if held (counted once more, no call
        needed); TDB's lock error if it was lost and not yet unlocked."""
        with self._mutex:
            if hk in self.held:
                self.held[hk] += 1
                return True
            if hk in self.lost:  # the user still counts it: it is gone
                raise TdbError(ERR_LOCK)
            return False

    def note(self, hk: HeldKey, lease_ms: int) -> None:
        """A lock was granted: count it, and renew it in time."""
        with self._mutex:
            self.held[hk] = self.held.get(hk, 0) + 1
        self.track(hk[0], lease_ms)

    def count_down(self, hk: HeldKey) -> bool:
        """An unlock: True when it was the last (release it in the OSD).
        Unlocking a lock not held, or a lost one, is TDB's lock error."""
        with self._mutex:
            count = self.held.get(hk, 0)
            if count == 0:
                if self.lost.get(hk, 0) > 1:
                    self.lost[hk] -= 1
                else:
                    self.lost.pop(hk, None)
                raise TdbError(ERR_LOCK)
            if count > 1:
                self.held[hk] = count - 1
                return False
            del self.held[hk]
            return True

    def forget(self, hks: Iterable[HeldKey]) -> None:
        """Drop these locks from the books (being released)."""
        with self._mutex:
            for hk in hks:
                self.held.pop(hk, None)

    def forget_objects(self, items: Iterable[tuple[str, int]]) -> None:
        """Drop every lock of a kind (0: all) on each object from the books."""
        with self._mutex:
            for obj, kind in items:
                for hk in [k for k in self.held if k[0] == obj and (not kind or k[1] == kind)]:
                    del self.held[hk]

    def objects(self) -> set[str]:
        """The objects where we hold or track entries."""
        with self._mutex:
            return {k[0] for k in self.held} | set(self._objects)

    def clear(self) -> None:
        """Forget everything (the handle released it all)."""
        with self._mutex:
            self.held = {}
            self.lost = {}
            self._objects = {}

    def forget_lost(self, hks: Iterable[HeldKey]) -> bool:
        """Forget these locks where lost; were any of them lost?"""
        with self._mutex:
            return bool([hk for hk in hks if self.lost.pop(hk, None)])

    # -- what the handle holds ---------------------------------------------------------------
    def wflags(self, obj: str, key: bytes) -> int:
        """Write flags for a write of key on obj: assert the lock we hold, or
        the one we lost (so that the OSD refuses the write)."""
        if not self.held and not self.lost:
            return 0
        self.check_fork()
        with self._mutex:
            if (obj, Kind.ISOLATION, Mode.SHARED, b"") in self.held:
                return clsops.WRITE_ASSERT_TXN
            for locks in (self.held, self.lost):
                if (
                    (obj, Kind.RECORD, Mode.EXCL, key) in locks
                    or (obj, Kind.RECORD, Mode.SHARED, key) in locks
                    or (obj, Kind.SHARD, Mode.EXCL, b"") in locks
                    or (obj, Kind.SHARD, Mode.SHARED, b"") in locks
                ):
                    return clsops.WRITE_ASSERT_LOCK
        return 0

    def has_entries(self, obj: str) -> bool:
        """Do we hold or wait for a lock on obj (renewals tracked)?"""
        return obj in self._objects

    def holds_kind(self, obj: str, kind: int) -> bool:
        """A lock of kind on obj, held or lost (a write under it asserts it)."""
        with self._mutex:
            return any(
                k[0] == obj and k[1] == kind for locks in (self.held, self.lost) for k in locks
            )

    def holds_on(self, obj: str) -> bool:
        """Any lock on obj, held or lost but not yet unlocked."""
        with self._mutex:
            return any(k[0] == obj for locks in (self.held, self.lost) for k in locks)

    def holds_any(self, kind: int) -> bool:
        """A lock of kind on any object, held."""
        with self._mutex:
            return any(k[1] == kind for k in self.held)

    def holds_user_locks(self) -> bool:
        """Record or database locks taken by the user (not a transaction's),
        held or lost but not yet unlocked."""
        with self._mutex:
            return any(
                k[1] in (Kind.RECORD, Kind.SHARD) for locks in (self.held, self.lost) for k in locks
            )

    # -- renewal ----------------------------------------------------------------------------
    def track(self, obj: str, lease_ms: int) -> None:
        """We have an entry on obj now (granted or queued): renew it in time.
        The service thread is woken only when this moves our next renewal
        earlier: taking a lock costs no wake-up and no renewal round trip."""
        due = time.monotonic() + lease_ms / 3000.0
        with self._mutex:
            old = self._objects.get(obj)
            if old is not None and old[0] <= lease_ms and old[1] <= due:
                return
            self._objects[obj] = (min(lease_ms, old[0]) if old else lease_ms, due)
            if obj not in self._listening:
                self._listening.add(obj)
                wakeup.listen(obj, self)
            if self._scheduled is not None and self._scheduled <= due:
                return
            self._scheduled = due
        service.call_at(due, self.renew_due, key=self)

    def untrack(self, obj: str) -> None:
        """No renewal of obj any more, unless we still hold something there."""
        with self._mutex:
            if not any(k[0] == obj for k in self.held):
                self._objects.pop(obj, None)

    def renew_due(self) -> None:
        """Renew every object due now (service thread), then schedule the
        next renewal."""
        if self._gen != forks.generation:
            return
        now = time.monotonic()
        with self._mutex:
            self._scheduled = None
            due = [o for o, (_, when) in self._objects.items() if when <= now + 0.01]
        if due:
            io = self._io()
            calls = {o: clsops.aio_renew(io, o, self.owner) for o in due}
            for obj, call in calls.items():
                err = call.error()
                with self._mutex:
                    entry = self._objects.get(obj)
                    if entry is None:
                        continue
                    if err is not None and getattr(err, "errno", 0) == errno.ENOLCK:
                        self._lost(obj)
                        continue
                    retry = 1.0 if err is not None else entry[0] / 3000.0
                    self._objects[obj] = (entry[0], time.monotonic() + retry)
        with self._mutex:
            if not self._objects:
                return
            nxt = min(when for _, when in self._objects.values())
            if self._scheduled is not None and self._scheduled <= nxt:
                return
            self._scheduled = nxt
        service.call_at(nxt, self.renew_due, key=self)

    def _lost(self, obj: str) -> None:
        """Our entries on obj expired and are gone (caller holds the mutex):
        the user's locks there (record, shard) are lost until the user
        unlocks them; a transaction's (txnlock.py sees them gone, and the OSD
        fences its writes) are just forgotten, to be taken anew. Losing USER
        (intent.py) loses every record and shard lock, which are released:
        a transaction may have started, and must not wait for them."""
        self._objects.pop(obj, None)
        user = False
        for hk in [k for k in self.held if k[0] == obj]:
            count = self.held.pop(hk)
            user |= hk[1] == Kind.USER
            if hk[1] in (Kind.RECORD, Kind.SHARD):
                self.lost[hk] = self.lost.get(hk, 0) + count
        if not user:
            return
        gone = [k for k in self.held if k[1] in (Kind.RECORD, Kind.SHARD)]
        for hk in gone:
            self.lost[hk] = self.lost.get(hk, 0) + self.held.pop(hk)
        objs = sorted({hk[0] for hk in gone})
        if objs:
            service.submit(lambda: self._release_user_locks(objs))

    def _release_user_locks(self, objs: list[str]) -> None:
        """(service thread) Drop our record and shard entries on objs."""
        io = self._io()
        calls = [
            clsops.aio_release(io, o, clsops.release_request(self.owner, 0, 0, kind))
            for o in objs
            for kind in (Kind.RECORD, Kind.SHARD)
        ]
        for c in calls:
            c.error()
        for o in objs:
            wakeup.wake(io, o)
            self.untrack(o)

    def on_wait(self, obj: str) -> None:
        """Somebody announced a wait on obj (notify callback: must not block).

        A holder also renews obj at once (at most once a second): a waiter
        with a deadline tells a live holder (whose lease moved) from a dead
        one (whose lease did not) without waiting a third of a lease."""
        with self._mutex:
            entry = self._objects.get(obj)
            prompt = entry is not None and (
                time.monotonic() - (entry[1] - entry[0] / 3000.0) > RENEW_ON_WAIT
            )
            if prompt:
                self._objects[obj] = (entry[0], time.monotonic())  # due now
        if prompt:
            service.submit(self.renew_due)
        for ref in list(self.wait_listeners):
            listener = ref()
            if listener is not None:
                listener(obj)


def _quiesce() -> None:
    """Before connections shut down: no renewals, no notifies in flight, no
    inboxes (wakeup.py) left. A later renewal need (handles used after a
    test session's reset) starts a fresh thread."""
    service.stop()
    wakeup.drain()
    wakeup.close_inboxes()


clustermod.before_shutdown(_quiesce)

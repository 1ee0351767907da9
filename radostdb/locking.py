"""Record locks, whole-database locks, leases, and fair waiting via watch/notify.

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
- Uncontended, a lock is ONE class call (a `lock` try) and an unlock one
  more. Contended, the waiter (1) queues and reads the queue back in one
  round trip (`lock` with QUEUE, then `state`, pipelined on the object), (2)
  announces itself with a "W" notify (wakeup.py carries the notifies) that
  every watcher acknowledges (holders then know to wake someone when they
  release), (3) reads the state once more (a release that crossed the
  announcement is seen here), then (4) sleeps until a notify on the object
  or a deadline: the earliest lease expiry among the entries ahead of it. A
  releaser that heard a "W" sends its release and a "C" notify back to back
  on the same object (the OSD orders the notify after the release), so a
  granted waiter wakes, reads the state and runs: a handoff costs about two
  round trips. An announce that some watcher left unacknowledged (a dead or
  stopped process still watching) is not trusted: the waiter then also
  looks at the table at least every wakeup.DEAF_POLL. A waiter whose entry
  vanished (it expired while the process was stopped) queues again, paced
  (retry.py): after two immediate retries it backs off, and with
  RADOSTDB_OP_TIMEOUT it gives up after T: no wait loops without sleeping.
- Leases: every entry (held or queued) carries a lease on the OSD clock. One
  service thread per process (service.py) renews, for every handle, each
  object where the handle has entries, a third of a lease after the last
  renewal (deadline-driven: taking a lock schedules its renewal, nothing
  polls; the thread never waits for the main thread). A holder that dies
  stops renewing; its entries stop counting when the lease ends, and a
  waiter that died leaves the queue then. A waiter whose deadline passed
  prunes the object (one call), which grants the next in line. A renewal
  that finds the owner's entries gone marks those locks lost: the handle
  keeps the user's (record, shard; a transaction's are forgotten and
  taken anew) with their counts apart from the held ones, writes under
  them still assert the lock and are refused by the OSD (fencing,
  ERR_LOCK; never sent as plain writes that would queue behind the new
  owner and then land), and so is each unlock of them, which forgets them.
- Whole-database locks (lock_all, read_lock_all) and a transaction's
  isolation take one lock per shard: first a try on every shard in
  parallel (one round trip); if any is busy, the shards after the first
  busy one are released and the rest are taken in shard order, queuing, as
  tdb takes its allrecord lock gradually. Ordered acquisition cannot
  deadlock against another ordered acquirer.
- ``_nonblock`` calls never queue. One refused only by a transaction's
  locks (TXN or ISOLATION entries, which an idle handle keeps cached between
  transactions: txnlock.py) announces itself once and retries for at most
  NONBLOCK_GRACE: a cached lock is handed over in a few round trips, a lock
  of a transaction in progress is not, and the call fails as tdb's would.
- Objects whose lease-expired holders may have left a transaction half
  done ("stale") refuse grants with -EUCLEAN; the waiter asks its
  ``on_unclean`` callback (commit.py decides and clears) and queues again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import clsops, forks, layout, retry, service, wakeup
from . import cluster as clustermod
from .clsops import Kind, Mode
from .errors import ERR_IO, ERR_LOCK, ERR_LOCK_TIMEOUT, TdbError

DEFAULT_LEASE = 30.0
DEFAULT_TXN_LEASE = 5.0
MIN_SLEEP = 0.02
MAX_SLEEP = 5.0
NONBLOCK_GRACE = 0.25  # how long a nonblocking call waits for a merely cached lock
RENEW_ON_WAIT = 1.0  # a holder renews at once on a wait announcement, at most this often

HeldKey = tuple[str, int, int, bytes]  # (object, kind, mode, key)
OnUnclean = Callable[[str], None]


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


# -- one handle's locks ---------------------------------------------------------------------
class LockTable:
    """The locks one handle holds or waits for, by object; talks to the class."""

    def __init__(self, io_getter: Callable[[], Any], lease: float | None = None,
                 txn_lease: float | None = None) -> None:
        self._io = io_getter
        self.lease = default_lease() if lease is None else float(lease)
        if self.lease <= 0:
            raise ValueError(f"lock_lease must be positive, not {lease!r}")
        self.txn_lease = (default_txn_lease(self.lease) if txn_lease is None
                          else min(float(txn_lease), self.lease))
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

    # -- what the handle holds -------------------------------------------------------
    def wflags(self, obj: str, key: bytes) -> int:
        """Write flags for a write of key on obj: assert the lock we hold, or
        the one we lost (so that the OSD refuses the write)."""
        h = self.held
        if not h and not self.lost:
            return 0
        self.check_fork()
        if ((obj, Kind.ISOLATION, Mode.SHARED, b"") in h):
            return clsops.WRITE_ASSERT_TXN
        for locks in (h, self.lost):
            if ((obj, Kind.RECORD, Mode.EXCL, key) in locks
                    or (obj, Kind.RECORD, Mode.SHARED, key) in locks
                    or (obj, Kind.SHARD, Mode.EXCL, b"") in locks
                    or (obj, Kind.SHARD, Mode.SHARED, b"") in locks):
                return clsops.WRITE_ASSERT_LOCK
        return 0

    def forget_lost(self, hks: Iterable[HeldKey]) -> bool:
        """Forget these locks where lost; were any of them lost?"""
        with self._mutex:
            return bool([hk for hk in hks if self.lost.pop(hk, None)])

    def holds_kind(self, obj: str, kind: int) -> bool:
        """A lock of kind on obj, held or lost (a write under it asserts it)."""
        return any(k[0] == obj and k[1] == kind for locks in (self.held, self.lost)
                   for k in locks)

    def has_entries(self, obj: str) -> bool:
        """Do we hold or wait for a lock on obj (renewals tracked)?"""
        return obj in self._objects

    def holds_user_locks(self) -> bool:
        """Record or database locks taken by the user (not a transaction's),
        held or lost but not yet unlocked."""
        return any(k[1] in (Kind.RECORD, Kind.SHARD) for locks in (self.held, self.lost)
                   for k in locks)

    # -- renewal ----------------------------------------------------------------------
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

    def _untrack(self, obj: str) -> None:
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
        fences its writes) are just forgotten, to be taken anew."""
        self._objects.pop(obj, None)
        for hk in [k for k in self.held if k[0] == obj]:
            count = self.held.pop(hk)
            if hk[1] in (Kind.RECORD, Kind.SHARD):
                self.lost[hk] = self.lost.get(hk, 0) + count

    def on_wait(self, obj: str) -> None:
        """Somebody announced a wait on obj (notify callback: must not block).

        A holder also renews obj at once (at most once a second): a waiter
        with a deadline tells a live holder (whose lease moved) from a dead
        one (whose lease did not) without waiting a third of a lease."""
        with self._mutex:
            entry = self._objects.get(obj)
            prompt = entry is not None and (
                time.monotonic() - (entry[1] - entry[0] / 3000.0) > RENEW_ON_WAIT)
            if prompt:
                self._objects[obj] = (entry[0], time.monotonic())  # due now
        if prompt:
            service.submit(self.renew_due)
        for ref in list(self.wait_listeners):
            listener = ref()
            if listener is not None:
                listener(obj)

    # -- acquiring -----------------------------------------------------------------------
    def note(self, hk: HeldKey, lease_ms: int) -> None:
        with self._mutex:
            self.held[hk] = self.held.get(hk, 0) + 1
        self.track(hk[0], lease_ms)

    def acquire(self, obj: str, kind: int, mode: int, key: bytes = b"", nonblock: bool = False,
                lease_ms: int | None = None, on_unclean: OnUnclean | None = None,
                count: bool = True) -> None:
        """Take a lock (or count it again), waiting in the OSD's queue while it
        is not grantable. ``count=False``: a lock taken only to cover one
        queued write (released by that write), not counted as held."""
        self.check_fork()
        hk = (obj, kind, mode, key)
        if count and hk in self.held:
            self.held[hk] += 1
            return
        if count and hk in self.lost:  # the user still counts it: it is gone
            raise TdbError(ERR_LOCK)
        lease_ms = lease_ms or self.lease_ms
        io = self._io()
        req = clsops.lock_request(self.owner, lease_ms, kind, mode, key)
        while True:
            try:
                clsops.lock(io, obj, req)
                break
            except clsops.Busy:
                if nonblock:
                    if self.ask_cached(io, [obj], lambda: clsops.lock(io, obj, req)):
                        break
                    raise TdbError(ERR_LOCK) from None
                self.wait_queued(obj, kind, mode, key, lease_ms, on_unclean)
                break
            except clsops.Unclean:
                if nonblock or on_unclean is None:
                    raise TdbError(ERR_LOCK) from None
                on_unclean(obj)
        if count:
            self.note(hk, lease_ms)
        else:
            self.track(obj, lease_ms)
        wakeup.ensure_watch(io, obj)  # a holder must hear "W" announcements

    def acquire_with_read(self, obj: str, key: bytes, start_read: Callable[[], Any],
                          on_unclean: OnUnclean | None = None) -> Any:
        """Lock a record exclusively and read it in one round trip.

        ``start_read()`` starts an aio read of the record on ``obj`` and returns
        a function collecting it. The read is sent right behind the lock
        request on the same object, and the OSD orders a read after a write it
        received earlier, so the value is the one under the lock. If the lock
        was contended, waits for it and reads again."""
        self.check_fork()
        hk = (obj, Kind.RECORD, Mode.EXCL, key)
        if hk in self.held:
            self.held[hk] += 1
            return start_read()()
        io = self._io()
        req = clsops.lock_request(self.owner, self.lease_ms, Kind.RECORD, Mode.EXCL, key)
        call = clsops.aio_lock(io, obj, req)
        collect = start_read()
        err = call.error()
        value = collect()
        if err is not None:
            if not isinstance(err, clsops.Busy | clsops.Unclean):
                raise err
            self.acquire(obj, Kind.RECORD, Mode.EXCL, key, on_unclean=on_unclean, count=False)
            value = start_read()()
        self.note(hk, self.lease_ms)
        wakeup.ensure_watch(io, obj)
        return value

    def wait_queued(self, obj: str, kind: int, mode: int, key: bytes, lease_ms: int,
                    on_unclean: OnUnclean | None = None, queued: bool = False,
                    companion: Callable[[], clsops.Call] | None = None,
                    ) -> tuple[clsops.ObjectState, Any]:
        """Queue for a lock in the OSD and wait until it is granted to us.

        ``queued``: our entry is in the queue already (skip queuing again).
        ``companion()`` starts a call sent together with every state read;
        returns (the state showing the grant, the companion's result).

        With RADOSTDB_OP_TIMEOUT (T), gives up after T with TDB's lock-timeout
        error (our queue entry withdrawn), unless the entries ahead of us look
        dead (nobody renewed them since we queued): then they get until their
        lease ends, at most one lease more."""
        io = self._io()
        wakeup.ensure_watch(io, obj)
        limit = clustermod.op_timeout()
        deadline = None if limit is None else time.monotonic() + limit
        first_seen: dict[tuple[bytes, int, int, bytes], int] = {}
        extended = False

        def check_deadline(st: clsops.ObjectState) -> None:
            nonlocal deadline, extended
            ahead = self._ahead(st, kind, mode, key)
            for e in ahead:
                first_seen.setdefault((e.owner, e.kind, e.mode, e.key), e.expiry_ms)
            if deadline is None or time.monotonic() < deadline:
                return
            renewed = any(e.expiry_ms > first_seen[(e.owner, e.kind, e.mode, e.key)]
                          for e in ahead)
            if ahead and not renewed and not extended:
                # ping: a live holder renews on hearing a wait (on_wait)
                wakeup.announce(io, obj)
                time.sleep(RENEW_ON_WAIT / 4)
                again = clsops.state(io, obj)
                if again is not None:
                    renewed = any(
                        e.expiry_ms > first_seen.get((e.owner, e.kind, e.mode, e.key), e.expiry_ms)
                        for e in self._ahead(again, kind, mode, key))
            if ahead and not renewed and not extended:
                extended = True  # dead-looking holders: wait out their leases
                last = max(e.expiry_ms for e in ahead)
                deadline = time.monotonic() + max(0, last - st.now_ms) / 1000 + MIN_SLEEP * 5
                return
            with contextlib.suppress(Exception):  # withdraw from the queue
                clsops.unlock(io, obj, clsops.unlock_request(self.owner, kind, mode, key))
            raise TdbError(ERR_LOCK_TIMEOUT,
                           f"Locking timeout: waited {limit:g} s ({clustermod.OP_TIMEOUT_ENV}) "
                           f"for a lock on {obj} held by another handle")
        queue_req = clsops.lock_request(self.owner, lease_ms, kind, mode, key, clsops.LOCK_QUEUE)

        def read_state(prune: bool = False) -> tuple[clsops.ObjectState | None, Any]:
            pcall = clsops.aio_prune(io, obj) if prune else None
            scall = clsops.aio_state(io, obj)
            ccall = companion() if companion is not None else None
            if pcall is not None:
                pcall.error()
            st = scall.wait()
            return st, (ccall.wait() if ccall is not None else None)

        def timed_out(waited: float) -> Exception:
            with contextlib.suppress(Exception):  # withdraw from the queue
                clsops.unlock(io, obj, clsops.unlock_request(self.owner, kind, mode, key))
            return TdbError(ERR_LOCK_TIMEOUT,
                            f"Locking timeout: waited {waited:.3g} s ({clustermod.OP_TIMEOUT_ENV}) "
                            f"for a lock on {obj}: it kept being taken from the queue")

        pace = retry.Pace(None if limit is None else limit + lease_ms / 1000, timed_out)
        first = True
        while True:  # (re)queue
            if not first:
                pace.wait()
            first = False
            gen = wakeup.generation(obj)
            if not queued:
                call = clsops.aio_lock(io, obj, queue_req)
                st, extra = read_state()
                try:
                    call.wait()
                except clsops.Unclean:
                    if on_unclean is None:
                        raise TdbError(ERR_LOCK) from None
                    on_unclean(obj)
                    continue
                self.track(obj, lease_ms)
                if self.granted(obj, st, kind, mode, key):
                    return st, extra  # type: ignore[return-value]
            queued = False
            trusted = wakeup.announce(io, obj)
            st, extra = read_state()
            expired_at: float | None = None
            while True:
                if self.granted(obj, st, kind, mode, key):
                    return st, extra  # type: ignore[return-value]
                if st is None or self._entry(st, kind, mode, key) is None:
                    break  # our entry is gone (expired while we were stopped): requeue
                if st.header.stale:
                    if on_unclean is None:
                        raise TdbError(ERR_LOCK)
                    on_unclean(obj)
                    break
                check_deadline(st)
                delay, expired_at = self._deadline(st, kind, mode, key)
                if not trusted:
                    delay = min(delay, wakeup.DEAF_POLL)
                if deadline is not None:
                    delay = max(MIN_SLEEP, min(delay, deadline - time.monotonic()))
                woke = wakeup.sleep(obj, gen, delay)
                gen = wakeup.generation(obj)
                # somebody ahead outlived its lease: prune, which grants
                late = not woke and expired_at is not None and time.monotonic() >= expired_at
                st, extra = read_state(prune=late)

    def ask_cached(self, io: Any, objs: Sequence[str], attempt: Callable[[], None]) -> bool:
        """A nonblocking request was refused: if only a transaction's locks
        (possibly merely cached) are in the way, ask for them and retry
        ``attempt`` for up to NONBLOCK_GRACE. True when it succeeded."""
        states = clsops.wait_all(clsops.aio_state(io, o) for o in objs)
        for st in states:
            if st is None:
                continue
            others = [e for e in st.header.entries if e.owner != self.owner and e.held]
            if any(e.kind not in (Kind.TXN, Kind.ISOLATION) for e in others):
                return False  # a record or database lock, or a commit: really busy
        deadline = time.monotonic() + NONBLOCK_GRACE
        gens = {o: wakeup.generation(o) for o in objs}
        for o in objs:
            wakeup.ensure_watch(io, o)
            wakeup.announce(io, o)
        while True:
            try:
                attempt()
                return True
            except clsops.Busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                o = objs[0]
                wakeup.sleep(o, gens[o], min(left, MIN_SLEEP))
                gens[o] = wakeup.generation(o)

    def _entry(self, st: clsops.ObjectState, kind: int, mode: int,
               key: bytes) -> clsops.LockEntry | None:
        for e in st.header.entries:
            if e.owner == self.owner and e.kind == kind and e.mode == mode and e.key == key:
                return e
        return None

    def granted(self, obj: str, st: clsops.ObjectState | None, kind: int, mode: int,
                 key: bytes) -> bool:
        if st is None:
            return False
        e = self._entry(st, kind, mode, key)
        if e is None or not e.held:
            return False
        if any(x.state == clsops.EntryState.QUEUED for x in st.header.entries):
            wakeup.mark_waited(obj)  # others still wait: wake them on release
        return True

    def _ahead(self, st: clsops.ObjectState, kind: int, mode: int,
               key: bytes) -> list[clsops.LockEntry]:
        """The entries of other owners before ours (holders and waiters)."""
        out = []
        for e in st.header.entries:
            if e.owner == self.owner and e.kind == kind and e.mode == mode and e.key == key:
                break
            if e.owner != self.owner:
                out.append(e)
        return out

    def _deadline(self, st: clsops.ObjectState, kind: int, mode: int,
                  key: bytes) -> tuple[float, float | None]:
        """How long to sleep, and when (monotonic) the earliest entry ahead of
        us expires on the OSD clock (None: nobody ahead)."""
        first = None
        for e in st.header.entries:
            if e.owner == self.owner and e.kind == kind and e.mode == mode and e.key == key:
                break
            if e.owner != self.owner:
                first = e.expiry_ms if first is None else min(first, e.expiry_ms)
        if first is None:
            return MIN_SLEEP, None
        left = max(0.0, (first - st.now_ms) / 1000.0) + MIN_SLEEP
        return min(max(left, MIN_SLEEP), MAX_SLEEP), time.monotonic() + left

    def acquire_all(self, objs: Sequence[str], kind: int, mode: int, nonblock: bool = False,
                    lease_ms: int | None = None, on_unclean: OnUnclean | None = None) -> None:
        """One lock per object (lock_all, read_lock_all, isolation): a parallel
        try, then, from the first busy object on, in order with queuing."""
        self.check_fork()
        lease_ms = lease_ms or self.lease_ms
        todo = [o for o in objs if (o, kind, mode, b"") not in self.held]
        for o in objs:
            if (o, kind, mode, b"") in self.held:
                self.held[(o, kind, mode, b"")] += 1
        if not todo:
            return
        io = self._io()
        req = clsops.lock_request(self.owner, lease_ms, kind, mode)
        calls = [clsops.aio_lock(io, o, req) for o in todo]
        errors = [c.error() for c in calls]
        busy = [o for o, e in zip(todo, errors, strict=True) if e is not None]
        fatal = next((e for e in errors
                      if e is not None and not isinstance(e, clsops.Busy | clsops.Unclean)), None)

        def unlock(objs: list[str]) -> None:
            if clustermod.cut_off():
                return  # a call just timed out: the leases end these
            for c in [clsops.aio_unlock(io, o, clsops.unlock_request(self.owner, kind, mode))
                      for o in objs]:
                c.error()

        if fatal is not None:
            unlock([o for o in todo if o not in busy])
            raise fatal
        if busy and nonblock:
            got: list[str] = []

            def retry() -> None:
                for o in busy:
                    if o not in got:
                        clsops.lock(io, o, req)
                        got.append(o)

            try:
                ok = self.ask_cached(io, busy, retry)
            except clsops.Unclean:
                ok = False
            if not ok:
                unlock([o for o in todo if o not in busy] + got)
                raise TdbError(ERR_LOCK)
            busy = []
        keep = todo.index(busy[0]) if busy else len(todo)
        unlock([o for o in todo[keep:] if o not in busy])  # after the first busy: in order
        for o in todo[:keep]:
            self.note((o, kind, mode, b""), lease_ms)
            wakeup.ensure_watch(io, o)
        try:
            for o in todo[keep:]:
                self.acquire(o, kind, mode, nonblock=False, lease_ms=lease_ms,
                             on_unclean=on_unclean)
        except BaseException:
            self.release_many([o for o in todo if (o, kind, mode, b"") in self.held], kind, mode)
            raise

    # -- releasing ---------------------------------------------------------------------------
    def release(self, obj: str, kind: int, mode: int, key: bytes = b"") -> None:
        """Count down a lock; release it in the OSD at zero.

        Releasing a lock the handle does not hold, or one that was lost (its
        lease ran out and another took it), is TDB's lock error."""
        self.check_fork()
        hk = (obj, kind, mode, key)
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
                return
            del self.held[hk]
        io = self._io()
        req = clsops.unlock_request(self.owner, kind, mode, key)
        self._untrack(obj)
        if not wakeup.take_waited(obj):
            clsops.unlock(io, obj, req)  # nobody waits: one plain call
            return
        call = clsops.aio_unlock(io, obj, req)
        wakeup.wake(io, obj)  # ordered after the unlock on the same object
        err = call.error()
        if err is not None:
            raise err

    def release_many(self, objs: Iterable[str], kind: int, mode: int) -> bool:
        """Release one lock (kind, mode, no key) on each object, in parallel;
        other errors are ignored (a lock that cannot be released expires).
        False when some object no longer had it (its lease ran out: lost)."""
        io = self._io()
        objs = list(objs)
        with self._mutex:
            for o in objs:
                self.held.pop((o, kind, mode, b""), None)
        if clustermod.cut_off():  # a call just timed out: the leases end these
            for o in objs:
                self._untrack(o)
            return True
        calls = [clsops.aio_unlock(io, o, clsops.unlock_request(self.owner, kind, mode))
                 for o in objs]
        for o in objs:
            if wakeup.take_waited(o):
                wakeup.wake(io, o)
        intact = True
        for o, c in zip(objs, calls, strict=True):
            if clsops.errno_of(c.error() or OSError()) == errno.ENOLCK:
                intact = False
            self._untrack(o)
        return intact

    def release_objects(self, items: Sequence[tuple[str, int, int]]) -> list[Exception | None]:
        """Drop every entry of ours of a kind (0: all) on objects, settling a
        transaction there (0: none), in parallel; items are (object, settle,
        kind). Waiters are woken. Returns the errors, in order."""
        io = self._io()
        with self._mutex:
            for obj, _, kind in items:
                for hk in [k for k in self.held if k[0] == obj and (not kind or k[1] == kind)]:
                    del self.held[hk]
        if clustermod.cut_off():  # a call just timed out: the leases end these
            for o, _, _ in items:
                self._untrack(o)
            return [TdbError(ERR_IO, f"not released: {clustermod.OP_TIMEOUT_ENV} passed "
                             "lately") for _ in items]
        calls = [clsops.aio_release(io, o, clsops.release_request(self.owner, txid, 0, kind))
                 for o, txid, kind in items]
        for o, _, _ in items:
            if wakeup.take_waited(o):
                wakeup.wake(io, o)
        errors = [c.error() for c in calls]
        for o, _, _ in items:
            self._untrack(o)
        return errors

    def release_all(self) -> None:
        """Release every lock the handle holds (close); errors are ignored: a
        lock that cannot be released expires with its lease."""
        self.check_fork()
        with self._mutex:
            objs = {k[0] for k in self.held} | set(self._objects)
        if objs:
            self.release_objects([(o, 0, 0) for o in objs])
        with self._mutex:
            self.held = {}
            self.lost = {}
            self._objects = {}


def _quiesce() -> None:
    """Before connections shut down: no renewals, no notifies in flight. A
    later renewal need (handles used after a test session's reset) starts a
    fresh thread."""
    service.stop()
    wakeup.drain()


def wait_object(name: str) -> str:
    """The database's transaction-lock object (see layout.wait_object)."""
    return layout.wait_object(layout.header_object(name))


clustermod.before_shutdown(_quiesce)

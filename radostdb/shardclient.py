"""One object's conversation with the object class, for one handle.

shard client design:
- A :class:`ShardClient` speaks for one handle (its owner id, its lock
  books) to one object: a shard, or the transaction-lock object. Every
  class call the database logic makes goes through one, and it carries the
  single policy for what the class answers besides success:
  - EBUSY (a conflicting lock held, or a waiter ahead in the queue): queue
    in the OSD and wait for the grant, FIFO (see "waiting" below); a write
    queues for a lock covering it, then writes and releases that lock in
    one call (RELEASE); a transaction's part queues for the COMMIT lock
    (granted once others' shared locks drain);
  - EUCLEAN (stale owners, or a transaction pending that the caller does
    not know committed): the resolver decides and clears what blocks, and
    the call is retried, paced (retry.py);
  - a read that meets a shard pending a transaction: the resolver decides
    it (or waits for a commit in flight), and the read is repeated.
  Deadlines come from the session (its op timeout). Nothing calls back up:
  storage only maps keys to shards and asks; the committer and the
  transaction lock call write_part, settle and lock; the lock books
  (locking.LockTable) only count.
- Waiting for a lock (:meth:`ShardClient.wait_granted`): a blocking
  request queues at once (`lock` with QUEUE; its return value says granted
  or queued, and carries the entry's ticket: one round trip either way).
  It names the process's inbox (wakeup.py), watched, as the lock object
  is, before the request is sent, so nothing meant for it can pass it (a
  waiter whose watch is new reads the state before it sleeps all the same).
  Watching on the lock service thread instead, to save a process's first
  lock its round trip, was tried and taken back: a clean-clone test run
  then had a forked worker hang before it was ready (test_watch, fork),
  not diagnosed.
- Handoff by "G" (the hot path): whoever gives a record lock back (unlock,
  a releasing write) learns from the reply how many waiters it granted
  and the first one's ticket; when it had waited for the lock itself, or
  heard a wait announced, it sends the lock table's read right behind the
  release (same round trip; else it reads the table only if the reply
  says it granted somebody). The table gives that ticket's inbox, and one
  "G" there tells the waiter it holds the lock, with the record as the
  giver leaves it when known (written under the lock, or read with it):
  the new holder reads neither the table nor the record. A queued waiter
  whose reply did not say ASK (below) first sleeps for its "G" alone
  (nothing read); a "G" is a fact (the reply named the ticket; tickets are unique
  per object), so it is trusted without a read. The record it carried
  has no version (rseq): a versioned read (fetch_version) asks the OSD.
  The "G" also lists who waits behind the new holder (wakeup.Behind),
  so its release needs no look at the table either. A holder that waited
  and whose "G" listed nobody (two clients in turn: the giver queues again
  only after it let go) sends the table's read with its store under the
  lock instead (same round trip, ``_apply``): its unlock then knows who
  queued since, and tells them early (below).
- Early grants (the hot record's handoff): when that list says the first
  waiter is in line for the same record's exclusive lock (nothing else
  queued ahead of it), and we hold no other lock on the object, our
  unlock of that lock grants that waiter: its "G" is sent right behind
  the release, before the reply, so the handoff costs the "G"'s trip, not
  the release's round trip plus the "G"'s trip. A reply naming another
  ticket (the waiter left the queue) is handled as above; the "G" sent to
  a waiter gone is never taken. Only a plain unlock does this, with the
  record it leaves known (its writes were acknowledged before): a
  releasing write is not known to land until its reply. Nothing orders
  the "G" (to the inbox, another object) after the release, so a write of
  the new holder may reach the lock object first (measured: about 1 in
  6,000 handoffs on one OSD, up to 1 in 600 on three): refused for the
  lock (-ENOLCK), the writer finds its entry still queued, waits until it
  is granted (looking every LATE_POLL) and writes again
  (``_granted_late``). An entry gone is
  a lock lost, as before. The record the "G" carried is right in either
  case: nobody but the new holder may write it next.
- The transaction lock is handed on the same way (``txn_released``), its
  "G" carrying the new holder's epoch (txnlock.py). That holder's writes
  go to the shards, not to the lock object, and carry the epoch, which
  the class checks there: a release that lands after them orders nothing
  that matters (nobody else may be granted the lock in between).
- Otherwise (no "G" within REANNOUNCE, a "C" for us or for all, an ASK):
  the waiter (1) reads the state, (2) if an entry ahead of it is one its
  holder may keep cached (the transaction lock, isolation, USER: anything
  but record locks; the class says so in `lock`'s reply, ASK), announces
  itself with a "W" notify (wakeup.py) that every watcher
  acknowledges (a transaction-lock waiter with a waiter ahead of it stays
  silent: that one announced, or the holder saw it queued when granted;
  a holder granted by a state read sees who waits behind it, and one
  handed the lock by "G" does not cache it: txnlock.py), and reads the
  state again (a release that crossed the announcement is seen there),
  then (3) sleeps until a notify on the object, its "G", or a deadline:
  the earliest lease expiry among the entries ahead of it. A giver whose
  grant has no inbox (several waiters granted, an older client) sends "C"
  on the object instead; a holder of an exclusive record lock that saw
  who waits next for its record hands the lock to that owner alone ("C" +
  owner: others sleep on). A waiter for an exclusive record lock reads
  the record with each state read, so the state that shows its grant
  comes with the value under the lock (``Shards.locked_values``, used by
  reads until it writes or unlocks).
  A waiter nobody woke for REANNOUNCE looks again, and announces itself
  again if it still must (a holder of a cached lock that did not hear it
  would keep the lock).
  An announce some watcher left unacknowledged is not trusted: the waiter
  then also looks every wakeup.DEAF_POLL. A waiter whose entry vanished
  (expired while the process was stopped) queues again, paced. With the op
  timeout T a wait gives up after T with TDB's lock-timeout error, unless
  the entries ahead look dead (not renewed since we queued): then it waits
  out their leases, at most one lease more. A waiter whose deadline passed
  prunes the object (one call), which grants the next in line.
- A write's reply says whether it removed WATCH entries (APPLIED_WATCHED:
  watch.py); only then does the writer send a "K" notify naming the keys,
  without waiting. ``write_and_unlock`` (do_locked, locked.py) sends a
  write under our exclusive record lock and the lock's release in one
  call and wakes the next owner as an unlock does.
- Several objects at once (:class:`Shards`: lock_all, read_lock_all, a
  transaction's isolation): first a try on every object in parallel (one
  round trip); if any is busy, the ones after the first busy one are
  released and the rest are taken in order, queuing, as tdb takes its
  allrecord lock gradually. Ordered acquisition cannot deadlock against
  another ordered acquirer. ``_nonblock`` calls never queue; one refused
  only by a transaction's locks (TXN or ISOLATION entries, which an idle
  handle keeps cached) announces itself once and retries for at most
  NONBLOCK_GRACE.
"""

from __future__ import annotations

import contextlib
import errno
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from . import clsops, codec, retry, scan, snapshot, wakeup
from . import cluster as clustermod
from .errors import ERR_IO, ERR_LOCK, ERR_LOCK_TIMEOUT, TdbError
from .kinds import Kind, Mode, Op
from .locking import HeldKey, LockTable
from .resolver import DbObjects, Resolver

MIN_SLEEP = 0.02
MAX_SLEEP = 5.0
NONBLOCK_GRACE = 0.25  # how long a nonblocking call waits for a merely cached lock
RENEW_ON_WAIT = 1.0  # a live holder renews on hearing a wait, at most this often
REANNOUNCE = 2.0  # a waiter nobody woke announces itself again after this long

Entries = list[tuple[int, bytes, bytes]]
BEHIND_MAX = 16  # waiters a "G" lists behind its grantee at most
LATE_POLL = 0.005  # how often a holder handed its lock early looks for the release to land


@dataclass
class Handoff:
    """What a release learned: its status, the lock table read behind it
    (None: not read), whether (and for whom) a wait was announced, and the
    waiters we were told of behind us."""

    status: int
    st: clsops.ObjectState | None
    waited: bool
    who: bytes | None
    behind: wakeup.Behind


@dataclass
class Isolating:
    """A read-ahead's calls to one shard (ShardClient.send_isolation): the
    isolation request (None: held already) and the list behind it (None:
    the shard is known to be big)."""

    call: clsops.StatusCall | None
    listing: clsops.Call | None


class TxnView(Protocol):
    """What the shard clients need to know of the handle's transaction lock
    (txnlock.TxnLock)."""

    def holds(self) -> bool: ...

    def holds_on(self, index: int | None) -> bool: ...

    def isolation_args(self) -> tuple[int, int]: ...

    def note_isolated(self, index: int) -> None: ...

    def accept(self, index: int) -> int: ...

    def settled(self, index: int) -> None: ...


class _NoTxn:
    def holds(self) -> bool:
        return False

    def holds_on(self, index: int | None) -> bool:
        return False

    def isolation_args(self) -> tuple[int, int]:
        return 0, 0

    def note_isolated(self, index: int) -> None:
        pass

    def accept(self, index: int) -> int:
        return 0

    def settled(self, index: int) -> None:
        pass


class Shards:
    """A handle's shard clients and what they share: the I/O context, the
    session, the database's objects, the lock books, the resolver, and a
    view of the transaction lock (set once it exists)."""

    def __init__(
        self,
        io: Callable[[], Any],
        session: clustermod.Session,
        db: DbObjects,
        books: LockTable,
        resolver: Resolver,
    ) -> None:
        self.io = io
        self.session = session
        self.db = db
        self.books = books
        self.resolver = resolver
        self.txn: TxnView = _NoTxn()
        self._clients: dict[str, ShardClient] = {}
        # (object, key) -> the record as read with the grant of our exclusive
        # record lock on it, while we hold that lock and write nothing
        self.locked_values: dict[tuple[str, bytes], clsops.GetResult] = {}
        # (object, key) of the locks we hold that we had to wait for: others
        # likely wait behind us (the release reads the lock table with it)
        self.waited_for: set[tuple[str, bytes]] = set()
        # (object, key) -> the waiters behind us when we were handed the
        # lock (the "G" said): the release finds the inbox of whom it grants
        # there, and may tell the next in line with the release (early)
        self.behind: dict[tuple[str, bytes], wakeup.Behind] = {}
        # object -> the epoch a "G" handing us the transaction lock there said
        self.epochs: dict[str, int] = {}
        # what the "G" that handed us the transaction lock carried (handover.py)
        self.handovers: dict[str, bytes] = {}

    def client(self, obj: str) -> ShardClient:
        """The client of obj (a shard of the database, or another object)."""
        c = self._clients.get(obj)
        if c is None:
            c = self._clients[obj] = ShardClient(self, obj, self.db.index(obj))
        return c

    def __getitem__(self, index: int) -> ShardClient:
        return self.client(self.db.shard(index))

    # -- several objects --------------------------------------------------------------------
    def lock_each(
        self,
        objs: Sequence[str],
        kind: int,
        mode: int,
        nonblock: bool = False,
        lease_ms: int | None = None,
        epoch: int = 0,
        moduli: Sequence[int] | None = None,
    ) -> int:
        """One lock per object (lock_all, read_lock_all, isolation): a
        parallel try, then, from the first busy object on, in order with
        queuing (see the module comment). ``epoch``: an isolation's
        transaction; ``moduli``: per object, the modulus the handle's layout
        gives that shard (SHARD locks). Returns the layout bits the objects
        answered (clsops.LAYOUT_*: the layout moved under the caller)."""
        books = self.books
        books.check_fork()
        lease_ms = lease_ms or books.lease_ms
        todo = [o for o in objs if (o, kind, mode, b"") not in books.held]
        for o in objs:
            if (o, kind, mode, b"") in books.held:
                books.held[(o, kind, mode, b"")] += 1
        if not todo:
            return 0
        io = self.io()
        modulus = dict(zip(objs, moduli, strict=True)) if moduli is not None else {}

        def request(o: str, flags: int = 0) -> bytes:
            return clsops.lock_request(
                books.owner, lease_ms, kind, mode, b"", flags, epoch, modulus.get(o, 0)
            )

        calls = [clsops.aio_lock_status(io, o, request(o)) for o in todo]
        results = [c.result() for c in calls]
        errors = [r if isinstance(r, Exception) else None for r in results]
        bits = 0
        for r in results:
            if not isinstance(r, Exception):
                bits |= r & (clsops.LAYOUT_SPLITTING | clsops.LAYOUT_MOVED)
        busy = [o for o, e in zip(todo, errors, strict=True) if e is not None]
        fatal = next(
            (
                e
                for e in errors
                if e is not None and not isinstance(e, clsops.Busy | clsops.Unclean)
            ),
            None,
        )

        def unlock(objs: list[str]) -> None:
            if self.session.cut_off():
                return  # a call just timed out: the leases end these
            for c in [
                clsops.aio_unlock(io, o, clsops.unlock_request(books.owner, kind, mode))
                for o in objs
            ]:
                c.error()

        if fatal is not None:
            unlock([o for o in todo if o not in busy])
            raise fatal
        if busy and nonblock:
            got: list[str] = []

            def again() -> None:
                for o in busy:
                    if o not in got:
                        clsops.lock(io, o, request(o))
                        got.append(o)

            try:
                ok = self.client(busy[0]).ask_cached(busy, again)
            except clsops.Unclean:
                ok = False
            if not ok:
                unlock([o for o in todo if o not in busy] + got)
                raise TdbError(ERR_LOCK)
            busy = []
        keep = todo.index(busy[0]) if busy else len(todo)
        unlock([o for o in todo[keep:] if o not in busy])  # after the first busy: in order
        for o in todo[:keep]:
            books.note((o, kind, mode, b""), lease_ms)
            wakeup.ensure_watch(io, o)
        try:
            for o in todo[keep:]:
                bits |= self.client(o).lock(
                    kind, mode, nonblock=False, lease_ms=lease_ms, epoch=epoch,
                    modulus=modulus.get(o, 0),
                )  # fmt: skip
        except BaseException:
            self.release_each([o for o in todo if (o, kind, mode, b"") in books.held], kind, mode)
            raise
        return bits

    def release_each(self, objs: Iterable[str], kind: int, mode: int) -> bool:
        """Release one lock (kind, mode, no key) on each object, in parallel;
        other errors are ignored (a lock that cannot be released expires).
        False when some object no longer had it (its lease ran out: lost)."""
        io = self.io()
        books = self.books
        objs = list(objs)
        books.forget([(o, kind, mode, b"") for o in objs])
        if self.session.cut_off():  # a call just timed out: the leases end these
            for o in objs:
                books.untrack(o)
            return True
        calls = [
            clsops.aio_unlock_granted(io, o, clsops.unlock_request(books.owner, kind, mode))
            for o in objs
        ]
        woken = _wake_announced(io, objs)
        intact = True
        for o, c in zip(objs, calls, strict=True):
            res = c.result()
            if isinstance(res, Exception):
                intact = intact and clsops.errno_of(res) != errno.ENOLCK
            elif res and o not in woken:
                wakeup.wake(io, o)  # granted a waiter we had not heard of
            books.untrack(o)
        return intact

    def release_objects(
        self,
        items: Sequence[tuple[str, int, int]],
        txn_epoch: int = 0,
        handover: bytes = b"",
    ) -> list[Exception | None]:
        """Drop every entry of ours of a kind (0: all) on objects, settling a
        transaction there (0: none), in parallel; items are (object, settle,
        kind). Waiters are woken; the transaction lock (kind TXN), held
        under ``txn_epoch``, is handed on as a record lock is, with
        ``handover`` (``ShardClient.txn_released``). Returns the errors, in
        order."""
        io = self.io()
        books = self.books
        books.forget_objects([(obj, kind) for obj, _, kind in items])
        if self.session.cut_off():  # a call just timed out: the leases end these
            for o, _, _ in items:
                books.untrack(o)
            return [
                TdbError(ERR_IO, f"not released: {clustermod.OP_TIMEOUT_ENV} passed lately")
                for _ in items
            ]
        calls = [
            clsops.aio_release_granted(io, o, clsops.release_request(books.owner, txid, 0, kind))
            for o, txid, kind in items
        ]
        # after every release is sent: a "G" sent early reaches a holder whose
        # first touch of a shard finds our isolation there gone, most often
        txn = [o for o, _, kind in items if kind == Kind.TXN]
        hands = {o: self.client(o).txn_released(io, txn_epoch, handover) for o in txn}
        woken = _wake_announced(io, [o for o, _, _ in items if o not in hands])
        errors: list[Exception | None] = []
        for (o, _, _), c in zip(items, calls, strict=True):
            res = c.result()
            errors.append(res if isinstance(res, Exception) else None)
            if o in hands:
                hands[o](res)
            elif not isinstance(res, Exception) and res and o not in woken:
                wakeup.wake(io, o)  # granted a waiter we had not heard of
            books.untrack(o)
        return errors

    def release_all(self) -> None:
        """Release every lock the handle holds (close); errors are ignored: a
        lock that cannot be released expires with its lease."""
        self.books.check_fork()
        objs = self.books.objects()
        if objs:
            self.release_objects([(o, 0, 0) for o in objs])
        self.books.clear()


class _Quiet:
    """A companion call whose failure only means "not read": the wait goes on."""

    __slots__ = ("call",)

    def __init__(self, call: clsops.Call) -> None:
        self.call = call

    def wait(self) -> Any:
        try:
            return self.call.wait()
        except Exception:
            return None


def _wake_announced(io: Any, objs: Iterable[str]) -> set[str]:
    """Send "C" on each object where a wait was announced (right behind a
    release sent there: the OSD orders it after); returns those objects."""
    woken = set()
    for o in objs:
        waited, who = wakeup.take_waited(o)
        if waited:
            wakeup.wake(io, o, who)
            woken.add(o)
    return woken


class ShardClient:
    """One handle's conversation with one object (see the module comment)."""

    def __init__(self, shards: Shards, obj: str, index: int | None) -> None:
        self.shards = shards
        self.obj = obj
        self.index = index
        self.big = False  # a transaction's first read here need not list it whole (snapshot.py)

    @property
    def books(self) -> LockTable:
        return self.shards.books

    @property
    def resolver(self) -> Resolver:
        return self.shards.resolver

    def io(self) -> Any:
        return self.shards.io()

    def accept(self) -> int:
        """A transaction of ours that committed and may still be pending here."""
        return self.shards.txn.accept(self.index) if self.index is not None else 0

    def pace(self) -> retry.Pace:
        """The pacing of a call retried while the object needs decisions."""
        limit = self.shards.session.op_timeout
        obj = self.obj

        def give_up(waited: float) -> Exception:
            return TdbError(
                ERR_IO,
                f"IO Error: {obj} still needed a decision after "
                f"{waited:.3g} s ({clustermod.OP_TIMEOUT_ENV})",
            )

        return retry.Pace(None if limit is None else limit + self.books.txn_lease, give_up)

    # -- records ---------------------------------------------------------------------------
    def get(self, key: bytes, versioned: bool = False) -> clsops.GetResult:
        """The record of key (FOUND, MISSING; never PENDING: decided first).
        Under our exclusive record lock on key, the record as we know it
        (nobody else can change it meanwhile): read with the grant, sent
        with it, or as we wrote it; ``versioned``: only if read (it has
        the record's rseq)."""
        known = self.shards.locked_values.get((self.obj, key))
        if (
            known is not None
            and not (versioned and known.unversioned)
            and self.books.held.get((self.obj, Kind.RECORD, Mode.EXCL, key))
        ):
            return known
        io = self.io()
        attempt = 0
        while True:
            res = clsops.get(io, self.obj, key, self.accept())
            if res.pending is None:
                return res
            self.resolver.pending(self.obj, res.pending, attempt)
            attempt += 1

    def pages(
        self,
        start_after: str = "",
        limit: int = scan.PAGE_MAX,
        first_bytes: int = scan.FIRST_PAGE_BYTES,
        prefetch: bool = True,
        concurrent: int = 1,
    ) -> scan.RecordPages:
        """Verified ``(key, data)`` pages of this shard, a pending
        transaction decided on the way."""
        return scan.RecordPages(
            self.io(),
            self.obj,
            on_pending=lambda info, attempt: self.resolver.pending(self.obj, info, attempt),
            accept=self.accept,
            start_after=start_after,
            max_records=limit,
            first_bytes=first_bytes,
            prefetch=prefetch,
            concurrent=concurrent,
        )

    def _wflags(self, entries: Entries, whole: bool) -> int:
        if self.shards.txn.holds_on(self.index):
            return clsops.WRITE_ASSERT_TXN
        books = self.books
        if whole:
            return clsops.WRITE_ASSERT_LOCK if books.holds_kind(self.obj, Kind.SHARD) else 0
        flags = {books.wflags(self.obj, key) for _, key, _ in entries}
        return clsops.WRITE_ASSERT_LOCK if flags == {clsops.WRITE_ASSERT_LOCK} else 0

    def write(
        self, entries: Entries, whole: bool = False, report: bool = False, modulus: int = 0
    ) -> int:
        """One write class call (``apply`` of ``entries``, or ``clear`` when
        ``whole``), waiting its turn while another handle's lock blocks it.
        ``report``: return apply's outcome bits (clsops.APPLIED_*; else 0);
        a clear with ``modulus`` (the layout's for the shard) returns its
        layout bits (clsops.LAYOUT_*)."""
        self.shards.locked_values.clear()
        io = self.io()
        owner = self.books.owner
        cover: tuple[int, bytes] | None = None  # the lock we queued for, then release
        pace = self.pace()
        while True:
            wflags = self._wflags(entries, whole)
            if cover is not None:
                wflags |= clsops.WRITE_ASSERT_LOCK | clsops.WRITE_RELEASE
            settle = self.accept() if wflags & clsops.WRITE_ASSERT_TXN else 0
            status = 0
            try:
                if whole:
                    status = clsops.clear_status(
                        io, self.obj, clsops.clear_request(owner, wflags, settle, modulus)
                    )
                elif report and self.shards.session.class_reports:
                    try:
                        status = self._apply(
                            io,
                            clsops.apply_request(
                                owner, wflags | clsops.WRITE_REPORT, entries, settle=settle
                            ),
                            entries if cover is None else None,
                        )
                    except TdbError as exc:
                        if clsops.errno_of(exc) != errno.EINVAL:
                            raise
                        # a class older than WRITE_REPORT refuses the flag: do without
                        self.shards.session.class_reports = False
                        continue
                else:  # the return value says whether a waiter was granted, a watch fired
                    status = self._apply(
                        io,
                        clsops.apply_request(owner, wflags, entries, settle=settle),
                        entries if cover is None else None,
                    )
            except clsops.Busy:
                if wflags & clsops.WRITE_ASSERT_TXN:
                    self.wait_commit()  # others' shared locks drain first
                    continue
                if cover is not None:
                    continue
                cover = (
                    (Kind.SHARD, b"")
                    if whole or len({k for _, k, _ in entries}) > 1
                    else (Kind.RECORD, entries[0][1])
                )
                self.lock(cover[0], Mode.EXCL, cover[1], count=False)
                continue
            except clsops.Unclean:
                self.resolver.unclean(self.obj)
                pace.wait()
                continue
            except BaseException as exc:
                if (
                    cover is None
                    and not whole
                    and wflags & clsops.WRITE_ASSERT_LOCK
                    and clsops.errno_of(exc) == errno.ENOLCK
                    and self._granted_late({k for _, k, _ in entries})
                ):
                    continue
                if cover is not None:  # the write failed: give its lock back
                    with contextlib.suppress(Exception):
                        clsops.unlock(
                            io,
                            self.obj,
                            clsops.unlock_request(owner, cover[0], Mode.EXCL, cover[1]),
                        )
                raise
            if settle and self.index is not None:
                self.shards.txn.settled(self.index)
            if cover is not None:
                self.shards.waited_for.discard((self.obj, cover[1]))
                waited, who = wakeup.take_waited(self.obj)
                behind = self.shards.behind.pop((self.obj, cover[1]), wakeup.Behind())
                self._handed_by_write(io, Handoff(status, None, waited, who, behind))(
                    cover[1], _written(entries, cover[1])
                )
            elif not whole:
                self._keep_written(entries)
            return self.watchers_told(status & clsops.STATUS_BITS, entries, whole) & ~(
                clsops.APPLIED_GRANTED | clsops.APPLIED_GRANTED_SEVERAL
            )

    def _apply(self, io: Any, req: bytes, entries: Entries | None) -> int:
        """One ``apply`` (``req``), its status returned. When it writes one
        record (``entries``) under our exclusive lock on it, a lock we
        waited for (others likely queue behind us), and nobody is known to
        wait behind us (the "G" that handed it to us listed none: at two
        clients, the giver queues again only after it let go), the lock
        table's read goes right behind it, in the same round trip: who
        queued since, kept for our unlock to hand the lock on early
        (``_told_early``) instead of reading the table behind the release."""
        key = entries[0][1] if entries is not None and len(entries) == 1 else None
        if (
            key is None
            or (self.obj, key) not in self.shards.waited_for
            or (self.obj, Kind.RECORD, Mode.EXCL, key) not in self.books.held
            or self.shards.behind.get((self.obj, key), wakeup.Behind()).waiters
        ):
            return clsops.apply_report(io, self.obj, req)
        call = clsops.aio_apply_status(io, self.obj, req)
        scall = clsops.aio_state(io, self.obj)
        try:
            return call.wait()
        finally:
            st = scall.wait() if scall.error() is None else None
            if st is not None:
                self.note_queue(st, Kind.RECORD, Mode.EXCL, key)

    def _keep_written(self, entries: Entries) -> None:
        """A write of one record under our exclusive lock on it: keep the
        record as written (unversioned), for reads under the lock and for
        the "G" that hands the lock on."""
        if len(entries) != 1:
            return
        key = entries[0][1]
        if (self.obj, Kind.RECORD, Mode.EXCL, key) not in self.books.held:
            return
        record = _written(entries, key)
        if record is not None:
            self.shards.locked_values[(self.obj, key)] = record

    def watchers_told(self, status: int, entries: Entries, whole: bool = False) -> int:
        """A write's outcome bits: if it fired watches (APPLIED_WATCHED), their
        watchers are notified (no wait) and the bit is dropped."""
        if status & clsops.APPLIED_WATCHED:
            wakeup.keys_changed(self.io(), self.obj, None if whole else [k for _, k, _ in entries])
        return status & ~clsops.APPLIED_WATCHED

    def wait_commit(self) -> None:
        """Our transaction's write is blocked by other handles' shared locks:
        queue for the COMMIT lock (granted once they are released)."""
        self.lock(Kind.COMMIT, Mode.EXCL, lease_ms=self.books.txn_lease_ms, count=False)

    def wait_isolation(self) -> None:
        """Our transaction touches this shard and its isolation is not
        grantable now: queue for it (under our epoch) and wait."""
        epoch, lease_ms = self.shards.txn.isolation_args()
        self.lock(Kind.ISOLATION, Mode.SHARED, lease_ms=lease_ms, count=False, epoch=epoch)
        if self.index is not None:
            self.shards.txn.note_isolated(self.index)

    def isolate_and_get(
        self, key: bytes, epoch: int, lease_ms: int
    ) -> tuple[clsops.GetResult, snapshot.Snapshot | None]:
        """Take this shard's isolation for our transaction (epoch) and read
        ``key`` in one round trip: the lock request and the read are sent
        back to back (the OSD orders the read after it); if the request was
        queued, wait for the grant and read again. The isolation is ours on
        return, even when the read raises (clsops.Stale: the key moved).
        With the read, the shard whole if it is small (snapshot.py)."""
        self.books.check_fork()
        io = self.io()
        call = self._isolation_call(io, epoch, lease_ms)
        read = clsops.aio_get(io, self.obj, key, self.accept())
        listing = self._aio_whole(io)
        status = call.result()
        value: clsops.GetResult | Exception
        try:
            value = read.wait()
        except clsops.Stale as exc:
            value = exc
        whole = self._whole(listing)
        if not self._isolated(status, epoch, lease_ms):
            value, whole = self._read_or_stale(io, key), None  # read before the grant
        # the shard is watched on the service thread (TxnLock.note_isolated)
        if isinstance(value, Exception):
            if self.index is not None:
                self.shards.txn.note_isolated(self.index)
            raise value
        if value.status == clsops.ReadStatus.TOO_BIG or value.pending is not None:
            return self.get(key), whole
        return value, whole

    def send_isolation(self, epoch: int, lease_ms: int, held: bool) -> Isolating:
        """The first half of a read-ahead (TxnLock.read_ahead): this shard's
        isolation request, unless ``held``, and a list of the whole shard
        behind it (snapshot.py), sent without waiting. ``isolated`` takes
        the replies."""
        self.books.check_fork()
        io = self.io()
        call = None if held else self._isolation_call(io, epoch, lease_ms)
        return Isolating(call, self._aio_whole(io))

    def isolated(self, sent: Isolating, epoch: int, lease_ms: int) -> snapshot.Snapshot | None:
        """The second half: the isolation is ours on return (waited for, if
        the request queued); the shard's snapshot if its list came under it
        and the shard is small."""
        whole = self._whole(sent.listing)
        if sent.call is None or self._isolated(sent.call.result(), epoch, lease_ms):
            return whole
        return None  # listed before the grant

    def _isolation_call(self, io: Any, epoch: int, lease_ms: int) -> clsops.StatusCall:
        req = clsops.lock_request(
            self.books.owner, lease_ms, Kind.ISOLATION, Mode.SHARED, b"", clsops.LOCK_QUEUE, epoch
        )
        return clsops.aio_lock_status(io, self.obj, req)

    def _isolated(self, status: int | Exception, epoch: int, lease_ms: int) -> bool:
        """Make an isolation request's reply ours: raise for a lost lock,
        decide a stale holder and take the lock again, wait for a queued
        grant. True if the reads sent behind the request came under it."""
        if isinstance(status, clsops.Canceled):
            raise TdbError(
                ERR_LOCK, "Locking error: the transaction lost its lock (a newer one took a shard)"
            )
        if isinstance(status, clsops.Unclean):
            self.resolver.unclean(self.obj)
            self.lock(Kind.ISOLATION, Mode.SHARED, lease_ms=lease_ms, count=False, epoch=epoch)
            return False
        if isinstance(status, Exception):
            raise status
        self.books.track(self.obj, lease_ms)
        if status & clsops.LOCKED_QUEUED:
            self.wait_granted(Kind.ISOLATION, Mode.SHARED, b"", lease_ms, queued=True)
            return False
        return True

    def get_whole(self, key: bytes) -> tuple[clsops.GetResult, snapshot.Snapshot | None]:
        """``get`` under our isolation, with the shard whole if it is small
        (in the same round trip: snapshot.py)."""
        io = self.io()
        listing = self._aio_whole(io)
        if listing is None:
            return self.get(key), None
        read = clsops.aio_get(io, self.obj, key, self.accept())
        try:
            value = read.wait()
        finally:
            whole = self._whole(listing)
        if value.status == clsops.ReadStatus.TOO_BIG or value.pending is not None:
            return self.get(key), whole
        return value, whole

    def _aio_whole(self, io: Any) -> clsops.Call | None:
        """A list of the whole shard, unless it is known not to fit."""
        if self.big or self.index is None:
            return None
        return clsops.aio_list(io, self.obj, "", snapshot.RECORDS, snapshot.BYTES, self.accept())

    def _whole(self, listing: clsops.Call | None) -> snapshot.Snapshot | None:
        """The snapshot a list sent by _aio_whole gives (None: none)."""
        if listing is None or self.index is None:
            return None
        try:
            page = listing.wait()
        except Exception:  # the reads go to the OSD instead, which report what is wrong
            return None
        self.big = page.more
        return snapshot.Snapshot.of(self.index, page)

    def _read_or_stale(self, io: Any, key: bytes) -> clsops.GetResult | Exception:
        try:
            return self._read_now(io, key)
        except clsops.Stale as exc:
            return exc

    # -- record watches (watch.py) ---------------------------------------------------------
    def arm_watch(self, watch_id: bytes, key: bytes) -> bool:
        """Arm (or renew) the WATCH entry ``watch_id`` on ``key``, with the
        handle's lease: True if it was still there (no write of the key
        since it was armed). Stale owners on the shard are decided first, as
        for any lock (clsops.Stale: the key moved)."""
        req = clsops.lock_request(watch_id, self.books.lease_ms, Kind.WATCH, Mode.SHARED, key)
        io = self.io()
        pace = self.pace()
        while True:
            try:
                return bool(clsops.lock_status(io, self.obj, req) & clsops.WATCH_ARMED)
            except clsops.Unclean:
                self.resolver.unclean(self.obj)
                pace.wait()

    def disarm_watch(self, watch_id: bytes, key: bytes) -> None:
        """Remove the WATCH entry (gone already: fired, or expired: fine)."""
        req = clsops.unlock_request(watch_id, Kind.WATCH, Mode.SHARED, key)
        try:
            clsops.unlock(self.io(), self.obj, req)
        except TdbError as exc:
            if clsops.errno_of(exc) != errno.ENOLCK:
                raise

    # -- a transaction's part --------------------------------------------------------------
    def part_request(
        self, entries: Entries, txid: int, participants: Sequence[int], release: bool = False
    ) -> bytes:
        wflags = clsops.WRITE_ASSERT_TXN | (clsops.WRITE_RELEASE if release else 0)
        epoch, lease_ms = self.shards.txn.isolation_args()
        return clsops.apply_request(
            self.books.owner, wflags, entries, txid, self.accept(), participants, epoch, lease_ms
        )

    def aio_write_part(
        self, entries: Entries, txid: int, participants: Sequence[int]
    ) -> clsops.StatusCall:
        """Send a transaction's part (no wait): the caller collects the call
        (its APPLIED_* bits) and, if it failed with EBUSY or EUCLEAN, calls
        :meth:`write_part`."""
        return clsops.aio_apply_status(
            self.io(), self.obj, self.part_request(entries, txid, participants)
        )

    def write_part(
        self,
        entries: Entries,
        txid: int = 0,
        participants: Sequence[int] = (),
        first: Exception | None = None,
    ) -> int:
        """A transaction's part (txid 0: the whole transaction, on one shard),
        synchronously, waiting for the shard's isolation if it is not ours
        yet, then out others' shared locks, and resolving what blocks it.
        ``first``: the error its first (parallel) try got. Other errors are
        raised as they are (clsops.Stale: a key moved; clsops.Canceled: a
        newer transaction took the shard). Returns APPLIED_WATCHED if the
        part fired watches (the committer notifies once it committed)."""
        io = self.io()
        release = False
        pace = self.pace()
        err = first
        txn = self.shards.txn
        while True:
            if err is None:
                try:
                    status = clsops.apply_report(
                        io, self.obj, self.part_request(entries, txid, participants, release)
                    )
                except (clsops.Busy, clsops.Unclean) as exc:
                    err = exc
                else:
                    if self.index is not None:
                        txn.note_isolated(self.index)
                        txn.settled(self.index)
                    return status & clsops.APPLIED_WATCHED
            if isinstance(err, clsops.Busy) and not txn.holds_on(self.index):
                self.wait_isolation()  # the shard's isolation first, in its queue
            elif isinstance(err, clsops.Busy):
                self.wait_commit()  # readers holding shared locks drain first
                release = True
            elif isinstance(err, clsops.Unclean):
                self.resolver.unclean(self.obj)
                pace.wait()
            else:
                raise err
            err = None

    def settle(self, txid: int) -> clsops.Call:
        """Install our committed transaction's redo log here (no wait)."""
        return clsops.aio_settle(self.io(), self.obj, txid)

    # -- locks -----------------------------------------------------------------------------
    def lock(
        self,
        kind: int,
        mode: int,
        key: bytes = b"",
        nonblock: bool = False,
        lease_ms: int | None = None,
        count: bool = True,
        epoch: int = 0,
        modulus: int = 0,
        read_with_grant: bool = False,
    ) -> int:
        """Take a lock (or count it again), waiting in the OSD's queue while
        it is not grantable. ``count=False``: a lock taken only to cover one
        queued write (released by that write), or held in the transaction's
        books (isolation, COMMIT), not counted here. ``epoch``: an
        isolation's transaction; ``modulus``: a SHARD lock's, as the layout
        gives it. A counted exclusive record lock (or ``read_with_grant``)
        that had to wait keeps the record as it was when granted (read with
        the state showing the grant, or sent with the "G") in
        ``Shards.locked_values`` for reads under the lock. Returns the
        layout bits the object answered (0 when the lock had to wait)."""
        books = self.books
        books.check_fork()
        hk = (self.obj, kind, mode, key)
        if count and books.count_again(hk):
            return 0
        lease_ms = lease_ms or books.lease_ms
        io = self.io()
        if not nonblock:  # watched before the request: nothing for it can pass us
            wakeup.ensure_watch(io, self.obj)
        # the process's inbox, if it has one, kept while we may wait (0: none yet)
        inboxes = [wakeup.take_inbox(io)] if not nonblock else [0]
        try:
            bits = self._take(io, kind, mode, key, nonblock, lease_ms, count, epoch, modulus,
                              read_with_grant, inboxes)  # fmt: skip
        finally:
            if inboxes[-1]:
                wakeup.drop_inbox(io)
        if count:
            books.note(hk, lease_ms)
        else:
            books.track(self.obj, lease_ms)
        if nonblock:  # a holder must hear "W" announcements (a blocking one watches already)
            wakeup.ensure_watch(io, self.obj)
        return bits

    def _take(
        self,
        io: Any,
        kind: int,
        mode: int,
        key: bytes,
        nonblock: bool,
        lease_ms: int,
        count: bool,
        epoch: int,
        modulus: int,
        read_with_grant: bool,
        inboxes: list[int],
    ) -> int:
        """``lock``'s requests and wait; returns the layout bits. The
        request names ``inboxes[-1]``; a waiter whose process has no inbox
        makes one and appends it (the caller drops it)."""
        books = self.books
        # a blocking request queues at once: one round trip either way
        flags = 0 if nonblock else clsops.LOCK_QUEUE

        def request() -> bytes:
            return clsops.lock_request(
                books.owner, lease_ms, kind, mode, key, flags, epoch, modulus, inboxes[-1]
            )

        req = request()
        bits = 0
        while True:
            try:
                sent = time.monotonic()
                status = clsops.lock_status(io, self.obj, req)
                bits = status & (clsops.LAYOUT_SPLITTING | clsops.LAYOUT_MOVED)
                ticket = clsops.ticket_of(status)
                if status & clsops.LOCKED_QUEUED and ticket and not inboxes[-1]:
                    status, sent = self.name_inbox(io, request, inboxes)
                    req = request()
                if status & clsops.LOCKED_QUEUED:
                    books.track(self.obj, lease_ms)  # renew the wait
                    self.shards.waited_for.add((self.obj, key))
                    record = (count or read_with_grant) and (kind, mode) == (Kind.RECORD, Mode.EXCL)
                    _, got = self.wait_granted(
                        kind,
                        mode,
                        key,
                        lease_ms,
                        queued=True,
                        companion=self._companion_get(key) if record else None,
                        epoch=epoch,
                        modulus=modulus,
                        ticket=ticket,
                        sent=sent,
                        ask=bool(status & clsops.LOCKED_ASK),
                    )
                    if (
                        isinstance(got, clsops.GetResult)
                        and got.pending is None
                        and got.status != clsops.ReadStatus.TOO_BIG
                    ):
                        self.shards.locked_values[(self.obj, key)] = got
                    bits = 0
                return bits
            except clsops.Busy:
                if nonblock:
                    if self.ask_cached([self.obj], lambda r=req: clsops.lock(io, self.obj, r)):
                        return bits
                    raise TdbError(ERR_LOCK) from None
                raise  # a QUEUE request is never refused as busy
            except clsops.Unclean:
                if nonblock:
                    raise TdbError(ERR_LOCK) from None
                self.resolver.unclean(self.obj)
            except clsops.Canceled:
                raise TdbError(
                    ERR_LOCK,
                    "Locking error: the transaction lost its lock (a newer one took a shard)",
                ) from None

    def name_inbox(
        self, io: Any, request: Callable[[], bytes], inboxes: list[int]
    ) -> tuple[int, float]:
        """A request that named no inbox queued: the process's first wait.
        Make its inbox, append it to ``inboxes`` (the caller drops it once
        the wait ends) and name it in our entry with ``request()`` again (a
        renewal: same ticket; if granted meanwhile, its giver found no inbox
        and woke us on the object). An entry that turned stale since the
        first call (its holder died) is decided first, and the call sent
        again (paced, as every EUCLEAN). Returns that call's status, and
        when it was sent."""
        inboxes.append(wakeup.take_inbox(io, make=True))
        pace = self.pace()
        while True:
            sent = time.monotonic()
            try:
                return clsops.lock_status(io, self.obj, request()), sent
            except clsops.Unclean:
                self.resolver.unclean(self.obj)
                pace.wait()

    def _companion_get(self, key: bytes) -> Callable[[], Any]:
        """A read of key sent with each state read of a wait: the state that
        shows our grant comes with the record as it is under our lock."""
        io = self.io()

        def start() -> _Quiet:
            return _Quiet(clsops.aio_get(io, self.obj, key, self.accept()))

        return start

    def lock_and_read(self, key: bytes) -> clsops.GetResult:
        """Lock a record exclusively and read it in one round trip.

        The read is sent right behind the lock request on the same object,
        and the OSD orders a read after a write it received earlier, so the
        value is the one under the lock. If the lock was contended, waits
        for it and reads again."""
        books = self.books
        books.check_fork()
        hk = (self.obj, Kind.RECORD, Mode.EXCL, key)
        io = self.io()
        if books.count_again(hk):
            return self._read_now(io, key)
        req = clsops.lock_request(books.owner, books.lease_ms, Kind.RECORD, Mode.EXCL, key)
        call = clsops.aio_lock(io, self.obj, req)
        read = clsops.aio_get(io, self.obj, key, self.accept())
        err = call.error()
        value = read.wait()
        if err is not None:
            if not isinstance(err, clsops.Busy | clsops.Unclean):
                raise err
            self.lock(Kind.RECORD, Mode.EXCL, key, count=False, read_with_grant=True)
            known = self.shards.locked_values.get((self.obj, key))
            value = known if known is not None else self._read_now(io, key)
        books.note(hk, books.lease_ms)
        wakeup.ensure_watch(io, self.obj)
        if value.status == clsops.ReadStatus.TOO_BIG or value.pending is not None:
            return self.get(key)  # under the lock: a big record, or a pending shard
        return value

    def _read_now(self, io: Any, key: bytes) -> clsops.GetResult:
        res = clsops.aio_get(io, self.obj, key, self.accept()).wait()
        if res.status == clsops.ReadStatus.TOO_BIG or res.pending is not None:
            return self.get(key)
        return res

    def unlock(self, kind: int, mode: int, key: bytes = b"") -> None:
        """Count down a lock; release it in the OSD at zero. Releasing a lock
        the handle does not hold, or one that was lost (its lease ran out and
        another took it), is TDB's lock error."""
        books = self.books
        books.check_fork()
        if not books.count_down((self.obj, kind, mode, key)):
            return
        known = self.shards.locked_values.pop((self.obj, key), None)
        io = self.io()
        req = clsops.unlock_request(books.owner, kind, mode, key)
        books.untrack(self.obj)
        record = known if (kind, mode) == (Kind.RECORD, Mode.EXCL) else None
        nxt = self._told_early(key) if record is not None else None

        def send() -> clsops.StatusCall:
            call = clsops.aio_unlock_granted(io, self.obj, req)
            if nxt is not None:  # the release is on its way: tell the next in line now
                lock = (Kind.RECORD, Mode.EXCL)
                self._grant(io, nxt[0], nxt[1], key, record, nxt[2], lock, early=True)
            return call

        how = self._release(io, key, send)
        granted, ticket = clsops.grants_of(how.status), clsops.ticket_of(how.status)
        if nxt is not None and granted == 1 and ticket == nxt[0]:
            return  # granted whom we told
        self._handed(io, granted, ticket, how)(key, record)

    def txn_released(
        self, io: Any, epoch: int, handover: bytes = b""
    ) -> Callable[[int | Exception], None]:
        """Our release of the transaction lock, held under ``epoch``, was
        just sent: hand the lock on by "G", as ``unlock`` hands a record
        lock. The next in line, when the "G" or the table that granted us
        said who, is told now (early) with ``epoch + 1``: above ours, and
        never above the epoch the class stamps on its grant (one above the
        last grant's at least), so a shard fenced for us still takes it
        (txnlock.py). Otherwise the lock table's read goes right behind the
        release (the lock is released at all only when somebody likely
        waits, or the holder was idle: txnlock.py). A transactor granted so
        is sent ``handover`` with its "G" (handover.py). Returns the call
        that finishes the handoff, given the release's result."""
        waited, who = wakeup.take_waited(self.obj)
        behind = self.shards.behind.pop((self.obj, b""), None) or wakeup.Behind()
        first = behind.next_in_line() if epoch and not self.books.holds_on(self.obj) else None
        if first is not None:
            lock = (Kind.TXN, Mode.EXCL)
            later = behind.after(0)
            self._grant(
                io, first[0], first[1], b"", None, later, lock,
                early=True, epoch=epoch + 1, handover=handover,
            )  # fmt: skip
        # not told early: whom the release grants is read right behind it
        # (a holder handed the lock by "G" knows only those queued before)
        scall = clsops.aio_state(io, self.obj) if first is None else None

        def finish(res: int | Exception) -> None:
            st = None
            if scall is not None and scall.error() is None:
                st = scall.wait()
            if isinstance(res, Exception):
                return  # not released (lost): the lease ends it, and the pruner wakes
            granted, ticket = clsops.grants_of(res), clsops.ticket_of(res)
            if first is not None and granted == 1 and ticket == first[0]:
                return  # granted whom we told
            how = Handoff(res, st, waited, who, behind)
            # told early, the one we told may have run its transaction and
            # handed the lock on before our release landed: what we hand on
            # would be older than what it did, so a late "G" carries nothing
            given = handover if first is None else b""
            self._handed(io, granted, ticket, how, epoch + 1 if epoch else 0, given)(b"", None)

        return finish

    def note_queue(self, st: clsops.ObjectState, kind: int, mode: int, key: bytes) -> bool:
        """Keep who waits behind our granted entry (kind, mode, key), as
        ``st`` shows it, for our release to hand the lock on. True when
        somebody waits."""
        e = self._entry(st, kind, mode, key)
        behind = _queued_behind(st, e) if e is not None and e.held else wakeup.Behind()
        if behind.waiters:
            self.shards.behind[(self.obj, key)] = behind
        return bool(behind.waiters)

    def _told_early(self, key: bytes) -> tuple[int, int, wakeup.Behind] | None:
        """The waiter our release of the exclusive lock on ``key`` (counted
        down already) will grant, as the "G" that handed it to us said:
        (ticket, inbox, who waits behind it); None when not known, or when
        another lock of ours on this object might keep it from being
        granted (our release alone must make it grantable)."""
        behind = self.shards.behind.get((self.obj, key))
        first = behind.next_in_line() if behind is not None else None
        if behind is None or first is None or self.books.holds_on(self.obj):
            return None
        return first[0], first[1], behind.after(0)

    def _granted_late(self, keys: set[bytes]) -> bool:
        """A write under our exclusive record locks on ``keys`` was refused
        for the lock (-ENOLCK). Handed a lock early (the giver sent its "G"
        with its release), we may have written before that release landed
        (it went to the OSD by another path than the "G"): if our entries
        are there, held or still queued, wait until they are granted and
        say so (write again). False: a lock is lost (its lease ran out)."""
        books = self.books
        if any((self.obj, Kind.RECORD, Mode.EXCL, k) not in books.held for k in keys):
            return False
        st = clsops.state(self.io(), self.obj)
        ours = {
            e.key: e
            for e in (st.header.entries if st is not None else ())
            if e.owner == books.owner and (e.kind, e.mode) == (Kind.RECORD, Mode.EXCL)
        }
        if any(k not in ours for k in keys):
            return False
        for k in sorted(keys):
            if not ours[k].held:
                self.wait_granted(
                    Kind.RECORD, Mode.EXCL, k, books.lease_ms, queued=True, poll=LATE_POLL
                )
        return True

    def _release(self, io: Any, key: bytes, send: Callable[[], clsops.StatusCall]) -> Handoff:
        """Send a release (``send()``) and, when somebody likely waits (we
        waited for this lock ourselves, or heard a wait announced) and the
        "G" that handed us the lock did not list who waits behind us, the
        lock table's read right behind it, in the same round trip: who was
        granted, and their inbox."""
        waited, who = wakeup.take_waited(self.obj)
        behind = self.shards.behind.pop((self.obj, key), None) or wakeup.Behind()
        look = (waited or (self.obj, key) in self.shards.waited_for) and not behind.waiters
        self.shards.waited_for.discard((self.obj, key))
        call = send()
        scall = clsops.aio_state(io, self.obj) if look else None
        try:
            status = call.wait()
        finally:
            st = None
            if scall is not None and scall.error() is None:
                st = scall.wait()
        return Handoff(status, st, waited, who, behind)

    def _handed(
        self, io: Any, granted: int, ticket: int, how: Handoff, epoch: int = 0,
        handover: bytes = b"",
    ) -> Callable[[bytes, clsops.GetResult | None], None]:  # fmt: skip
        """After a release that granted ``granted`` waiters, the first with
        ``ticket``: returns the call that tells them, given the key
        released and the record as we leave it (None: not known). One
        waiter with an inbox is told "G" there (its inbox from the waiters
        we were told of, else from the lock table), with the record when it
        waited for that record's exclusive lock, and the waiters behind it
        as the table showed them; several, or one without an inbox (an
        older client or class), or none while somebody announced a wait,
        are woken with "C" on the object and look again. ``epoch``: we
        released the transaction lock, whose grant we know to have this
        epoch without a look at the table (txnlock.py), and a transactor
        granted it is sent ``handover`` (handover.py)."""

        def tell(key: bytes, record: clsops.GetResult | None) -> None:
            if granted == 1 and ticket:
                found = [i for i, (t, _) in enumerate(how.behind.waiters) if t == ticket]
                if found:
                    inbox, later = how.behind.waiters[found[0]][1], how.behind.after(found[0])
                    if epoch and found[0] < how.behind.in_line:  # it waited for the txn lock
                        lock = (Kind.TXN, Mode.EXCL)
                        self._grant(
                            io, ticket, inbox, key, record, later, lock,
                            epoch=epoch, handover=handover,
                        )  # fmt: skip
                    else:
                        lock = (Kind.RECORD, Mode.EXCL)
                        self._grant(io, ticket, inbox, key, record, later, lock)
                    return
                st = how.st
                if st is None:
                    with contextlib.suppress(Exception):
                        st = clsops.state(io, self.obj)
                entry = (
                    next((e for e in st.header.entries if e.ticket == ticket), None) if st else None
                )
                if st is not None and entry is not None and entry.inbox and entry.held:
                    self._grant(
                        io,
                        ticket,
                        entry.inbox,
                        key,
                        record,
                        _queued_behind(st, entry),
                        (entry.kind, entry.mode),
                        entry.key,
                        epoch=st.header.epoch if entry.kind == Kind.TXN else 0,
                        handover=handover,
                    )
                    return
                if entry is not None:
                    wakeup.wake(io, self.obj, entry.owner)
                    return
            if granted or how.waited:
                wakeup.wake(io, self.obj, how.who if granted <= 1 else None)

        return tell

    def _grant(
        self,
        io: Any,
        ticket: int,
        inbox: int,
        key: bytes,
        record: clsops.GetResult | None,
        behind: wakeup.Behind,
        lock: tuple[int, int],
        locked_key: bytes | None = None,
        early: bool = False,
        epoch: int = 0,
        handover: bytes = b"",
    ) -> None:
        """Send "G" for ``ticket`` to ``inbox``: with the record ``key`` as we
        leave it if the grant is of that record's exclusive lock (``lock``,
        on ``locked_key``: ``key`` unless said), who waits behind
        (``early``: sent with the release, before its reply), and the
        transaction lock's ``epoch`` and, to a transactor, ``handover``."""
        same = lock == (Kind.RECORD, Mode.EXCL) and (locked_key is None or locked_key == key)
        if (
            same
            and record is not None
            and record.status in (clsops.ReadStatus.FOUND, clsops.ReadStatus.MISSING)
        ):
            data = codec.decode_record(key, record.record)[1] if record.status == 0 else b""
            wakeup.grant(io, self.obj, ticket, inbox, key, record.status, data, behind, early)
        else:
            if lock != (Kind.TXN, Mode.EXCL):
                handover = b""
            wakeup.grant(
                io, self.obj, ticket, inbox, behind=behind, early=early, epoch=epoch,
                handover=handover,
            )  # fmt: skip

    def write_and_unlock(self, entries: Entries, key: bytes) -> int:
        """A write under our exclusive record lock on ``key`` and the lock's
        release in ONE class call (apply with ASSERT_LOCK and RELEASE);
        waiters it granted are woken as an unlock's. A lock counted more
        than once is only counted down, after a plain write. Returns the
        write's outcome bits; the lock lost: TDB's lock error."""
        books = self.books
        books.check_fork()
        hk = (self.obj, Kind.RECORD, Mode.EXCL, key)
        if books.held.get(hk, 0) != 1:
            status = self.write(entries)
            self.unlock(Kind.RECORD, Mode.EXCL, key)
            return status
        self.shards.locked_values.clear()
        io = self.io()
        wflags = clsops.WRITE_ASSERT_LOCK | clsops.WRITE_RELEASE
        req = clsops.apply_request(books.owner, wflags, entries)
        pace = self.pace()
        while True:
            try:
                how = self._release(io, key, lambda: clsops.aio_apply_status(io, self.obj, req))
                break
            except clsops.Unclean:
                self.resolver.unclean(self.obj)
                pace.wait()
            except TdbError as exc:
                if clsops.errno_of(exc) == errno.ENOLCK:  # lost (its lease ran out), or
                    if self._granted_late({key}):  # handed to us early, the release not yet landed
                        continue
                    books.forget([hk])
                    books.untrack(self.obj)
                raise
        books.count_down(hk)
        books.untrack(self.obj)
        self._handed_by_write(io, how)(key, _written(entries, key))
        return self.watchers_told(how.status & clsops.STATUS_BITS, entries) & ~(
            clsops.APPLIED_GRANTED | clsops.APPLIED_GRANTED_SEVERAL
        )

    def _handed_by_write(
        self, io: Any, how: Handoff
    ) -> Callable[[bytes, clsops.GetResult | None], None]:
        """``_handed`` for a write that released our lock (RELEASE)."""
        granted = 0
        if how.status & clsops.APPLIED_GRANTED:
            granted = 2 if how.status & clsops.APPLIED_GRANTED_SEVERAL else 1
        return self._handed(io, granted, clsops.ticket_of(how.status), how)

    def wait_granted(
        self,
        kind: int,
        mode: int,
        key: bytes,
        lease_ms: int,
        queued: bool = False,
        companion: Callable[[], Any] | None = None,
        epoch: int = 0,
        modulus: int = 0,
        ticket: int = 0,
        sent: float = 0.0,
        ask: bool = False,
        poll: float | None = None,
        seen: clsops.ObjectState | None = None,
    ) -> tuple[clsops.ObjectState | None, Any]:
        """Queue for a lock in the OSD and wait until it is granted to us (see
        the module comment). ``queued``: our entry is in the queue already.
        ``companion()`` starts a call sent together with every state read;
        returns (the state showing the grant, the companion's result).
        ``ticket``: our queued entry's, which named our inbox, sent at
        ``sent``: a "G" naming it is the grant (state None; the companion's
        result is the record the "G" carried, if it carried our record,
        else None); unless ``ask`` (the class said an entry ahead may be
        kept cached: we look and announce at once), we first sleep for it
        alone. ``poll``: look at the table at least this often (a release is
        on its way that will wake nobody). ``seen``: the table as read right
        behind our queued request, not showing our grant: the first look
        (the companion's result is None until the next)."""
        io = self.io()
        obj = self.obj
        books = self.books
        late = not wakeup.watching(io, obj)  # a "C" sent before the watch was missed
        wakeup.ensure_watch(io, obj)
        limit = self.shards.session.op_timeout
        deadline = None if limit is None else time.monotonic() + limit
        if ticket and queued and not ask and not late:
            handed = self._await_ticket(ticket, sent, key, deadline, companion is not None)
            if handed is not None:
                return None, handed[0]
        first_seen: dict[tuple[bytes, int, int, bytes], int] = {}
        extended = False

        def check_deadline(st: clsops.ObjectState) -> None:
            nonlocal deadline, extended
            ahead = self._ahead(st, kind, mode, key)
            for e in ahead:
                first_seen.setdefault((e.owner, e.kind, e.mode, e.key), e.expiry_ms)
            if deadline is None or time.monotonic() < deadline:
                return
            renewed = any(e.expiry_ms > first_seen[(e.owner, e.kind, e.mode, e.key)] for e in ahead)
            if ahead and not renewed and not extended:
                # ping: a live holder renews on hearing a wait (LockTable.on_wait)
                wakeup.announce(io, obj)
                time.sleep(RENEW_ON_WAIT / 4)
                again = clsops.state(io, obj)
                if again is not None:
                    renewed = any(
                        e.expiry_ms > first_seen.get((e.owner, e.kind, e.mode, e.key), e.expiry_ms)
                        for e in self._ahead(again, kind, mode, key)
                    )
            if ahead and not renewed and not extended:
                extended = True  # dead-looking holders: wait out their leases
                last = max(e.expiry_ms for e in ahead)
                deadline = time.monotonic() + max(0, last - st.now_ms) / 1000 + MIN_SLEEP * 5
                return
            self._withdraw(kind, mode, key)
            raise TdbError(
                ERR_LOCK_TIMEOUT,
                f"Locking timeout: waited {limit:g} s ({clustermod.OP_TIMEOUT_ENV}) "
                f"for a lock on {obj} held by another handle",
            )

        inbox = wakeup.take_inbox(io) if ticket else 0  # ours: the caller keeps it
        if inbox:
            wakeup.drop_inbox(io)
        queue_req = clsops.lock_request(
            books.owner, lease_ms, kind, mode, key, clsops.LOCK_QUEUE, epoch, modulus, inbox
        )
        want_record = companion is not None

        def read_state(prune: bool = False) -> tuple[clsops.ObjectState | None, Any]:
            pcall = clsops.aio_prune(io, obj) if prune else None
            scall = clsops.aio_state(io, obj)
            ccall = companion() if companion is not None else None
            if pcall is not None:
                pcall.error()
            st = scall.wait()
            return st, (ccall.wait() if ccall is not None else None)

        def timed_out(waited: float) -> Exception:
            self._withdraw(kind, mode, key)
            return TdbError(
                ERR_LOCK_TIMEOUT,
                f"Locking timeout: waited {waited:.3g} s ({clustermod.OP_TIMEOUT_ENV}) "
                f"for a lock on {obj}: it kept being taken from the queue",
            )

        pace = retry.Pace(None if limit is None else limit + lease_ms / 1000, timed_out)
        first = True
        while True:  # (re)queue
            if not first:
                pace.wait()
            first = False
            gen = wakeup.generation(obj, books.owner)
            if not queued:
                sent = time.monotonic()
                call = clsops.aio_lock_status(io, obj, queue_req)
                st, extra = read_state()
                try:
                    status = call.wait()
                except clsops.Unclean:
                    self.resolver.unclean(obj)
                    continue
                ticket = clsops.ticket_of(status) if inbox else 0
                books.track(obj, lease_ms)
            elif seen is not None:
                st, extra, seen = seen, None, None
            else:
                st, extra = read_state()
            queued = False
            if self.granted(st, kind, mode, key):
                return st, extra  # type: ignore[return-value]
            trusted = True
            if st is None or self._announce_needed(st, kind, mode, key):
                # a holder that keeps its lock cached releases it when asked
                trusted = wakeup.announce(io, obj)
                st, extra = read_state()
            announced = time.monotonic()
            expired_at: float | None = None
            while True:
                if self.granted(st, kind, mode, key):
                    return st, extra  # type: ignore[return-value]
                handed = self._take_handed(ticket, sent, key, want_record)
                if handed is not None:
                    return None, handed[0]
                if st is None or self._entry(st, kind, mode, key) is None:
                    break  # our entry is gone (expired while we were stopped): requeue
                if st.header.stale:
                    self.resolver.unclean(obj)
                    break
                check_deadline(st)
                delay, expired_at = self._deadline(st, kind, mode, key)
                if not trusted:
                    delay = min(delay, wakeup.DEAF_POLL)
                if poll is not None:
                    delay = min(delay, poll)
                if deadline is not None:
                    delay = max(MIN_SLEEP, min(delay, deadline - time.monotonic()))
                delay = min(delay, max(MIN_SLEEP, announced + REANNOUNCE - time.monotonic()))
                woke = wakeup.sleep(obj, gen, delay, books.owner, ticket, io)
                handed = self._take_handed(ticket, sent, key, want_record)
                if handed is not None:
                    return None, handed[0]
                gen = wakeup.generation(obj, books.owner)
                if not woke and time.monotonic() - announced > REANNOUNCE:
                    # nobody woke us: a holder of a cached lock may not have
                    # heard (a record lock's giver wakes us itself: an announce
                    # would only wait on a dead watcher's notify timeout)
                    if st is None or self._announce_needed(st, kind, mode, key):
                        trusted = wakeup.announce(io, obj)
                    announced = time.monotonic()
                # somebody ahead outlived its lease: prune, which grants
                late = not woke and expired_at is not None and time.monotonic() >= expired_at
                st, extra = read_state(prune=late)

    def _await_ticket(
        self, ticket: int, sent: float, key: bytes, deadline: float | None, want_record: bool
    ) -> tuple[clsops.GetResult | None] | None:
        """Sleep until a "G" names our ticket: (the record it carried, if
        ``want_record`` and it is ours, else None). None: no "G" within
        REANNOUNCE (a holder may have died: the caller reads the lock
        table), or another notify for us or for every waiter came first
        (its sender did not name a ticket: the caller looks)."""
        obj, owner = self.obj, self.books.owner
        until = time.monotonic() + REANNOUNCE
        if deadline is not None:
            until = min(until, deadline)
        gen = wakeup.generation(obj, owner)
        while True:
            handed = self._take_handed(ticket, sent, key, want_record)
            if handed is not None:
                return handed
            left = until - time.monotonic()
            if left <= 0 or wakeup.generation(obj, owner) != gen:
                return None
            wakeup.sleep(obj, gen, left, owner, ticket, self.io())

    def _take_handed(
        self, ticket: int, sent: float, key: bytes, want_record: bool
    ) -> tuple[clsops.GetResult | None] | None:
        """The "G" for our ticket if it has come (see ``_await_ticket``)."""
        handed = wakeup.take_grant(self.io(), self.obj, ticket, sent) if ticket else None
        if handed is None:
            return None
        got_key, status, data, behind = handed.key, handed.status, handed.data, handed.behind
        if behind.waiters:  # who waits behind us: our release needs no look at the table
            self.shards.behind[(self.obj, key)] = behind
        if handed.epoch:  # the transaction lock's (txnlock.py)
            self.shards.epochs[self.obj] = handed.epoch
            self.shards.handovers[self.obj] = handed.handover
        if not want_record or got_key != key or status not in (0, 1):  # FOUND, MISSING
            return (None,)
        record = codec.encode_record(key, data) if status == clsops.ReadStatus.FOUND else b""
        return (clsops.GetResult(status, record=record, unversioned=True),)

    def ask_cached(self, objs: Sequence[str], attempt: Callable[[], None]) -> bool:
        """A nonblocking request was refused: if only a transaction's locks
        (possibly merely cached) are in the way, ask for them and retry
        ``attempt`` for up to NONBLOCK_GRACE. True when it succeeded."""
        io = self.io()
        owner = self.books.owner
        states = clsops.wait_all(clsops.aio_state(io, o) for o in objs)
        for st in states:
            if st is None:
                continue
            others = [e for e in st.header.entries if e.owner != owner and e.held]
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

    def _entry(
        self, st: clsops.ObjectState, kind: int, mode: int, key: bytes
    ) -> clsops.LockEntry | None:
        owner = self.books.owner
        for e in st.header.entries:
            if e.owner == owner and e.kind == kind and e.mode == mode and e.key == key:
                return e
        return None

    def granted(self, st: clsops.ObjectState | None, kind: int, mode: int, key: bytes) -> bool:
        """Does ``st`` show our entry (kind, mode, key) granted?"""
        if st is None:
            return False
        e = self._entry(st, kind, mode, key)
        if e is None or not e.held:
            return False
        if any(x.state == clsops.EntryState.QUEUED for x in st.header.entries):
            # others still wait: wake them on release (the next one alone if known)
            wakeup.mark_waited(self.obj, self._next_in_line(st, kind, mode, key))
        return True

    def _next_in_line(
        self, st: clsops.ObjectState, kind: int, mode: int, key: bytes
    ) -> bytes | None:
        """The owner our release of (kind, mode, key) will hand the lock to,
        when it is one: the first waiter for our record, exclusive, with
        only record waiters before it; for the transaction lock, the first
        waiter if it waits for the transaction lock too. None: several, or
        unknown."""
        if kind == Kind.TXN:
            first = next(
                (
                    e
                    for e in st.header.entries
                    if e.state == clsops.EntryState.QUEUED and e.owner != self.books.owner
                ),
                None,
            )
            return first.owner if first is not None and first.kind == Kind.TXN else None
        if kind != Kind.RECORD or mode != Mode.EXCL:
            return None
        for e in st.header.entries:
            if e.state != clsops.EntryState.QUEUED or e.owner == self.books.owner:
                continue
            if e.kind != Kind.RECORD:
                return None
            if e.key == key:
                return e.owner if e.mode == Mode.EXCL else None
        return None

    def _ahead(
        self, st: clsops.ObjectState, kind: int, mode: int, key: bytes
    ) -> list[clsops.LockEntry]:
        """The entries of other owners before ours (holders and waiters)."""
        owner = self.books.owner
        out = []
        for e in st.header.entries:
            if e.owner == owner and e.kind == kind and e.mode == mode and e.key == key:
                break
            if e.owner != owner:
                out.append(e)
        return out

    def _withdraw(self, kind: int, mode: int, key: bytes) -> None:
        """Leave the queue (a wait gave up); a waiter behind us that this
        lets through is woken. Errors are ignored: the entry expires."""
        io = self.io()
        req = clsops.unlock_request(self.books.owner, kind, mode, key)
        with contextlib.suppress(Exception):
            if clsops.unlock_granted(io, self.obj, req):
                wakeup.wake(io, self.obj)

    def _announce_needed(self, st: clsops.ObjectState, kind: int, mode: int, key: bytes) -> bool:
        """Must a waiter announce itself? Only if an entry ahead of ours is
        one its holder may keep after use (the transaction lock, isolation,
        USER: cached until somebody asks). Record locks are given back by
        unlock, release or a covering write, which say whether they granted
        a waiter, and the giver wakes it. And a transaction-lock waiter with
        another waiter ahead of it stays silent: the first waiter announced
        itself, or the holder saw it queued when it was granted, and each
        grant shows its holder the waiters behind it (so it does not cache)."""
        ahead = self._ahead(st, kind, mode, key)
        if kind == Kind.TXN and any(e.state == clsops.EntryState.QUEUED for e in ahead):
            return False
        return any(e.kind != Kind.RECORD for e in ahead)

    def _deadline(
        self, st: clsops.ObjectState, kind: int, mode: int, key: bytes
    ) -> tuple[float, float | None]:
        """How long to sleep, and when (monotonic) the earliest entry ahead of
        us expires on the OSD clock (None: nobody ahead)."""
        owner = self.books.owner
        first = None
        for e in st.header.entries:
            if e.owner == owner and e.kind == kind and e.mode == mode and e.key == key:
                break
            if e.owner != owner:
                first = e.expiry_ms if first is None else min(first, e.expiry_ms)
        if first is None:
            return MIN_SLEEP, None
        left = max(0.0, (first - st.now_ms) / 1000.0) + MIN_SLEEP
        return min(max(left, MIN_SLEEP), MAX_SLEEP), time.monotonic() + left


def _queued_behind(st: clsops.ObjectState, granted: clsops.LockEntry) -> wakeup.Behind:
    """Who waits behind the entry just ``granted``, as the lock table shows
    it: the queued entries with an inbox, in queue order (BEHIND_MAX at
    most), and how many of the first of them wait for the granted record's
    exclusive lock (or the transaction lock) with nothing else queued ahead
    of them (in line)."""
    lined = (granted.kind, granted.mode) in ((Kind.RECORD, Mode.EXCL), (Kind.TXN, Mode.EXCL))
    waiters: list[tuple[int, int]] = []
    in_line = 0
    for e in st.header.entries:
        if e.held or e.ticket == granted.ticket:
            continue
        same = (e.kind, e.mode, e.key) == (granted.kind, granted.mode, granted.key)
        lined = lined and same and bool(e.inbox)
        if e.inbox:
            waiters.append((e.ticket, e.inbox))
            in_line += lined
    return wakeup.Behind(tuple(waiters[:BEHIND_MAX]), min(in_line, BEHIND_MAX))


def _written(entries: Entries, key: bytes) -> clsops.GetResult | None:
    """The record ``key`` as these entries, once applied, leave it: known
    for one store (PUT, INSERT, MODIFY) or delete of it; None otherwise."""
    if len(entries) != 1 or entries[0][1] != key:
        return None
    op, _, data = entries[0]
    if op in (Op.PUT, Op.INSERT, Op.MODIFY):
        return clsops.GetResult(
            clsops.ReadStatus.FOUND, record=codec.encode_record(key, data), unversioned=True
        )
    if op in (Op.DELETE, Op.DISCARD):
        return clsops.GetResult(clsops.ReadStatus.MISSING, unversioned=True)
    return None


__all__ = ["HeldKey", "ShardClient", "Shards"]

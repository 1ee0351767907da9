"""The transaction lock and a transaction's isolation, cached between
transactions, and the isolation kept parked when the lock is handed on.

txnlock design:
- A transaction holds the database's transaction lock (kind TXN in the
  lock table of ``radostdb.w.NAME``: transactions run one at a time) and an
  ISOLATION lock on every shard it touched (tdb's allrecord read lock, on
  what the transaction can see: other handles' writes, record locks and
  lock_all wait there; their reads and read_lock_all do not).
- Isolation is taken lazily, on a shard the first time the transaction
  touches it, in the same round trip as the touch (two-phase locking on
  the touched shards, the transaction lock serialising transactions):
  - a read sends the ISOLATION request (QUEUE) and the read back to back on
    the shard; the OSD orders the read after the request, and the request's
    return value (RETURNVEC) says granted or queued: granted, the read is
    the answer; queued, the handle waits for the grant and reads again;
  - with the first read of a shard in a transaction goes a list of the
    whole shard, if it is small: its records then answer the transaction's
    other reads there with no round trip (snapshot.py; the isolation keeps
    them true until the transaction ends, when they are dropped);
  - a traversal takes every shard's isolation first, in one parallel round
    (in shard order, queuing, from the first busy one: lock_each);
  - reading ahead: after a transaction that read at least half the shards
    (and READ_AHEAD_MIN), the handle's next one sends, at its first read,
    every shard's ISOLATION request and a list of every small shard in one
    parallel round (``read_ahead``; at most READ_AHEAD_MAX shards), as tdb's
    transaction takes its allrecord lock at once: an audit of a small
    database costs one round trip, not one a shard. Requests that queued
    are waited for one by one, and their shards are read when reached;
    taking isolation early is safe because transactions never wait for
    each other's isolation (isolations share) and EXCL lock holders are
    kept out by the transaction lock. A transaction that reads narrowly
    again turns it off for the next;
  - a write is buffered (txn.py) and reaches the shard at commit: the
    commit's `apply` takes the isolation itself (the class grants it in the
    same call when grantable, else -EBUSY and the part queues for it). A
    shard only written, never read, needs isolation only from the commit
    on: a blind write of another handle that landed before is ordered
    before the transaction, which never saw the old value.
  So ``transaction_start`` costs the transaction lock alone (one round trip
  with the journal read, none when cached), and a transaction, its lease
  renewals, commit, cancel and release cost what it touched, never what
  the database has. Record and database EXCL locks exclude transactions at
  the transaction-lock object (USER, intent.py), as tdb's allrecord lock
  excludes chain locks, so a transaction never waits for a lock holder that
  waits for it.
- Epochs: a grant of the transaction lock gives the holder the object's
  next epoch (the OSD's, types.h), read back with the grant, or said by
  the "G" that handed it over: the one the class stamped (its giver read
  it behind the release), or, told early, one above the giver's. That is
  above every earlier holder's and never above the class's stamp
  (max(last + 1, OSD time)), one above which a dead holder's shards are
  fenced (resolver._fence_epochs): ordering and fencing hold alike. Every
  isolation request and every write under the transaction carries it, and
  a shard refuses an epoch older than the newest it has seen (-ECANCELED):
  a holder that slept through its lease, woke and went on touching shards
  cannot write behind the next holder. When a holder died, the client that
  meets its stale entry stamps every shard with a newer epoch first
  (resolver.resolve_stale).
- If the journal holds records at the start, the previous holder died or
  did not clean up: they are decided first (resolver.recover_journal), so
  every transaction starts from a database without undecided commits. A
  holder handed the lock by "G" sends the journal's read with the grant
  and looks at it before its commit (``check_fenced``): its giver left
  only its own records, decided and forgotten after its release (a
  reader that meets one of its shards still pending decides it), and a
  holder that died hands nothing over. What it must learn there is that
  its own owner id was fenced (it slept past its lease once, and another
  client decided its transactions): its stage would be refused, so the
  commit fails with TDB's lock error and the handle takes a new owner id.
- Cached ("sticky"): when a transaction ends and nobody waits, the handle
  keeps the transaction lock and the isolation it took. Its next
  transaction_start costs nothing. Left idle for CACHE_IDLE (1 s), they
  are released: an idle handle holds nothing and costs the cluster no
  renewals. A handle that wants one of them (a transaction, a write, a
  record lock, lock_all, a resharder's step) queues in the OSD and
  announces itself with a "W" notify on the object; the holder hears it
  and, idle, releases at once (on the lock service thread), or, inside a
  transaction, right after it ends: the waiter is granted in the same
  atomic operation as the release. To hear it, the holder watches the
  transaction lock's object and every shard whose isolation it holds
  (each watch made on the service thread once the lock or the isolation
  is ours, off the critical path: a fresh handle's first transaction is
  two round trips, its start and its commit; made late, a watch reads the
  lock table for waiters it missed), and inside a
  transaction a "W" on any shard of the database counts: a commit in
  flight may be taking that shard's isolation before the books say so.
  While ``requested``, the holder does not cache. A holder granted with
  waiters queued behind it is ``requested`` from the start, so only the
  first of a queue of transactions announces itself.
- Handoff, as a record lock's (shardclient.py, one protocol): a waiter's
  request names its process's inbox; the release hands the lock on by a
  "G" there (``ShardClient.txn_released``), sent with the release itself
  (early) when the "G" or the table that granted us listed the next
  waiter in line, else after the lock table read right behind the
  release. The "G" carries the new holder's epoch and the waiters behind
  it, so the new holder reads neither the table nor, before its
  transaction's first touch, the journal (below). A holder that will hand
  the lock on and knows of nobody behind it reads the table beside its
  commit (``look_behind``; two transactors in turn: the giver queues
  again only after it let go), so its release tells the next early. A
  holder handed the lock by "G" never keeps it cached: its list names
  those queued before its giver looked, and one that queued since stays
  silent behind another waiter (shardclient._announce_needed), counting
  on the holder to know.
- Parked isolation: a holder that hands the transaction lock on (somebody
  waits for it) keeps the isolation of the shards it touched (``_hand_on``,
  state PARKED), releasing only the transaction lock, its COMMIT entries
  and the isolation of the shards somebody announced a wait for
  (``wanted``); its pending transactions are settled in the same round.
  Isolations share, so the next transaction is not kept out. The "G"
  carries the giver's snapshots (snapshot.py), its writes merged in, and
  which committed transactions may still be pending where (handover.py).
  The new holder takes a snapshot only of a shard whose isolation it
  held parked since before its request for the transaction lock, and
  still holds (``_take_handover``); then that snapshot answers its reads
  with no round trip. Why it is true: the shard had no write but the
  transactions' while any isolation covered it; the giver held its
  isolation from its snapshot's read (or, by the same rule, from its own
  grant) until after its release of the transaction lock, and ours was
  granted before our request reached that lock, so before that release:
  the two overlap, and the transactions in between are the giver's.
  Several transactors in turn thus hold every shard they touch and read
  nothing after a grant; the auditor's read of every shard is free. A
  "G" sent late, after the release's reply, by a giver that told another
  waiter early carries nothing: the one told early may have run its
  transaction and handed the lock on before the release landed, so the
  giver's snapshots can be older than the grantee's state
  (ShardClient.txn_released). Before the release round, the giver's
  committed transactions still pending are marked COMPLETE
  (``_complete_first``; commit.py says why).
  A parked isolation is given up as soon as a "W" for its shard is heard
  (``_drop_parked``, also while we wait for the transaction lock: a
  waiter for the shard may hold the record locks, and with them USER,
  that our request waits for), after CACHE_IDLE unused, at close, and
  whole when anything failed. Our next transaction waits for a drop in
  flight before it touches the shard again (the release drops every
  isolation of ours there). A process killed while parked leaves stale
  entries, decided as a dead holder's (one transaction lease).
  RADOSTDB_TXN_PARK=0 releases everything instead.
- The release settles the shards the holder's lazily settled transactions
  left pending (commit.Settlement), in the same call as each isolation
  lock, then forgets the journal records.
- Leases: both kinds use the transaction lease (RADOSTDB_TXN_LEASE, default
  5 s, never more than the lock lease), renewed by the lock service while
  the handle lives. A holder that dies, cached or in a transaction, blocks
  others for one transaction lease; its expired entries turn "stale" and
  the first client that meets them fences it and decides its transactions.
- A renewal that finds the locks gone (the process was stopped, or cut off
  from the cluster, past its lease) drops the cache; the next
  transaction_start takes them again. A transaction caught in that state
  fails at commit with TDB's lock error: its isolation was lost, so its
  reads may be stale. If meanwhile another client fenced our owner id (the
  journal lists it: it decided our transactions), the handle takes a new
  owner id before taking the locks again.
"""

from __future__ import annotations

import enum
import os
import threading
import time
import weakref
from collections.abc import Callable

from . import clsops, commit, handover, resolver, service, snapshot, wakeup
from .errors import ERR_LOCK, ERR_NOLOCK, RadostdbError, TdbError
from .kinds import Kind, Mode
from .shardclient import Shards

CACHE_IDLE = 1.0  # seconds a cached lock is kept without a transaction
# hand the transaction lock on with the isolation kept (RADOSTDB_TXN_PARK=0: release both)
PARK = os.environ.get("RADOSTDB_TXN_PARK", "1") != "0"
# a transaction that read at least half the shards, and READ_AHEAD_MIN of
# them, of a database of at most READ_AHEAD_MAX: the handle's next one
# takes every shard's isolation at its first read (read_ahead)
READ_AHEAD_MIN = 3
READ_AHEAD_MAX = 64


class _Fenced(RadostdbError):
    """Our owner id is fenced in the journal: it can commit nothing more."""


class State(enum.Enum):
    NONE = "none"
    ACQUIRING = "acquiring"
    ACTIVE = "active"
    CACHED = "cached"
    PARKED = "parked"  # the transaction lock handed on, the shards' isolation kept
    RELEASING = "releasing"


class TxnLock:
    """One handle's transaction lock and the isolation it took."""

    def __init__(
        self, shards: Shards, committer: commit.Committer, shard_count: Callable[[], int]
    ) -> None:
        self.shards = shards
        self.shard_count = shard_count  # of the current layout (Router.shard_count)
        self.db = shards.db
        self.locks = shards.books
        self.committer = committer
        self.state = State.NONE
        self.requested = False
        self.idle_since = 0.0
        self.idle_check = False  # a _release_if_idle is scheduled
        self.epoch = 0  # of our grant of the transaction lock (0: none)
        self.isolated: set[int] = set()  # shard indexes whose isolation we hold
        self.snapshots: dict[int, snapshot.Snapshot] = {}  # small shards read whole (snapshot.py)
        self.reads: set[int] = set()  # shards the transaction read
        self.wide = False  # the last transaction read widely: this one reads ahead
        self.ahead = False  # this transaction has read ahead
        # shard index -> a committed transaction of our giver's that may be
        # pending there (read through it, settle it with our write: handover.py)
        self.inherited: dict[int, int] = {}
        self.wanted: set[int] = set()  # shards somebody waits for ("W"), heard in a transaction
        self.dropping: set[int] = set()  # parked isolations being given up ("W" heard)
        # the journal's read, sent when a "G" handed us the lock (check_fenced)
        self.journal_call: clsops.Call | None = None
        self.fenced = False  # check_fenced found our owner id fenced: a new one at release
        # the lock table's read sent before the commit (look_behind)
        self.look_call: clsops.Call | None = None
        self.cond = threading.Condition()
        self.locks.wait_listeners.append(weakref.WeakMethod(self._on_wait))
        shards.txn = self

    @property
    def txn_key(self) -> tuple[str, int, int, bytes]:
        return (self.db.wait_obj, Kind.TXN, Mode.EXCL, b"")

    def _iso_key(self, index: int) -> tuple[str, int, int, bytes]:
        return (self.db.shard(index), Kind.ISOLATION, Mode.SHARED, b"")

    # -- what we hold -----------------------------------------------------------------
    def _intact(self) -> bool:
        held = self.locks.held
        return self.txn_key in held and all(self._iso_key(i) in held for i in list(self.isolated))

    def holds(self) -> bool:
        """Do we hold the transaction lock now (active or cached)?"""
        return self.state in (State.ACTIVE, State.CACHED)

    def holds_on(self, index: int | None) -> bool:
        """Do we hold shard ``index``'s isolation (a write there asserts it)?"""
        return index is not None and index in self.isolated and self.holds()

    def in_transaction(self) -> bool:
        """Is a transaction running (or starting) on the handle?"""
        return self.state in (State.ACTIVE, State.ACQUIRING)

    def active(self) -> bool:
        """Is a transaction running on the handle (its reads take isolation)?"""
        return self.state == State.ACTIVE

    def isolation_args(self) -> tuple[int, int]:
        """(epoch, lease in ms) a transaction's write carries: the class
        takes the shard's isolation with them if we have none there."""
        return self.epoch, self.locks.txn_lease_ms

    def note_isolated(self, index: int) -> None:
        """A write under our epoch landed on shard ``index``: the class gave
        us its isolation if we had none."""
        if index in self.isolated:
            return
        self.isolated.add(index)
        self.locks.note(self._iso_key(index), self.locks.txn_lease_ms)
        # a holder must hear the "W" of those who wait for the shard (a
        # resharder's step, another handle's write): a shard only written
        # got its isolation from the commit, with no watch of ours on it yet
        wakeup.watch_later(self.shards.io(), self.db.shard(index))

    def forget_after_fork(self) -> None:
        """In a forked child: the locks are the parent's (kept and released
        by it); this handle holds nothing."""
        self.cond = threading.Condition()  # a parent thread may have held it at fork time
        self.state = State.NONE
        self.requested = False
        self.idle_check = False
        self.isolated = set()
        self.snapshots = {}
        self.reads, self.wide, self.ahead = set(), False, False
        self.inherited, self.wanted, self.dropping = {}, set(), set()
        self.epoch = 0
        self.journal_call = None  # the parent's call: never waited for here
        self.look_call = None
        self.fenced = False

    # -- start and end -------------------------------------------------------------------
    def start(self, nonblock: bool) -> None:
        """Hold the transaction lock for a transaction (0 round trips when
        cached)."""
        if self.locks.holds_user_locks():
            # as tdb: "cannot start a transaction with locks held"
            raise TdbError(ERR_LOCK)
        with self.cond:
            while self.state == State.RELEASING:
                self.cond.wait()
            self.snapshots = {}
            self.reads, self.ahead = set(), False
            if self.state == State.CACHED:
                if self._intact() and not self.requested:
                    self.state = State.ACTIVE
                    return
                self.state = State.RELEASING
                cached = True
            else:
                cached = False
        if cached:  # lost, or somebody waits: give it up and queue again
            self._release()
        for attempt in range(2):
            with self.cond:
                self.requested = False
                self.state = State.ACQUIRING
            try:
                self._acquire(nonblock)
                break
            except _Fenced:
                # our owner id was fenced (our lease ran out while we were cut
                # off, and another client decided our transactions): give up
                # what it holds and come back under a new one
                with self.cond:
                    self.state = State.RELEASING
                self._release()
                self.locks.new_owner()
                if attempt:
                    raise TdbError(ERR_LOCK) from None
            except BaseException:
                with self.cond:
                    self.state = State.RELEASING
                self._release()
                raise
        with self.cond:
            # a parked isolation given up meanwhile ("W") is gone before we
            # touch its shard again: its release drops every isolation of ours there
            while self.dropping:
                self.cond.wait()
            self.state = State.ACTIVE

    def _acquire(self, nonblock: bool) -> None:
        """The transaction lock, its epoch and the journal: one round trip
        when free (the lock request, the state and the journal sent at once)."""
        io = self.shards.io()
        self.shards.epochs.pop(self.db.wait_obj, None)
        self.shards.handovers.pop(self.db.wait_obj, None)
        # the process's inbox, if it has one, kept while we may wait (0: none
        # yet); the lock object is watched once we wait (wait_granted)
        inboxes = [0 if nonblock else wakeup.take_inbox(io)]
        try:
            self._acquire_named(nonblock, inboxes)
        finally:
            if inboxes[-1]:
                wakeup.drop_inbox(io)

    def _acquire_named(self, nonblock: bool, inboxes: list[int]) -> None:
        """``_acquire``, the request naming ``inboxes[-1]`` (0: the process
        has none yet: made, appended and named by a second call, if the
        request queues: ShardClient.name_inbox)."""
        io = self.shards.io()
        locks = self.locks
        waiter = self.shards.client(self.db.wait_obj)
        owner = locks.owner
        lease_ms = locks.txn_lease_ms
        wait_obj = self.db.wait_obj
        flags = 0 if nonblock else clsops.LOCK_QUEUE

        def request() -> bytes:
            return clsops.lock_request(
                owner, lease_ms, Kind.TXN, Mode.EXCL, b"", flags, 0, 0, inboxes[-1]
            )

        watched = wakeup.watching(io, wait_obj)  # nothing for us can pass the table read
        sent = time.monotonic()
        tcall = clsops.aio_lock_status(io, wait_obj, request())
        scall = clsops.aio_state(io, wait_obj)
        jcall = clsops.aio_journal(io, self.db.journal)
        res = tcall.result()
        err, status = (res, 0) if isinstance(res, Exception) else (None, res)
        st = scall.wait() if err is None else (scall.error() and None)
        journal: clsops.Journal | None = jcall.wait()
        if err is not None and isinstance(err, clsops.Busy) and nonblock:
            req = clsops.lock_request(owner, lease_ms, Kind.TXN, Mode.EXCL)
            if not waiter.ask_cached([wait_obj], lambda: clsops.lock(io, wait_obj, req)):
                raise TdbError(ERR_NOLOCK)
            err = None
            st = clsops.state(io, wait_obj)
            journal = clsops.journal(io, self.db.journal)
        if err is not None:
            if not isinstance(err, clsops.Unclean):
                raise err
            self.shards.resolver.unclean(wait_obj)
            st, journal = self._wait(nonblock, queued=False)
        elif st is not None and waiter.granted(st, Kind.TXN, Mode.EXCL, b""):
            locks.note(self.txn_key, lease_ms)
            self._others_wait(st)
        else:  # queued: wait; the journal is read again with the state showing the grant
            locks.track(wait_obj, lease_ms)
            ticket = clsops.ticket_of(status)
            first_look = st if watched and inboxes[-1] else None
            if ticket and not inboxes[-1] and status & clsops.LOCKED_QUEUED:
                status, sent = waiter.name_inbox(io, request, inboxes)
                ticket = clsops.ticket_of(status)
            ask = bool(status & clsops.LOCKED_ASK)
            # the table read with a request that named our inbox, while we
            # watched the object, is the wait's first look
            st, journal = self._wait(nonblock, True, ticket, sent, ask, first_look)
        if st is not None:
            self.epoch = st.header.epoch
        wakeup.watch_later(io, wait_obj)  # if granted at once: off the critical path
        if journal is None:
            return  # handed over by "G": the journal's read is on its way (check_fenced)
        self._check_journal(journal)

    def _check_journal(self, journal: clsops.Journal) -> None:
        """Our owner id fenced: raise _Fenced; records left by a holder that
        died: decide them."""
        if self.locks.owner in journal.fenced:
            raise _Fenced
        if journal.records or journal.legacy:
            resolver.recover_journal(self.db, journal, self.locks.owner)

    def _wait(
        self,
        nonblock: bool,
        queued: bool,
        ticket: int = 0,
        sent: float = 0.0,
        ask: bool = False,
        seen: clsops.ObjectState | None = None,
    ) -> tuple[clsops.ObjectState | None, clsops.Journal | None]:
        """Wait in the queue for the transaction lock (``queued``: our entry
        is there already, with ``ticket``, sent at ``sent``; ``seen``: the
        table read right behind it); the state showing the grant, and the
        journal. Handed the lock by a "G" that said its epoch: (None,
        None), the epoch set and the journal's read sent (``check_fenced``)."""
        if nonblock and not queued:
            self.shards.client(self.db.wait_obj).lock(
                Kind.TXN, Mode.EXCL, nonblock=True, lease_ms=self.locks.txn_lease_ms
            )
            io = self.shards.io()
            return clsops.state(io, self.db.wait_obj), clsops.journal(io, self.db.journal)
        io = self.shards.io()
        wait_obj = self.db.wait_obj
        st, journal = self.shards.client(wait_obj).wait_granted(
            Kind.TXN,
            Mode.EXCL,
            b"",
            self.locks.txn_lease_ms,
            queued=queued,
            companion=lambda: clsops.aio_journal(io, self.db.journal),
            ticket=ticket,
            sent=sent,
            ask=ask,
            seen=seen,
        )
        self.locks.note(self.txn_key, self.locks.txn_lease_ms)
        if st is not None and journal is None:  # granted as first seen (not expected)
            journal = clsops.journal(io, self.db.journal)
        if st is None:  # a "G": its epoch, and who waits behind us (kept by the shard client)
            epoch = self.shards.epochs.pop(wait_obj, 0)
            given = self.shards.handovers.pop(wait_obj, b"")
            if not epoch:  # an older giver: look
                st, journal = clsops.state(io, wait_obj), clsops.journal(io, self.db.journal)
                self._others_wait(st)
                return st, journal
            self.epoch = epoch
            self._take_handover(given)
            self.journal_call = clsops.aio_journal(io, self.db.journal)
            # the waiters the "G" listed are those its giver knew of, from an
            # older look at the table: one that queued since stays silent
            # when another waits ahead of it (shardclient._announce_needed),
            # counting on us to know. So we do not keep the lock cached.
            with self.cond:
                self.requested = True
            return None, None
        self._others_wait(st)
        return st, journal

    def _others_wait(self, st: clsops.ObjectState | None) -> None:
        """Others queued for the transaction lock behind us: do not cache it,
        and keep who they are for our release."""
        if st is None:
            return
        queued = self.shards.client(self.db.wait_obj).note_queue(st, Kind.TXN, Mode.EXCL, b"")
        if queued or any(e.owner != self.locks.owner and not e.held for e in st.header.entries):
            with self.cond:
                self.requested = True

    def _take_handover(self, raw: bytes) -> None:
        """What the "G" that handed us the lock carried (handover.py): the
        giver's committed transactions that may be pending, read through
        and settled by us, and its snapshots of the shards we held parked
        since before we queued, which answer our reads there (the proof is
        in the module comment)."""
        given = handover.Handover.decode(raw) if raw else None
        if given is None:
            return
        held = self.locks.held
        with self.cond:
            self.inherited = dict(given.pending)
            self.snapshots = {
                i: snap
                for i, snap in given.snapshots.items()
                if i in self.isolated and self._iso_key(i) in held
            }

    def check_fenced(self) -> None:
        """Before the transaction's commit: a holder handed the lock by "G"
        sent the journal's read with the grant and looks at it now (the
        giver left none but its own records, which it forgets; a holder
        that died hands nothing over). Our owner id fenced meanwhile (we slept past
        our lease once, and another client decided our transactions): the
        commit cannot stage, so the transaction fails with TDB's lock error
        and the handle comes back under a new owner id."""
        call, self.journal_call = self.journal_call, None
        if call is None:
            return
        journal = call.wait()
        if self.locks.owner in journal.fenced:
            with self.cond:
                self.requested = True  # released at its end, not cached
                self.fenced = True
            raise TdbError(
                ERR_LOCK, "Locking error: this handle's transactions were decided by another client"
            )

    def look_behind(self) -> None:
        """Before the commit: a holder that hands the lock on at its end
        (``requested``) and knows of nobody waiting behind it (the "G" that
        handed it the lock listed none: with two transactors, the giver
        queues again only after it let go) sends the lock table's read now,
        beside the commit. By the release it is back: the next in line is
        told with the release itself (early), not after a read behind it."""
        wait_obj = self.db.wait_obj
        if (
            not self.requested
            or self.look_call is not None
            or self.shards.behind.get((wait_obj, b""), wakeup.Behind()).waiters
        ):
            return
        self.look_call = clsops.aio_state(self.shards.io(), wait_obj)

    def _looked_behind(self) -> None:
        """Keep who waits behind us, as the table read before the commit
        showed it (look_behind), for the release to hand the lock on."""
        call, self.look_call = self.look_call, None
        if call is None or call.error() is not None:
            return
        try:
            st = call.wait()
        except RadostdbError:  # not understood: the release reads the table behind it
            return
        if st is not None:
            self.shards.client(self.db.wait_obj).note_queue(st, Kind.TXN, Mode.EXCL, b"")

    # -- isolation, as the transaction touches shards ------------------------------------
    def recall(self, index: int, key: bytes) -> snapshot.Snapshot | None:
        """The snapshot of shard ``index`` read by this transaction, if it
        answers for ``key`` (snapshot.py)."""
        self.reads.add(index)
        if self.wide and not self.ahead:
            self.read_ahead()
        snap = self.snapshots.get(index)
        return snap if snap is not None and snap.knows(key) else None

    def read(self, index: int, key: bytes) -> clsops.GetResult:
        """A read of ``key`` on shard ``index`` inside the transaction: with
        the shard's isolation, taken in the same round trip if we have none,
        and the shard whole if it is small (see the module comment). Raises
        clsops.Stale as a read does."""
        client = self.shards[index]
        if index in self.snapshots:
            return client.get(key)  # the snapshot does not answer for this key
        if index in self.isolated:
            res, snap = client.get_whole(key)
        else:
            res, snap = client.isolate_and_get(key, self.epoch, self.locks.txn_lease_ms)
            self.note_isolated(index)
        if snap is not None:
            self.snapshots[index] = snap
        return res

    def read_ahead(self) -> None:
        """The first read of a transaction after one that read widely:
        every shard's isolation, and every small shard whole, in one
        parallel round (see the module comment)."""
        self.ahead = True
        count = self.shard_count()
        if count > READ_AHEAD_MAX:
            return
        epoch, lease_ms = self.isolation_args()
        sent = [
            (i, self.shards[i].send_isolation(epoch, lease_ms, held=i in self.isolated))
            for i in range(count)
            if i not in self.snapshots and not (i in self.isolated and self.shards[i].big)
        ]
        failed: BaseException | None = None
        for i, calls in sent:  # every reply taken, so that what was granted is ours
            try:
                snap = self.shards[i].isolated(calls, epoch, lease_ms)
            except Exception as exc:
                failed = failed or exc
                continue
            self.note_isolated(i)
            if snap is not None:
                self.snapshots[i] = snap
        if failed is not None:
            raise failed

    def isolate(self, indexes: list[int]) -> None:
        """Hold the isolation of these shards (a traversal inside the
        transaction): the missing ones in one parallel round."""
        todo = [i for i in indexes if i not in self.isolated]
        if not todo:
            return
        self.shards.lock_each(
            [self.db.shard(i) for i in todo],
            Kind.ISOLATION,
            Mode.SHARED,
            lease_ms=self.locks.txn_lease_ms,
            epoch=self.epoch,
        )
        self.isolated.update(todo)

    def end(self, ok: bool = True) -> None:
        """The transaction ended: keep the locks, unless somebody waits (or
        the transaction failed); when somebody waits, hand the transaction
        lock on and keep the isolation parked (see the module comment),
        else release them now."""
        snaps, self.snapshots = self.snapshots, {}
        count = self.shard_count()
        self.wide = len(self.reads) >= READ_AHEAD_MIN and 2 * len(self.reads) >= count
        self.reads = set()
        with self.cond:
            if self.state != State.ACTIVE:
                return
            intact = ok and self._intact()
            if intact and not self.requested:
                self.state = State.CACHED
                self._idle_from_now()
                return
            self.state = State.RELEASING
        if intact and not self.fenced and PARK:
            self._hand_on(snaps)
        else:
            self._release()

    def _idle_from_now(self) -> None:
        """(under cond) Idle from now: give what we keep up after CACHE_IDLE."""
        self.idle_since = time.monotonic()
        if not self.idle_check:  # one timer per idle period, not per transaction
            self.idle_check = True
            service.call_at(self.idle_since + CACHE_IDLE, self._release_if_idle)

    def _release_if_idle(self) -> None:
        """(service thread) Give the cached locks up after CACHE_IDLE unused."""
        with self.cond:
            self.idle_check = False
            if self.state not in (State.CACHED, State.ACTIVE, State.PARKED, State.ACQUIRING):
                return  # released meanwhile: the next end() schedules a check
            if (
                self.state in (State.ACTIVE, State.ACQUIRING)
                or time.monotonic() - self.idle_since < CACHE_IDLE - 0.01
            ):
                # used again meanwhile: look again when that use has been idle long enough
                self.idle_check = True
                service.call_at(
                    max(self.idle_since, time.monotonic()) + CACHE_IDLE, self._release_if_idle
                )
                return
            txn = self.state == State.CACHED
            self.state = State.RELEASING
        self._release(txn)

    def close(self) -> None:
        """Release whatever we hold (handle close)."""
        with self.cond:
            while self.state == State.RELEASING:
                self.cond.wait()
            if self.state == State.NONE:
                return
            txn = self.state != State.PARKED
            self.state = State.RELEASING
        self._release(txn)

    # -- giving the locks up --------------------------------------------------------------
    def _on_wait(self, obj: str) -> None:
        """Somebody waits on obj (notify callback: must not block). In a
        transaction, any shard counts: a commit in flight may be taking that
        shard's isolation right now, before ``isolated`` says so."""
        ours = obj == self.db.wait_obj
        index = None if ours else self.db.index(obj)
        if not ours and index is None:
            return
        with self.cond:
            if self.state in (State.PARKED, State.ACQUIRING) and index in self.isolated:
                # parked, not in use: given up now (a waiter for the shard
                # may hold the record locks the transaction lock waits for)
                self.isolated.discard(index)
                self.dropping.add(index)
                service.submit(lambda: self._drop_parked(index))
            if self.state in (State.ACQUIRING, State.ACTIVE):
                self.requested = True
                if index is not None:
                    self.wanted.add(index)
            elif self.state == State.RELEASING and index is not None:
                self.wanted.add(index)  # a hand-on in flight gives it up after (_hand_on)
            elif self.state == State.CACHED and (ours or index in self.isolated):
                self.requested = True
                self.state = State.RELEASING
                service.submit(self._release)

    def _forget_calls(self) -> None:
        """The journal's and the table's reads sent for this transaction
        and not looked at (nothing committed, or an error): waited for, dropped."""
        for call in (self.journal_call, self.look_call):
            if call is not None:
                call.error()
        self.journal_call = self.look_call = None

    def _drop_parked(self, index: int) -> None:
        """(service thread) Give up the parked isolation of shard ``index``."""
        try:
            settle = self.committer.settlement.accept(index)
            items = [(self.db.shard(index), settle, Kind.ISOLATION)]
            if self.shards.release_objects(items) == [None] and settle:
                self.committer.settlement.settled(index)
        finally:
            with self.cond:
                self.dropping.discard(index)
                self.cond.notify_all()

    def _hand_on(self, snaps: dict[int, snapshot.Snapshot]) -> None:
        """Hand the transaction lock on to whoever waits, keeping the
        isolation we hold parked (state RELEASING; see the module comment):
        in one parallel round the transaction lock's release, whose "G"
        carries our snapshots and what may still be pending where
        (handover.py), our pending transactions settled, and the isolation
        of the shards somebody waits for released."""
        ok, keep = False, set()
        try:
            pending = self.committer.release_settles()
            settles = self._complete_first(pending)
            with self.cond:
                wanted = self.wanted & self.isolated
                keep = self.isolated - wanted
            items = [(self.db.shard(i), settles.get(i, 0), Kind.ISOLATION) for i in sorted(wanted)]
            # a release of our COMMIT entries (if any) settles, and keeps the isolation
            items += [
                (self.db.shard(i), settles.get(i, 0), Kind.COMMIT)
                for i in sorted((set(settles) - wanted) | keep)
                if i in settles or self.locks.holds_kind(self.db.shard(i), Kind.COMMIT)
            ]
            items.append((self.db.wait_obj, 0, Kind.TXN))
            given = handover.Handover(
                {i: t for i, t in settles.items() if i in keep},
                {i: snap for i, snap in snaps.items() if i in keep},
            )
            self._looked_behind()
            errors = self.shards.release_objects(items, self.epoch, given.encode())
            ok = all(e is None for e in errors)
            self.committer.after_release(ok and settles == pending)
        finally:
            self._forget_calls()
            with self.cond:
                self.isolated = keep if ok else set()
                late = self.wanted & self.isolated  # a "W" heard during the round
                self.isolated -= late
                self.dropping |= late
                for index in late:
                    service.submit(lambda i=index: self._drop_parked(i))
                self.snapshots, self.inherited, self.wanted = {}, {}, set()
                self.epoch = 0
                self.requested = False
                self.state = State.PARKED if self.isolated else State.NONE
                if self.isolated:
                    self._idle_from_now()
                self.cond.notify_all()
        if not ok and keep:  # something failed: give the rest up too
            self.shards.release_objects([(self.db.shard(i), 0, Kind.ISOLATION) for i in keep])

    def _complete_first(self, settles: dict[int, int]) -> dict[int, int]:
        """Before our release round: our committed transactions still
        pending somewhere marked COMPLETE in the journal (one round trip,
        only when there are some). Returns the settles the round may send
        (none if the mark failed: then every participant keeps showing the
        transaction, and whoever decides it finds it committed). Why: once
        a shard of ours is settled and the lock is another's, its
        multi-shard transaction can settle on that shard too, which then
        no longer shows ours; were we to die with another shard still
        pending ours and its record only STAGED, the one who decides it
        would find it missing there and abort it, half installed (our own
        lazy settles, before the release, do the same). COMPLETE, it is
        decided committed (resolver.decide)."""
        txids = sorted(set(settles.values()))
        if not txids:
            return settles
        try:
            clsops.txn_mark(self.shards.io(), self.db.journal, complete=txids)
        except RadostdbError:
            return {}
        return settles

    def _release(self, txn: bool = True) -> None:
        """Release the transaction lock (``txn``: we hold or wait for it)
        and the isolation we took, settling what our lazily settled
        transactions left pending (state RELEASING)."""
        try:
            pending = self.committer.release_settles()
            settles = self._complete_first(pending)
            touched = sorted(self.isolated | set(settles))
            items = [(self.db.shard(i), settles.get(i, 0), Kind.ISOLATION) for i in touched]
            if txn:
                items.append((self.db.wait_obj, 0, Kind.TXN))
            items += [
                (self.db.shard(i), 0, Kind.COMMIT)
                for i in touched
                if self.locks.holds_kind(self.db.shard(i), Kind.COMMIT)
            ]
            self._looked_behind()
            errors = self.shards.release_objects(items, txn_epoch=self.epoch)
            self.committer.after_release(all(e is None for e in errors) and settles == pending)
        finally:
            self._forget_calls()
            if self.fenced:
                self.fenced = False
                self.locks.new_owner()
            with self.cond:
                self.isolated = set()
                self.snapshots, self.inherited, self.wanted = {}, {}, set()
                self.epoch = 0
                self.state = State.NONE
                self.requested = False
                self.cond.notify_all()

    def accept(self, index: int) -> int:
        """A committed transaction, ours or our giver's, that may still be
        pending on the shard."""
        if not self.holds():
            return 0
        return self.committer.settlement.accept(index) or self.inherited.get(index, 0)

    def settled(self, index: int) -> None:
        """Our write to the shard settled what was pending there."""
        self.committer.settlement.settled(index)
        self.inherited.pop(index, None)

    def committed(self, by_shard: dict[int, commit.Entries]) -> None:
        """Our transaction committed these entries, by shard: what was
        pending there is settled, and our snapshots of those shards now
        hold what the commit left (handed on at the end: handover.py)."""
        for index, entries in by_shard.items():
            self.inherited.pop(index, None)
            snap = self.snapshots.get(index)
            if snap is None:
                continue
            merged = handover.merge(snap, entries)
            if merged is None:
                del self.snapshots[index]
            else:
                self.snapshots[index] = merged

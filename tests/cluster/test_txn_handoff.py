"""The transaction lock handed to the next transaction by a "G" to its
inbox, as record locks are (issue 24: one protocol): the grant carries
the epoch the new holder takes, the next in line is told with the release
itself, a holder handed the lock does not keep it cached, and one whose
owner id was fenced meanwhile finds out before it commits."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

import radostdb
from radostdb import clsops, txnlock, wakeup
from radostdb.errors import ERR_LOCK
from radostdb.kinds import Kind, Mode
from radostdb.txnlock import State

CREATE = os.O_CREAT | os.O_RDWR


def _txn_entries(db: radostdb.Tdb) -> list[clsops.LockEntry]:
    storage = db._storage_or_closed()
    st = clsops.state(storage.shards.io(), storage.db.wait_obj)
    return [e for e in (st.header.entries if st is not None else ()) if e.kind == Kind.TXN]


def _queued(db: radostdb.Tdb, waiter: radostdb.Tdb) -> None:
    """Wait until ``waiter``'s handle waits in the transaction lock's queue."""
    owner = waiter._storage_or_closed().locks.owner
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(e.owner == owner and not e.held for e in _txn_entries(db)):
            return
        time.sleep(0.01)
    raise AssertionError("the waiter never queued")


@pytest.fixture
def asleep(monkeypatch: pytest.MonkeyPatch) -> dict[bytes, threading.Event]:
    """owner id -> set once a wait of that owner sleeps for its "G" (its
    looks at the table and its announcement done): a release after that
    reaches it by "G", not by its own look."""
    events: dict[bytes, threading.Event] = {}
    real = wakeup.sleep

    def sleep(obj: str, since: Any, timeout: float, owner: Any = None, *rest: Any) -> bool:
        if owner is not None and rest and rest[0]:  # a ticket: a "G" can end this sleep
            events.setdefault(owner, threading.Event()).set()
        return real(obj, since, timeout, owner, *rest)

    monkeypatch.setattr(wakeup, "sleep", sleep)
    return events


def _announced_to(holder: radostdb.Tdb) -> None:
    """Wait until ``holder``'s transaction heard a waiter announce itself
    (so it gives the lock on at its end rather than keep it cached)."""
    txn = holder._storage_or_closed().txnlock
    deadline = time.monotonic() + 30
    while not txn.requested and time.monotonic() < deadline:
        time.sleep(0.01)
    assert txn.requested, "the holder never heard the waiter"


def _sleeping(asleep: dict[bytes, threading.Event], waiter: radostdb.Tdb) -> None:
    owner = waiter._storage_or_closed().locks.owner
    deadline = time.monotonic() + 30
    while owner not in asleep and time.monotonic() < deadline:
        time.sleep(0.01)
    assert asleep[owner].wait(30), "the waiter never slept for its grant"


def _a_transacting(db_name: str, n: int) -> list[radostdb.Tdb]:
    """n handles; the first has b"n" = 0 stored and a transaction running
    that adds 1 to it (not yet committed)."""
    handles = [radostdb.Tdb(db_name, 0, 0, CREATE) for _ in range(n)]
    a = handles[0]
    a.store(b"n", b"0")
    a.transaction_start()
    a.store(b"n", b"%d" % (int(a[b"n"]) + 1))
    return handles


def _transfer_in_thread(
    db: radostdb.Tdb, may_commit: threading.Event | None = None
) -> tuple[threading.Thread, dict[str, Any]]:
    """A transaction that adds 1 to b"n", in a thread: its epoch, the state
    of its transaction lock after it, and its error."""
    out: dict[str, Any] = {}
    storage = db._storage_or_closed()

    def run() -> None:
        try:
            db.transaction_start()
            out["epoch"] = storage.txnlock.epoch
            db.store(b"n", b"%d" % (int(db[b"n"]) + 1))
            if may_commit is not None:
                may_commit.wait(30)
            db.transaction_commit()
            out["after"] = storage.txnlock.state
        except BaseException as exc:  # reported by the test
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


@pytest.mark.parametrize("end", ["commit", "cancel"])
def test_the_transaction_lock_goes_down_the_queue_by_grant(
    db_name: str, end: str, asleep: dict[bytes, threading.Event]
) -> None:
    """a is in a transaction; b, x and c queue for theirs, in that order.
    a, which commits, read the lock table beside its commit (look_behind)
    and tells b with its release itself (early); a that cancels finds b
    granted by the table read behind its release. Either way b's "G" lists
    x and c behind it, in line; b's release tells x early, and x's tells c.
    Each grantee takes the epoch the "G" says: one above its giver's when
    told early (never above the class's stamp, so a shard fenced for it
    still takes it), else the one the class stamped. Nobody is woken by a
    "C", nobody keeps the transaction lock cached after a transaction it
    was handed (each keeps its isolation parked: txnlock.py), and the
    counter is exact."""
    a, b, x, c = (radostdb.Tdb(db_name, 0, 0, CREATE) for _ in range(4))
    a.store(b"n", b"0")
    a.transaction_start()
    a.store(b"n", b"%d" % (int(a[b"n"]) + 1))
    done = 1 if end == "commit" else 0
    ea = a._storage_or_closed().txnlock.epoch
    before = wakeup.stats()
    threads = []
    for h in (b, x, c):
        threads.append(_transfer_in_thread(h))
        _queued(a, h)
    _announced_to(a)
    for h in (b, x, c):
        _sleeping(asleep, h)  # their looks done: only a "G" ends their waits
    if end == "commit":
        a.transaction_commit()
    else:
        a.transaction_cancel()
    for t, _ in threads:
        t.join(30)
    outs = [out for _, out in threads]
    assert all("error" not in out for out in outs), outs
    after = wakeup.stats()
    assert after["granted"] - before["granted"] == 3
    assert after["early"] - before["early"] == 2 + done
    assert after["changed"] == before["changed"]
    eb, ex, ec = (out["epoch"] for out in outs)
    assert eb == ea + 1 if done else eb > ea
    assert (ex, ec) == (eb + 1, eb + 2)
    assert [out["after"] for out in outs] == [State.PARKED] * 3
    assert _txn_entries(a) == []
    assert a[b"n"] == b"%d" % (3 + done)
    for h in (a, b, x, c):
        h.close()


def test_a_holder_handed_the_lock_releases_it_for_a_waiter_it_was_not_told_of(
    db_name: str,
) -> None:
    """a is in a transaction; b queues, then c. a's release grants b, whose
    "G" lists c in line behind it. a queues for another transaction right
    away, after c: silent, as c waits ahead of it (the holder saw c queued,
    and c's holder will see a). b's release tells c early, with the list b
    was given, which cannot name a. So c, handed the lock by "G", must not
    keep it cached after its transaction: a gets it as c's ends, not when a
    waiter nobody woke announces itself again (REANNOUNCE)."""
    a, b, c = _a_transacting(db_name, 3)
    b_may_commit = threading.Event()
    tb, ob = _transfer_in_thread(b, b_may_commit)
    _queued(a, b)
    tc, oc = _transfer_in_thread(c)
    _queued(a, c)
    _announced_to(a)
    a.transaction_commit()
    ta, oa = _transfer_in_thread(a)
    _queued(b, a)
    b_may_commit.set()
    for t in (tb, tc, ta):
        t.join(30)
    assert all("error" not in o for o in (ob, oc, oa)), (ob, oc, oa)
    assert oc["epoch"] == ob["epoch"] + 1  # told early by b
    assert oc["after"] == State.PARKED  # handed on at its end, not cached (txnlock.py)
    assert oa["epoch"] > oc["epoch"]
    assert a[b"n"] == b"4"
    for h in (a, b, c):
        h.close()


def test_two_transactors_in_turn_hand_the_lock_on_early(
    db_name: str, asleep: dict[bytes, threading.Event]
) -> None:
    """a is in a transaction; b queues, and a's release hands it the lock
    by a "G" listing nobody behind it. a queues for its next transaction
    only then (two transactors in turn). b, which will hand the lock on
    at its end, reads the lock table beside its commit (look_behind), sees
    a there, and tells a with its release itself: an early "G", whose epoch
    is one above b's."""
    a, b = _a_transacting(db_name, 2)
    b_may_commit = threading.Event()
    tb, ob = _transfer_in_thread(b, b_may_commit)
    _queued(a, b)
    _announced_to(a)
    a.transaction_commit()
    deadline = time.monotonic() + 30
    while "epoch" not in ob and time.monotonic() < deadline:
        time.sleep(0.01)
    wait_obj = b._storage_or_closed().db.wait_obj
    listed = b._storage_or_closed().shards.behind.get((wait_obj, b""))
    assert listed is None or not listed.waiters  # the "G" to b named nobody behind it
    ta, oa = _transfer_in_thread(a)
    _queued(b, a)
    _sleeping(asleep, a)  # its looks done: only a "G" ends its wait
    before = wakeup.stats()
    b_may_commit.set()
    tb.join(30)
    ta.join(30)
    assert "error" not in ob and "error" not in oa, (ob, oa)
    after = wakeup.stats()
    assert after["early"] - before["early"] == 1
    assert after["granted"] - before["granted"] == 1
    assert after["changed"] == before["changed"]
    assert oa["epoch"] == ob["epoch"] + 1
    assert a[b"n"] == b"3"
    for h in (a, b):
        h.close()


def test_a_fenced_owner_handed_the_lock_fails_its_commit_then_transacts_again(
    db_name: str, asleep: dict[bytes, threading.Event]
) -> None:
    """b waits for the transaction lock while another client fences its
    owner id in the journal (as one does when b's lease ran out while it
    was stopped and it decided b's transactions). Handed the lock by "G",
    b reads the journal only with its transaction, not before: its commit
    fails with TDB's lock error, nothing of it lands, and its next
    transaction runs under a new owner id."""
    a, b = (radostdb.Tdb(db_name, 0, 0, CREATE) for _ in range(2))
    a.store(b"n", b"0")
    a.transaction_start()
    a.store(b"n", b"1")
    storage = b._storage_or_closed()
    fenced = storage.locks.owner
    tb, ob = _transfer_in_thread(b)
    _queued(a, b)
    _announced_to(a)
    _sleeping(asleep, b)
    clsops.fence_owners(storage.shards.io(), storage.db.journal, [fenced])
    a.transaction_commit()
    tb.join(30)
    assert isinstance(ob.get("error"), radostdb.TdbError), ob
    assert ob["error"].args[0] == ERR_LOCK
    assert a[b"n"] == b"1"
    assert storage.locks.owner != fenced
    with b.transaction():
        b.store(b"n", b"2")
    assert a[b"n"] == b"2"
    for h in (a, b):
        h.close()


def test_a_first_wait_meeting_a_holder_dead_since_its_request_decides_it(
    db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process's first wait for the transaction lock: it has no inbox,
    so its request names none and queues, and a second call names the
    inbox it then makes. The holder ahead died, and its lease runs out
    between the two calls: the second meets its stale entry (EUCLEAN).
    The waiter decides it, names its inbox again, and its transaction
    runs. (The kill storm of test_reliability found it: a client died of
    that error.)"""
    wakeup.close_inboxes()  # as in a new process: no inbox yet
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.store(b"n", b"0")
    storage = db._storage_or_closed()
    io, wait_obj = storage.shards.io(), storage.db.wait_obj
    lease_ms = 500
    dead = os.urandom(clsops.OWNER_LEN)
    clsops.lock(io, wait_obj, clsops.lock_request(dead, lease_ms, Kind.TXN, Mode.EXCL))
    real, made = wakeup.take_inbox, []

    def take_inbox(io_: Any, make: bool = False) -> int:
        if make:  # the inbox is made once the request queued: let the lease run out first
            time.sleep(lease_ms / 1000 + 0.5)
            made.append(time.monotonic())
        return real(io_, make)

    monkeypatch.setattr(wakeup, "take_inbox", take_inbox)
    db.transaction_start()
    db.store(b"n", b"1")
    db.transaction_commit()
    assert made, "the request did not queue behind the dead holder"
    assert db[b"n"] == b"1"
    assert all(e.owner != dead for e in _txn_entries(db))
    db.close()


@pytest.fixture(autouse=True)
def _lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leases long enough that no holder here loses its lock on a slow machine."""
    monkeypatch.setenv("RADOSTDB_TXN_LEASE", "10")
    monkeypatch.setenv("RADOSTDB_LOCK_LEASE", "10")


# -- the isolation kept parked, and what the "G" hands on (handover.py) ---------------------
SHARDS = 8


@pytest.fixture
def long_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """Transaction leases of half a minute (the lock lease) and parked
    isolation kept as long when idle: a test that waited for either to run
    out would stall past its own timeouts, and nothing parked goes away
    on its own while a test looks."""
    monkeypatch.setenv("RADOSTDB_TXN_LEASE", "60")
    monkeypatch.setattr(txnlock, "CACHE_IDLE", 60.0)


def _one_key_per_shard(db: radostdb.Tdb) -> list[bytes]:
    router = db._storage_or_closed().router
    found: dict[int, bytes] = {}
    i = 0
    while len(found) < SHARDS:
        found.setdefault(router.shard(b"k%d" % i), b"k%d" % i)
        i += 1
    return [found[s] for s in range(SHARDS)]


def _parked_everywhere(db_name: str) -> tuple[radostdb.Tdb, radostdb.Tdb, list[bytes]]:
    """Handles a and b of a database of SHARDS shards, one key in each,
    both holding every shard's isolation parked: each read every shard
    in a transaction that handed the lock to the other."""
    a = radostdb.Tdb(db_name, 0, 0, CREATE, shards=SHARDS)
    b = radostdb.Tdb(db_name, 0, 0, CREATE)
    keys = _one_key_per_shard(a)
    for i, k in enumerate(keys):
        a.store(k, b"%d" % i)
    a.transaction_start()
    holder, waiter = a, b
    for _ in range(2):
        assert [holder[k] for k in keys] == [b"%d" % i for i in range(SHARDS)]
        t = threading.Thread(target=waiter.transaction_start)
        t.start()
        _queued(holder, waiter)
        _announced_to(holder)
        holder.transaction_cancel()
        t.join(30)
        assert not t.is_alive()
        holder, waiter = waiter, holder
    a.transaction_cancel()  # handed the lock by "G": not kept cached
    for h in (a, b):
        tl = h._storage_or_closed().txnlock
        assert tl.state == State.PARKED, tl.state
        assert tl.isolated == set(range(SHARDS)), tl.isolated
    return a, b, keys


def _read_in_thread(h: radostdb.Tdb, keys: list[bytes], out: dict[str, Any]) -> threading.Thread:
    """A read-only transaction of ``keys`` on ``h``, started in a thread:
    its values in ``out["got"]``, the snapshots it was handed in
    ``out["snapshots"]``."""

    def run() -> None:
        h.transaction_start()
        out["snapshots"] = set(h._storage_or_closed().txnlock.snapshots)
        out["got"] = [h.get(k) for k in keys]
        h.transaction_cancel()

    return threading.Thread(target=run)


@pytest.mark.parametrize("local", ["socket", "notify"])
def test_the_next_transaction_reads_what_the_last_left_without_a_round_trip(
    db_name: str,
    local: str,
    monkeypatch: pytest.MonkeyPatch,
    asleep: dict[bytes, threading.Event],
    long_lease: None,
) -> None:
    """a and b hold every shard's isolation parked. b queues for the
    transaction lock while a's transaction reads every record and changes
    two; a's "G"
    hands b the lock with a's snapshots of the shards, its writes merged
    in: b's transaction reads all 8 records and sends no read at all (by
    the datagram socket and by notify alike), and sees a's writes."""
    if local == "notify":
        monkeypatch.setenv("RADOSTDB_LOCAL_WAKE", "0")
    a, b, keys = _parked_everywhere(db_name)
    reads: list[str] = []
    me: list[threading.Thread] = []

    def counting(name: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if me and threading.current_thread() is me[0]:
                reads.append(name)
            return fn(*args, **kwargs)

        return call

    for name in ("aio_get", "aio_list", "get"):
        monkeypatch.setattr(clsops, name, counting(name, getattr(clsops, name)))
    a.transaction_start()
    assert [a[k] for k in keys] == [b"%d" % i for i in range(SHARDS)]
    a.store(keys[2], b"two")
    a.delete(keys[5])
    out: dict[str, Any] = {}
    t = _read_in_thread(b, keys, out)
    me.append(t)
    t.start()
    _queued(a, b)
    _announced_to(a)
    _sleeping(asleep, b)
    a.transaction_commit()
    t.join(30)
    expected = [b"%d" % i for i in range(SHARDS)]
    expected[2], expected[5] = b"two", None
    assert out["got"] == expected
    assert reads == [], reads
    for h in (a, b):
        h.close()


def test_a_shard_somebody_waits_for_is_given_up_and_read_again(
    db_name: str, asleep: dict[bytes, threading.Event], long_lease: None
) -> None:
    """b is in a transaction, a holds every shard's isolation parked. A
    plain store to shard 3 waits for them: a gives shard 3 up at once, b
    at its end. a, queued meanwhile for the transaction lock, is handed
    the other shards' snapshots by b's "G", not shard 3's: its read there
    goes to the OSD, behind the store, and sees it."""
    a, b, keys = _parked_everywhere(db_name)
    c = radostdb.Tdb(db_name)
    b.transaction_start()
    assert b[keys[3]] == b"3"
    stored = threading.Event()
    ts = threading.Thread(target=lambda: (c.store(keys[3], b"three"), stored.set()))
    ts.start()
    tb = b._storage_or_closed().txnlock
    deadline = time.monotonic() + 30
    while 3 not in tb.wanted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert 3 in tb.wanted, "b never heard the store wait"
    ta = a._storage_or_closed().txnlock
    assert 3 not in ta.isolated  # given up at once: a was parked
    out: dict[str, Any] = {}
    t = _read_in_thread(a, keys, out)
    t.start()
    _queued(b, a)
    _sleeping(asleep, a)
    assert not stored.is_set()  # b still isolates shard 3
    b.store(keys[0], b"zero")
    b.transaction_commit()
    t.join(30)
    ts.join(30)
    assert stored.is_set()
    assert out["snapshots"] == set(range(SHARDS)) - {3}
    assert out["got"] == [b"zero", b"1", b"2", b"three"] + [b"%d" % i for i in range(4, SHARDS)]
    for h in (a, b, c):
        h.close()


def test_a_record_lock_holder_is_not_kept_waiting_by_a_queued_transaction(
    db_name: str, long_lease: None
) -> None:
    """a holds every shard's isolation parked. c takes record locks on
    shards 1 and 6 (holding record locks excludes transactions), with a
    queued for the transaction lock between the two: a's parked isolation
    of shard 6 would keep c waiting while a waits for c. a gives it up as
    c asks: c gets both locks within the test (the lease is longer), and
    a's transaction, once c unlocked, reads what c stored."""
    a, b, keys = _parked_everywhere(db_name)
    b.close()
    c = radostdb.Tdb(db_name)
    c.chainlock(keys[1])
    ta = a._storage_or_closed().txnlock
    assert ta.isolated == set(range(SHARDS)) - {1}  # given up as c asked, the rest parked
    out: dict[str, Any] = {}
    t = _read_in_thread(a, keys, out)
    t.start()
    _queued(c, a)
    assert ta.state == State.ACQUIRING and 6 in ta.isolated
    took = threading.Event()
    tc = threading.Thread(target=lambda: (c.chainlock(keys[6]), took.set()))
    tc.start()
    assert took.wait(20), "c waited for the parked isolation of a queued transaction"
    c.store(keys[1], b"one")
    c.store(keys[6], b"six")
    c.chainunlock(keys[6])
    c.chainunlock(keys[1])
    t.join(30)
    tc.join(30)
    expected = [b"%d" % i for i in range(SHARDS)]
    expected[1], expected[6] = b"one", b"six"
    assert out["got"] == expected
    for h in (a, c):
        h.close()


def test_a_late_grant_after_an_early_one_hands_nothing_on(
    db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A giver told x early, with its handover; its release, landing
    late, granted y instead (x ran its transaction and handed the lock to
    y before it landed: the class found y at the head of the queue). The
    giver's late "G" to y must carry nothing: y may take it instead of x's,
    and the giver's snapshots lack what x wrote."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    storage = db._storage_or_closed()
    wait_obj = storage.db.wait_obj
    client = storage.shards.client(wait_obj)
    sent: list[tuple[int, bytes]] = []

    def grant(*args: Any, **kwargs: Any) -> None:
        sent.append((args[2], kwargs.get("handover", b"")))

    monkeypatch.setattr(wakeup, "grant", grant)
    x, y = (7, 0x1234), (8, 0x5678)  # (ticket, inbox): both wait for the lock, in line
    storage.shards.behind[(wait_obj, b"")] = wakeup.Behind((x, y), 2)
    finish = client.txn_released(storage.shards.io(), 100, b"snapshots")
    assert sent == [(x[0], b"snapshots")]  # told early, with the handover
    finish(1 | y[0] << clsops.TICKET_SHIFT)  # the release granted one waiter: y
    assert sent == [(x[0], b"snapshots"), (y[0], b"")]
    db.close()

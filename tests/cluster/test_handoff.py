"""The handoff of a record lock to the next waiter by a "G" notify
(wakeup.py): the waiter trusts it without reading the lock table, takes the
record it carries, and never trusts a "G" that names another ticket."""

from __future__ import annotations

import os
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import rados
from procs import finish, kill, line
from procs import python as spawn

import radostdb
from radostdb import clsops, shardclient, wakeup
from radostdb.kinds import Kind, Mode

CREATE = os.O_CREAT | os.O_RDWR
READS = ("state", "aio_state", "get", "aio_get")


@pytest.fixture
def reads_by_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[int, list[str]]]:
    """Every lock-table or record read sent (through clsops), by the thread
    that sent it: the reads still go to the cluster."""
    seen: dict[int, list[str]] = {}

    def counting(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen.setdefault(threading.get_ident(), []).append(name)
            return fn(*args, **kwargs)

        return call

    for name in READS:
        monkeypatch.setattr(clsops, name, counting(name, getattr(clsops, name)))
    yield seen


def _where(db: radostdb.Tdb, key: bytes) -> tuple[Any, str]:
    """The I/O context and the shard object of ``key``."""
    storage = db._storage_or_closed()
    client = storage.shards[storage.router.shard(key)]
    return client.io(), str(client.obj)


def _queued(db: radostdb.Tdb, key: bytes, owner_of: radostdb.Tdb) -> tuple[int, int]:
    """Wait until ``owner_of``'s handle waits in the queue for ``key``; its
    ticket and inbox."""
    storage = owner_of._storage_or_closed()
    io, obj = _where(db, key)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = clsops.state(io, obj)
        for e in st.header.entries if st is not None else ():
            if e.owner == storage.locks.owner and e.key == key and not e.held:
                return e.ticket, e.inbox
        time.sleep(0.01)
    raise AssertionError("the waiter never queued")


def _chainlock_in_thread(db: radostdb.Tdb, key: bytes) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            db.chainlock(key)
            out["value"] = db.get(key)
            out["ident"] = threading.get_ident()
        except BaseException as exc:  # reported by the test
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_a_waiter_handed_the_lock_reads_neither_table_nor_record(
    db_name: str, reads_by_thread: dict[int, list[str]]
) -> None:
    """The holder stores and unlocks; the waiter (its process watches the
    object already, as every waiter of a hot record after its first wait),
    woken by the "G" naming its ticket, holds the lock and reads the value
    the holder stored without a single read of its own (the "G" carried the
    record)."""
    a = radostdb.Tdb(db_name, 0, 0, CREATE)
    b = radostdb.Tdb(db_name, 0, 0, CREATE)
    a.store(b"k", b"before")
    a.chainlock(b"k")
    wakeup.ensure_watch(*_where(b, b"k"))
    # the process's inbox, as after a first wait (one idle for WATCH_IDLE is
    # closed, and another test may have closed it): b's request names it
    wakeup.inbox(_where(b, b"k")[0])
    sent = wakeup.stats()["granted"]
    t, out = _chainlock_in_thread(b, b"k")
    ticket, inbox = _queued(a, b"k", b)
    assert ticket > 0 and inbox == wakeup.inbox(_where(b, b"k")[0])
    a.store(b"k", b"after")
    a.chainunlock(b"k")
    t.join(30)
    assert "error" not in out and out["value"] == b"after"
    assert wakeup.stats()["granted"] == sent + 1
    assert reads_by_thread.get(out["ident"], []) == []
    # what the "G" carried has no version: a versioned read asks the OSD
    version, value = b._storage_or_closed().fetch_version(b"k")
    assert (version, value) == a._storage_or_closed().fetch_version(b"k")
    assert version > 0 and value == b"after"
    b.chainunlock(b"k")
    a.close()
    b.close()


def test_a_holder_told_who_waits_behind_it_hands_on_without_reading_the_table(
    db_name: str, reads_by_thread: dict[int, list[str]]
) -> None:
    """a holds; b, then c queue. a's "G" to b lists c behind it, so b's
    release finds c's inbox there: b takes, stores and hands on without a
    single read, and c gets b's record."""
    a, b, c = (radostdb.Tdb(db_name, 0, 0, CREATE) for _ in range(3))
    a.chainlock(b"k")
    a.store(b"k", b"a")  # under the lock: a knows the record it hands on
    wakeup.ensure_watch(*_where(b, b"k"))  # as after a first wait
    out_b: dict[str, Any] = {}

    def run_b() -> None:
        b.chainlock(b"k")
        out_b["value"] = b.get(b"k")
        b.store(b"k", b"b")
        b.chainunlock(b"k")
        out_b["ident"] = threading.get_ident()

    tb = threading.Thread(target=run_b)
    tb.start()
    _queued(a, b"k", b)
    tc, out_c = _chainlock_in_thread(c, b"k")
    _queued(a, b"k", c)
    a.chainunlock(b"k")
    tb.join(30)
    tc.join(30)
    assert out_b["value"] == b"a" and out_c.get("value") == b"b", (out_b, out_c)
    assert reads_by_thread.get(out_b["ident"], []) == []
    assert reads_by_thread.get(out_c["ident"], []) == []
    c.chainunlock(b"k")


@pytest.mark.parametrize("release", ["unlock", "close"])
def test_a_first_wait_is_granted_however_the_holder_lets_go(
    db_name: str, release: str, cluster_env: dict[str, str]
) -> None:
    """A waiter whose process did not watch the object watches it only once
    queued, then looks at the table: released by another process's unlock
    (a "G" to its inbox) or close (a "C" on the object), it is granted at
    once, not after a re-announce."""
    for attempt in range(3):  # a database each: its objects not watched yet
        name = f"{db_name}-{attempt}"
        b = radostdb.Tdb(name, 0, 0, CREATE)
        holder = spawn(
            """
            import os, sys, radostdb
            db = radostdb.Tdb(sys.argv[1], 0, 0, os.O_RDWR)
            db.chainlock(b"k")
            print("locked", flush=True)
            sys.stdin.readline()
            db.chainunlock(b"k") if sys.argv[2] == "unlock" else db.close()
            print("released", flush=True)
            sys.stdin.readline()
            """,
            cluster_env,
            name,
            release,
        )
        try:
            assert line(holder) == "locked"
            assert not wakeup.watching(*_where(b, b"k"))
            t, out = _chainlock_in_thread(b, b"k")
            _queued(b, b"k", b)
            t0 = time.monotonic()
            holder.stdin.write("\n")  # type: ignore[union-attr]
            holder.stdin.flush()  # type: ignore[union-attr]
            assert line(holder) == "released"
            t.join(30)
            took = time.monotonic() - t0
        finally:
            finish([holder])
        assert "error" not in out, out
        assert took < shardclient.REANNOUNCE / 2, f"attempt {attempt}: granted after {took:.2f} s"
        b.chainunlock(b"k")
        b.close()


def test_a_deleted_record_is_handed_over_as_missing(db_name: str) -> None:
    a = radostdb.Tdb(db_name, 0, 0, CREATE)
    b = radostdb.Tdb(db_name, 0, 0, CREATE)
    a.store(b"k", b"v")
    a.chainlock(b"k")
    t, out = _chainlock_in_thread(b, b"k")
    _queued(a, b"k", b)
    a.delete(b"k")
    a.chainunlock(b"k")
    t.join(30)
    assert "error" not in out and out["value"] is None
    b.store(b"k", b"new")  # under the lock it was handed
    b.chainunlock(b"k")
    assert a.get(b"k") == b"new"


def test_a_grant_naming_another_ticket_grants_nothing(db_name: str) -> None:
    """A "G" whose ticket is not the waiter's (a forged one, here) leaves it
    waiting: it takes the lock only when the holder gives it back."""
    a = radostdb.Tdb(db_name, 0, 0, CREATE)
    b = radostdb.Tdb(db_name, 0, 0, CREATE)
    a.store(b"k", b"v")
    a.chainlock(b"k")
    t, out = _chainlock_in_thread(b, b"k")
    ticket, inbox = _queued(a, b"k", b)
    io, obj = _where(a, b"k")
    for other in (ticket + 1, ticket - 1, clsops.TICKET_MAX):
        wakeup.grant(io, obj, other, inbox, b"k", clsops.ReadStatus.FOUND, b"forged")
    # the right ticket for another object, or heard before the request was sent
    wakeup.grant(io, obj + ".other", ticket, inbox, b"k", clsops.ReadStatus.FOUND, b"forged")
    t.join(1.0)
    assert t.is_alive(), "the waiter took a lock still held"
    a.store(b"k", b"real")
    a.chainunlock(b"k")
    t.join(30)
    assert "error" not in out and out["value"] == b"real"
    b.chainunlock(b"k")


def test_tickets_are_unique_among_an_objects_entries(db_name: str) -> None:
    """Every entry the class makes gets the next ticket; a request renewed
    keeps its own."""
    handles = [radostdb.Tdb(db_name, 0, 0, CREATE) for _ in range(4)]
    io, obj = _where(handles[0], b"k")
    statuses = []
    for i, h in enumerate(handles):
        s = h._storage_or_closed()
        req = clsops.lock_request(
            s.locks.owner, 30000, Kind.RECORD, Mode.EXCL, b"k", clsops.LOCK_QUEUE
        )
        statuses.append(clsops.lock_status(io, obj, req))
        again = clsops.lock_status(io, obj, req)
        assert clsops.ticket_of(again) == clsops.ticket_of(statuses[-1]), i
    tickets = [clsops.ticket_of(s) for s in statuses]
    assert statuses[0] & clsops.LOCKED_GRANTED
    assert all(s & clsops.LOCKED_QUEUED for s in statuses[1:])
    assert len(set(tickets)) == 4 and all(tickets)
    st = clsops.state(io, obj)
    assert st is not None
    assert [e.ticket for e in st.header.entries if e.key == b"k"] == tickets
    # the release hands the lock to the first waiter and names its ticket
    first = handles[0]._storage_or_closed().locks.owner
    status = clsops.unlock_granted(
        io, obj, clsops.unlock_request(first, Kind.RECORD, Mode.EXCL, b"k")
    )
    assert (clsops.grants_of(status), clsops.ticket_of(status)) == (1, tickets[1])
    for h in handles:
        h.close()


INBOX_WORKER = """
    import os, sys, radostdb
    from radostdb import wakeup
    db = radostdb.Tdb(sys.argv[1], 0, 0, os.O_RDWR | os.O_CREAT)
    db.chainlock(b"k")  # a blocking request: the process makes its inbox first
    storage = db._storage
    print(wakeup.inbox(storage.shards[storage.router.shard(b"k")].io()), flush=True)
    db.chainunlock(b"k")
    sys.stdin.readline()
    db.close()
"""


def test_a_process_inbox_lives_as_long_as_the_process(
    db_name: str, cluster_env: dict[str, str], start_method: str
) -> None:
    """A worker's inbox exists and is watched (by it alone) while it runs, is
    removed when it exits, and is left behind by one killed with kill -9.
    A forked worker makes its own (its parent made one too)."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    io, _ = _where(db, b"k")
    inboxes = []
    for ending in ("exit", "kill -9"):
        p = spawn(INBOX_WORKER, cluster_env, db_name, method=start_method)
        got = line(p)
        if not got.isdigit():
            kill(p)
            err = p.stderr.read() if p.stderr else ""
            pytest.fail(f"no inbox from the worker ({got!r}): {err}")
        number = int(got)
        name = wakeup.inbox_name(number)
        inboxes.append(number)
        assert len(clsops.watchers(io, name)) == 1, ending
        if ending == "exit":
            finish([p])
            with pytest.raises(rados.ObjectNotFound):
                io.stat(name)
        else:
            kill(p)
            io.stat(name)  # left behind (its watch lapses with the OSD's watch timeout)
            io.remove_object(name)
    assert len(set(inboxes)) == 2 and wakeup.inbox(io) not in inboxes


def _queue_in_threads(
    holder: radostdb.Tdb, waiters: list[tuple[radostdb.Tdb, str]], key: bytes
) -> list[tuple[threading.Thread, dict[str, Any]]]:
    """Each waiter takes ``key``'s lock in its own thread ("excl": chainlock,
    stores its index and unlocks; "read": chainlock_read, unlocks), queued
    in this order behind ``holder``."""
    out = []
    for i, (db, how) in enumerate(waiters):
        got: dict[str, Any] = {}

        def run(
            db: radostdb.Tdb = db, how: str = how, got: dict[str, Any] = got, i: int = i
        ) -> None:
            try:
                if how == "excl":
                    db.chainlock(key)
                    got["value"] = db.get(key)
                    db.store(key, f"w{i}".encode())
                    db.chainunlock(key)
                else:
                    db.chainlock_read(key)
                    got["value"] = db.get(key)
                    db.chainunlock_read(key)
            except BaseException as exc:  # reported by the test
                got["error"] = exc

        t = threading.Thread(target=run)
        t.start()
        _queued(holder, key, db)
        out.append((t, got))
    return out


@pytest.mark.parametrize(
    ("second", "values", "early"),
    [("excl", [b"a", b"w0", b"w1"], 2), ("read", [b"a", b"w0", b"w0"], 0)],
    ids=["all-in-line", "a-reader-between"],
)
def test_the_next_in_line_is_told_with_the_release(
    db_name: str, second: str, values: list[bytes], early: int
) -> None:
    """a holds; b, then x, then c queue on one record: b and c for its
    exclusive lock, x for the exclusive lock too, or for a read lock.
    - All in line: a's "G" to b says x and c are in line behind it, so b's
      release tells x with the release itself (an early "G", before the
      reply), and x's tells c. Each handoff is one "G": the reply, naming
      the ticket told, sends nothing more.
    - A reader between: b's release grants the reader, whose lock is not
      the one released: nobody is told before the reply.
    Either way each takes the record as the one before left it, in queue
    order."""
    a, b, x, c = (radostdb.Tdb(db_name, 0, 0, CREATE) for _ in range(4))
    a.store(b"k", b"a")
    a.chainlock(b"k")
    wakeup.ensure_watch(*_where(b, b"k"))  # as after a first wait
    before = wakeup.stats()
    threads = _queue_in_threads(a, [(b, "excl"), (x, second), (c, "excl")], b"k")
    a.chainunlock(b"k")
    for t, _ in threads:
        t.join(30)
    got = [out for _, out in threads]
    assert [out.get("value") for out in got] == values, got
    after = wakeup.stats()
    assert after["early"] - before["early"] == early
    if early:
        assert after["granted"] - before["granted"] == 3  # a to b (after its reply), then those
    assert a.get(b"k") == b"w2"


class _LateCall:
    """A release sent LATE seconds after it was asked for (as if it took a
    slower path to the OSD than the "G" sent after it)."""

    def __init__(self, send: Callable[[], Any], late: float, landed: list[float]) -> None:
        self.out: list[Any] = []

        def run() -> None:
            time.sleep(late)
            call = send()
            call.error()
            landed.append(time.monotonic())
            self.out.append(call)

        self.t = threading.Thread(target=run)
        self.t.start()

    def _call(self) -> Any:
        self.t.join()
        return self.out[0]

    def result(self) -> Any:
        return self._call().result()

    def error(self) -> Any:
        return self._call().error()

    def wait(self) -> Any:
        return self._call().wait()


@pytest.mark.parametrize("how", ["chainlock", "do_locked"])
def test_a_write_that_overtakes_the_release_waits_for_it(
    db_name: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """c was told early that it holds the lock, but b's release to it lands
    half a second late (on a cluster of several OSDs, the "G" and the
    release travel by different paths). c's store (or do_locked's store and
    unlock in one call) reaches the OSD first and is refused (its entry is
    still queued): c waits for the grant, then writes. Nothing is lost,
    nothing is written before the release."""
    a, b, c = (radostdb.Tdb(db_name, 0, 0, CREATE) for _ in range(3))
    a.store(b"k", b"a")
    a.chainlock(b"k")
    wakeup.ensure_watch(*_where(b, b"k"))
    b_out: dict[str, Any] = {}
    b_may_unlock = threading.Event()

    def run_b() -> None:
        b.chainlock(b"k")
        b.store(b"k", b"b")
        b_out["locked"] = True
        b_may_unlock.wait(30)
        b.chainunlock(b"k")

    tb = threading.Thread(target=run_b)
    tb.start()
    _queued(a, b"k", b)
    c_out: dict[str, Any] = {}

    def bump(rec: Any) -> None:
        c_out["granted"] = time.monotonic()
        c_out["value"] = rec.value
        rec.store(b"c")

    def run_c() -> None:
        try:
            if how == "do_locked":
                c.do_locked(b"k", bump)
            else:
                c.chainlock(b"k")
                bump(types.SimpleNamespace(value=c.get(b"k"), store=lambda v: c.store(b"k", v)))
                c.chainunlock(b"k")
            c_out["stored"] = time.monotonic()
        except BaseException as exc:  # reported by the test
            c_out["error"] = exc

    tc = threading.Thread(target=run_c)
    tc.start()
    _queued(a, b"k", c)
    a.chainunlock(b"k")  # a's "G" tells b that c is next in line
    deadline = time.monotonic() + 30
    while "locked" not in b_out and time.monotonic() < deadline:
        time.sleep(0.01)
    late, landed, real = 0.5, [], clsops.aio_unlock_granted
    monkeypatch.setattr(
        clsops, "aio_unlock_granted", lambda *args: _LateCall(lambda: real(*args), late, landed)
    )
    waited_late = []
    granted_late = shardclient.ShardClient._granted_late

    def spy(self: shardclient.ShardClient, keys: set[bytes]) -> bool:
        waited_late.append(granted_late(self, keys))
        return waited_late[-1]

    monkeypatch.setattr(shardclient.ShardClient, "_granted_late", spy)
    early = wakeup.stats()["early"]
    b_may_unlock.set()
    tb.join(30)
    tc.join(30)
    assert "error" not in c_out, c_out
    assert wakeup.stats()["early"] == early + 1
    assert c_out["granted"] < landed[0], "c was not told before the release landed"
    assert c_out["stored"] > landed[0]
    assert waited_late == [True], "c's first store did not meet the queued entry"
    assert c_out["value"] == b"b" and a.get(b"k") == b"c"


def test_a_waiter_that_queued_after_the_grant_is_told_with_the_release(
    db_name: str, reads_by_thread: dict[int, list[str]]
) -> None:
    """Two clients in turn on one record (the hot record's handoff at two
    clients): b waits behind a and is handed the lock by a "G" that lists
    nobody behind it; a queues again only after it let go. b, which had to
    wait, sends the lock table's read with its store, sees a queued there,
    and its unlock tells a with the release itself (an early "G"), reading
    nothing more: a holds the lock one "G" after b's release, with b's
    record."""
    a, b = (radostdb.Tdb(db_name, 0, 0, CREATE) for _ in range(2))
    a.store(b"k", b"0")
    a.chainlock(b"k")
    wakeup.ensure_watch(*_where(b, b"k"))  # as after a first wait
    b_locked, b_may_store = threading.Event(), threading.Event()
    out_b: dict[str, Any] = {}

    def run_b() -> None:
        try:
            b.chainlock(b"k")
            out_b["behind"] = b._storage_or_closed().shards.behind.get((_where(b, b"k")[1], b"k"))
            b_locked.set()
            b_may_store.wait(30)
            out_b["ident"] = threading.get_ident()
            reads_by_thread.pop(threading.get_ident(), None)  # those of its wait
            b.store(b"k", b"%d" % (int(b.get(b"k")) + 1))
            b.chainunlock(b"k")
        except BaseException as exc:  # reported by the test
            out_b["error"] = exc

    tb = threading.Thread(target=run_b)
    tb.start()
    _queued(a, b"k", b)
    a.store(b"k", b"1")
    a.chainunlock(b"k")
    assert b_locked.wait(30), out_b
    assert out_b["behind"] is None or not out_b["behind"].waiters  # nobody listed behind b
    ta, out_a = _chainlock_in_thread(a, b"k")
    _queued(b, b"k", a)
    before = wakeup.stats()
    b_may_store.set()
    tb.join(30)
    ta.join(30)
    assert "error" not in out_b and "error" not in out_a, (out_b, out_a)
    after = wakeup.stats()
    assert after["early"] - before["early"] == 1
    assert after["granted"] - before["granted"] == 1
    assert reads_by_thread.get(out_b["ident"], []) == ["aio_state"]  # with the store, only
    assert out_a["value"] == b"2"
    a.chainunlock(b"k")
    assert b.get(b"k") == b"2"
    a.close()
    b.close()

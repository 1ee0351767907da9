"""A handle's lock books (radostdb/locking.py, LockTable): counting, lost
locks, the write flags they give, renewal scheduling, and what an ENOLCK
renewal reply (recorded from the real class: renew-lost) does to them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import replay
from conversations import CODE, play

from radostdb import clsops
from radostdb.errors import ERR_LOCK, TdbError
from radostdb.kinds import Kind, Mode
from radostdb.locking import LockTable

S0, S1 = "rec-x.s0", "rec-x.s1"
REC = (S0, Kind.RECORD, Mode.EXCL, b"k")
SHARD = (S0, Kind.SHARD, Mode.SHARED, b"")
ISO = (S0, Kind.ISOLATION, Mode.SHARED, b"")
TXN = ("rec-x.w", Kind.TXN, Mode.EXCL, b"")


@pytest.fixture
def ctx() -> Iterator[replay.Context]:
    with replay.harness(0) as c:
        yield c


@pytest.fixture
def books(ctx: replay.Context) -> LockTable:
    return LockTable(lambda: None, lease=30.0, txn_lease=5.0)


def lock_error(fn: object) -> int:
    with pytest.raises(TdbError) as exc:
        fn()  # type: ignore[operator]
    return exc.value.code


def test_relocking_counts_without_a_call(books: LockTable) -> None:
    assert books.count_again(REC) is False  # not held: the caller talks to the OSD
    books.note(REC, books.lease_ms)
    assert books.count_again(REC) is True
    assert books.count_again(REC) is True
    assert books.held[REC] == 3


def test_count_down_releases_at_the_last_unlock(books: LockTable) -> None:
    books.note(REC, books.lease_ms)
    books.count_again(REC)
    assert books.count_down(REC) is False  # one left: no call
    assert books.count_down(REC) is True  # the last: release in the OSD
    assert REC not in books.held
    assert lock_error(lambda: books.count_down(REC)) == ERR_LOCK  # not held


def test_a_lost_lock_refuses_relock_and_each_unlock_forgets_one(books: LockTable) -> None:
    books.lost[REC] = 2  # lost while counted twice
    assert lock_error(lambda: books.count_again(REC)) == ERR_LOCK
    assert lock_error(lambda: books.count_down(REC)) == ERR_LOCK
    assert books.lost[REC] == 1
    assert lock_error(lambda: books.count_down(REC)) == ERR_LOCK
    assert REC not in books.lost
    assert books.count_again(REC) is False  # forgotten: can be taken again


def test_forget_lost(books: LockTable) -> None:
    books.lost[SHARD] = 1
    assert books.forget_lost([REC]) is False
    assert books.forget_lost([REC, SHARD]) is True
    assert books.lost == {}


def test_write_flags_assert_the_lock_held_or_lost(books: LockTable) -> None:
    assert books.wflags(S0, b"k") == 0  # nothing held: a plain write
    books.note(REC, books.lease_ms)
    assert books.wflags(S0, b"k") == clsops.WRITE_ASSERT_LOCK
    assert books.wflags(S0, b"other") == 0
    assert books.wflags(S1, b"k") == 0
    books.count_down(REC)
    books.lost[REC] = 1  # lost: still asserted, so that the OSD refuses the write
    assert books.wflags(S0, b"k") == clsops.WRITE_ASSERT_LOCK
    books.lost.clear()
    books.note(SHARD, books.lease_ms)  # a shard lock covers every key
    assert books.wflags(S0, b"any") == clsops.WRITE_ASSERT_LOCK
    books.note(ISO, books.txn_lease_ms)  # inside a transaction: asserts the isolation
    assert books.wflags(S0, b"any") == clsops.WRITE_ASSERT_TXN


def test_holds_kind_and_user_locks(books: LockTable) -> None:
    books.note(ISO, books.txn_lease_ms)
    books.note(TXN, books.txn_lease_ms)
    assert books.holds_kind(S0, Kind.ISOLATION) and not books.holds_kind(S1, Kind.ISOLATION)
    assert not books.holds_kind(S0, Kind.RECORD)
    assert books.holds_user_locks() is False  # a transaction's locks are not the user's
    books.lost[SHARD] = 1
    assert books.holds_kind(S0, Kind.SHARD)  # lost counts: a write under it asserts it
    assert books.holds_user_locks() is True
    books.lost.clear()
    books.note(REC, books.lease_ms)
    assert books.holds_user_locks() is True


def test_renewal_is_scheduled_a_third_of_a_lease_ahead_and_only_moved_earlier(
    books: LockTable, ctx: replay.Context
) -> None:
    now = ctx.clock.now
    books.note(REC, books.lease_ms)
    assert [(w, k) for w, _, k in ctx.scheduled] == [(now + 10.0, books)]
    assert ctx.scheduled[0][1] == books.renew_due
    books.note((S1, Kind.RECORD, Mode.EXCL, b"k"), books.lease_ms)  # due later: no new job
    ctx.clock.advance(1.0)
    books.note(SHARD, books.lease_ms)  # same object, later due: nothing changes
    assert len(ctx.scheduled) == 1
    books.note(ISO, books.txn_lease_ms)  # a shorter lease on S0: renew earlier
    assert len(ctx.scheduled) == 2
    assert ctx.scheduled[1][0] == pytest.approx(now + 1.0 + 5.0 / 3)
    assert books.has_entries(S0) and books.has_entries(S1)


def test_untrack_keeps_an_object_while_something_is_held_there(books: LockTable) -> None:
    books.note(REC, books.lease_ms)
    books.track(S1, books.lease_ms)  # a queued entry, not counted
    books.untrack(S0)
    books.untrack(S1)
    assert books.has_entries(S0) and not books.has_entries(S1)
    assert books.objects() == {S0}


def test_a_wait_announced_renews_a_holder_at_once_at_most_once_a_second(
    books: LockTable, ctx: replay.Context
) -> None:
    books.note(REC, books.lease_ms)
    books.on_wait(S0)
    assert [w for w, _, _ in ctx.scheduled] == [ctx.clock.now + 10.0]  # renewed just now
    ctx.clock.advance(1.5)
    books.on_wait(S0)
    assert ctx.scheduled[-1][0] is None and ctx.scheduled[-1][1] == books.renew_due
    books.on_wait(S1)  # not ours: nothing
    assert len(ctx.scheduled) == 2


def test_enolck_renewal_loses_the_users_locks_and_forgets_the_transactions() -> None:
    p = play("renew-lost")
    books, rig = p.rig.books, p.rig
    assert p.steps(kinds=True) == ["aio s0 renew", "aio s1 renew"]  # in parallel
    assert p.io.sent[0]["request"] == clsops.renew_request(CODE).hex()
    s0, s1 = rig.obj("s0"), rig.obj("s1")
    rec0, rec1 = (s0, Kind.RECORD, Mode.EXCL, b"k0"), (s1, Kind.RECORD, Mode.EXCL, b"k1")
    assert books.lost == {rec0: 1}  # the user still counts it
    assert (s0, Kind.ISOLATION, Mode.SHARED, b"") not in books.lost  # a transaction's: gone
    assert books.held == {rec1: 1}
    assert not books.has_entries(s0) and books.has_entries(s1)
    # the next renewal: s1, a third of its lease after this one
    when, job, key = p.ctx.scheduled[-1]
    assert (job, key) == (books.renew_due, books)
    assert when == pytest.approx(p.ctx.clock.now + books.lease / 3)
    # the lost lock: writes under it assert it, relocking and unlocking fail once
    assert books.wflags(s0, b"k0") == clsops.WRITE_ASSERT_LOCK
    assert books.holds_user_locks()
    assert lock_error(lambda: books.count_again(rec0)) == ERR_LOCK
    assert lock_error(lambda: books.count_down(rec0)) == ERR_LOCK
    assert books.lost == {} and books.count_again(rec0) is False


def test_the_books_can_be_read_while_another_thread_changes_them(books: LockTable) -> None:
    """holds_kind, holds_any and holds_user_locks iterate the books while the
    lock service thread loses and forgets entries (under the books' mutex):
    a transaction's release once crashed there with "dictionary changed
    size during iteration"."""
    import sys
    import threading

    many = [(f"rec-x.s{i}", Kind.ISOLATION, Mode.SHARED, b"") for i in range(3000)]
    with books._mutex:
        books.held.update(dict.fromkeys(many, 1))
    stop = threading.Event()

    def service() -> None:  # what _lost and renewal do: change the books under the mutex
        i = 0
        while not stop.is_set():
            hk = (f"rec-y.s{i % 500}", Kind.RECORD, Mode.EXCL, b"%d" % i)
            with books._mutex:
                books.held[hk] = 1
                books.lost[hk] = 1
            books.forget([hk])
            books.forget_lost([hk])
            i += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    t = threading.Thread(target=service, daemon=True)
    t.start()
    try:
        for _ in range(300):
            books.holds_kind("rec-z.s0", Kind.SHARD)
            books.holds_any(Kind.TXN)
            books.holds_user_locks()
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)

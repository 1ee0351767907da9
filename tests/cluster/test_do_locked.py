"""``Tdb.do_locked`` (Samba's dbwrap_do_locked, radostdb/locked.py): its
semantics against chainlock/fetch/store/chainunlock, its two round trips,
many processes on one key in tight loops, and a holder stopped past its
lease."""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Callable

import pytest
from procs import LOCKER, expect, finish, python, say
from procs import signal as signal_worker

import radostdb
from radostdb.bench.opcount import OsdOps
from radostdb.errors import ERR_EXISTS, ERR_LOCK, ERR_NOEXIST, ERR_RDONLY, TdbError
from radostdb.testing import ClusterInfo

CREATE = os.O_CREAT | os.O_RDWR


def test_the_function_sees_the_record_and_its_change_lands_with_the_unlock(
    db_name: str,
) -> None:
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    other = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    db.store(b"k", b"1")

    def bump(rec: radostdb.LockedRecord) -> bytes | None:
        with pytest.raises(RuntimeError):  # locked: another handle cannot take it
            other.chainlock_nonblock(b"k")
        rec.store(rec.value + b"+")
        rec.append(b"!")
        return rec.value

    assert db.do_locked(b"k", bump) == b"1+!"
    assert other[b"k"] == b"1+!"
    other.chainlock_nonblock(b"k")  # released
    other.chainunlock(b"k")
    assert db.do_locked(b"new", lambda r: r.value) is None
    assert db.get(b"new") is None  # nothing stored: nothing created
    db.do_locked(b"k", lambda r: r.delete())
    assert db.get(b"k") is None


def test_tdb_checks_happen_at_once_and_a_raising_function_changes_nothing(
    db_name: str,
) -> None:
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    other = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    db.store(b"k", b"v")
    for fn, code in [
        (lambda r: r.store(b"x", radostdb.INSERT), ERR_EXISTS),
        (lambda r: r.delete() or r.delete(), ERR_NOEXIST),
    ]:
        with pytest.raises(TdbError) as info:
            db.do_locked(b"k", fn)
        assert info.value.code == code
    with pytest.raises(TdbError) as info:
        db.do_locked(b"missing", lambda r: r.store(b"x", radostdb.MODIFY))
    assert info.value.code == ERR_NOEXIST

    def half_way(rec: radostdb.LockedRecord) -> None:
        rec.store(b"changed")
        raise KeyError("give up")

    with pytest.raises(KeyError):
        db.do_locked(b"k", half_way)
    assert other[b"k"] == b"v"
    other.chainlock_nonblock(b"k")  # every failure above released the lock
    other.chainunlock(b"k")


def test_nested_in_a_chainlock_and_in_a_transaction(db_name: str) -> None:
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    other = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    db.chainlock(b"k")
    db.do_locked(b"k", lambda r: r.store(b"inner"))
    assert other[b"k"] == b"inner"
    with pytest.raises(RuntimeError):  # the outer chainlock is still held
        other.chainlock_nonblock(b"k")
    db.chainunlock(b"k")
    db.transaction_start()
    db.do_locked(b"k", lambda r: r.store(r.value + b"+txn"))
    assert db[b"k"] == b"inner+txn" and other[b"k"] == b"inner"
    db.transaction_cancel()
    assert other[b"k"] == b"inner"
    with db.transaction():
        db.do_locked(b"k", lambda r: r.delete())
    assert other.get(b"k") is None


def test_a_read_only_handle_may_look_but_not_change(db_name: str) -> None:
    radostdb.Tdb(db_name, 0, 0, CREATE).store(b"k", b"v")
    ro = radostdb.Tdb(db_name, 0, 0, os.O_RDONLY)
    assert ro.do_locked(b"k", lambda r: r.value) == b"v"
    with pytest.raises(TdbError) as info:
        ro.do_locked(b"k", lambda r: r.store(b"x"))
    assert info.value.code == ERR_RDONLY
    assert ro[b"k"] == b"v"


def test_memory_databases_have_it_too() -> None:
    db = radostdb.Tdb(None, 0, radostdb.INTERNAL, CREATE)
    assert db.do_locked(b"k", lambda r: r.store(b"1") or r.value) == b"1"
    assert db[b"k"] == b"1"


def test_two_round_trips_where_chainlock_fetch_store_unlock_take_four(
    db_name: str, ceph_cluster: ClusterInfo
) -> None:
    """Counted with the OSDs' op counters (bench/opcount.py), uncontended;
    the least of five counts (a lease renewal, or an earlier test's handle
    releasing its idle cached lock, may land in one: the counters are the
    whole cluster's)."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.store(b"k", b"0")
    db.do_locked(b"k", lambda r: None)  # warm: the handle's USER entry (intent.py) is cached
    n = 50

    def bump(rec: radostdb.LockedRecord) -> None:
        rec.store(b"%d" % (int(rec.value or b"0") + 1))

    def classic() -> None:
        db.chainlock(b"k")
        db.store(b"k", b"%d" % (int(db[b"k"]) + 1))
        db.chainunlock(b"k")

    counter = OsdOps(ceph_cluster.conf, ceph_cluster.client_id)
    try:

        def per_update(update: Callable[[], None]) -> float:
            counts = []
            for _ in range(5):
                before = counter.settled()
                for _ in range(n):
                    update()
                counts.append((counter.settled() - before) / n)
            return min(counts)

        do_locked = per_update(lambda: db.do_locked(b"k", bump))
        chained = per_update(classic)
    finally:
        counter.close()
    print(
        f"OSD ops per update: do_locked {do_locked:.2f}, chainlock/get/store/unlock {chained:.2f}"
    )
    assert db[b"k"] == b"%d" % (2 * 5 * n)  # two kinds, five samples each
    assert do_locked <= 3.0  # lock and read (2 ops, sent together), apply with release (1)
    assert chained >= 4.0 and do_locked < chained


@pytest.mark.slow
def test_eight_processes_mixing_do_locked_and_chainlock_on_one_key(
    db_name: str, cluster_env: dict[str, str], start_method: str
) -> None:
    """4 processes loop do_locked(+1) and 4 chainlock/get/store/chainunlock
    on one key, no think time, from one agreed moment: they exclude each
    other (the counter is exact) and the OSD's FIFO queue gives each its
    turns (every count within 0.8-1.2 of the mean)."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.store(b"hot", b"0")
    start = time.time() + 15
    end = start + 10
    env = {**cluster_env, "RADOSTDB_LOCK_LEASE": "5"}
    modes = ["do_locked", "chainlock"] * 4
    workers = [
        python(LOCKER, env, db_name, str(end), str(start), m, method=start_method) for m in modes
    ]
    counts = [int(x) for x in finish(workers)]
    mean = statistics.mean(counts)
    print(
        f"per-process counts {list(zip(modes, counts, strict=True))}, "
        f"min/mean {min(counts) / mean:.2f}, max/mean {max(counts) / mean:.2f}, "
        f"{sum(counts) / (end - start):.0f} ops/s"
    )
    assert int(db[b"hot"]) == sum(counts), "an update was lost"
    assert all(0.8 * mean <= c <= 1.2 * mean for c in counts), counts


STOPPED = """
    import os, sys, radostdb
    db = radostdb.Tdb(sys.argv[1], 0, 0, os.O_RDWR, lock_lease=2)

    def late(rec):
        print("locked", flush=True)
        sys.stdin.readline()  # stopped here, past the lease
        rec.store(b"late")

    try:
        db.do_locked(b"k", late)
        print("stored", flush=True)
    except radostdb.TdbError as exc:
        print("refused", exc.code, flush=True)
"""


def test_a_holder_stopped_past_its_lease_loses_the_lock_and_its_change(
    db_name: str, cluster_env: dict[str, str], start_method: str
) -> None:
    """SIGSTOP a do_locked holder inside its function until its lease ran
    out: the next waiter gets the lock, and the stopped one's change and
    unlock (one call) are refused with TDB's lock error when it goes on."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE, lock_lease=3)
    db.store(b"k", b"before")
    holder = python(STOPPED, cluster_env, db_name, method=start_method)
    expect(holder, "locked")
    signal_worker(holder, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        db.do_locked(b"k", lambda r: r.store(b"next owner"))
        took = time.monotonic() - t0
    finally:
        signal_worker(holder, signal.SIGCONT)
    print(f"the next waiter had the lock {took:.2f} s after the holder stopped (lease 2 s)")
    assert took < 2 + 3
    say(holder, "go")
    expect(holder, f"refused {ERR_LOCK}", timeout=15)
    assert db[b"k"] == b"next owner"
    db.chainlock_nonblock(b"k")  # nothing of the stopped holder's is left
    db.chainunlock(b"k")
    finish([holder], 30)

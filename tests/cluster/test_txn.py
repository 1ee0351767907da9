"""Transactions atomic across shards under kill -9, serialised, and large."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import crashpoints
import pytest
import rados
from procs import expect, kill, python, say

import radostdb
from radostdb import clsops, layout, txnlock

CREATE = os.O_CREAT | os.O_RDWR
KEYS = [f"k{i:03d}".encode() for i in range(32)]  # spread over all 8 shards

COMMITTER = """
    import os, sys, radostdb
    name, size = sys.argv[1], int(sys.argv[2])
    db = radostdb.Tdb(name, 0, 0, os.O_RDWR, lock_lease=2)
    db.transaction_start()
    for i in range(32):
        db.store(b"k%03d" % i, b"new" * size)
    db.transaction_commit()
    print("committed", flush=True)
"""


# what each crash step leaves: the old records, or the new ones
OUTCOME = {
    "before-round": "old",
    "stage-only": "old",
    "apply-partial": "old",
    "applied-no-stage": "old",
    "round-done": "new",
    "before-release": "new",
    "hand-on-partial": "new",
}


def test_crash_matrix_covers_every_step() -> None:
    assert set(OUTCOME) == set(crashpoints.STEPS)


@pytest.mark.parametrize("step", crashpoints.STEPS)
def test_crash_matrix(
    step: str, db_name: str, cluster_env: dict[str, str], start_method: str
) -> None:
    """The committer SIGKILLs itself at each step; afterwards every key is old
    (the round did not complete: aborted) or every key new (it did)."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE, lock_lease=2, shards=8)
    with db.transaction():
        for k in KEYS:
            db.store(k, b"old")
    size = 1
    env = dict(cluster_env, RADOSTDB_TEST_CRASH_AT=step)
    proc = python(COMMITTER, env, db_name, str(size), method=start_method)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, (out, err)
    expected = b"old" if OUTCOME[step] == "old" else b"new" * size
    reader = radostdb.Tdb(db_name, lock_lease=2)
    # before any recovery: all old or all new (a pending shard makes the reader
    # decide the transaction, waiting out the dead committer's lease if needed)
    seen = {reader.get(k) for k in KEYS}
    assert seen == {expected}, f"half a commit visible, or the wrong outcome: {seen}"
    reader.transaction_start()  # recovers whatever the dead committer left
    assert {k: reader.get(k) for k in KEYS} == dict.fromkeys(KEYS, expected)
    assert sorted(reader.keys()) == KEYS
    reader.store(b"after", b"crash")  # the database takes new transactions
    reader.transaction_commit()
    assert db.get(b"after") == b"crash"


def test_commit_point_rolls_forward_without_readers(
    db_name: str, cluster_env: dict[str, str]
) -> None:
    """Recovery by the next transaction_start (nobody read in between)."""
    radostdb.Tdb(db_name, 8, 0, CREATE).store(b"x", b"1")
    proc = python(COMMITTER, dict(cluster_env, RADOSTDB_TEST_CRASH_AT="round-done"), db_name, "1")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    db = radostdb.Tdb(db_name, lock_lease=2)
    db.transaction_start()  # waits for the lease, then recovers
    assert db.get(b"k000") == b"new" and db.get(b"k031") == b"new"
    db.transaction_cancel()


BANK_WORKER = """
    import os, random, sys, time, radostdb
    db = radostdb.Tdb(sys.argv[1], 0, 0, os.O_RDWR, lock_lease=2)
    rng = random.Random()
    while True:  # no think time: the transaction lock queues fairly
        a, b = rng.sample(range(32), 2)
        with db.transaction():
            va = int(db[b"acct%02d" % a])
            vb = int(db[b"acct%02d" % b])
            amount = rng.randrange(0, 50)
            db.store(b"acct%02d" % a, str(va - amount).encode())
            db.store(b"acct%02d" % b, str(vb + amount).encode())
"""

AUDITOR = """
    import os, sys, time, radostdb
    db = radostdb.Tdb(sys.argv[1], 0, 0, os.O_RDWR, lock_lease=2)
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        db.transaction_start()
        total = sum(int(db[b"acct%02d" % i]) for i in range(32))
        db.transaction_cancel()
        print(total, flush=True)
"""


@pytest.mark.slow
def test_bank_invariant_under_kill9(
    db_name: str, cluster_env: dict[str, str], start_method: str
) -> None:
    """3 transferring processes killed at random and restarted for 20 s; every
    audit inside a transaction, and the final sum, equal the initial total."""
    db = radostdb.Tdb(db_name, 8, 0, CREATE, lock_lease=2)
    with db.transaction():
        for i in range(32):
            db.store(b"acct%02d" % i, b"1000")
    total = 32 * 1000
    duration = 20.0
    auditor = python(AUDITOR, cluster_env, db_name, str(duration), method=start_method)
    workers = [python(BANK_WORKER, cluster_env, db_name, method=start_method) for _ in range(3)]
    rng = random.Random(7)
    kills = 0
    end = time.monotonic() + duration
    try:
        while time.monotonic() < end:
            time.sleep(rng.uniform(0.3, 1.5))
            i = rng.randrange(3)
            kill(workers[i])
            kills += 1
            workers[i] = python(BANK_WORKER, cluster_env, db_name, method=start_method)
    finally:
        for w in workers:
            kill(w)
    out, err = auditor.communicate(timeout=120)
    assert auditor.returncode == 0, err
    audits = [int(line) for line in out.split()]
    assert kills >= 10 and len(audits) >= 5, (kills, audits)
    assert set(audits) == {total}
    final = radostdb.Tdb(db_name, lock_lease=2)
    final.transaction_start()
    assert sum(int(final[b"acct%02d" % i]) for i in range(32)) == total
    final.transaction_cancel()


def test_transactions_are_serialised(db_name: str) -> None:
    a = radostdb.Tdb(db_name, 8, 0, CREATE)
    b = radostdb.Tdb(db_name, 8, 0, CREATE)
    a.transaction_start()
    t0 = time.monotonic()
    with pytest.raises(RuntimeError) as err:
        b.transaction_start_nonblock()
    # tdb_transaction_start_nonblock sets TDB_ERR_NOLOCK (transaction.c)
    assert err.value.args == (6, "Lock exists on other keys") and time.monotonic() - t0 < 1
    order: list[str] = []
    started = threading.Event()

    def second() -> None:
        started.set()
        b.transaction_start()
        order.append("b started")
        b.store(b"who", b"b")
        b.transaction_commit()

    t = threading.Thread(target=second)
    t.start()
    started.wait()
    time.sleep(1.0)
    a.store(b"who", b"a")
    order.append("a commits")
    a.transaction_commit()
    t.join(30)
    assert order == ["a commits", "b started"]
    assert a[b"who"] == b"b"


def test_single_shard_commit_needs_no_journal(db_name: str, ioctx: object) -> None:
    db = radostdb.Tdb(db_name, 0, 0, CREATE, shards=1)
    with db.transaction():
        for i in range(100):
            db.store(b"%d" % i, b"v")
    assert len(list(db.keys())) == 100
    with pytest.raises(rados.ObjectNotFound):  # made by the first multi-shard commit
        ioctx.stat(layout.journal_object(db_name))  # type: ignore[attr-defined]


def test_large_transactions(db_name: str) -> None:
    db = radostdb.Tdb(db_name, 8, 0, CREATE)
    db.transaction_start()
    for i in range(10000):
        db.store(b"r%05d" % i, b"%d" % i)
    db.transaction_cancel()
    assert db.firstkey() is None
    with db.transaction():
        for i in range(10000):
            db.store(b"r%05d" % i, b"%d" % i)
    assert len(list(db.keys())) == 10000 and db[b"r09999"] == b"9999"
    mib = os.urandom(1 << 20)
    db.transaction_start()
    for i in range(50):
        db.store(b"big%02d" % i, mib)
    db.transaction_cancel()
    assert db.get(b"big00") is None
    with db.transaction():
        for i in range(50):
            db.store(b"big%02d" % i, mib)
    assert all(db[b"big%02d" % i] == mib for i in range(50))


def test_transaction_context_manager_cancels_on_error(db_name: str) -> None:
    db = radostdb.Tdb(db_name, 8, 0, CREATE)
    with pytest.raises(ZeroDivisionError), db.transaction():
        db.store(b"a", b"1")
        db.store(b"b", b"2")
        _ = 1 / 0
    assert db.get(b"a") is None and db.get(b"b") is None
    other = radostdb.Tdb(db_name)
    other.transaction_start_nonblock()  # the lock was released
    other.transaction_cancel()


HOLDER = """
    import os, sys, time, radostdb
    db = radostdb.Tdb(sys.argv[1], 0, 0, os.O_RDWR, txn_lease=1)
    db.transaction_start()
    db.get(b"k000")  # isolation on one shard only
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_dead_transaction_holder_is_fenced_on_every_shard(
    db_name: str, cluster_env: dict[str, str], start_method: str
) -> None:
    """A transaction holder killed with kill -9 after touching one shard: the
    next transaction to start meets its expired lock and stamps every shard
    with an epoch above the dead one's (resolver._fence_epochs), so a holder
    that only slept could not take isolation on, or write to, a shard it had
    not touched yet (the class refuses older epochs)."""
    from procs import expect

    from radostdb import clsops

    db = radostdb.Tdb(db_name, 0, 0, CREATE, txn_lease=1)
    for k in KEYS:
        db.store(k, b"v")
    holder = python(HOLDER, cluster_env, db_name, method=start_method)
    expect(holder, "holding")
    io = db._storage.io()  # type: ignore[union-attr]
    wait_obj = layout.wait_object(layout.header_object(db_name))
    dead_epoch = clsops.state(io, wait_obj).header.epoch  # type: ignore[union-attr]
    kill(holder)
    db.transaction_start()
    db.transaction_cancel()
    epochs = [
        clsops.state(io, layout.shard_object(db_name, i)).header.epoch  # type: ignore[union-attr]
        for i in range(db._storage.nshards)  # type: ignore[union-attr]
    ]
    print("dead holder's epoch", dead_epoch, "shards'", epochs)
    assert dead_epoch > 0 and all(e > dead_epoch for e in epochs), (dead_epoch, epochs)


GIVER = """
    import os, sys, radostdb
    name, ks, kt = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
    db = radostdb.Tdb(name, 0, 0, os.O_RDWR)
    db.transaction_start()
    db.store(ks, b"%d" % (int(db[ks]) - 1))
    db.store(kt, b"%d" % (int(db[kt]) + 1))
    print("ready", flush=True)
    sys.stdin.readline()
    db.transaction_commit()
    print("survived", flush=True)
"""


def test_a_giver_killed_in_its_hand_on_leaves_its_commit_whole(
    db_name: str,
    cluster_env: dict[str, str],
    start_method: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker's transaction X moves 1 from ks to kt (shards 0 and 1); b
    waits for the transaction lock. The worker hands it on to b and is
    killed in that round: shard 0 settled, shard 1 still pending X. b's
    transaction writes ks and ku (shard 2) and hands on, settling its own
    on shard 0, which then no longer shows X. A reader of kt decides X: it
    must find X committed (the giver marked it complete before b was told,
    txnlock._complete_first), not missing on shard 0 and so aborted, half
    installed."""
    monkeypatch.setenv("RADOSTDB_TXN_LEASE", "2")
    db = radostdb.Tdb(db_name, 0, 0, CREATE, shards=8)
    router = db._storage_or_closed().router
    by_shard: dict[int, bytes] = {}
    i = 0
    while len(by_shard) < 3 or not {0, 1, 2} <= set(by_shard):
        by_shard.setdefault(router.shard(b"k%d" % i), b"k%d" % i)
        i += 1
    ks, kt, ku = by_shard[0], by_shard[1], by_shard[2]
    for k in (ks, kt, ku):
        db.store(k, b"100")
    env = dict(cluster_env, RADOSTDB_TEST_CRASH_AT="hand-on-partial", RADOSTDB_TXN_LEASE="2")
    proc = python(GIVER, env, db_name, ks.decode(), kt.decode(), method=start_method)
    expect(proc, "ready")
    b = radostdb.Tdb(db_name)
    out: dict[str, object] = {}

    def run() -> None:
        try:
            b.transaction_start()
            b.store(ks, b[ks])
            b.store(ku, b[ku])
            b.transaction_commit()
        except BaseException as exc:  # reported by the test
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    storage = db._storage_or_closed()
    mine = b._storage_or_closed().locks.owner
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # b queued, and announced to the worker
        st = clsops.state(storage.shards.io(), storage.db.wait_obj)
        if st is not None and any(e.owner == mine and not e.held for e in st.header.entries):
            break
        time.sleep(0.01)
    time.sleep(0.5)
    say(proc, "go")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    t.join(60)
    assert "error" not in out, out
    assert b._storage_or_closed().txnlock.state is not txnlock.State.ACTIVE
    reader = radostdb.Tdb(db_name)
    assert [reader[k] for k in (ks, kt, ku)] == [b"99", b"101", b"100"]
    for h in (db, b, reader):
        h.close()

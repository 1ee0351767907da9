"""Cluster-wide record locks and whole-database locks, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
from procs import expect, finish, kill, say
from procs import python as spawn
from procs import signal as signal_worker

import radostdb

CREATE = os.O_CREAT | os.O_RDWR


COUNTER = """
    import os, sys, radostdb
    name, locked = sys.argv[1], sys.argv[2] == "locked"
    db = radostdb.Tdb(name, 0, 0, os.O_RDWR)
    print("ready", flush=True)
    sys.stdin.readline()  # all start together
    for _ in range(100):
        if locked:
            db.chainlock(b"counter")
        value = int(db.get(b"counter"))
        db.store(b"counter", str(value + 1).encode())
        if locked:
            db.chainunlock(b"counter")
    db.close()
"""


def run_counters(db_name: str, env: dict[str, str], locked: bool, method: str = "spawn") -> int:
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.store(b"counter", b"0")
    workers = [
        spawn(COUNTER, env, db_name, "locked" if locked else "unlocked", method=method)
        for _ in range(4)
    ]
    for p in workers:
        expect(p, "ready")
    for p in workers:
        say(p, "go")
    for p in workers:
        assert p.stdin is not None
        p.stdin.close()
        p.wait(timeout=300)
        assert p.returncode == 0, p.stderr.read() if p.stderr else ""
    return int(db[b"counter"])


def test_counter_under_chainlock_loses_nothing(
    db_name: str, cluster_env: dict[str, str], start_method: str
) -> None:
    assert run_counters(db_name, cluster_env, locked=True, method=start_method) == 400


def test_counter_without_lock_loses_updates(db_name: str, cluster_env: dict[str, str]) -> None:
    """The same read-modify-write without the lock: the check above can fail."""
    assert run_counters(db_name, cluster_env, locked=False) < 400


HOLDER = """
    import os, sys, radostdb
    db = radostdb.Tdb(sys.argv[1], 0, 0, os.O_RDWR, lock_lease=float(sys.argv[2]))
    whole = sys.argv[3:] == ["lock_all"]
    db.lock_all() if whole else db.chainlock(b"k")
    print("locked", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "unlock":
            try:
                db.unlock_all() if whole else db.chainunlock(b"k")
                print("unlocked", flush=True)
            except RuntimeError as e:
                print(f"refused {e.args[0]}", flush=True)
        elif cmd == "store":
            try:
                db.store(b"k", b"from the stale holder")
                print("stored", flush=True)
            except RuntimeError as e:
                print(f"refused {e.args[0]}", flush=True)
        elif cmd == "lock_all":
            db.lock_all()
            print("locked all", flush=True)
        elif cmd == "unlock_all":
            db.unlock_all()
            print("unlocked all", flush=True)
"""


def test_store_to_locked_record_waits(db_name: str, cluster_env: dict[str, str]) -> None:
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    holder = spawn(HOLDER, cluster_env, db_name, "30")
    expect(holder, "locked")
    done = threading.Event()
    writer = threading.Thread(target=lambda: (db.store(b"k", b"after"), done.set()))
    writer.start()
    assert not done.wait(1.5), "the store did not wait for the lock"
    say(holder, "unlock")
    expect(holder, "unlocked")
    assert done.wait(10), "the store did not complete after the unlock"
    writer.join()
    assert db[b"k"] == b"after"
    finish([holder], 30)


def test_chainlock_nonblock_fails_fast(db_name: str, cluster_env: dict[str, str]) -> None:
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    holder = spawn(HOLDER, cluster_env, db_name, "30")
    expect(holder, "locked")
    t0 = time.monotonic()
    with pytest.raises(RuntimeError) as err:
        db.chainlock_nonblock(b"k")
    assert time.monotonic() - t0 < 1.0
    assert err.value.args == (3, "Locking error")
    with pytest.raises(RuntimeError):
        db.chainlock_read_nonblock(b"k")
    finish([holder], 30)


def test_killed_holder_loses_lock_after_lease(
    db_name: str, cluster_env: dict[str, str], start_method: str
) -> None:
    db = radostdb.Tdb(db_name, 0, 0, CREATE, lock_lease=3)
    holder = spawn(HOLDER, cluster_env, db_name, "3", method=start_method)
    expect(holder, "locked")
    kill(holder)
    t0 = time.monotonic()
    db.chainlock(b"k")
    waited = time.monotonic() - t0
    assert waited < 3 + 3, f"got the lock {waited:.1f}s after the holder died"
    db.store(b"k", b"mine")
    db.chainunlock(b"k")


def _stale_holder(
    db_name: str, cluster_env: dict[str, str], lock: str, start_method: str, release: bool
) -> tuple[radostdb.Tdb, subprocess.Popen[str]]:
    """A HOLDER (lease 2 s) SIGSTOPped until our handle took the lock from it
    and stored "new owner" (and, with ``release``, unlocked again); resumed."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE, lock_lease=3)
    holder = spawn(HOLDER, cluster_env, db_name, "2", lock, method=start_method)
    expect(holder, "locked")
    signal_worker(holder, signal.SIGSTOP)
    try:
        db.chainlock(b"k")  # waits until the holder's lease ran out
        db.store(b"k", b"new owner")
        if release:
            db.chainunlock(b"k")
    finally:
        signal_worker(holder, signal.SIGCONT)
    return db, holder


@pytest.mark.parametrize("noticed", [False, True], ids=["at-once", "noticed"])
@pytest.mark.parametrize("lock", ["chainlock", "lock_all"])
def test_stale_holder_is_fenced(
    db_name: str, cluster_env: dict[str, str], noticed: bool, lock: str, start_method: str
) -> None:
    """A holder suspended past its lease, whose lock another took, cannot
    write: at once after it wakes (the OSD refuses the write), and after its
    renewal found the lock gone (refused without waiting for the new owner);
    its unlock is refused too, and the new owner's record stays."""
    db, holder = _stale_holder(db_name, cluster_env, lock, start_method, release=False)
    if noticed:
        time.sleep(2.0)  # its overdue renewal runs at once and finds the lock gone
    say(holder, "store")
    expect(holder, "refused 3", timeout=10)
    say(holder, "unlock")
    expect(holder, "refused 3", timeout=10)
    assert db[b"k"] == b"new owner"
    db.chainunlock(b"k")
    finish([holder], 30)


@pytest.mark.parametrize("lock", ["chainlock", "lock_all"])
def test_stale_holder_is_fenced_when_nobody_holds_a_lock_any_more(
    db_name: str, cluster_env: dict[str, str], lock: str, start_method: str
) -> None:
    """As above, but the new owner has released the lock too before the
    stale holder writes: the object's lock table is empty, and the write
    asserting the lost lock is refused all the same (the class let it
    through when the table was empty)."""
    db, holder = _stale_holder(db_name, cluster_env, lock, start_method, release=True)
    say(holder, "store")
    expect(holder, "refused 3", timeout=10)
    assert db[b"k"] == b"new owner"
    finish([holder], 30)


def test_lock_all_blocks_other_writers(db_name: str, cluster_env: dict[str, str]) -> None:
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    holder = spawn(HOLDER, cluster_env, db_name, "30")
    expect(holder, "locked")
    say(holder, "unlock")
    expect(holder, "unlocked")
    say(holder, "lock_all")
    expect(holder, "locked all")
    assert db.get(b"k") is None, "reads go on under lock_all"
    done = threading.Event()
    writer = threading.Thread(target=lambda: (db.store(b"other", b"x"), done.set()))
    writer.start()
    assert not done.wait(1.5), "a store went through another handle's lock_all"
    with pytest.raises(RuntimeError):
        db.chainlock_nonblock(b"anything")
    say(holder, "unlock_all")
    expect(holder, "unlocked all")
    assert done.wait(10)
    writer.join()
    assert db[b"other"] == b"x"
    finish([holder], 30)


def test_read_lock_all_blocks_writers_not_readers(db_name: str) -> None:
    a = radostdb.Tdb(db_name, 0, 0, CREATE)
    b = radostdb.Tdb(db_name, 0, 0, CREATE)
    a.store(b"k", b"v")
    a.read_lock_all()
    assert b.get(b"k") == b"v"
    b.chainlock_read_nonblock(b"k")  # shared locks are admitted
    b.chainunlock_read(b"k")
    with pytest.raises(RuntimeError):
        b.chainlock_nonblock(b"k")
    with pytest.raises(RuntimeError):
        b.lock_all_nonblock()
    b.read_lock_all_nonblock()
    b.read_unlock_all()
    a.store(b"k", b"holder writes")  # the holder itself is not blocked
    a.read_unlock_all()
    b.store(b"k", b"free again")
    assert a[b"k"] == b"free again"


def test_lock_semantics_in_one_process(db_name: str) -> None:
    a = radostdb.Tdb(db_name, 0, 0, CREATE)
    b = radostdb.Tdb(db_name, 0, 0, CREATE)
    a.store(b"k", b"v")
    a.chainlock(b"k")
    a.chainlock(b"k")  # counted, as TDB does
    a.store(b"k", b"holder")  # never waits on its own lock
    a.chainunlock(b"k")
    with pytest.raises(RuntimeError):
        b.chainlock_nonblock(b"k")  # still held once
    a.chainunlock(b"k")
    with pytest.raises(RuntimeError) as err:
        a.chainunlock(b"k")
    assert err.value.args == (3, "Locking error")
    assert b.fetch_locked(b"k") == b"holder"
    assert b.fetch_locked(b"missing") is None
    with pytest.raises(RuntimeError):
        a.chainlock_nonblock(b"k")
    b.close()  # closing releases the handle's locks
    a.chainlock_nonblock(b"k")
    a.chainlock_nonblock(b"missing")
    a.chainunlock(b"missing")
    a.chainunlock(b"k")
    with a.lock(b"k"), pytest.raises(RuntimeError):
        radostdb.Tdb(db_name).chainlock_nonblock(b"k")
    with a.lock(b"k", shared=True):
        radostdb.Tdb(db_name).chainlock_read_nonblock(b"k")


def test_lease_is_renewed_while_the_handle_lives(db_name: str) -> None:
    a = radostdb.Tdb(db_name, 0, 0, CREATE, lock_lease=1)
    b = radostdb.Tdb(db_name, 0, 0, CREATE, lock_lease=1)
    a.chainlock(b"k")
    time.sleep(2.5)  # two and a half leases
    with pytest.raises(RuntimeError):
        b.chainlock_nonblock(b"k")
    a.store(b"k", b"still mine")
    a.chainunlock(b"k")


def test_lock_lease_from_environment(db_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADOSTDB_LOCK_LEASE", "nonsense")
    with pytest.raises(ValueError, match="RADOSTDB_LOCK_LEASE"):
        radostdb.Tdb(db_name, 0, 0, CREATE)
    with pytest.raises(ValueError):
        radostdb.Tdb(db_name, 0, 0, CREATE, lock_lease=0)


def test_forked_child_locks_and_exits_cleanly(db_name: str, cluster_env: dict[str, str]) -> None:
    """smbd's pattern: fork, use the inherited handle (the child connects
    afresh), lock, exit normally: the exit releases the child's locks."""
    script = spawn(
        """
        import os, sys, radostdb
        db = radostdb.Tdb(sys.argv[1], 0, 0, os.O_RDWR | os.O_CREAT)
        db.store(b"a", b"1")
        pid = os.fork()
        if pid == 0:
            db.store(b"child", b"2")
            db.chainlock(b"c")
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), db.get(b"child").decode(), flush=True)
        db.chainlock_nonblock(b"c")
        print("parent has the lock", flush=True)
    """,
        cluster_env,
        db_name,
    )
    out, err = script.communicate("", timeout=60)
    assert script.returncode == 0, err
    assert out.split("\n")[:2] == ["0 2", "parent has the lock"]

"""RADOSTDB_OP_TIMEOUT holds for every blocking path: calls, lock waits,
opening, closing, process exit and the CLI, with the OSD frozen (SIGSTOP)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import radostdb
from radostdb import cluster as clustermod
from radostdb.devcluster import ClusterError, DevCluster
from radostdb.testing import ClusterInfo

T = 3.0  # RADOSTDB_OP_TIMEOUT in these tests
SLACK = 3.0  # what "about T" may add on this loaded 2-core machine


@pytest.fixture(scope="module")
def frozen_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfo]:
    """A cluster of its own (one memstore OSD): its OSD gets SIGSTOPped."""
    dev = DevCluster(tmp_path_factory.mktemp("frozen", numbered=True))
    try:
        dev.up(owner=os.getpid())
    except (ClusterError, OSError) as exc:
        dev.down()
        pytest.fail(f"the cluster did not start: {exc}")
    try:
        yield ClusterInfo(str(dev.conf), dev.pool, "admin", dev)
    finally:
        osd = dev.osd(0)
        if osd is not None:
            os.kill(osd.pid, signal.SIGCONT)
        clustermod.shutdown_all(final=False)
        dev.down()


def _env(info: ClusterInfo, **extra: str) -> dict[str, str]:
    return {**info.child_env(), "RADOSTDB_OP_TIMEOUT": str(T), **extra}


class Frozen:
    """SIGSTOP the OSD for a block; SIGCONT it afterwards, whatever happens."""

    def __init__(self, info: ClusterInfo) -> None:
        assert info.dev is not None
        osd = info.dev.osd(0)
        assert osd is not None
        self.pid = osd.pid
        self.info = info

    def __enter__(self) -> Frozen:
        os.kill(self.pid, signal.SIGSTOP)
        stopped(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)
        thawed(self.info)


def stopped(pid: int, limit: float = 30.0) -> None:
    """Wait until every thread of pid is stopped. A SIGSTOP takes effect when
    one thread of the process dequeues it and stops the others; until then
    (milliseconds on a loaded machine) the rest go on serving requests."""
    deadline = time.monotonic() + limit
    while True:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except FileNotFoundError:  # the thread ended meanwhile
                continue
            states.append(stat.rsplit(")", 1)[1].split()[0])
        if states and all(s in ("T", "t") for s in states):
            return
        assert time.monotonic() < deadline, f"pid {pid} did not stop: thread states {states}"
        time.sleep(0.005)


def thawed(info: ClusterInfo, limit: float = 120.0) -> float:
    """Wait until the thawed OSD serves a write again (it works through what
    queued while it was stopped first), so that the next test starts on an
    answering cluster; returns the seconds it took."""
    t0 = time.monotonic()
    conn = clustermod.connect(info.conf, info.client_id, timeout=5.0)
    try:
        io = conn.open_ioctx(info.pool)
        while True:
            try:
                io.write_full("thawed-probe", b"x")
                return time.monotonic() - t0
            except Exception:
                assert time.monotonic() - t0 < limit, "the OSD does not answer after SIGCONT"
    finally:
        conn.shutdown()


CALLS = """
    import json, os, sys, time, radostdb
    name = sys.argv[1]
    db = radostdb.Tdb(name, 8, 0, os.O_RDWR | os.O_CREAT)
    with db.transaction():
        for i in range(16):
            db.store(b"k%02d" % i, b"v")
    db.chainlock(b"held")  # locks to release at close
    other = radostdb.Tdb(name)  # transactions: not on a handle holding locks (as tdb)
    import threading
    from radostdb import service
    for _ in range(2):  # the watches made off the callers' path (and their look at the table)
        idle = threading.Event()
        service.submit(idle.set)
        idle.wait(30)
    print("ready", flush=True)
    sys.stdin.readline()  # the OSD is frozen now

    def timed(what, fn):
        t = time.monotonic()
        try:
            fn()
            out = {"what": what, "ok": True}
        except Exception as exc:
            out = {"what": what, "ok": False, "type": type(exc).__name__,
                   "tdb_error": isinstance(exc, radostdb.TdbError),
                   "args": [str(a) for a in getattr(exc, "args", ())]}
        out["seconds"] = time.monotonic() - t
        print(json.dumps(out), flush=True)

    def txn():
        other.transaction_start()
        other.store(b"k00", b"w")
        other.transaction_commit()

    timed("get", lambda: db.get(b"k01"))
    timed("store", lambda: db.store(b"new", b"v"))
    timed("chainlock", lambda: db.chainlock(b"k02"))
    timed("transaction", txn)
    timed("open", lambda: radostdb.Tdb(name))
    timed("close", db.close)
    print("exiting", flush=True)
"""


def test_every_call_gives_up_after_the_timeout(frozen_cluster: ClusterInfo) -> None:
    """With the OSD frozen, each call fails with TDB's IO error (or, for a
    lock wait, the lock timeout) naming the object, in about T; closing and
    process exit take about T and print nothing."""
    name = f"frozen-{os.getpid()}"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CALLS), name],
        env=_env(frozen_cluster),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "ready"
    results = {}
    with Frozen(frozen_cluster):
        t0 = time.monotonic()
        child.stdin.write("go\n")
        child.stdin.flush()
        for _ in range(6):
            line = child.stdout.readline()
            assert line, f"the child died: {child.stderr.read() if child.stderr else ''}"
            r = json.loads(line)
            results[r["what"]] = r
        assert child.stdout.readline().strip() == "exiting"
        t_exit = time.monotonic()
        child.wait(timeout=60)
        exit_time = time.monotonic() - t_exit
        stderr = child.stderr.read() if child.stderr else ""
        total = time.monotonic() - t0
    print(
        f"durations with {T:g} s: "
        f"{ {k: round(v['seconds'], 2) for k, v in results.items()} }, "
        f"exit {exit_time:.2f} s, all {total:.1f} s"
    )
    for what in ("get", "store", "transaction", "open"):
        r = results[what]
        assert not r["ok"], r
        assert r["tdb_error"] and r["type"] == "RuntimeError" and r["args"][0] == "2", r
        assert "timed out" in r["args"][1] and "radostdb." in r["args"][1], r
    assert not results["chainlock"]["ok"]
    assert results["chainlock"]["args"][0] in ("2", "7"), results["chainlock"]
    for r in results.values():
        assert r["seconds"] < 2 * T + SLACK, r  # a transaction: its lock, then its commit
    assert results["close"]["ok"], results["close"]
    assert results["close"]["seconds"] < T + SLACK
    assert exit_time < T + SLACK, exit_time
    assert child.returncode == 0, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


def test_cli_gives_up_after_the_timeout(frozen_cluster: ClusterInfo) -> None:
    name = f"frozen-cli-{os.getpid()}"
    env = _env(frozen_cluster)
    db = radostdb.Tdb(
        name, 8, 0, os.O_RDWR | os.O_CREAT, conf=frozen_cluster.conf, pool=frozen_cluster.pool
    )
    db.store(b"k", b"v")
    db.close()
    cli = str(Path(sys.executable).parent / "radostdb")
    with Frozen(frozen_cluster):
        t0 = time.monotonic()
        r = subprocess.run(
            [cli, "get", name, "k"], env=env, capture_output=True, text=True, timeout=60
        )
        took = time.monotonic() - t0
    print(
        f"radostdb get with the OSD frozen: exit {r.returncode} after {took:.2f} s: "
        f"{r.stderr.strip()}"
    )
    assert r.returncode == 1
    assert r.stderr.startswith("Error: ") and "timed out" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert took < 2 * T + SLACK


HOLDER = """
    import os, sys, radostdb
    db = radostdb.Tdb(sys.argv[1], 0, 0, os.O_RDWR | os.O_CREAT, lock_lease=float(sys.argv[2]))
    db.chainlock(b"k")
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_a_lock_wait_gives_up_on_a_live_holder(frozen_cluster: ClusterInfo) -> None:
    """A holder that lives and renews: the wait ends after T with TDB's
    lock-timeout error; after a dead holder, the lock comes within its lease."""
    name = f"lockwait-{os.getpid()}"
    env = _env(frozen_cluster)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), name, "30"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    os.environ["RADOSTDB_OP_TIMEOUT"] = str(T)
    try:
        db = radostdb.Tdb(name, conf=frozen_cluster.conf, pool=frozen_cluster.pool)
        t0 = time.monotonic()
        with pytest.raises(RuntimeError) as err:
            db.chainlock(b"k")
        waited = time.monotonic() - t0
        assert err.value.args[0] == 7, err.value.args  # TDB_ERR_LOCK_TIMEOUT
        assert T - 0.5 < waited < T + SLACK, waited
        holder.communicate("", timeout=60)  # exits: its close releases the lock
        dead_lease = 4.0
        holder = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(HOLDER), name, str(dead_lease)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        t0 = time.monotonic()
        db.chainlock(b"k")  # the dead holder's lease runs out: granted, no timeout
        waited = time.monotonic() - t0
        print(f"lock after a dead holder ({dead_lease:g} s lease, T {T:g} s): {waited:.2f} s")
        assert waited < dead_lease + SLACK
        db.chainunlock(b"k")
        db.close()
    finally:
        os.environ.pop("RADOSTDB_OP_TIMEOUT", None)
        holder.kill()

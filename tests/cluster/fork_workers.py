"""Fork scenarios for test_forking.py: ``python fork_workers.py SCENARIO ARGS``.

Each scenario runs a parent that uses radostdb and then starts children
(os.fork, or multiprocessing with a given start method), checks what it
can itself, and prints one JSON object per line for the test to judge.
The cluster comes from the environment (CEPH_CONF, RADOSTDB_POOL,
RADOSTDB_ID), as for any radostdb program.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from typing import Any

import radostdb
from radostdb import clsops, cluster, layout, wakeup

RW, CREATE = os.O_RDWR, os.O_RDWR | os.O_CREAT
CHILD_TIMEOUT = 120.0


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def address() -> str:
    """This process's cluster client address (the shared session's)."""
    return str(cluster.resolve("x").session.rados().get_addrs())


def instance_id() -> int:
    return int(cluster.resolve("x").session.rados().get_instance_id())


def watchers(name: str, key: bytes) -> list[int]:
    """Client ids watching the shard object of ``key``."""
    db = radostdb.Tdb(name, 0, 0, RW)
    try:
        obj = layout.shard_object(name, db._storage.router.layout.shard(key))  # type: ignore[union-attr]
        return sorted({c for c, _ in clsops.watchers(db._storage.io(), obj)})  # type: ignore[union-attr]
    finally:
        db.close()


def use_fully(db: radostdb.Tdb) -> radostdb.Tdb:
    """A parent that has used everything: records, a transaction (its lock
    stays cached), and a record lock it keeps in a database of its own (the
    service thread runs). Returns the handle holding that lock."""
    db.store(b"parent", b"1")
    with db.transaction():
        db.store(b"parent-txn", b"1")
    name = db.filename.decode()
    elsewhere = radostdb.Tdb(f"{name}-parent", 0, 0, CREATE)
    elsewhere.chainlock(b"parent-held")
    return elsewhere


def done_with(elsewhere: radostdb.Tdb) -> None:
    elsewhere.chainunlock(b"parent-held")
    elsewhere.close()


# -- the scenario: siblings doing locked increments --------------------------------
def _incrementer(name: str, n: int, q: Any) -> None:
    db = radostdb.Tdb(name, 0, 0, RW)
    for _ in range(n):
        db.chainlock(b"ctr")
        value = int(db.get(b"ctr"))
        time.sleep(0.001)
        db.store(b"ctr", b"%d" % (value + 1))
        db.chainunlock(b"ctr")
    q.put((os.getpid(), address(), n))
    db.close()


def increments(method: str, name: str, reps: str, children: str = "4", each: str = "40") -> None:
    """REPS repetitions: CHILDREN children (multiprocessing, start METHOD)
    each doing EACH increments under chainlock; the parent holds a lock
    elsewhere, has a cached transaction lock and keeps working between."""
    ctx = multiprocessing.get_context(method)
    db = radostdb.Tdb(name, 0, 0, CREATE)
    elsewhere = use_fully(db)
    for rep in range(int(reps)):
        db.store(b"ctr", b"0")
        q = ctx.Queue()
        procs = [
            ctx.Process(target=_incrementer, args=(name, int(each), q))
            for _ in range(int(children))
        ]
        t0 = time.monotonic()
        for p in procs:
            p.start()
        deadline = t0 + CHILD_TIMEOUT
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        seconds = time.monotonic() - t0
        hung = [p.pid for p in procs if p.is_alive()]
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        reports = []
        while not q.empty():
            reports.append(q.get())
        with db.transaction():  # the parent keeps working after its children
            db.store(b"parent-txn", b"%d" % rep)
        say(
            rep=rep,
            seconds=round(seconds, 2),
            counter=int(db.get(b"ctr")),
            expected=int(children) * int(each),
            exitcodes=[p.exitcode for p in procs],
            hung=hung,
            addresses=sorted(a for _, a, _ in reports),
            counts=[n for _, _, n in reports],
            parent_address=address(),
            parent_id=instance_id(),
            watchers=watchers(name, b"ctr"),
        )
    done_with(elsewhere)
    db.close()


# -- a preforking server -------------------------------------------------------------------
ACCOUNTS = 16
INITIAL = 100
PREFORK_LOCK_LEASE = 3  # seconds: the children's lock lease (their transaction lease: 2)


def _prefork_child(names: list[str], ops: int, log_path: str, seed: int) -> None:
    """One child: open the three databases itself, then per step: a locked
    increment of its own count in the shared record, a transfer between
    accounts, a plain store of its progress. Acknowledgements go to a log."""
    rng = random.Random(seed)
    me = str(os.getpid())
    counter, bank, progress = (
        radostdb.Tdb(n, 0, 0, RW, lock_lease=PREFORK_LOCK_LEASE, txn_lease=2) for n in names
    )
    with open(log_path, "w", buffering=1) as log:
        log.write(f"ready {address()}\n")
        for step in range(ops):
            mine = step
            counter.chainlock(b"counts")
            counts = json.loads(counter.get(b"counts"))
            if counts.get(me, 0) != mine:
                log.write(f"lost {mine} {counts.get(me, 0)}\n")  # somebody overwrote us
                os._exit(3)
            counts[me] = mine + 1
            counter.store(b"counts", json.dumps(counts).encode())
            counter.chainunlock(b"counts")
            log.write(f"inc {mine + 1}\n")
            a, b = rng.sample(range(ACCOUNTS), 2)
            with bank.transaction():
                ka, kb = b"acct/%02d" % a, b"acct/%02d" % b
                bank.store(ka, b"%d" % (int(bank.get(ka)) - 1))
                bank.store(kb, b"%d" % (int(bank.get(kb)) + 1))
            log.write(f"txn {step + 1}\n")
            progress.store(me.encode(), b"%d" % (step + 1))
        log.write("done\n")
    for db in (counter, bank, progress):
        db.close()


def prefork(name: str, children: str, ops: str, kills: str, logdir: str) -> None:
    """A parent with three databases open and in use forks CHILDREN children
    (os.fork, as smbd); KILLS of them are killed with SIGKILL half way."""
    names = [f"{name}-counter", f"{name}-bank", f"{name}-progress"]
    dbs = [radostdb.Tdb(n, 0, 0, CREATE) for n in names]
    dbs[0].store(b"counts", b"{}")
    with dbs[1].transaction():
        for i in range(ACCOUNTS):
            dbs[1].store(b"acct/%02d" % i, b"%d" % INITIAL)
    elsewhere = use_fully(dbs[2])
    pids = []
    for i in range(int(children)):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _prefork_child(names, int(ops), os.path.join(logdir, f"child-{i}"), i)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    victims = pids[: int(kills)]

    def acked(i: int, what: str) -> int:
        try:
            with open(os.path.join(logdir, f"child-{i}")) as f:
                return max([int(ln.split()[1]) for ln in f if ln.startswith(what + " ")], default=0)
        except FileNotFoundError:
            return 0

    deadline = time.monotonic() + CHILD_TIMEOUT
    for i, pid in enumerate(victims):  # half way through its work, mid-step
        while acked(i, "inc") < int(ops) // 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(random.uniform(0, 0.02))
        os.kill(pid, signal.SIGKILL)
    dbs[2].store(b"parent-while", b"1")  # the parent works while its children do
    status = {}
    while len(status) < len(pids) and time.monotonic() < deadline:
        pid, st = os.waitpid(-1, os.WNOHANG)
        if pid:
            status[pid] = os.waitstatus_to_exitcode(st)
        else:
            time.sleep(0.05)
    hung = [p for p in pids if p not in status]
    for p in hung:
        os.kill(p, signal.SIGKILL)
    counts = json.loads(dbs[0].get(b"counts"))
    total = sum(int(dbs[1].get(b"acct/%02d" % i)) for i in range(ACCOUNTS))
    rows = []
    for i, pid in enumerate(pids):
        rows.append(
            {
                "pid": pid,
                "killed": pid in victims,
                "exit": status.get(pid),
                "acked_inc": acked(i, "inc"),
                "acked_txn": acked(i, "txn"),
                "count": counts.get(str(pid), 0),
                "progress": int(dbs[2].get(str(pid).encode()) or 0),
            }
        )
    with open(os.path.join(logdir, "child-0")) as f:
        first_address = f.readline().split()[-1]
    done_with(elsewhere)
    for db in dbs:
        db.close()
    say(
        children=rows,
        hung=hung,
        bank_total=total,
        bank_expected=ACCOUNTS * INITIAL,
        names=names,
        parent_address=address(),
        child_address=first_address,
    )


# -- a child using an inherited handle -----------------------------------------------------
def inherited(case: str, name: str) -> None:
    """The child uses the parent's handle without opening its own.
    CASE: plain, locked, txn, reopen-plain, reopen-locked, given-cluster."""
    given = None
    if case == "given-cluster":
        given = cluster.connect(os.environ["CEPH_CONF"], os.environ.get("RADOSTDB_ID", "admin"))
        db = radostdb.Tdb(name, 0, 0, CREATE, cluster=given)
    else:
        db = radostdb.Tdb(name, 0, 0, CREATE)
    db.store(b"a", b"parent")
    if case.endswith("locked"):
        db.chainlock(b"a")
    if case == "txn":
        db.transaction_start()
        db.store(b"in-txn", b"parent")
    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out: dict[str, Any] = {}
        try:
            if case.startswith("reopen"):
                try:
                    db.reopen()
                    out["reopen"] = "ok"
                except RuntimeError as exc:
                    out["reopen"] = list(exc.args)
            try:
                db.store(b"a", b"child")
                out["store"] = "ok"
                out["get"] = db.get(b"a").decode()
                db.chainlock(b"child-lock")
                db.chainunlock(b"child-lock")
                with db.transaction():
                    db.store(b"child-txn", b"1")
                out["lock+txn"] = "ok"
                out["address"] = address()
            except (RuntimeError, OSError) as exc:
                out["error"] = [type(exc).__name__, *map(str, exc.args)]
            db.close()
            out["closed"] = True
        finally:
            os.write(w, json.dumps(out).encode())
            os._exit(0)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    child = json.loads(os.read(r, 1 << 16) or b"{}")
    seconds = time.monotonic() - t0
    parent: dict[str, Any] = {"get": db.get(b"a").decode()}
    other = radostdb.Tdb(name, 0, 0, RW)
    try:
        other.chainlock_nonblock(b"a")
        parent["other_could_lock"] = True
        other.chainunlock(b"a")
    except RuntimeError:
        parent["other_could_lock"] = False
    if case.endswith("locked"):
        db.store(b"a", b"parent-again")  # still under the parent's lock
        db.chainunlock(b"a")
    if case == "txn":
        db.transaction_commit()
        parent["in-txn"] = other.get(b"in-txn").decode()
    parent["address"] = address()
    other.close()
    db.close()
    say(
        child=child,
        parent=parent,
        status=os.waitstatus_to_exitcode(status),
        seconds=round(seconds, 2),
    )


# -- forking while busy --------------------------------------------------------------------
def busy_parent(name: str, forks: str) -> None:
    """A thread of the parent loops on lock-store-unlock while the main
    thread forks FORKS children one after another; each child opens a new
    handle, does a few locked increments and exits."""
    db = radostdb.Tdb(name, 0, 0, CREATE)
    db.store(b"ctr", b"0")
    db.store(b"busy", b"0")
    stop = threading.Event()
    done = [0]
    errors: list[str] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                db.chainlock(b"busy")
                db.store(b"busy", b"%d" % (int(db.get(b"busy")) + 1))
                db.chainunlock(b"busy")
                done[0] += 1
            except Exception as exc:
                errors.append(repr(exc))
                return

    thread = threading.Thread(target=loop)
    thread.start()
    exits, progress, slowest = [], [], 0.0
    for _ in range(int(forks)):
        before = done[0]
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                child = radostdb.Tdb(name, 0, 0, RW)
                for _ in range(5):
                    child.chainlock(b"ctr")
                    child.store(b"ctr", b"%d" % (int(child.get(b"ctr")) + 1))
                    child.chainunlock(b"ctr")
                child.close()
                code = 0
            finally:
                os._exit(code)
        deadline = t0 + CHILD_TIMEOUT
        while True:
            got, st = os.waitpid(pid, os.WNOHANG)
            if got or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        if not got:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            exits.append("hung")
        else:
            exits.append(os.waitstatus_to_exitcode(st))
        slowest = max(slowest, time.monotonic() - t0)
        progress.append(done[0] - before)
    stop.set()
    thread.join(CHILD_TIMEOUT)
    say(
        exits=exits,
        ctr=int(db.get(b"ctr")),
        expected=5 * int(forks),
        parent_ops=done[0],
        parent_busy=int(db.get(b"busy")),
        progress=progress,
        errors=errors,
        slowest=round(slowest, 2),
    )
    db.close()


# -- an announce nobody acknowledges -------------------------------------------------------
def deaf_waiter(name: str, key: str, rounds: str) -> None:
    """ROUNDS times: on "go", wait for KEY (held by the test while a stopped
    process watches its object) and report how long it took; then what was
    announced."""
    db = radostdb.Tdb(name, 0, 0, RW)
    print("ready", flush=True)
    for _ in range(int(rounds)):
        sys.stdin.readline()
        t0 = time.monotonic()
        db.chainlock(key.encode())
        print(f"waited {time.monotonic() - t0:.3f}", flush=True)
        db.chainunlock(key.encode())
    say(stats=wakeup.stats())
    db.close()


SCENARIOS = {
    "increments": increments,
    "prefork": prefork,
    "inherited": inherited,
    "busy-parent": busy_parent,
    "deaf-waiter": deaf_waiter,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](*sys.argv[2:])

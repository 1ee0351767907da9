"""Worker processes of test_reshard.py: ``main(KIND, NAME, ARGS...)``.

Every worker opens database NAME, prints ``ready``, works in a tight loop
(no think time) until its stdin reaches its end (procs.finish closes it) or
says ``stop``, then prints one JSON line with what it did and what it was
told (acknowledged), for the test's exact checks.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
from collections.abc import Callable

import radostdb

ACCOUNTS = 20
START = 1000  # each account's balance at the start
STATIC = 2000  # records present throughout (the traverser counts them)


def static_key(i: int) -> bytes:
    return b"static/%05d" % i


def account(i: int) -> bytes:
    return b"acct/%02d" % i


def _stopper() -> Callable[[], bool]:
    stop = threading.Event()

    def watch() -> None:
        for text in sys.stdin:
            if text.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    return stop.is_set


def _open(name: str) -> radostdb.Tdb:
    return radostdb.Tdb(name, 0, 0, os.O_RDWR)


def writer(name: str, wid: str) -> dict[str, object]:
    """Stores to 200 keys of its own, over and over: the last value
    acknowledged for each key is reported."""
    db = _open(name)
    stop = _stopper()
    print("ready", flush=True)
    last: dict[str, str] = {}
    n = 0
    while not stop():
        key = b"w/%s/%03d" % (wid.encode(), n % 200)
        value = b"%d" % n
        db.store(key, value)
        last[key.decode()] = value.decode()
        n += 1
    return {"ops": n, "last": last}


def banker(name: str) -> dict[str, object]:
    """Transfers between accounts in transactions; every 10th also reads
    every account inside the transaction and checks the total (reads inside
    a transaction are not changed by others: the total is exact)."""
    db = _open(name)
    stop = _stopper()
    print("ready", flush=True)
    n = bad = 0
    rng = random.Random()
    while not stop():
        a, b = rng.sample(range(ACCOUNTS), 2)
        with db.transaction():
            va, vb = int(db.get(account(a))), int(db.get(account(b)))
            db.store(account(a), b"%d" % (va - 1))
            db.store(account(b), b"%d" % (vb + 1))
            if n % 10 == 0:
                total = sum(int(db.get(account(i))) for i in range(ACCOUNTS))
                bad += total != ACCOUNTS * START
        n += 1
    return {"ops": n, "bad_totals": bad}


def locker(name: str) -> dict[str, object]:
    """Locked increments of one hot counter (chainlock, read, store, unlock):
    the counter must end at exactly the number of increments."""
    db = _open(name)
    stop = _stopper()
    print("ready", flush=True)
    n = 0
    while not stop():
        db.chainlock(b"counter")
        try:
            db.store(b"counter", b"%d" % (int(db.get(b"counter")) + 1))
        finally:
            db.chainunlock(b"counter")
        n += 1
    return {"ops": n}


def traverser(name: str) -> dict[str, object]:
    """Traverses again and again: the records present throughout (the
    STATIC ones) must each come exactly once, every time."""
    db = _open(name)
    stop = _stopper()
    print("ready", flush=True)
    n = bad = 0
    want = {static_key(i) for i in range(STATIC)}
    worst: list[int] = []
    while not stop():
        seen = [k for k in db.keys() if k.startswith(b"static/")]
        if len(seen) != STATIC or set(seen) != want:
            bad += 1
            worst = [len(seen), len(set(seen)), len(want - set(seen))]
        n += 1
    return {"ops": n, "bad": bad, "worst": worst}


def loader(name: str, chunk: str, grow_to: str, cap: str) -> dict[str, object]:
    """A bulk loader: back-to-back transactions of CHUNK new records each
    (no pause between them) until told to stop, or, with GROW_TO > 0, until
    the database has that many shards (its own background split: the
    environment lowers the threshold), or CAP records. Reports its commits'
    wall-clock times (the test compares them with the reshard's), the
    records it stored, and the shard count it saw when it ended."""
    import time

    from radostdb import reshard

    db = _open(name)
    stop = _stopper()
    size, goal, limit = int(chunk), int(grow_to), int(cap)
    print("ready", flush=True)
    n = 0
    commits: list[float] = []
    while not stop() and n < limit:
        with db.transaction():
            for i in range(n, n + size):
                db.store(b"load/%09d" % i, b"v%d" % i)
        n += size
        commits.append(time.time())
        if goal and db._storage.nshards >= goal:  # type: ignore[union-attr]
            break
    nshards = db._storage.nshards  # type: ignore[union-attr]
    reshard.wait_background(name)
    return {"ops": len(commits), "records": n, "commits": commits, "nshards": nshards}


def resharder(name: str, goal: str, page: str) -> dict[str, object]:
    """Grows the database to GOAL shards, PAGE records per step (a crash
    point in its environment may kill it on the way: crashpoints.py).
    Reports the shard count and when the reshard began and ended."""
    import time

    from radostdb import cluster, reshard

    reshard.PAGE = int(page)
    print("ready", flush=True)
    began = time.time()
    lay = reshard.reshard(cluster.resolve(name), int(goal))
    return {"nshards": lay.nshards, "began": began, "ended": time.time()}


KINDS: dict[str, Callable[..., dict[str, object]]] = {
    "writer": writer,
    "banker": banker,
    "locker": locker,
    "traverser": traverser,
    "resharder": resharder,
    "loader": loader,
}


def main(argv: list[str]) -> None:
    kind, *args = argv
    out = KINDS[kind](*args)
    print(json.dumps(out), flush=True)


HERE = os.path.dirname(os.path.abspath(__file__))
RUN = f"""
import sys
sys.path.insert(0, {HERE!r})
import reshard_workers
reshard_workers.main(sys.argv[1:])
"""

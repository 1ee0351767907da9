"""Client processes for the replicated-cluster reliability tests
(test_reliability.py): ``python fault_workers.py KIND NAME LOG STOPFILE [ARG]``.

Each worker opens database NAME with radostdb's public API and loops until
STOPFILE exists (or it is killed). It writes what it did to LOG, one line per
event, line-buffered, so the lines of a worker killed with SIGKILL are there
up to its last complete line: ``ready T``, ``try ID ...`` (before a write
whose outcome cannot be known if the worker dies or it fails), ``ack ID T``
(the write returned: acknowledged), ``err ID T CODE MESSAGE`` (a TDB error:
not acknowledged, possibly applied), ``done T``. T is ``time.monotonic()``,
one clock for every process on the machine, so the test can line events up
with the OSD kills it made.

A TDB error (RuntimeError) is logged and the loop goes on; any other
exception ends the worker with a traceback on stderr (the test fails).
Values are a function of the key (``value_of``), so a record's content can be
checked exactly without a log of values.
"""

from __future__ import annotations

import os
import random
import sys
import time
import zlib
from collections.abc import Callable
from typing import TextIO

import radostdb

Say = Callable[..., None]


def value_of(key: bytes) -> bytes:
    """The one value a worker ever stores under key."""
    return key + b"=" + b"v" * (zlib.crc32(key) % 300)


def account(i: int) -> bytes:
    return b"acct/%02d" % i


def transfer_key(xid: str) -> bytes:
    return b"xfer/" + xid.encode()


ACCOUNTS = 32


def _err(exc: RuntimeError) -> str:
    code = exc.args[0] if exc.args else "?"
    message = " ".join(str(exc.args[1] if len(exc.args) > 1 else exc).split())
    return f"{code} {message}"


def store(db: radostdb.Tdb, say: Say, stop: Callable[[], bool], wid: str) -> None:
    """Unique keys ``s/WID/N`` = value_of(key); every 8th op instead appends
    ``N;`` to ``a/WID`` (appends are not idempotent: a duplicate would show)."""
    i = 0
    while not stop():
        try:
            if i % 8 == 7:
                say("try", i)
                db.append(b"a/%s" % wid.encode(), b"%d;" % i)
            else:
                key = b"s/%s/%06d" % (wid.encode(), i)
                db.store(key, value_of(key))
            say("ack", i, time.monotonic())
        except RuntimeError as exc:
            say("err", i, time.monotonic(), _err(exc))
        i += 1


def txn(db: radostdb.Tdb, say: Say, stop: Callable[[], bool], wid: str) -> None:
    """Transactions of 4 keys ``t/WID/N/J`` (over several shards)."""
    i = 0
    while not stop():
        keys = [b"t/%s/%05d/%d" % (wid.encode(), i, j) for j in range(4)]
        say("try", i)
        try:
            with db.transaction():
                for key in keys:
                    db.store(key, value_of(key))
            say("ack", i, time.monotonic())
        except RuntimeError as exc:
            say("err", i, time.monotonic(), _err(exc))
        i += 1


def lock(db: radostdb.Tdb, say: Say, stop: Callable[[], bool], wid: str) -> None:
    """Increment ``counter`` under chainlock; ``ack V T`` names the value
    stored, so two holders at once would show as a value acknowledged twice."""
    while not stop():
        try:
            db.chainlock(b"counter")
        except RuntimeError as exc:
            say("err", "lock", time.monotonic(), _err(exc))
            continue
        try:
            value = int(db[b"counter"]) + 1
            say("try", value)
            db.store(b"counter", b"%d" % value)
            say("ack", value, time.monotonic())
        except RuntimeError as exc:
            say("err", "store", time.monotonic(), _err(exc))
        finally:
            try:
                db.chainunlock(b"counter")
            except RuntimeError as exc:
                say("err", "unlock", time.monotonic(), _err(exc))


def bank(db: radostdb.Tdb, say: Say, stop: Callable[[], bool], wid: str) -> None:
    """Transfers between accounts; each also writes ``xfer/ID`` = "A B AMOUNT"
    in the same transaction. ID = WID-N (WID names the incarnation)."""
    rng = random.Random()
    n = 0
    while not stop():
        time.sleep(rng.uniform(0, 0.05))  # think time
        a, b = rng.sample(range(ACCOUNTS), 2)
        amount = rng.randrange(1, 50)
        xid = f"{wid}-{n}"
        n += 1
        say("try", xid, a, b, amount)
        try:
            with db.transaction():
                va = int(db[account(a)])
                vb = int(db[account(b)])
                db.store(account(a), b"%d" % (va - amount))
                db.store(account(b), b"%d" % (vb + amount))
                db.store(transfer_key(xid), b"%d %d %d" % (a, b, amount))
            say("ack", xid, time.monotonic())
        except RuntimeError as exc:
            say("err", xid, time.monotonic(), _err(exc))


def audit(db: radostdb.Tdb, say: Say, stop: Callable[[], bool], wid: str) -> None:
    """Sum of every account inside a transaction (no commit can be half seen)."""
    while not stop():
        try:
            db.transaction_start()
            try:
                total = sum(int(db[account(i)]) for i in range(ACCOUNTS))
            finally:
                db.transaction_cancel()
            say("audit", total, time.monotonic())
        except RuntimeError as exc:
            say("err", "audit", time.monotonic(), _err(exc))
        time.sleep(0.2)


def hold(db: radostdb.Tdb, say: Say, stop: Callable[[], bool], wid: str) -> None:
    """Take the record lock ``held`` and keep it until killed."""
    db.chainlock(b"held")
    say("locked", time.monotonic())
    while not stop():
        time.sleep(0.1)


def commit(db: radostdb.Tdb, say: Say, stop: Callable[[], bool], wid: str) -> None:
    """One transaction storing ``new`` over keys k00..k31 (every shard); run
    with RADOSTDB_TEST_CRASH_AT (crashpoints.py) it dies inside the commit."""
    say("try", 0)
    with db.transaction():
        for i in range(32):
            db.store(b"k%02d" % i, b"new")
    say("ack", 0, time.monotonic())


RESHARD_GOAL = 24  # shards the reshard worker grows the database to, two at a time


def reshard(db: radostdb.Tdb, say: Say, stop: Callable[[], bool], wid: str) -> None:
    """Grow the database two shards at a time (pages of 100 records, so a
    split takes several steps) up to RESHARD_GOAL, as ``radostdb reshard
    --shards N`` does; ``ack N T`` after each growth to N shards. A step
    that fails (an OSD fault outlasting the op timeout) is logged and the
    next growth resumes the split where it stopped."""
    from radostdb import cluster
    from radostdb import reshard as resharding

    resharding.PAGE = 100
    target = cluster.resolve(db.filename.decode())
    goal = db._storage.nshards  # type: ignore[union-attr]
    while not stop() and goal < RESHARD_GOAL:
        goal += 2
        try:
            say("try", goal)
            lay = resharding.reshard(target, goal)
            say("ack", lay.nshards, time.monotonic())
        except (RuntimeError, resharding.ReshardError) as exc:
            say("err", goal, time.monotonic(), _err(exc))
            goal -= 2
    while not stop():
        time.sleep(0.1)


KINDS = {f.__name__: f for f in (store, txn, lock, bank, audit, hold, commit, reshard)}


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] not in KINDS:
        print(
            f"usage: fault_workers.py {{{','.join(KINDS)}}} NAME LOG STOPFILE [ID]", file=sys.stderr
        )
        return 2
    kind, name, log_path, stop_path = argv[:4]
    wid = argv[4] if len(argv) > 4 else "0"
    log: TextIO = open(log_path, "a", buffering=1)  # noqa: SIM115 (kept to exit)

    def say(*fields: object) -> None:
        log.write(" ".join(str(f) for f in fields) + "\n")

    db = radostdb.Tdb(name, 0, 0, os.O_RDWR)
    say("ready", time.monotonic())
    KINDS[kind](db, say, lambda: os.path.exists(stop_path), wid)
    db.close()
    say("done", time.monotonic())
    return 0


if __name__ == "__main__":
    import crashpoints  # this script's directory is on sys.path

    crashpoints.install_from_env()
    sys.exit(main(sys.argv[1:]))

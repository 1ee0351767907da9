"""Worker processes of test_watch.py: ``watch_workers.main([KIND, ARGS...])``.

test_watch.py starts them with procs.python (a fresh interpreter, or forked
from a process that used radostdb) running :data:`RUN`. Each opens its own
handle on the database named in its arguments (the cluster comes from the
environment, as for any radostdb program), talks to the test a line at a
time (stdin/stdout), and prints its counts at the end: a JSON object on one
line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import radostdb

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = f"""
    import sys
    sys.path.insert(0, {HERE!r})
    import watch_workers
    watch_workers.main(sys.argv[1:])
"""
WAIT = 5.0  # seconds a watcher waits for a change that must come


def say(text: str) -> None:
    print(text, flush=True)


def report(**fields: Any) -> None:
    say(json.dumps(fields))


def open_db(name: str) -> radostdb.Tdb:
    return radostdb.Tdb(name, 0, 0, os.O_RDWR)


def wait_for_go() -> None:
    say("ready")
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go")


# -- several watchers, several writers, one key --------------------------------------------
def watcher(name: str, key: str, seconds: str) -> None:
    """Loop until SECONDS after "go": read the value, arm a watch, read it
    again, wait, read it a third time. The writers store unique values, so
    a wake is justified when the third read differs from the second (a
    store landed after arming), and surely spurious when all three agree
    (nothing landed since before arming); otherwise a store landed around
    the arming, before or after it."""
    db = open_db(name)
    k = key.encode()
    wait_for_go()
    end = time.monotonic() + float(seconds)
    wakes = justified = spurious = timeouts = 0
    while time.monotonic() < end:
        earlier = db.get(k)
        w = db.watch(k)
        before = db.get(k)
        try:
            w.wait(WAIT)
        except TimeoutError:
            timeouts += 1
        else:
            wakes += 1
            after = db.get(k)
            justified += after != before
            spurious += after == before == earlier
        w.cancel()
    report(pid=os.getpid(), wakes=wakes, justified=justified, spurious=spurious, timeouts=timeouts)
    db.close()


def writer(name: str, key: str, wid: str, seconds: str) -> None:
    """Store unique values (WID:n) into KEY in a tight loop for SECONDS after "go"."""
    db = open_db(name)
    k = key.encode()
    wait_for_go()
    end = time.monotonic() + float(seconds)
    n = 0
    while time.monotonic() < end:
        db.store(k, b"%s:%d" % (wid.encode(), n))
        n += 1
    report(pid=os.getpid(), stores=n)
    db.close()


# -- ping-pong and bursts ------------------------------------------------------------------
def pong(name: str, key: str) -> None:
    """For each line I on stdin, store I into KEY (no answer: the watcher
    must learn of it through its watch)."""
    db = open_db(name)
    k = key.encode()
    say("ready")
    n = 0
    for text in sys.stdin:
        db.store(k, text.strip().encode())
        n += 1
    report(pid=os.getpid(), stores=n)
    db.close()


def burst(name: str, key: str, count: str) -> None:
    """After "go", store 0..COUNT-1 into KEY as fast as possible."""
    db = open_db(name)
    k = key.encode()
    wait_for_go()
    t0 = time.monotonic()
    for i in range(int(count)):
        db.store(k, b"%d" % i)
    report(pid=os.getpid(), stores=int(count), seconds=round(time.monotonic() - t0, 3))
    db.close()


# -- a watcher to kill ---------------------------------------------------------------------
def armed(name: str, key: str) -> None:
    """Arm a watch on KEY, say so, and wait for a change forever."""
    db = open_db(name)
    w = db.watch(key.encode())
    say("armed")
    w.wait()
    say("woke")


# -- commands from the test ----------------------------------------------------------------
def commands(name: str) -> None:
    """Run the JSON commands read from stdin, one a line, each answered by
    "ok": ["store", k, v], ["append", k, v], ["delete", k], ["clear"],
    ["txn", "commit"|"cancel", [[k, v], ...]]."""
    db = open_db(name)
    say("ready")
    for text in sys.stdin:
        cmd = json.loads(text)
        what = cmd[0]
        if what == "store":
            db.store(cmd[1].encode(), cmd[2].encode())
        elif what == "append":
            db.append(cmd[1].encode(), cmd[2].encode())
        elif what == "delete":
            db.delete(cmd[1].encode())
        elif what == "clear":
            db.clear()
        elif what == "txn":
            db.transaction_start()
            for k, v in cmd[2]:
                db.store(k.encode(), v.encode())
            if cmd[1] == "commit":
                db.transaction_commit()
            else:
                db.transaction_cancel()
        else:
            raise SystemExit(f"unknown command {cmd!r}")
        say("ok")
    db.close()


def blocked_store(name: str, key: str, value: str) -> None:
    """Say "locking", take KEY's chainlock (the test holds it: this blocks),
    store VALUE, unlock, say "stored"."""
    db = open_db(name)
    k = key.encode()
    say("locking")
    db.chainlock(k)
    db.store(k, value.encode())
    db.chainunlock(k)
    say("stored")
    db.close()


# -- across an OSD restart -----------------------------------------------------------------
def patient(name: str, key: str) -> None:
    """Per "wait VALUE" line: arm a watch on KEY, say "armed", wait until
    the record holds VALUE (a wake that finds another value is spurious:
    look again, as Samba's callers do), then say "woke SPURIOUS"."""
    db = open_db(name)
    k = key.encode()
    say("ready")
    for text in sys.stdin:
        want = text.split()[1].encode()
        w = db.watch(k)
        say("armed")
        spurious = 0
        while db.get(k) != want:
            w.wait(120.0)
            if db.get(k) != want:
                spurious += 1
                w.rearm()
        w.cancel()
        say(f"woke {spurious}")
    db.close()


KINDS = {
    f.__name__: f for f in (watcher, writer, pong, burst, armed, commands, blocked_store, patient)
}


def main(argv: list[str]) -> None:
    KINDS[argv[0]](*argv[1:])

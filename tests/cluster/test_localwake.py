"""A "G" to a waiter of this host goes by the datagram socket of its inbox,
not by notify (localwake.py); turned off, or to nobody bound here, by
notify; a forked child does not keep its parent's inbox name. (The socket's
trust in its senders is tested without a cluster: tests/unit/test_inbox_socket.py.)"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_handoff import _queued

import radostdb
from radostdb import localwake, wakeup

CREATE = os.O_CREAT | os.O_RDWR


@pytest.fixture(autouse=True)
def fresh_inboxes() -> Iterator[None]:
    """Each test makes the process's inbox anew (with a socket, or without
    one when it turns local delivery off), and leaves none behind."""
    wakeup.close_inboxes()
    yield
    wakeup.close_inboxes()


@pytest.fixture
def notified(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The objects notified by this process's wakeup messages, in order
    (the notifies still go out)."""
    seen: list[str] = []
    send = wakeup._Notices._send

    def counting(self: Any, io: Any, obj: str, msg: str) -> None:
        seen.append(obj)
        send(self, io, obj, msg)

    monkeypatch.setattr(wakeup._Notices, "_send", counting)
    yield seen


def _io(db: radostdb.Tdb) -> Any:
    return db._storage_or_closed().shards.io()


def _handed_on(db_name: str) -> tuple[dict[str, Any], int]:
    """a holds k; b waits in a thread (its process's inbox made first, as
    after a first wait); a stores and unlocks. b's outcome and the inbox."""
    a = radostdb.Tdb(db_name, 0, 0, CREATE)
    b = radostdb.Tdb(db_name, 0, 0, CREATE)
    inbox = wakeup.inbox(_io(b))
    a.chainlock(b"k")
    a.store(b"k", b"from a")
    out: dict[str, Any] = {}

    def run() -> None:
        t0 = time.monotonic()
        b.chainlock(b"k")
        out["waited"] = time.monotonic() - t0
        out["value"] = b.get(b"k")
        b.chainunlock(b"k")

    t = threading.Thread(target=run)
    t.start()
    _queued(a, b"k", b)
    a.chainunlock(b"k")
    t.join(30)
    assert not t.is_alive()
    a.close()
    b.close()
    return out, inbox


def test_a_waiter_of_this_host_is_handed_the_lock_by_its_socket(
    db_name: str, notified: list[str]
) -> None:
    before = wakeup.stats()
    out, inbox = _handed_on(db_name)
    after = wakeup.stats()
    assert out["value"] == b"from a"
    assert after["granted"] - before["granted"] == 1
    assert after["local"] - before["local"] == 1
    assert wakeup.inbox_name(inbox) not in notified, notified


def test_turned_off_the_grant_goes_by_notify(
    db_name: str, notified: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(localwake.ENV, "0")  # the inbox is made without a socket
    before = wakeup.stats()
    out, inbox = _handed_on(db_name)
    after = wakeup.stats()
    assert out["value"] == b"from a"
    assert after["granted"] - before["granted"] == 1
    assert after["local"] == before["local"]
    assert notified.count(wakeup.inbox_name(inbox)) == 1, notified
    assert not localwake.Sender().send(inbox, b"G")  # and nothing is bound for it here
    monkeypatch.delenv(localwake.ENV)
    assert not localwake.Sender().send(inbox, b"G")


def _child_looks(conn: Any, fd: int) -> None:
    """Say what the parent's inbox socket ``fd`` is here (None: closed)."""
    import socket

    try:
        with socket.socket(fileno=os.dup(fd)) as s:
            name = s.getsockname()
    except OSError:
        name = None
    conn.send(name)
    conn.recv()


def test_a_forked_child_does_not_keep_its_parent_inbox_name(db_name: str) -> None:
    """A forked child closes its copy of the parent's inbox socket, and once
    the parent closes its inbox the name is free (a "G" for it cannot be
    swallowed by the child)."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    io = _io(db)
    inbox = wakeup.inbox(io)
    assert localwake.Sender().send(inbox, b"x")  # bound
    fd = wakeup._notices.local[id(io)].sock.fileno()
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_child_looks, args=(child, fd))
    p.start()
    try:
        assert parent.poll(30)
        name = parent.recv()
        assert name is None or localwake.address(inbox).encode() not in name, name
        wakeup.close_inboxes()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and localwake.Sender().send(inbox, b"x"):
            time.sleep(0.01)
        assert not localwake.Sender().send(inbox, b"x")
    finally:
        parent.send("done")
        p.join(30)
    assert p.exitcode == 0
    db.close()

"""A transaction after one that read at least half the shards reads ahead
(txnlock.TxnLock.read_ahead): at its first read it takes every shard's
isolation and lists every small shard, all in one parallel round, instead
of one round trip per shard as its reads reach them."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import radostdb
from radostdb import clsops, txnlock

CREATE = os.O_CREAT | os.O_RDWR
SHARDS = 8


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """What the handle sends and waits for, in order: "lock", "get" and
    "list" when a call is sent (the calls still go to the cluster), "reply"
    when a lock request's reply is taken; by the test's thread alone (the
    lock service's renewals and releases run beside it)."""
    seen: list[str] = []
    me = threading.current_thread()

    def counting(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is me:
                seen.append(name)
            return fn(*args, **kwargs)

        return call

    for name, fn in (("lock", "aio_lock_status"), ("get", "aio_get"), ("list", "aio_list")):
        monkeypatch.setattr(clsops, fn, counting(name, getattr(clsops, fn)))
    result = clsops.StatusCall.result
    monkeypatch.setattr(clsops.StatusCall, "result", counting("reply", result))
    yield seen


def _one_key_per_shard(db: radostdb.Tdb) -> list[bytes]:
    router = db._storage_or_closed().router
    found: dict[int, bytes] = {}
    i = 0
    while len(found) < SHARDS:
        k = b"rec-%d" % i
        found.setdefault(router.shard(k), k)
        i += 1
    return [found[s] for s in range(SHARDS)]


def _handle(db_name: str) -> tuple[radostdb.Tdb, radostdb.Tdb, list[bytes]]:
    """A database of SHARDS shards with a record on each, the handle that
    made it and another one."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE, shards=SHARDS)
    keys = _one_key_per_shard(db)
    for i, k in enumerate(keys):
        db.store(k, b"%d" % i)
    return db, radostdb.Tdb(db_name), keys


def _read_in_transaction(
    db: radostdb.Tdb, keys: list[bytes], other: radostdb.Tdb, sent: list[str] | None = None
) -> list[Any]:
    """A read-only transaction of ``keys`` on db, after ``other`` took the
        transaction lock db kept cached (so db holds no isolation when it
    X
        starts and where its reads end."""
    other.transaction_start()
    other.transaction_cancel()
    db._storage_or_closed().txnlock.close()  # and the isolation it kept parked (txnlock.py)
    if sent is not None:
        sent.append("start")
    db.transaction_start()
    try:
        return [db.get(k) for k in keys]
    finally:
        if sent is not None:
            sent.append("end")
        db.transaction_cancel()


def test_after_a_wide_transaction_every_shard_is_read_in_one_round(
    db_name: str, sent: list[str]
) -> None:
    """The first transaction reads the 8 shards one by one (a read, its
    isolation and a list each); the second sends the 8 isolation requests
    and the 8 lists before it takes any reply, then reads nothing more, and
    answers as the OSD would: the record another handle changed in between
    included."""
    db, other, keys = _handle(db_name)
    sent.clear()
    assert _read_in_transaction(db, keys, other) == [b"%d" % i for i in range(SHARDS)]
    first = [c for c in sent if c in ("lock", "get", "list")]
    assert first.count("get") == SHARDS and first.count("list") == SHARDS, first
    other.store(keys[5], b"five")
    sent.clear()
    got = _read_in_transaction(db, keys, other, sent)
    mine = sent[sent.index("start") + 1 : sent.index("end")]
    assert got == [b"%d" % i for i in range(5)] + [b"five"] + [b"%d" % i for i in range(6, 8)]
    # the transaction lock's request and reply, then the round: 8 isolation
    # requests and 8 lists sent, then their replies
    assert mine == ["lock", "reply"] + ["lock", "list"] * SHARDS + ["reply"] * SHARDS, mine


def test_a_narrow_transaction_reads_only_what_it_reads(db_name: str, sent: list[str]) -> None:
    """Two shards read: the next transaction does not read ahead. One that
    follows a wide transaction reads ahead once; the one after it, narrow
    again, does not."""
    db, other, keys = _handle(db_name)
    _read_in_transaction(db, keys[:2], other)
    sent.clear()
    assert _read_in_transaction(db, keys[:2], other) == [b"0", b"1"]
    assert sent.count("list") == 2 and sent.count("get") == 2, sent
    _read_in_transaction(db, keys, other)  # wide
    sent.clear()
    _read_in_transaction(db, keys[:2], other)  # reads ahead: the last one was wide
    assert sent.count("list") == SHARDS and sent.count("get") == 0, sent
    sent.clear()
    _read_in_transaction(db, keys[:2], other)
    assert sent.count("list") == 2 and sent.count("get") == 2, sent


def test_read_ahead_holds_every_shard_from_the_first_read(db_name: str) -> None:
    """Once a transaction has read ahead, another handle's store to a shard
    the transaction has not read yet waits for the transaction: its later
    read of that shard and its commit see no write it did not make."""
    db, other, keys = _handle(db_name)
    _read_in_transaction(db, keys, other)
    other.transaction_start()  # takes the cached transaction lock from db
    other.transaction_cancel()
    db.transaction_start()
    assert db.get(keys[0]) == b"0"  # reads ahead
    done = threading.Event()
    writer = threading.Thread(target=lambda: (other.store(keys[7], b"other"), done.set()))
    writer.start()
    assert not done.wait(1.5), "a store went through during the transaction"
    assert db.get(keys[7]) == b"7"
    db.store(keys[7], b"mine")
    db.transaction_commit()
    assert done.wait(30)
    writer.join()
    assert db.get(keys[7]) == b"other"  # the store waited and landed after the commit


def test_no_read_ahead_past_the_largest_database(
    db_name: str, sent: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database of more shards than READ_AHEAD_MAX is read shard by shard
    whatever the last transaction read."""
    monkeypatch.setattr(txnlock, "READ_AHEAD_MAX", SHARDS - 1)
    db, other, keys = _handle(db_name)
    _read_in_transaction(db, keys, other)
    sent.clear()
    _read_in_transaction(db, keys[:2], other)
    assert sent.count("list") == 2 and sent.count("get") == 2, sent

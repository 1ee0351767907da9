"""A transaction reads a small shard whole with its first read there
(snapshot.py): later reads of the shard cost no round trip, answer as the
OSD would, and never outlive the transaction's isolation."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import radostdb
from radostdb import clsops, layout, snapshot

CREATE = os.O_CREAT | os.O_RDWR
CALLS = ("get", "aio_get", "aio_list", "list_page")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every record read sent through clsops, in order (they still go to the cluster)."""
    seen: list[str] = []

    def counting(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen.append(name)
            return fn(*args, **kwargs)

        return call

    for name in CALLS:
        monkeypatch.setattr(clsops, name, counting(name, getattr(clsops, name)))
    yield seen


def _shard_of(db: radostdb.Tdb, key: bytes) -> int:
    return db._storage_or_closed().router.shard(key)


def _keys_on_one_shard(db: radostdb.Tdb, n: int, shard: int = 0) -> list[bytes]:
    out, i = [], 0
    while len(out) < n:
        k = b"acct-%d" % i
        if _shard_of(db, k) == shard:
            out.append(k)
        i += 1
    return out


def test_a_transaction_reads_a_small_shard_once(db_name: str, calls: list[str]) -> None:
    """40 records on one shard: the transaction's first read there sends the
    read and the list in one round trip; the 39 other reads and the reads
    of absent keys of that shard send nothing, and all answer right."""
    db = radostdb.Tdb(db_name, 8, 0, CREATE)
    keys = _keys_on_one_shard(db, 40 + 5)
    present, absent = keys[:40], keys[40:]
    for i, k in enumerate(present):
        db.store(k, b"%d" % i)
    db.transaction_start()
    calls.clear()
    got = [db.get(k) for k in present] + [db.get(k) for k in absent]
    sent = list(calls)
    db.transaction_cancel()
    assert got == [b"%d" % i for i in range(40)] + [None] * 5
    assert sent == ["aio_get", "aio_list"], sent


def test_a_shard_too_big_to_list_is_read_key_by_key(db_name: str, calls: list[str]) -> None:
    """A shard of more than snapshot.RECORDS records is not kept: each read
    goes to the OSD, and once the handle knows the shard is big, its next
    transactions send no list there."""
    db = radostdb.Tdb(db_name, 8, 0, CREATE)
    keys = _keys_on_one_shard(db, snapshot.RECORDS + 1)
    for k in keys:
        db.store(k, k)
    for round_ in range(2):
        db.transaction_start()
        calls.clear()
        assert [db.get(k) for k in keys[:5]] == keys[:5]
        sent = list(calls)
        db.transaction_cancel()
        assert sent.count("aio_list") == (1 if round_ == 0 else 0), sent
        assert len([c for c in sent if c != "aio_list"]) == 5, sent


def test_a_record_larger_than_the_page_is_read_by_itself(db_name: str, ioctx: Any) -> None:
    """A strict list never runs past its byte budget: a first record that
    does not fit gives an empty page with more (an aio reply buffer cannot
    overflow), and the transaction reads the big record from the OSD."""
    db = radostdb.Tdb(db_name, 8, 0, CREATE)
    big, small = _keys_on_one_shard(db, 2)
    db.store(big, b"x" * (snapshot.BYTES * 4))
    db.store(small, b"s")
    obj = layout.shard_object(db_name, _shard_of(db, big))
    res = clsops.aio_list(ioctx, obj, "", snapshot.RECORDS, 1024).wait()
    assert res.more and res.page == b""
    loose = clsops.list_page(ioctx, obj, "", snapshot.RECORDS, 1024)  # not strict
    assert loose.page  # one record at least, past the budget
    with db.transaction():
        assert db.get(big) == b"x" * (snapshot.BYTES * 4)
        assert db.get(small) == b"s"
        db.store(small, b"t")
    assert db.get(small) == b"t"


def test_a_snapshot_dies_with_its_transaction(db_name: str) -> None:
    """What changed between two transactions is seen by the second, whether
    the first committed it, the handle stored it outside a transaction
    (the isolation still cached), or another handle stored it."""
    db = radostdb.Tdb(db_name, 8, 0, CREATE)
    other = radostdb.Tdb(db_name)
    db.store(b"k", b"1")
    with db.transaction():
        assert db.get(b"k") == b"1"
        db.store(b"k", b"2")
    with db.transaction():  # from the cache
        assert db.get(b"k") == b"2"
    db.store(b"k", b"3")
    with db.transaction():
        assert db.get(b"k") == b"3"
    other.store(b"k", b"4")  # takes the cached isolation from db
    with db.transaction():
        assert db.get(b"k") == b"4"
        db.store(b"k", b"5")
    assert other.get(b"k") == b"5"


def test_other_writes_wait_while_a_snapshot_answers(db_name: str) -> None:
    """Reads served by the snapshot keep tdb's isolation: another handle's
    store of the shard waits for the commit, and no update is lost."""
    db = radostdb.Tdb(db_name, 8, 0, CREATE)
    a, b = _keys_on_one_shard(db, 2)
    db.store(a, b"10")
    db.store(b, b"0")
    other = radostdb.Tdb(db_name)
    db.transaction_start()
    va = int(db.get(a))
    done = threading.Event()
    writer = threading.Thread(target=lambda: (other.store(b, b"100"), done.set()))
    writer.start()
    assert not done.wait(1.5), "a store went through during the transaction"
    vb = int(db.get(b))  # from the snapshot
    db.store(a, b"%d" % (va - 1))
    db.store(b, b"%d" % (vb + 1))
    db.transaction_commit()
    assert done.wait(30)
    writer.join()
    assert (db.get(a), db.get(b)) == (b"9", b"100")


def test_a_handle_with_an_old_layout_reads_right_after_a_reshard(db_name: str, cli: Any) -> None:
    """Resharded from 2 to 5 shards behind an open handle: its transaction
    routes by the old layout. It first reads a key that stayed where it was,
    so the old shard is read whole; that snapshot must not answer for the
    keys that moved (the OSD's -ESTALE sends them on): every present key is
    found and every absent one is missing."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE, shards=2)
    present = {b"r%d" % i: b"v%d" % i for i in range(40)}
    for k, v in present.items():
        db.store(k, v)
    out = cli("reshard", "--no-progress", "--shards", "5", db_name)
    assert out.exit_code == 0, out.output
    old, new = layout.Layout(2, 2), layout.Layout(2, 5)
    stayed = [k for k in present if old.shard(k) == new.shard(k)]
    moved = [k for k in present if old.shard(k) != new.shard(k)]
    assert stayed and moved
    absent = [b"a%d" % i for i in range(40)]
    router = db._storage_or_closed().router
    assert router.layout.nshards == 2  # the handle has not heard of the reshard
    with db.transaction():
        assert [db.get(k) for k in stayed] == [present[k] for k in stayed]
        assert [db.get(k) for k in moved] == [present[k] for k in moved]
        assert [db.get(k) for k in absent] == [None] * len(absent)
    assert router.layout.nshards == 5

"""The buffer of a transaction (radostdb/txn.py): the overlay, the checks
of INSERT/MODIFY/DELETE against the view, append, clear, the batch it
commits, and nesting's fields. The storage under it is the in-memory
backend, counting what the buffer asks of it (a read the buffer does not
need is a round trip on a cluster)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from radostdb.errors import ERR_EINVAL, ERR_EXISTS, ERR_IO, ERR_NOEXIST, KeyMissing, TdbError
from radostdb.flags import INSERT, MODIFY, REPLACE
from radostdb.kinds import Op
from radostdb.storage import MemoryStorage
from radostdb.txn import Transaction, iter_ops

PUT, DISCARD = int(Op.PUT), int(Op.DISCARD)


class CountingStorage(MemoryStorage):
    """The memory backend, noting every read and every commit."""

    def __init__(self, records: dict[bytes, bytes]) -> None:
        super().__init__()
        self.records = dict(records)
        self.fetched: list[bytes] = []
        self.listed = 0
        self.committed: list[list[tuple[int, bytes, bytes]]] = []

    def fetch(self, key: bytes) -> bytes | None:
        self.fetched.append(key)
        return super().fetch(key)

    def keys(self) -> Iterator[bytes]:
        self.listed += 1
        return super().keys()

    def commit_transaction(self, ops: list[tuple[int, bytes, bytes]]) -> None:
        self.committed.append(ops)
        super().commit_transaction(ops)


@pytest.fixture
def store() -> CountingStorage:
    return CountingStorage({b"a": b"1", b"b": b"2"})


@pytest.fixture
def txn(store: CountingStorage) -> Transaction:
    return Transaction(store)


def code(exc: pytest.ExceptionInfo[TdbError]) -> int:
    return exc.value.code


def test_a_new_transaction_is_one_level_unpoisoned_unprepared(txn: Transaction) -> None:
    assert (txn.depth, txn.poisoned, txn.prepared, txn.cleared) == (1, False, False, False)
    assert txn.overlay == {}


def test_replace_is_buffered_without_a_read_and_nothing_reaches_storage(
    txn: Transaction, store: CountingStorage
) -> None:
    assert txn.store(b"a", b"new", REPLACE) is False
    assert txn.store(b"c", b"3", REPLACE) is False
    assert store.fetched == []  # no read for a REPLACE
    assert store.records == {b"a": b"1", b"b": b"2"}  # nothing sent before commit
    assert txn.fetch(b"a") == b"new" and txn.fetch(b"c") == b"3"
    assert store.fetched == []  # the overlay answers
    assert txn.fetch(b"b") == b"2" and store.fetched == [b"b"]


def test_insert_is_checked_against_storage_and_overlay(txn: Transaction) -> None:
    with pytest.raises(TdbError) as exc:
        txn.store(b"a", b"x", INSERT)  # in storage
    assert code(exc) == ERR_EXISTS
    txn.store(b"c", b"3", INSERT)  # missing: fine
    with pytest.raises(TdbError) as exc:
        txn.store(b"c", b"x", INSERT)  # now in the overlay
    assert code(exc) == ERR_EXISTS
    assert txn.overlay == {b"c": b"3"}


def test_modify_is_checked_against_the_view(txn: Transaction) -> None:
    with pytest.raises(TdbError) as exc:
        txn.store(b"z", b"x", MODIFY)
    assert code(exc) == ERR_NOEXIST
    txn.store(b"a", b"m", MODIFY)
    txn.store(b"c", b"3", REPLACE)
    txn.store(b"c", b"m", MODIFY)  # exists in the overlay only
    assert txn.overlay == {b"a": b"m", b"c": b"m"}


def test_a_deleted_key_is_gone_from_the_view(txn: Transaction, store: CountingStorage) -> None:
    txn.delete(b"a")
    assert txn.overlay == {b"a": None}
    assert txn.fetch(b"a") is None  # though storage still has it
    assert store.records[b"a"] == b"1"
    with pytest.raises(TdbError) as exc:
        txn.delete(b"a")
    assert code(exc) == ERR_NOEXIST
    with pytest.raises(TdbError) as exc:
        txn.store(b"a", b"x", MODIFY)
    assert code(exc) == ERR_NOEXIST
    txn.store(b"a", b"again", INSERT)  # INSERT of a deleted key works
    assert txn.fetch(b"a") == b"again"


def test_delete_of_a_missing_key_fails(txn: Transaction) -> None:
    with pytest.raises(TdbError) as exc:
        txn.delete(b"z")
    assert code(exc) == ERR_NOEXIST
    assert txn.overlay == {}


def test_append_folds_into_the_value(txn: Transaction, store: CountingStorage) -> None:
    assert txn.append(b"a", b"+") is False  # existed
    assert txn.append(b"a", b"+") is False
    assert store.fetched == [b"a"]  # the old value read once
    assert txn.append(b"n", b"x") is True  # created
    assert txn.append(b"n", b"y") is False
    assert txn.overlay == {b"a": b"1++", b"n": b"xy"}
    txn.delete(b"n")
    assert txn.append(b"n", b"z") is True  # a deleted key: created again
    assert txn.fetch(b"n") == b"z"


def test_a_prepared_transaction_refuses_writes_after_tdbs_record_checks(txn: Transaction) -> None:
    txn.prepared = True
    for call in (
        lambda: txn.store(b"c", b"x", REPLACE),
        lambda: txn.append(b"a", b"x"),
        lambda: txn.delete(b"a"),
        txn.clear,
        lambda: txn.store(b"c", b"x", INSERT),
        lambda: txn.store(b"a", b"x", MODIFY),
    ):
        with pytest.raises(TdbError) as exc:
            call()
        assert code(exc) == ERR_EINVAL
    # as tdb: the record's own error comes first
    with pytest.raises(TdbError) as exc:
        txn.store(b"a", b"x", INSERT)
    assert code(exc) == ERR_EXISTS
    with pytest.raises(TdbError) as exc:
        txn.store(b"z", b"x", MODIFY)
    assert code(exc) == ERR_NOEXIST
    with pytest.raises(TdbError) as exc:
        txn.delete(b"z")
    assert code(exc) == ERR_NOEXIST
    assert txn.overlay == {}


def test_clear_hides_storage_and_commits_its_keys_as_discards(
    txn: Transaction, store: CountingStorage
) -> None:
    txn.store(b"a", b"early", REPLACE)
    txn.clear()
    assert txn.cleared and txn.overlay == {}  # writes before the clear are dropped
    assert txn.fetch(b"a") is None and txn.fetch(b"b") is None
    assert store.fetched == []  # a cleared view needs no read
    txn.store(b"c", b"3", INSERT)  # nothing exists now
    assert list(txn.keys()) == [b"c"]
    assert txn.ops() == [(DISCARD, b"a", b""), (DISCARD, b"b", b""), (PUT, b"c", b"3")]
    txn.commit()
    assert store.records == {b"c": b"3"}


def test_ops_map_the_overlay_to_puts_and_discards(txn: Transaction) -> None:
    txn.store(b"b", b"B", REPLACE)
    txn.delete(b"a")
    txn.store(b"c", b"C", REPLACE)
    assert txn.ops() == [(PUT, b"b", b"B"), (DISCARD, b"a", b""), (PUT, b"c", b"C")]
    assert iter_ops([(b"x", None), (b"y", b"")]) == [(DISCARD, b"x", b""), (PUT, b"y", b"")]


def test_keys_and_items_merge_storage_and_overlay(txn: Transaction) -> None:
    txn.delete(b"a")
    txn.store(b"b", b"B", REPLACE)
    txn.store(b"c", b"C", REPLACE)
    assert list(txn.keys()) == [b"b", b"c"]
    assert dict(txn.items()) == {b"b": b"B", b"c": b"C"}
    assert txn.first_key() == b"b"


def test_next_key_walks_the_view_and_a_missing_key_raises_keymissing(txn: Transaction) -> None:
    txn.store(b"c", b"3", REPLACE)
    assert txn.first_key() == b"a"
    assert txn.next_key(b"a") == b"b"
    assert txn.next_key(b"b") == b"c"
    assert txn.next_key(b"c") is None
    with pytest.raises(KeyMissing):
        txn.next_key(b"zz")
    txn.delete(b"b")
    with pytest.raises(KeyMissing):
        txn.next_key(b"b")  # deleted in the transaction: not in the view


def test_commit_sends_one_batch_and_nothing_when_empty(
    txn: Transaction, store: CountingStorage
) -> None:
    txn.commit()
    assert store.committed == []  # an empty transaction costs nothing
    txn.store(b"a", b"A", REPLACE)
    txn.delete(b"b")
    txn.commit()
    assert store.committed == [[(PUT, b"a", b"A"), (DISCARD, b"b", b"")]]
    assert store.records == {b"a": b"A"}


def test_a_poisoned_transaction_does_not_commit(txn: Transaction, store: CountingStorage) -> None:
    txn.store(b"a", b"A", REPLACE)
    txn.poisoned = True  # an inner cancel under ALLOW_NESTING
    with pytest.raises(TdbError) as exc:
        txn.commit()
    assert code(exc) == ERR_IO
    assert store.committed == [] and store.records[b"a"] == b"1"

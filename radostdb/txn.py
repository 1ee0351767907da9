"""Transactions: the client-side buffer of one (possibly nested) transaction.

transaction design (the buffer; the locks are in txnlock.py, the commit
protocol and crash recovery in commit.py):
- Isolation is tdb's: transaction_start takes the database's transaction
  lock, and the transaction an isolation lock on every shard it touches
  (tdb takes its transaction lock and an allrecord read lock; txnlock.py
  says how and when). Until commit or cancel, other handles' writes
  (store, append, delete, wipe), record locks and lock_all wait on those
  shards; their reads and read_lock_all do not. A write that waited lands after the
  commit, so a transaction that read a key cannot overwrite another handle's
  acknowledged write of it (no lost update). The transaction itself reads a
  stable database.
- Buffered: writes go to an overlay (key -> value, or None for a deleted key)
  in the handle; nothing reaches RADOS before commit, and reads inside the
  transaction see the overlay first. INSERT/MODIFY/DELETE are checked against
  that view when called, as TDB checks them; APPEND folds into the value.
- The commit sends the overlay as PUT/DISCARD entries grouped by shard:
  one atomic call for one shard, one parallel round for several
  (commit.py). Cancel sends nothing.
- Nesting follows TDB: with ALLOW_NESTING (the default) an inner start only
  counts and an inner commit only uncounts; an inner cancel poisons the
  transaction (its prepare or commit then fails with TDB's IO error and the
  transaction is gone); DISALLOW_NESTING makes an inner start fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from .errors import ERR_EINVAL, ERR_EXISTS, ERR_IO, ERR_NOEXIST, KeyMissing, TdbError
from .flags import INSERT, MODIFY, REPLACE
from .kinds import Op

if TYPE_CHECKING:
    from .storage import Storage


_PUT, _DISCARD = int(Op.PUT), int(Op.DISCARD)


def iter_ops(overlay: Iterable[tuple[bytes, bytes | None]]) -> list[tuple[int, bytes, bytes]]:
    """Batch entries that make the records equal to an overlay (None = deleted)."""
    return [(_PUT, k, v) if v is not None else (_DISCARD, k, b"") for k, v in overlay]


class Transaction:
    """The state of one (possibly nested) transaction on a handle."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.overlay: dict[bytes, bytes | None] = {}
        self.cleared = False
        self.depth = 1
        self.poisoned = False
        self.prepared = False

    # -- reads --------------------------------------------------------------
    def fetch(self, key: bytes) -> bytes | None:
        if key in self.overlay:
            return self.overlay[key]
        if self.cleared:
            return None
        return self.storage.fetch(key)

    def keys(self) -> Iterator[bytes]:
        if not self.cleared:
            for key in self.storage.keys():
                if key not in self.overlay:
                    yield key
        yield from (k for k, v in list(self.overlay.items()) if v is not None)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key in self.keys():
            value = self.fetch(key)
            if value is not None:
                yield key, value

    def first_key(self) -> bytes | None:
        return next(self.keys(), None)

    def next_key(self, key: bytes) -> bytes | None:
        it = self.keys()
        for k in it:
            if k == key:
                return next(it, None)
        raise KeyMissing(key)

    # -- writes -------------------------------------------------------------
    def _writable(self) -> None:
        if self.prepared:
            raise TdbError(ERR_EINVAL)

    def store(self, key: bytes, data: bytes, flag: int) -> bool:
        """Buffer a store; False: whether it creates the record is not known
        here (it would cost a read; database.py documents the difference)."""
        if flag == REPLACE and not self.prepared:  # the common case, first
            self.overlay[key] = data
            return False
        # as tdb: INSERT/MODIFY fail on the record (5, 8) before a prepared
        # transaction refuses the write (9)
        if flag != REPLACE:
            exists = self.fetch(key) is not None
            if flag == INSERT and exists:
                raise TdbError(ERR_EXISTS)
            if flag == MODIFY and not exists:
                raise TdbError(ERR_NOEXIST)
        self._writable()
        self.overlay[key] = data
        return False

    def append(self, key: bytes, data: bytes) -> bool:
        """Buffer an append (the old value is read once); True when it
        creates the record, as tdb's append inside a transaction."""
        self._writable()
        old = self.fetch(key)
        self.overlay[key] = (old or b"") + data
        return old is None

    def delete(self, key: bytes) -> None:
        if self.fetch(key) is None:
            raise TdbError(ERR_NOEXIST)
        self._writable()
        self.overlay[key] = None

    def clear(self) -> None:
        self._writable()
        self.overlay = {}
        self.cleared = True

    # -- outcome ------------------------------------------------------------
    def ops(self) -> list[tuple[int, bytes, bytes]]:
        """The batch entries that commit this transaction."""
        entries: list[tuple[bytes, bytes | None]] = []
        if self.cleared:
            entries.extend((k, None) for k in self.storage.keys() if k not in self.overlay)
        entries.extend(self.overlay.items())
        return iter_ops(entries)

    def commit(self) -> None:
        if self.poisoned:
            raise TdbError(ERR_IO)
        ops = self.ops()
        if ops:
            self.storage.commit_transaction(ops)

"""Transactions: a buffering layer over a storage backend.

transaction design (single handle; this module's current scope):
- A transaction buffers every write in an overlay (key -> value, or None for
  a deleted key) on the client; nothing reaches RADOS before commit. Reads
  inside the transaction see the overlay first, then the database, so a
  handle reads its own writes.
- INSERT/MODIFY/DELETE are checked against that view when they are called,
  as TDB checks them inside its transaction; APPEND folds into the buffered
  value.
- Nesting follows TDB: with ALLOW_NESTING (the default) an inner start only
  counts; an inner commit only uncounts; an inner cancel poisons the whole
  transaction, whose outer commit then fails with TDB's IO error and
  discards everything. With DISALLOW_NESTING an inner start fails with
  TDB's nesting error.
- prepare_commit freezes the transaction (further writes are refused); commit
  sends the overlay as batch entries. When every entry falls in one shard
  the commit is ONE atomic class call on that shard. A commit that spans
  shards issues one call per shard in parallel; it is atomic per shard but
  not yet across shards: a crash between shard updates can leave some
  shards committed and others not.
"""

from __future__ import annotations

from collections.abc import Iterator

from . import clsops
from .errors import ERR_EINVAL, ERR_EXISTS, ERR_IO, ERR_NOEXIST, TdbError
from .storage import Storage, iter_ops


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
        return None

    # -- writes -------------------------------------------------------------
    def _writable(self) -> None:
        if self.prepared:
            raise TdbError(ERR_EINVAL)

    def store(self, key: bytes, data: bytes, flag: int) -> None:
        self._writable()
        if flag != clsops.REPLACE:
            exists = self.fetch(key) is not None
            if flag == clsops.INSERT and exists:
                raise TdbError(ERR_EXISTS)
            if flag == clsops.MODIFY and not exists:
                raise TdbError(ERR_NOEXIST)
        self.overlay[key] = data

    def append(self, key: bytes, data: bytes) -> None:
        self._writable()
        self.overlay[key] = (self.fetch(key) or b"") + data

    def delete(self, key: bytes) -> None:
        self._writable()
        if self.fetch(key) is None:
            raise TdbError(ERR_NOEXIST)
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
            self.storage.commit(ops)

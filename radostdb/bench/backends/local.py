"""Single-host engines: Samba's tdb and LMDB, files in a local directory.

- ``tdb``: python3-tdb, NOSYNC, hash size sized to the records as a careful
  user sets it. python3-tdb has no chainlock: its locked updates in the
  mixed workload are plain fetch + store.
- ``lmdb``: py-lmdb, sync off, one write transaction per write;
  ``lmdb-batch``: writes share a write transaction, committed every
  LMDB_BATCH writes and at the end of a chunk (inside the timing). LMDB has
  no record locks: a write transaction is its lock.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

from .base import Backend, TdbCalls


class TdbBackend(TdbCalls, Backend):
    name = "tdb"
    lacks = {
        "locks": "python3-tdb has no chainlock (record locks)",
        "fetch_locked": "python3-tdb has no chainlock (record locks)",
    }

    def __init__(self, path: str, create: bool, expected: int) -> None:
        import tdb

        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        hash_size = max(10007, expected // 4 | 1)
        self.db = tdb.Tdb(path, hash_size, tdb.DEFAULT | tdb.NOSYNC, flags)

    def keys(self) -> Iterator[bytes]:
        return iter(self.db.keys())

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        get = self.db.get
        for k in self.db.keys():
            yield k, get(k)

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.db.transaction_start()
        for k, v in pairs:
            self.db.store(k, v)
        self.db.transaction_commit()

    def locked_update(self, key: bytes, value: bytes) -> None:
        self.db.get(key)  # no record locks in python3-tdb
        self.db.store(key, value)

    def close(self) -> None:
        self.db.close()


class LmdbBackend(Backend):
    """py-lmdb, sync off (like NOSYNC tdb and memstore, nothing is fsynced)."""

    lacks = {
        "locks": "LMDB has no record locks (a write transaction is its lock)",
        "fetch_locked": "LMDB has no record locks (a write transaction is its lock)",
    }

    def __init__(self, path: str, create: bool, batch: int) -> None:
        import lmdb

        if create:
            shutil.rmtree(path, ignore_errors=True)
        self.name = "lmdb" if batch == 1 else "lmdb-batch"
        self.env = lmdb.open(
            path, map_size=64 << 30, sync=False, metasync=False, writemap=True, max_readers=256
        )
        self.batch = batch
        self._w: Any = None
        self._n = 0

    def _write(self, fn: Callable[[Any], Any]) -> Any:
        if self.batch == 1:
            with self.env.begin(write=True) as t:
                return fn(t)
        if self._w is None:
            self._w = self.env.begin(write=True)
        out = fn(self._w)
        self._n += 1
        if self._n >= self.batch:
            self.flush()
        return out

    def flush(self) -> None:
        if self._w is not None:
            self._w.commit()
            self._w, self._n = None, 0

    def store(self, key: bytes, value: bytes) -> None:
        self._write(lambda t: t.put(key, value))

    def fetch(self, key: bytes) -> bytes | None:
        if self._w is not None:
            return self._w.get(key)
        with self.env.begin() as t:
            return t.get(key)

    def delete(self, key: bytes) -> None:
        self._write(lambda t: t.delete(key))

    def append(self, key: bytes, data: bytes, grown: bytes) -> None:
        self._write(lambda t: t.put(key, (t.get(key) or b"") + data))

    def locked_update(self, key: bytes, value: bytes) -> None:
        # a write transaction is LMDB's lock: read and write inside one
        self._write(lambda t: (t.get(key), t.put(key, value)))

    def keys(self) -> Iterator[bytes]:
        self.flush()
        with self.env.begin() as t:
            yield from t.cursor().iternext(keys=True, values=False)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        self.flush()
        with self.env.begin() as t:
            yield from t.cursor().iternext(keys=True, values=True)

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.flush()
        with self.env.begin(write=True) as t:
            for k, v in pairs:
                t.put(k, v)

    def close(self) -> None:
        self.flush()
        self.env.close()

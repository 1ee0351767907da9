"""SQLite on RADOS: Ceph's own VFS (Debian libsqlite3-mod-ceph) loaded into
Python's sqlite3, a key/value table on the same cluster, pool and bench
namespace as radostdb.

Settings, chosen for a database that several hosts share (the case radostdb
is for) and measured here on one memstore OSD:
- ``locking_mode = NORMAL``: every transaction takes and drops the VFS's
  exclusive RADOS lock on the database, so other processes get their turn.
  EXCLUSIVE (lock held for the connection's life) makes reads local and
  writes ~3x faster, but locks every other client out: not a shared
  database, so not measured.
- ``journal_mode = PERSIST``: Ceph's advice for its VFS (DELETE, the
  default, removes the journal's objects on every commit: store 137/s
  against 283/s here; TRUNCATE 207/s). WAL needs shared memory, which the
  VFS offers only in EXCLUSIVE locking mode. MEMORY is not crash safe.
- ``page_size = 65536`` (Ceph's advice: fewer, larger object I/Os; store
  ~400/s against ~280/s with 4 KiB pages, 1000-record transactions ten times
  faster) and ``cache_size = 4096`` pages (256 MiB, Ceph's example);
  ``synchronous`` stays FULL (every commit waits for its RADOS writes);
  ``temp_store = MEMORY`` (the VFS has no temporary files).
- A busy timeout of BUSY_TIMEOUT seconds: with several clients, a
  transaction waits for the lock instead of failing with SQLITE_BUSY.

Workloads: store is ``INSERT OR REPLACE``, fetch a ``SELECT`` by primary
key, append one ``UPDATE ... SET v = v || ?`` (SQLite's concatenation,
cast back to a blob), each its own (autocommit) transaction; traversal
``SELECT ... ORDER BY k``; txn-N is ``BEGIN IMMEDIATE``, N stores,
``COMMIT``; the mixed workload's locked updates are a read and a store in
one ``BEGIN IMMEDIATE`` transaction (SQLite's one lock is the database's).

The VFS reads the cluster from CEPH_CONF (and the client id from CEPH_ARGS)
when a process first opens a database on it, and aborts the process if it
cannot: the bench checks the cluster before it gets here.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from typing import Any

from ..spec import Place
from .base import Backend

PRAGMAS = (
    "PRAGMA locking_mode = NORMAL",
    "PRAGMA journal_mode = PERSIST",
    "PRAGMA cache_size = 4096",
    "PRAGMA temp_store = MEMORY",
)
PAGE_SIZE = 65536
BUSY_TIMEOUT = 120.0
NO_LOCKS = (
    "SQLite has no record locks: its one lock is the whole database's "
    "(BEGIN IMMEDIATE, measured by txn-N and the mixed workload)"
)

_vfs: dict[str, Any] = {}  # the connection that loaded the VFS, kept for the process


def load_vfs(conf: str, client_id: str) -> None:
    """Load libcephsqlite into this process once, pointed at ``conf``."""
    if "conn" in _vfs:
        if _vfs["conf"] != conf:
            raise RuntimeError(
                f"the ceph VFS of this process is bound to {_vfs['conf']}, not {conf}"
            )
        return
    os.environ["CEPH_CONF"] = conf
    if client_id != "admin":
        os.environ["CEPH_ARGS"] = f"{os.environ.get('CEPH_ARGS', '')} --id {client_id}".strip()
    conn = sqlite3.connect(":memory:")
    conn.enable_load_extension(True)
    try:
        conn.load_extension("libcephsqlite.so")
    except sqlite3.OperationalError as exc:
        conn.close()
        raise RuntimeError(
            f"cannot load libcephsqlite.so ({exc}): install libsqlite3-mod-ceph ('make deps')"
        ) from exc
    conn.enable_load_extension(False)
    _vfs.update(conn=conn, conf=conf)


class CephSqliteBackend(Backend):
    name = "cephsqlite"
    lacks = {"locks": NO_LOCKS, "fetch_locked": NO_LOCKS}

    def __init__(self, place: Place, db: str, create: bool) -> None:
        load_vfs(place.conf, place.client_id)
        self.uri = f"file:///{place.pool}:{place.namespace}/{db}.db?vfs=ceph"
        self.db = sqlite3.connect(
            self.uri,
            uri=True,
            isolation_level=None,  # autocommit; transactions are explicit
            timeout=BUSY_TIMEOUT,
            check_same_thread=False,
        )
        if create:
            self.db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # before the first table
        for pragma in PRAGMAS:
            self.db.execute(pragma)
        if create:
            self.db.execute("DROP TABLE IF EXISTS kv")
            self.db.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")

    def store(self, key: bytes, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (key, value))

    def fetch(self, key: bytes) -> bytes | None:
        row = self.db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return row[0] if row else None

    def delete(self, key: bytes) -> None:
        self.db.execute("DELETE FROM kv WHERE k = ?", (key,))

    def append(self, key: bytes, data: bytes, grown: bytes) -> None:
        self.db.execute("UPDATE kv SET v = CAST(v || ? AS BLOB) WHERE k = ?", (data, key))

    def keys(self) -> Iterator[bytes]:
        for (k,) in self.db.execute("SELECT k FROM kv ORDER BY k"):
            yield k

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        yield from self.db.execute("SELECT k, v FROM kv ORDER BY k")

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", pairs)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def locked_update(self, key: bytes, value: bytes) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
            self.db.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (key, value))
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

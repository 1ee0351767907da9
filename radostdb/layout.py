"""Where a database lives in RADOS: object names, shard mapping, format.

For database NAME (any non-empty string of at most MAX_NAME_BYTES UTF-8
bytes, without NUL):
- header object ``radostdb.db.NAME``: omap keys ``format``, ``nshards``,
  ``hash``, ``created`` (ASCII values), and the omap header kept by the
  object class (a sequence number bumped by increment_seqnum). Its watchers
  are exactly the open handles (CLEAR_IF_FIRST, ``radostdb info``).
- shard objects ``radostdb.sNNNNN.NAME`` for NNNNN in 0..nshards-1: the
  records, in omap; the lock table, queue and transaction state in the omap
  header; while a multi-shard transaction is pending on it, its undo log in
  the object's data (cls/radostdb/server.cc). A shard object exists only
  once something was written to or locked on it; a missing shard reads as
  empty.
- journal object ``radostdb.j.NAME``: a record per multi-shard transaction
  not yet settled everywhere, and fenced owners (commit.py). Created by the
  first multi-shard commit.
- transaction-lock object ``radostdb.w.NAME``: empty; its lock table holds
  the transaction lock and its queue, and its watchers hear requests for it
  (txnlock.py).
The prefixes differ, so no database name can produce another's objects.
"""

from __future__ import annotations

from . import codec

FORMAT_VERSION = 1
HASH_NAME = "fnv1a64-splitmix"
DEFAULT_SHARDS = 8
MAX_SHARDS = 65536
MAX_NAME_BYTES = 200
HEADER_PREFIX = "radostdb.db."


def header_object(name: str) -> str:
    return HEADER_PREFIX + name


def shard_object(name: str, shard: int) -> str:
    return f"radostdb.s{shard:05d}.{name}"


def wait_object(obj: str) -> str:
    """For a header object: the database's transaction-lock object (it holds
    the transaction lock, and its watchers hear requests for it; the
    header's watchers must stay exactly the open handles). For any other
    object: itself."""
    if obj.startswith(HEADER_PREFIX):
        return "radostdb.w." + obj[len(HEADER_PREFIX):]
    return obj


def journal_object(name: str) -> str:
    """The journal of the database's in-flight multi-shard commit (txn.py)."""
    return f"radostdb.j.{name}"


def shard_objects(name: str, nshards: int) -> list[str]:
    return [shard_object(name, i) for i in range(nshards)]


def shard_of(key: bytes, nshards: int) -> int:
    return codec.shard_of(key, nshards)


def check_name(name: str) -> str:
    """Return ``name`` if it can name a database, else raise ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"database name must be str, not {type(name).__name__}")
    if not name:
        raise ValueError("database name is empty")
    if "\0" in name:
        raise ValueError("database name contains a NUL character")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ValueError(
            f"database name is {len(name.encode())} bytes long; the limit is {MAX_NAME_BYTES}"
        )
    return name

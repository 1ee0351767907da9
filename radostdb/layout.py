"""Where a database lives in RADOS: object names, shard mapping, format.

For database NAME (any non-empty string of at most MAX_NAME_BYTES UTF-8
bytes, without NUL):
- header object ``radostdb.db.NAME``: omap keys ``format``, ``nshards``,
  ``hash``, ``flags``, ``created`` (ASCII values), and the omap header kept by
  the object class (a sequence number bumped by increment_seqnum);
- shard objects ``radostdb.sNNNNN.NAME`` for NNNNN in 0..nshards-1: the
  records, in omap. A shard object exists only once something was written
  to it; a missing shard reads as empty.
- journal object ``radostdb.j.NAME``: exists only while a multi-shard
  transaction commits (see txn.py).
- wait object ``radostdb.w.NAME``: empty; its watchers wait for the
  transaction lock (see locking.py).
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
    """The object whose watch/notify carries lock waits for locks kept in obj.

    Shard locks wait on the shard itself. The transaction lock lives in the
    header object, whose watchers must be exactly the open handles
    (CLEAR_IF_FIRST, ``info``), so its waiters watch ``radostdb.w.NAME``."""
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

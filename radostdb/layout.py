"""Where a database lives in RADOS: object names, shard mapping, format.

A database NAME (names.py says which name a caller's name maps to) is any
non-empty string of at most MAX_NAME_BYTES (4095) UTF-8 bytes without NUL.
Its objects are ``radostdb.KIND`` followed by its *stem*:
- a name of at most SHORT_NAME_BYTES (200) bytes: ``.`` + NAME, so
  ``secrets`` has the header object ``radostdb.db.secrets``;
- a longer name: ``#`` + the SHA-256 of its UTF-8 bytes in lowercase hex
  (64 characters). RADOS refuses object names longer than
  ``osd_max_object_name_len`` (2048 bytes by default; ENAMETOOLONG beyond),
  so long names cannot be spelled out; 200 keeps object names short whatever
  that setting, and every name that radostdb accepted before long names
  existed keeps its objects. The longest object name is 216 bytes.
The objects, for KIND:
- ``db``, the header object: omap keys ``format``, ``nshards``, ``hash``,
  ``created`` and ``name`` (dbheader.py; ASCII values, ``name`` UTF-8: the
  full database name, the only place a hashed name can be read back from;
  written by every database created since, absent in older ones), and the
  omap header kept by the object class (a sequence number bumped by
  increment_seqnum). Its watchers are exactly the open handles
  (CLEAR_IF_FIRST, ``radostdb info``);
- ``sNNNNN`` for NNNNN in 00000..nshards-1, the shard objects: the records,
  in omap; the lock table, queue and transaction state in the omap header;
  while a multi-shard transaction is pending on it, its redo log in the
  object's data (cls/radostdb/txn.cc). A shard object exists only once
  something was written to or locked on it; a missing shard reads as empty;
- ``j``, the journal object: a record per multi-shard transaction not yet
  settled everywhere, and fenced owners (commit.py); created by the first
  multi-shard commit;
- ``w``, the transaction-lock object: empty; its lock table holds the
  transaction lock and its queue, and its watchers hear requests for it
  (txnlock.py).
No KIND contains ``.`` or ``#``, and no KIND is the start of another, so the
first ``.`` or ``#`` after ``radostdb.`` ends the KIND: no two (KIND, name)
pairs share an object, hashed or not (barring a SHA-256 collision).
The mapping is part of the format; tests/vectors/layout.json pins it.
"""

from __future__ import annotations

import errno

from . import codec, names

FORMAT_VERSION = 1
HASH_NAME = "fnv1a64-splitmix"
DEFAULT_SHARDS = 8
MAX_SHARDS = 65536
MAX_NAME_BYTES = names.MAX_NAME_BYTES  # 4095: PATH_MAX - 1
SHORT_NAME_BYTES = 200  # longer names get a hashed stem
OBJECT_PREFIX = "radostdb."
HEADER_KIND = "db"
HEADER_PREFIX = "radostdb.db."  # header objects of short names
HASHED_HEADER_PREFIX = "radostdb.db#"  # header objects of long names
NAME_KEY = "name"  # header omap key holding the full database name


def stem(name: str) -> str:
    """What follows ``radostdb.KIND`` in the database's object names."""
    raw = name.encode()
    if len(raw) <= SHORT_NAME_BYTES:
        return "." + name
    import hashlib  # only long names need it (OpenSSL: megabytes of a process's memory)

    return "#" + hashlib.sha256(raw).hexdigest()


def header_object(name: str) -> str:
    return OBJECT_PREFIX + HEADER_KIND + stem(name)


def shard_object(name: str, shard: int) -> str:
    return f"{OBJECT_PREFIX}s{shard:05d}{stem(name)}"


def is_header_object(obj: str) -> bool:
    return obj.startswith((HEADER_PREFIX, HASHED_HEADER_PREFIX))


def wait_object(obj: str) -> str:
    """For a header object: the database's transaction-lock object (it holds
    the transaction lock, and its watchers hear requests for it; the
    header's watchers must stay exactly the open handles). For any other
    object: itself."""
    if is_header_object(obj):
        return OBJECT_PREFIX + "w" + obj[len(OBJECT_PREFIX + HEADER_KIND) :]
    return obj


def journal_object(name: str) -> str:
    """The journal of the database's in-flight multi-shard commit (txn.py)."""
    return OBJECT_PREFIX + "j" + stem(name)


def shard_objects(name: str, nshards: int) -> list[str]:
    return [shard_object(name, i) for i in range(nshards)]


def shard_of(key: bytes, nshards: int) -> int:
    return codec.shard_of(key, nshards)


def check_name(name: str) -> str:
    """Return ``name`` if it can name a database: TypeError for a non-str,
    ValueError for an empty name or a NUL, OSError(ENAMETOOLONG) beyond
    MAX_NAME_BYTES."""
    if not isinstance(name, str):
        raise TypeError(f"database name must be str, not {type(name).__name__}")
    if not name:
        raise ValueError("database name is empty")
    if "\0" in name:
        raise ValueError("database name contains a NUL character")
    size = len(name.encode())
    if size > MAX_NAME_BYTES:
        raise OSError(
            errno.ENAMETOOLONG,
            f"database name is {size} bytes long; the limit is {MAX_NAME_BYTES}",
        )
    return name

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
  ``created`` and ``name``, and since shards split ``base``, ``hash_size``
  and ``split_threshold`` (dbheader.py; ASCII values, ``name`` UTF-8: the
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
Which shard holds a key (:class:`Layout`): linear hashing over ``base``
shards (the count a database was created with) grown to ``nshards``: with M
the largest ``base * 2**L`` not above nshards, a key hashing to h lives in
shard ``h % M``, or ``h % 2M`` when ``h % M`` is below ``nshards - M`` (those
shards were split). A database never resharded has ``nshards == base`` and
maps ``h % nshards``, as format 1 always did: growing it moves only the keys
of the shard being split (reshard.py; the OSD's side in
cls/radostdb/reshard.cc). Format 1 headers have no ``base`` (it is
nshards); the first split writes format 2, which older radostdb refuses.
``hash_size`` is tdb's chain count, a hint the database keeps to answer
``hash_size()``; a new database starts with DEFAULT_SHARDS shards whatever it.
No KIND contains ``.`` or ``#``, and no KIND is the start of another, so the
first ``.`` or ``#`` after ``radostdb.`` ends the KIND: no two (KIND, name)
pairs share an object, hashed or not (barring a SHA-256 collision).
The mapping is part of the format; tests/vectors/layout.json pins it.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from . import codec, names

FORMAT_VERSION = 1  # a database never resharded
SPLIT_FORMAT_VERSION = 2  # its shards split: base != nshards (older radostdb refuses it)
FORMATS = (FORMAT_VERSION, SPLIT_FORMAT_VERSION)
HASH_NAME = "fnv1a64-splitmix"
DEFAULT_SHARDS = 8
TDB_DEFAULT_HASH_SIZE = 131  # what tdb makes of hash_size 0 (its hash_size() answers it)
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


@dataclass(frozen=True)
class Layout:
    """Where keys live: ``base`` shards grown to ``nshards`` by linear
    hashing (see the module comment)."""

    base: int
    nshards: int

    def __post_init__(self) -> None:
        if not 1 <= self.base <= self.nshards <= MAX_SHARDS:
            raise ValueError(f"layout of {self.base} shards grown to {self.nshards}")

    @property
    def level(self) -> int:
        """M: the modulus of the shards not split at this level."""
        return codec.level_modulus(self.base, self.nshards)

    def shard(self, key: bytes) -> int:
        return codec.shard_in(key, self.base, self.nshards)

    def shards(self, keys: list[bytes]) -> list[int]:
        return codec.shards_in(keys, self.base, self.nshards)

    def modulus(self, index: int) -> int:
        """The modulus of shard ``index``'s keys (they hash to index mod it)."""
        m = self.level
        return 2 * m if index < self.nshards - m or index >= m else m

    def next_split(self) -> tuple[int, int, int]:
        """(p, q, M): the next split moves shard p's keys hashing to q mod 2M
        into the new shard q = nshards; M is p's modulus now."""
        m = self.level
        return self.nshards - m, self.nshards, m

    def grown(self) -> Layout:
        """The layout after the next split."""
        return Layout(self.base, self.nshards + 1)

    def objects(self, name: str) -> list[str]:
        return shard_objects(name, self.nshards)


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

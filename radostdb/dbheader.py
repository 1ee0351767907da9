"""A database's header object: its fields, reading them, and what is wrong with them.

The one place that reads and validates a header (layout.py says where the
header object is and what it holds). The Tdb API (storage.py) opens through
it, and so do the ``radostdb`` commands (radostdb.admin).

dbheader design:
- Fields are the header object's omap, read in pages (a header has a
  handful of fields; paging keeps a header stuffed with junk keys from
  being cut short). Values are ASCII (``name`` UTF-8); bytes that do not
  decode are replaced, so a damaged value shows up as a problem, never as a
  UnicodeDecodeError.
- :attr:`Header.problems` lists, one line each, what keeps records from
  being found with the header: no or another format, another hash, no or a
  bad shard count or base (the layout, layout.py), a ``name`` field naming
  another database (a hashed name whose object belongs to another name).
- The layout grows by one shard at a time (reshard.py): ``nshards`` is
  compared and set in one operation, with ``format`` 2 and ``base``. Tools show the list
  (``radostdb check``, ``info``, ``ls``); the API refuses to open
  (:meth:`Header.check`): a newer format or another hash is ``OSError``
  (EPROTO), anything else TDB's corrupt error naming the object.
- The object class keeps a sequence number in the header object's omap
  header; that is the class's business (clsops.seq), not a field.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from typing import Any

import rados

from . import cluster as clustermod
from . import layout
from .errors import ERR_CORRUPT, TdbError

FORMAT_KEY = "format"
NSHARDS_KEY = "nshards"
BASE_KEY = "base"  # format 2: the shard count before any split
HASH_SIZE_KEY = "hash_size"  # tdb's hash_size the database was created with
THRESHOLD_KEY = "split_threshold"  # records per shard past which it splits (reshard.py)
HASH_KEY = "hash"
CREATED_KEY = "created"
NAME_KEY = layout.NAME_KEY
PAGE = 1000  # fields read per round trip


def new_fields(name: str, nshards: int, hash_size: int = 0) -> dict[str, str]:
    """The fields of a new database's header (``hash_size``: tdb's, kept to
    be answered back; 0 is tdb's default)."""
    return {
        FORMAT_KEY: str(layout.FORMAT_VERSION),
        NSHARDS_KEY: str(nshards),
        HASH_SIZE_KEY: str(hash_size or layout.TDB_DEFAULT_HASH_SIZE),
        HASH_KEY: layout.HASH_NAME,
        CREATED_KEY: f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
        f"by {os.uname().nodename} pid {os.getpid()}",
        NAME_KEY: name,  # a hashed name is read back from here
    }


def problems(fields: dict[str, str], name: str | None = None) -> list[str]:
    """What is wrong with header fields (of database ``name``, if given), as a
    list of one-line descriptions."""
    found = []
    stored = fields.get(NAME_KEY)
    if name is not None and stored is not None and stored != name:
        found.append(f"the header names database {stored!r}")
    fmt = fields.get(FORMAT_KEY)
    known = " or ".join(str(f) for f in layout.FORMATS)
    if fmt is None:
        found.append("no 'format' field")
    elif fmt not in [str(f) for f in layout.FORMATS]:
        found.append(f"format {fmt!r}; this radostdb reads format {known}")
    if fields.get(HASH_KEY) != layout.HASH_NAME:
        found.append(f"hash {fields.get(HASH_KEY)!r}; this radostdb uses {layout.HASH_NAME!r}")
    n = _number(fields.get(NSHARDS_KEY), 1, layout.MAX_SHARDS)
    if NSHARDS_KEY not in fields:
        found.append("no 'nshards' field")
    elif n is None:
        found.append(
            f"nshards {fields[NSHARDS_KEY]!r} is not a number from 1 to {layout.MAX_SHARDS}"
        )
    if fmt == str(layout.SPLIT_FORMAT_VERSION):
        base = _number(fields.get(BASE_KEY), 1, layout.MAX_SHARDS)
        if base is None or (n is not None and base > n):
            found.append(f"base {fields.get(BASE_KEY)!r} is not a shard count up to nshards")
    for key, top in ((HASH_SIZE_KEY, layout.MAX_SHARDS), (THRESHOLD_KEY, 2**32 - 2)):
        if key in fields and _number(fields[key], 0, top) is None:
            found.append(f"{key} {fields[key]!r} is not a number from 0 to {top}")
    return found


def _number(raw: str | None, low: int, high: int) -> int | None:
    """``raw`` as an int in [low, high]; None if it is not one."""
    if raw is None or not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        return None
    return int(raw)


@dataclass
class Header:
    """A database's header object: its fields as stored, and what is wrong with them."""

    name: str
    fields: dict[str, str]
    problems: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.problems = problems(self.fields, self.name)

    @property
    def object(self) -> str:
        return layout.header_object(self.name)

    @property
    def nshards(self) -> int | None:
        """The shard count, or None when the header does not give a usable one."""
        return _number(self.fields.get(NSHARDS_KEY), 1, layout.MAX_SHARDS)

    @property
    def layout(self) -> layout.Layout | None:
        """Where the records are, or None when the header does not say."""
        n = self.nshards
        if n is None:
            return None
        if self.fields.get(FORMAT_KEY) != str(layout.SPLIT_FORMAT_VERSION):
            return layout.Layout(n, n)
        base = _number(self.fields.get(BASE_KEY), 1, n)
        return None if base is None else layout.Layout(base, n)

    @property
    def hash_size(self) -> int:
        """tdb's hash_size the database was created with (before radostdb
        kept it: its shard count, which was that hash_size)."""
        n = _number(self.fields.get(HASH_SIZE_KEY), 1, layout.MAX_SHARDS)
        if n is not None:
            return n
        lay = self.layout
        return lay.base if lay is not None else 0

    @property
    def split_threshold(self) -> int | None:
        """Records per shard past which a shard splits, as set for this
        database (None: not set; 0: never)."""
        return _number(self.fields.get(THRESHOLD_KEY), 0, 2**32 - 2)

    @property
    def foreign(self) -> bool:
        """Written by a radostdb of another format or hash (not damage)."""
        fmt = self.fields.get(FORMAT_KEY)
        return (fmt is not None and fmt not in [str(f) for f in layout.FORMATS]) or (
            HASH_KEY in self.fields and self.fields[HASH_KEY] != layout.HASH_NAME
        )

    def check(self) -> Header:
        """This header, if records can be found with it; else the API's error:
        OSError(EPROTO) for another format or hash, TDB's corrupt error for
        anything else."""
        if not self.problems:
            return self
        what = "; ".join(self.problems)
        if self.foreign:
            raise OSError(
                errno.EPROTO,
                f"database {self.name!r} cannot be read by this radostdb ({self.object}: {what})",
            )
        raise TdbError(
            ERR_CORRUPT, f"Corrupt database: header of {self.name!r} ({self.object}): {what}"
        )


def read_fields(io: Any, obj: str) -> dict[str, str] | None:
    """The omap of header object ``obj`` as text fields; None if it does not exist."""
    fields: dict[str, str] = {}
    start = ""
    while True:
        with rados.ReadOpCtx() as op:
            it, _ = io.get_omap_vals(op, start, "", PAGE)
            try:
                io.operate_read_op(op, obj)
            except rados.ObjectNotFound:
                return None
            except rados.Error as exc:
                raise clustermod.io_error(exc, f"reading {obj}", io) from None
            page = list(it)
        for k, v in page:
            fields[k] = v.decode("utf-8", "replace")
        if len(page) < PAGE:
            return fields
        start = page[-1][0]


def grow(io: Any, name: str, old: layout.Layout) -> bool:
    """Record the layout after ``old``'s next split in the header, if the
    header still has ``old``'s shard count (compared and set in one
    operation). False when it had another."""
    new = old.grown()
    fields = {
        FORMAT_KEY: str(layout.SPLIT_FORMAT_VERSION),
        NSHARDS_KEY: str(new.nshards),
        BASE_KEY: str(new.base),
    }
    with rados.WriteOpCtx() as op:
        op.omap_cmp(NSHARDS_KEY, str(old.nshards), rados.LIBRADOS_CMPXATTR_OP_EQ)
        io.set_omap(op, tuple(fields), tuple(v.encode() for v in fields.values()))
        try:
            io.operate_write_op(op, layout.header_object(name))
        except rados.Error as exc:
            if getattr(exc, "errno", 0) in (errno.ECANCELED, errno.EINVAL):
                return False
            raise clustermod.io_error(
                exc, f"growing {name!r} to {new.nshards} shards", io
            ) from None
    return True


def set_field(io: Any, name: str, key: str, value: str) -> None:
    """Set one header field (``split_threshold``)."""
    with rados.WriteOpCtx() as op:
        io.set_omap(op, (key,), (value.encode(),))
        try:
            io.operate_write_op(op, layout.header_object(name))
        except rados.Error as exc:
            raise clustermod.io_error(exc, f"setting {key} of {name!r}", io) from None


def read(io: Any, name: str) -> Header | None:
    """The header of database ``name`` (already mapped by names.py); None if
    it has no header object."""
    layout.check_name(name)
    fields = read_fields(io, layout.header_object(name))
    return None if fields is None else Header(name, fields)

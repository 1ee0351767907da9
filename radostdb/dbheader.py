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
  bad shard count, a ``name`` field naming another database (a hashed name
  whose object belongs to another name). Tools show the list
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
HASH_KEY = "hash"
CREATED_KEY = "created"
NAME_KEY = layout.NAME_KEY
PAGE = 1000  # fields read per round trip


def new_fields(name: str, nshards: int) -> dict[str, str]:
    """The fields of a new database's header."""
    return {
        FORMAT_KEY: str(layout.FORMAT_VERSION),
        NSHARDS_KEY: str(nshards),
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
    if fmt is None:
        found.append("no 'format' field")
    elif fmt != str(layout.FORMAT_VERSION):
        found.append(f"format {fmt!r}; this radostdb reads format {layout.FORMAT_VERSION}")
    if fields.get(HASH_KEY) != layout.HASH_NAME:
        found.append(f"hash {fields.get(HASH_KEY)!r}; this radostdb uses {layout.HASH_NAME!r}")
    n = fields.get(NSHARDS_KEY)
    if n is None:
        found.append("no 'nshards' field")
    elif not (n.isascii() and n.isdigit()) or not 1 <= int(n) <= layout.MAX_SHARDS:
        found.append(f"nshards {n!r} is not a number from 1 to {layout.MAX_SHARDS}")
    return found


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
        n = self.fields.get(NSHARDS_KEY, "")
        if not (n.isascii() and n.isdigit()):
            return None
        return int(n) if 1 <= int(n) <= layout.MAX_SHARDS else None

    @property
    def foreign(self) -> bool:
        """Written by a radostdb of another format or hash (not damage)."""
        fmt = self.fields.get(FORMAT_KEY)
        return (fmt is not None and fmt != str(layout.FORMAT_VERSION)) or (
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


def read(io: Any, name: str) -> Header | None:
    """The header of database ``name`` (already mapped by names.py); None if
    it has no header object."""
    layout.check_name(name)
    fields = read_fields(io, layout.header_object(name))
    return None if fields is None else Header(name, fields)

"""Administration beyond the Tdb API: the library behind the ``radostdb`` CLI.

It finds, describes, reads in key order, loads, checks, repairs and
removes databases, one concern per module:

- site.py     where: connecting (:func:`connect`), the pool and namespace
              (:class:`Site`), the operator's errors, a database's header
- inspect.py  describing without changing: ``ls``, ``info``, lock tables,
              unfinished commits
- read.py     every record, verified, never half a commit (dump, export)
- load.py     records into a database in one transaction (restore, import)
- check.py    verifying: a :class:`Finding` per problem, naming its object
- repair.py   ``check --repair``: what each kind of damage gets
- remove.py   removing a database's objects
- rename.py   renaming a database (a copy, then the old one removed)
- inboxes.py  the processes' inboxes in a pool (listing, pruning the dead ones)
- findings.py, serialize.py, redo.py: the findings, JSON of the reports,
              and a shard's redo log read from outside the class

admin design:
- It reads a database's objects directly (layout, dbheader, scan, clsops),
  so it adds no watcher of its own and works on databases a handle refuses
  to open (a bad header, damaged metadata). Transactions a dead committer
  left undecided are decided with resolver.decide / resolver.settle_all, which
  need no lock. Record writes other than repairs go through radostdb.Tdb
  (load.py, and the CLI's get/store/delete).
- Names: functions take database names, already mapped by names.py (the
  CLI maps its arguments); objects come from layout.
- Reads are not a snapshot: a database changed while it is read shows some
  changes and not others, as a TDB traversal without a lock would.
- What cannot be undone is never done without being asked: corrupt records
  are dropped only with ``drop_corrupt``. Everything else a repair does,
  and the records whose fate it had to presume, it says (repair.py).
"""

from __future__ import annotations

from ..tdbdump import quoted as display_key
from .check import CheckReport, check
from .findings import FINDING_KINDS, Finding
from .inboxes import Inbox, inboxes, prune_inboxes
from .inspect import (
    DbInfo,
    DbSummary,
    HeldLock,
    Opener,
    ShardStats,
    database_names,
    held_locks,
    info,
    list_databases,
    openers,
    unfinished_commit,
)
from .load import load
from .read import count_records, records
from .remove import database_objects, remove, remove_objects
from .rename import rename
from .serialize import to_json
from .site import (
    AdminError,
    CorruptDatabase,
    NoDatabase,
    Site,
    connect,
    exists,
    exists_object,
    read_header,
    usable_header,
)

__all__ = [
    "FINDING_KINDS",
    "AdminError",
    "CheckReport",
    "CorruptDatabase",
    "DbInfo",
    "DbSummary",
    "Finding",
    "HeldLock",
    "Inbox",
    "NoDatabase",
    "Opener",
    "ShardStats",
    "Site",
    "check",
    "connect",
    "count_records",
    "database_names",
    "database_objects",
    "display_key",
    "exists",
    "exists_object",
    "held_locks",
    "inboxes",
    "info",
    "list_databases",
    "load",
    "openers",
    "prune_inboxes",
    "read_header",
    "records",
    "remove",
    "remove_objects",
    "rename",
    "to_json",
    "unfinished_commit",
    "usable_header",
]

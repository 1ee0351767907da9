"""Renaming a database: ``radostdb rename``, chiefly for databases that
radostdb 0.2 stored under a path it did not normalise (``//``, ``.`` and
``..`` kept), which no handle can open now.

rename design:
- RADOS has no rename of a set of objects, so a rename copies: every
  record of OLD (read as a dump reads them: a transaction left pending is
  decided first) is written into NEW, created exclusively with OLD's shard
  count (unsplit: a fresh layout of that many shards) and hash size, in ONE
  transaction (load.py: all or nothing; a failed copy leaves
  no NEW behind); then OLD is removed, header last (remove.py).
- Refused while CLEAR_IF_FIRST handles have OLD open, or while NEW exists.
  Plain handles are not seen (they keep no watch): stop the services using
  OLD first. A copy interrupted after NEW was committed leaves both: NEW is
  complete, and ``radostdb rm`` of OLD (``--literal`` for a 0.2 name)
  finishes the job.
"""

from __future__ import annotations

from .load import load
from .read import records
from .remove import remove
from .site import AdminError, Site, exists, usable_header


def rename(site: Site, old: str, new: str) -> int:
    """Copy database ``old`` to ``new`` (which must not exist) and remove
    ``old``; returns the number of records."""
    if old == new:
        raise AdminError(f"{old!r} is already named so")
    header = usable_header(site, old)
    if exists(site, new):
        raise AdminError(
            f"database {new!r} already exists in {site.where}: rename to a new name (if a "
            f"rename of {old!r} was interrupted after copying, remove {old!r} with "
            "'radostdb rm')"
        )
    from .inspect import openers

    users = openers(site, old)
    if users:
        raise AdminError(
            f"database {old!r} is open by {len(users)} CLEAR_IF_FIRST handle(s); close them first"
        )
    n = load(
        site,
        new,
        records(site, old, ordered=False),
        hash_size=header.hash_size,
        shards=header.nshards,
    )
    remove(site, old, force=True)
    return n

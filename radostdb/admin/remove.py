"""Removing a database: ``radostdb rm``, and the clean-up of a load that failed.

remove design:
- The objects are the header's shard count's shards, the journal and the
  transaction-lock object, then the header, removed LAST: an interrupted
  removal leaves a database that ``rm`` finds and finishes. With no usable
  header the shards are found by listing the pool.
- An object already gone counts as removed by someone else, not as an
  error (:func:`remove_objects`): two removals of one database both succeed.
- A database open by a CLEAR_IF_FIRST handle (a watch on its header) is
  kept unless ``force``: its users would lose it under their feet. Plain
  handles are not seen (they keep no watch: as in tdb, only CLEAR_IF_FIRST
  openers count).
"""

from __future__ import annotations

import errno
import os
from typing import Any

from .. import layout
from .findings import SHARD_RE
from .inspect import openers
from .site import AdminError, NoDatabase, Site, exists_object, read_header


def remove_objects(io: Any, objs: list[str]) -> int:
    """Remove ``objs`` in parallel (aio); objects already gone are skipped.
    Returns how many existed."""
    removed = 0
    calls = [(obj, io.aio_remove(obj)) for obj in objs]
    failed = None
    for obj, c in calls:
        c.wait_for_complete()
        ret = c.get_return_value()
        if ret == 0:
            removed += 1
        elif ret != -errno.ENOENT and failed is None:
            failed = AdminError(f"cannot remove {obj}: {os.strerror(-ret)}")
    if failed is not None:
        raise failed
    return removed


def database_objects(site: Site, name: str) -> list[str]:
    """Every object of a database, shards first and the header last.

    Uses the header's shard count; with no usable header, lists the pool.
    """
    layout.check_name(name)
    hobj = layout.header_object(name)
    try:
        n = read_header(site, name).nshards
    except NoDatabase:
        n = None
        has_header = False
    else:
        has_header = True
    others = [
        o for o in (layout.journal_object(name), layout.wait_object(hobj)) if exists_object(site, o)
    ]
    if n is not None:
        # and a shard a split left half done was filling (reshard.py)
        filling = [o for o in [layout.shard_object(name, n)] if exists_object(site, o)]
        return [*layout.shard_objects(name, n), *filling, *others, hobj]
    shards = []
    stem = layout.stem(name)
    for o in site.io.list_objects():
        m = SHARD_RE.match(o.key)
        if m and m.group(2) == stem:
            shards.append(o.key)
    if not shards and not has_header:
        raise site.missing(name)
    return [*sorted(shards), *others, *([hobj] if has_header else [])]


def remove(site: Site, name: str, *, force: bool = False) -> int:
    """Remove every object of a database; return how many existed.

    Refuses while a CLEAR_IF_FIRST handle has it open, unless ``force``.
    """
    objs = database_objects(site, name)
    hobj = layout.header_object(name)
    if not force and objs[-1] == hobj:
        users = openers(site, name)
        if users:
            raise AdminError(
                f"database {name!r} is open by {len(users)} CLEAR_IF_FIRST handle(s): "
                f"{', '.join(map(str, users[:5]))}{' …' if len(users) > 5 else ''}; "
                "close them first, or pass --force"
            )
    last = objs[-1:] if objs[-1] == hobj else []
    removed = remove_objects(site.io, objs[: len(objs) - len(last)])
    return removed + remove_objects(site.io, last)  # header last: a rerun finishes the job

"""Process inboxes in a pool: ``radostdb inboxes``.

inboxes design:
- Every process that waited for a lock has an inbox object
  (``radostdb.inbox.<16 hex>``, wakeup.py) in the pool and namespace of the
  database, watched by that process alone, where the handoff of a lock
  ("G") reaches it. A process removes its inbox when its connection shuts
  down; one killed leaves it behind: an empty object whose watch lapses
  with the OSD's watch timeout (30 s by default).
- Listing reads the pool's object list (as ``ls`` does) and asks each inbox
  who watches it. Pruning removes the inboxes nobody watches; an inbox made
  between the listing and the removal is not in the list, so a live
  process never loses its inbox (one that is merely suspended past the
  watch timeout does: its next handoff falls back to a lock-table read,
  wakeup.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import rados

from .. import clsops, wakeup
from .remove import remove_objects
from .site import AdminError, Site


@dataclass
class Inbox:
    """One process inbox: its object, how many watches it has, and whether
    it was just removed (``prune_inboxes``)."""

    obj: str
    watchers: int
    pruned: bool = False


def inboxes(site: Site) -> list[Inbox]:
    """The process inboxes in the site's pool and namespace, sorted."""
    try:
        objs = sorted(
            o.key for o in site.io.list_objects() if o.key.startswith(wakeup.INBOX_PREFIX)
        )
    except rados.Error as exc:
        raise AdminError(f"cannot list the objects of {site.where}: {exc}") from exc
    calls = [(obj, clsops.aio_watchers(site.io, obj)) for obj in objs]
    out = []
    for obj, call in calls:
        watching = call.wait()
        if watching is not None:  # else removed meanwhile by its process
            out.append(Inbox(obj, len(watching)))
    return out


def prune_inboxes(site: Site) -> list[Inbox]:
    """The inboxes, those nobody watches (left by processes that died)
    removed and marked so."""
    found = inboxes(site)
    dead = [i for i in found if i.watchers == 0]
    remove_objects(site.io, [i.obj for i in dead])
    for i in dead:
        i.pruned = True
    return found

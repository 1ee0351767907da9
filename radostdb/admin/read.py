"""Reading every record of a database, for ``radostdb dump`` and ``export``.

read design:
- Records are read with the class ``list`` method as a handle's traversal
  reads them (traverse.py: a split under way is followed), every one
  verified: a shard in the middle of a multi-shard commit answers
  "pending", and the transaction is decided by the resolver (resolver.py:
  the one policy; no lock needed) or, while its committer still holds the
  transaction lock, waited for (up to PENDING_TIMEOUT), so a reader never
  sees half a commit.
- In key order: a shard's omap is in encoded-key order, which is raw-key
  order, so a k-way merge of every shard gives the records in key order;
  every shard is read at once, within the read budget. In any order
  (export): a few shards at a time, the next one's first page ahead.
- It reads a database's objects directly, so it adds no watcher of its own
  and works on databases a handle would refuse; damage found on the way is
  CorruptDatabase, pointing at ``radostdb check``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

from .. import clsops, layout, locking, resolver, scan, traverse
from ..errors import ERR_CORRUPT, TdbError
from ..router import Router
from ..shardclient import Shards
from .inspect import error_text, undecodable
from .site import AdminError, CorruptDatabase, Site, usable_header

PENDING_TIMEOUT = 300.0  # how long a read waits for a transaction whose committer lives
EXPORT_WINDOW = scan.READ_THREADS  # shards read at once when the order does not matter


def db_objects(site: Site, name: str, nshards: int) -> resolver.DbObjects:
    """The objects commit decisions need, for database ``name`` at ``site``."""
    return resolver.DbObjects(lambda: site.io, name, layout.shard_objects(name, nshards))


def _too_long(obj: str, waited: float) -> Exception:
    return AdminError(
        f"{obj} is still pending a transaction after {waited:.0f}s: its committer holds the "
        "transaction lock"
    )


class _Resolver(resolver.Resolver):
    """The resolver's policy (decide the transaction; while its committer
    holds the transaction lock, wait, up to PENDING_TIMEOUT), its errors told
    as an operator's."""

    def __init__(self, db: resolver.DbObjects) -> None:
        super().__init__(db, PENDING_TIMEOUT, _too_long)

    def pending(self, obj: str, info: clsops.PendingInfo, attempt: int) -> None:
        bad = [i for i in info.participants if not self.db.has_shard(i)]
        if bad:
            raise CorruptDatabase(
                f"transaction {info.txid:x} pending on the database names shard(s) "
                f"{', '.join(map(str, bad))}, which it does not have; run 'radostdb check'"
            )
        try:
            super().pending(obj, info, attempt)
        except (clsops.WireError, TdbError) as exc:
            if not undecodable(exc):
                raise
            raise CorruptDatabase(
                f"transaction {info.txid:x}: its journal record or a participant's "
                f"metadata does not decode ({error_text(exc)}); run 'radostdb check'"
            ) from None


def records(site: Site, name: str, *, ordered: bool = True) -> Iterator[tuple[bytes, bytes]]:
    """Every record ``(key, data)`` of a database; in raw-key order unless not ``ordered``.

    Read as a handle's traversal reads (traverse.py): a record that exists
    throughout is read once, even while the database is resharded. Memory
    stays within the read budget either way."""
    lay = usable_header(site, name).layout or layout.Layout(1, 1)
    db = db_objects(site, name, lay.nshards)
    shards = Shards(
        lambda: site.io, site.session, db, locking.LockTable(lambda: site.io), _Resolver(db)
    )
    homes = Router(lambda: site.io, name, lay)
    n = lay.nshards
    try:
        if ordered:
            walks = [traverse.Walk(shards, homes, n, concurrent=n) for _ in range(n)]
            streams = [itertools.chain.from_iterable(w.shard_pages(i)) for i, w in enumerate(walks)]
            yield from heapq.merge(*streams)
        else:
            for page in traverse.Walk(shards, homes, n, concurrent=EXPORT_WINDOW):
                yield from page
    except TdbError as exc:
        if exc.code != ERR_CORRUPT:
            raise
        raise CorruptDatabase(f"{exc.message}; run 'radostdb check'") from None


def count_records(site: Site, name: str) -> int:
    """The number of records (omap keys only are read, shards in parallel;
    a split under way is followed: the new shard's keys past the split's
    moved_upto are copies in progress, not counted)."""
    lay = usable_header(site, name).layout or layout.Layout(1, 1)
    homes = Router(lambda: site.io, name, lay)
    split = homes.learn_split()
    n = homes.shard_count()
    opener = scan.omap_pages(site.io, layout.shard_objects(name, n), keys_only=True)
    total = 0
    for index, page in scan.scan(n, opener, window=scan.SCAN_WINDOW):
        if split is not None and index == split.q and not split.done:
            page = [(ek, v) for ek, v in page if split.moved_upto and ek <= split.moved_upto]
        total += len(page)
    return total

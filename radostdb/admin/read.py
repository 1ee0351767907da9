"""Reading every record of a database, for ``radostdb dump`` and ``export``.

read design:
- Records are read with the class ``list`` method (scan.RecordPages), every
  one verified: a shard in the middle of a multi-shard commit answers
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
from collections.abc import Callable, Iterator

from .. import clsops, layout, resolver, scan
from ..errors import ERR_CORRUPT, TdbError
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


def decider(db: resolver.DbObjects) -> Callable[[str], scan.OnPending]:
    """A RecordPages ``on_pending`` per shard: the resolver's policy (decide
    the transaction; while its committer holds the transaction lock, wait,
    up to PENDING_TIMEOUT), its errors told as an operator's."""
    res = resolver.Resolver(db, PENDING_TIMEOUT, _too_long)

    def for_shard(obj: str) -> scan.OnPending:
        def on_pending(info: clsops.PendingInfo, attempt: int) -> None:
            bad = [i for i in info.participants if i >= len(db.shard_objs)]
            if bad:
                raise CorruptDatabase(
                    f"transaction {info.txid:x} pending on the database names shard(s) "
                    f"{', '.join(map(str, bad))}, which it does not have; run 'radostdb check'"
                )
            try:
                res.pending(obj, info, attempt)
            except (clsops.WireError, TdbError) as exc:
                if not undecodable(exc):
                    raise
                raise CorruptDatabase(
                    f"transaction {info.txid:x}: its journal record or a participant's "
                    f"metadata does not decode ({error_text(exc)}); run 'radostdb check'"
                ) from None

        return on_pending

    return for_shard


def records(site: Site, name: str, *, ordered: bool = True) -> Iterator[tuple[bytes, bytes]]:
    """Every record ``(key, data)`` of a database; in raw-key order unless not ``ordered``.

    Memory stays within the read budget either way."""
    n = usable_header(site, name).nshards or 1
    db = db_objects(site, name, n)
    on_pending = decider(db)

    def open_pages(i: int, concurrent: int) -> scan.RecordPages:
        return scan.RecordPages(
            site.io, db.shard(i), on_pending=on_pending(db.shard(i)), concurrent=concurrent
        )

    try:
        if ordered:
            streams = [itertools.chain.from_iterable(open_pages(i, n)) for i in range(n)]
            yield from heapq.merge(*streams)
        else:
            for _, page in scan.scan(n, open_pages, window=EXPORT_WINDOW):
                yield from page
    except TdbError as exc:
        if exc.code != ERR_CORRUPT:
            raise
        raise CorruptDatabase(f"{exc.message}; run 'radostdb check'") from None


def count_records(site: Site, name: str) -> int:
    """The number of records (omap keys only are read, shards in parallel)."""
    n = usable_header(site, name).nshards or 1
    opener = scan.omap_pages(site.io, layout.shard_objects(name, n), keys_only=True)
    return sum(len(page) for _, page in scan.scan(n, opener, window=scan.SCAN_WINDOW))

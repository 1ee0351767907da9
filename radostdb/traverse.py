"""Traversal of a database's records, correct while its shards split.

traverse design:
- A walk visits the shards of the layout it began with, 0..n-1, each in
  key order: pages of records read through the class ``list`` method
  (every record verified by the codec; a shard pending a transaction is
  decided first, as every reader does), the next page of the shard, and the
  next shard's first page, in flight while the caller consumes a page.
- Every page reply carries the shard's layout as its header records it
  (cls/radostdb/reshard.cc). A shard the walk visits for the keys hashing
  to i mod M may since have split (its modulus is 2M or more: the other
  half of each split is in a child shard i + M, i + 2M, ...) or be
  splitting (its moving keys up to moved_upto are in the new shard). For
  the key range the page covered, (after, upto], the walk then reads the
  same range of each child (up to moved_upto for a split under way), and so
  on down: a key that moved before the page was read is read from its
  child, one that moved after was in the page, and moved_upto only grows.
  The records of a range are merged in key order with its children's, so
  each shard's pages come in key order (a dump merges shards).
  Every record that exists throughout a walk is returned exactly once;
  records created or deleted meanwhile may or may not be. A walk of a
  database that does not split costs its pages alone.
- A walk of keys alone (``keys_only``: Tdb.keys, iteration, firstkey,
  nextkey) asks the class for keys only: no record is read in the OSD,
  sent or verified (a record that would not verify still shows its key).
- Not a snapshot (as a tdb traversal without a lock): pages are read one
  after the other. Inside a transaction the caller holds the isolation of
  every shard first (txnlock.py), so no other handle writes meanwhile.
"""

from __future__ import annotations

import errno
import heapq
from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import clsops, codec, scan
from .errors import TdbError

if TYPE_CHECKING:
    import concurrent.futures

    from .router import Router
    from .shardclient import Shards

Page = list[tuple[bytes, bytes]]
PAGE = scan.PAGE_MAX
FIRST_BYTES = scan.FIRST_PAGE_BYTES


class _Read:
    """One page of one shard in (after, until], read in a worker thread
    (prefetch) or now."""

    def __init__(
        self,
        shards: Shards,
        prefetch: bool,
        index: int,
        after: str,
        until: str,
        size: int,
        flags: int = 0,
    ) -> None:
        self.shards, self.index, self.after, self.until, self.size = (
            shards,
            index,
            after,
            until,
            size,
        )
        self.flags = flags
        self.future: concurrent.futures.Future[clsops.ListResult] | None = None
        if prefetch:
            self.future = scan._workers().submit(self._read)

    def _read(self) -> clsops.ListResult:
        client = self.shards[self.index]
        io = client.io()
        attempt = 0
        while True:
            try:
                res = clsops.list_page(
                    io,
                    client.obj,
                    self.after,
                    PAGE,
                    self.size,
                    client.accept(),
                    self.until,
                    self.flags,
                )
            except TdbError as exc:
                if getattr(exc, "errno", 0) == errno.EIO:
                    raise scan._corrupt(
                        client.obj, self.after, "a record, key or header that does not decode"
                    ) from None
                raise
            if res.pending is None:
                return res
            client.resolver.pending(client.obj, res.pending, attempt)
            attempt += 1

    def result(self) -> clsops.ListResult:
        future, self.future = self.future, None
        return future.result() if future is not None else self._read()

    def cancel(self) -> None:
        future, self.future = self.future, None
        if future is not None:
            import concurrent.futures

            concurrent.futures.wait([future])


class Walk:
    """Pages of ``(key, data)`` over the first ``count`` shards and what
    split from them (see the module comment)."""

    def __init__(
        self,
        shards: Shards,
        router: Router,
        count: int,
        prefetch: bool = True,
        concurrent: int = 1,
        keys_only: bool = False,
    ) -> None:
        """``concurrent``: walks read at once (pages shrink to share the
        read budget, scan.page_bytes); ``keys_only``: pages of ``(key, b"")``
        (the class reads and sends no record)."""
        self.shards, self.router, self.prefetch = shards, router, prefetch
        self.flags = clsops.LIST_KEYS_ONLY if keys_only else 0
        self.target = scan.page_bytes(concurrent)
        self.layout = router.layout
        self.count = min(count, self.layout.nshards)
        self._open: list[_Read] = []

    def __iter__(self) -> Iterator[Page]:
        try:
            nxt = self._start(0) if self.count else None
            for index in range(self.count):
                first = nxt
                nxt = self._start(index + 1) if index + 1 < self.count else None
                assert first is not None
                yield from self._class(index, self.layout.modulus(index), first)
        finally:
            self.close()

    def shard_pages(self, index: int) -> Iterator[Page]:
        """The pages of layout shard ``index``'s keys alone, wherever they
        are now, in key order (pages in order, each sorted): what a merge
        of every shard in key order reads (radostdb dump)."""
        try:
            yield from self._class(index, self.layout.modulus(index), self._start(index))
        finally:
            self.close()

    def close(self) -> None:
        """Stop: wait out the reads in flight (idempotent)."""
        for r in self._open:
            r.cancel()
        self._open.clear()

    def _start(self, index: int, after: str = "", until: str = "") -> _Read:
        r = _Read(self.shards, self.prefetch, index, after, until, FIRST_BYTES, self.flags)
        self._open.append(r)
        return r

    def _class(self, index: int, modulus: int, first: _Read) -> Iterator[Page]:
        """The records of shard ``index``'s keys (hash mod ``modulus``) in
        the range ``first`` starts, wherever they are now: pages in key
        order, each sorted (a page of the shard merged with what its
        children hold in the same range)."""
        read: _Read | None = first
        after, until = first.after, first.until
        target = self.target
        while read is not None:
            res = read.result()
            self._open.remove(read)
            records = self._parse(index, read.after, res.page)
            upto = codec.encode_key(records[-1][0]) if res.more and records else until
            read = None
            if res.more and records:
                size = max(scan.PAGE_BYTES_MIN, min(target, len(res.page) * 2))
                read = _Read(self.shards, self.prefetch, index, upto, until, size, self.flags)
                self._open.append(read)
            moved: list[Page] = []
            for child, child_modulus, child_until in _children(index, modulus, res.layout, upto):
                if child_until and after and child_until <= after:
                    continue
                first_child = self._start(child, after, child_until)
                moved += self._class(child, child_modulus, first_child)
            if moved:
                records = list(heapq.merge(records, *moved))
            if records:
                yield records
            after = upto

    def _parse(self, index: int, after: str, page: bytes) -> Page:
        try:
            if self.flags & clsops.LIST_KEYS_ONLY:
                return clsops.key_page(page)
            return codec.parse_page(page)
        except codec.CodecError as exc:
            raise scan._corrupt(
                self.shards[index].obj, after, f"record {exc.entry} of a page: {exc}"
            ) from None
        except clsops.WireError as exc:
            raise scan._corrupt(self.shards[index].obj, after, f"a page of keys: {exc}") from None

    def first_after(self, key: bytes | None) -> bytes | None:
        """tdb's firstkey (key None) and nextkey: the first key after ``key``
        in its shard, else the first key of the following shards, in the
        handle's layout."""
        start = 0 if key is None else self.router.shard(key)
        after = "" if key is None else codec.encode_key(key)
        for index in range(start, self.router.shard_count()):
            res = _Read(self.shards, False, index, after, "", FIRST_BYTES, self.flags).result()
            records = self._parse(index, after, res.page)
            if records:
                return records[0][0]
            after = ""
        return None


def _children(
    index: int, modulus: int, layout: clsops.ShardLayout, upto: str
) -> list[tuple[int, int, str]]:
    """Where keys of shard ``index``'s class (hash mod ``modulus``) in a
    page's range up to ``upto`` (empty: to the end) went, as the page's
    layout says: (child shard, its modulus, bound of the range there)."""
    if not layout.modulus:
        return []  # never split
    out = []
    m = modulus
    while m < layout.modulus:  # splits complete since the walk began
        out.append((index + m, 2 * m, upto))
        m *= 2
    if layout.splitting and layout.moved_upto:
        bound = layout.moved_upto if not upto or layout.moved_upto < upto else upto
        out.append((layout.split_to, layout.split_modulus, bound))
    return out

"""Traversal of a database's records, correct while its shards split.

traverse design:
- A walk visits the shards of the layout it began with, 0..n-1, each in
  key order: pages of records read through the class ``list`` method
  (every record verified by the codec; a shard pending a transaction is
  decided first, as every reader does). Each shard's range is a chain of
  pages (each starts after the last key of the one before), read ahead of
  the caller in a worker thread; while the caller consumes shard i, the
  chains of shards i+1..i+AHEAD read too. Shards are separate objects
  (placement groups, OSD threads), so their pages are read in parallel,
  where one shard's can only follow each other. Each chain holds pages up
  to its share of the read budget (scan.READ_BUDGET over the 1 + AHEAD
  chains of each walk read at once), and pages shrink to half that share
  (scan.page_bytes): a walk of keys alone reads whole shards ahead.
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
- Not a snapshot (as a tdb traversal without a lock): pages are read at
  different times. Inside a transaction the caller holds the isolation of
  every shard first (txnlock.py), so no other handle writes meanwhile.
"""

from __future__ import annotations

import collections
import errno
import heapq
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from . import clsops, codec, forks, scan
from .errors import TdbError

if TYPE_CHECKING:
    from .router import Router
    from .shardclient import Shards

Page = list[tuple[bytes, bytes]]
PAGE = scan.PAGE_MAX
FIRST_BYTES = scan.FIRST_PAGE_BYTES
AHEAD = 3  # shards after the current one whose pages a walk reads meanwhile


def _read_page(
    shards: Shards, index: int, after: str, until: str, size: int, flags: int
) -> clsops.ListResult:
    """One class ``list`` page of shard ``index`` in (after, until], the
    shard decided first if a commit left it pending."""
    client = shards[index]
    io = client.io()
    attempt = 0
    while True:
        try:
            res = clsops.list_page(io, client.obj, after, PAGE, size, client.accept(), until, flags)
        except TdbError as exc:
            if getattr(exc, "errno", 0) == errno.EIO:
                raise scan._corrupt(
                    client.obj, after, "a record, key or header that does not decode"
                ) from None
            raise
        if res.pending is None:
            return res
        client.resolver.pending(client.obj, res.pending, attempt)
        attempt += 1


class _Step(NamedTuple):
    """A page of a chain: the range (after, upto] it covers, the reply, its
    records, and whether it is the range's last page."""

    after: str
    upto: str
    res: clsops.ListResult
    records: Page
    last: bool


class _Chain:
    """The pages of one shard object's range (after, until], one after the
    other (each starts after the last key of the one before), read ahead in
    a worker thread while the pages in hand stay within the walk's
    ``budget`` bytes (prefetch), or in the caller's thread when asked for
    (no prefetch, or a chain a forked child inherited: its parent's reader
    thread is not there, and the child reads on from where the pages it
    holds end).

    Where the next page starts is the last page in hand's end, else where
    the caller's last page ended (``_pos``): a page appears in one step, so
    a child forked at any moment knows it exactly."""

    def __init__(
        self,
        walk: Walk,
        index: int,
        after: str,
        until: str,
    ) -> None:
        self.walk, self.index, self.until = walk, index, until
        self._pos = (after, False)  # end of the pages handed out; past the last?
        self.size = FIRST_BYTES
        self._cond = threading.Condition()
        self._buf: collections.deque[_Step] = collections.deque()
        self._bytes = 0  # of the pages in _buf (a budget's measure)
        self._running = self._stopped = False
        self._error: BaseException | None = None
        self._sync = not walk.prefetch
        self._gen = forks.generation
        if not self._sync:
            with self._cond:
                self._kick()

    def _tail(self) -> tuple[str, bool]:
        """Where the next page starts, and whether the range is all read."""
        if self._buf:
            last = self._buf[-1]
            return last.upto, last.last
        return self._pos

    def _kick(self) -> None:
        """Under the lock: read on in the background if the chain may."""
        idle = not (self._running or self._stopped or self._error or self._sync)
        if idle and not self._tail()[1] and self._room():
            self._running = True
            scan._workers().submit(self._work)

    def _adopt(self) -> None:
        """In a forked child, at its first use: no thread reads for the
        chain (a parent's read in flight at the fork is read again), and its
        lock may have been held at the fork."""
        if self._gen != forks.generation:
            self._gen = forks.generation
            self._cond = threading.Condition()
            self._running, self._sync = False, True

    def _room(self) -> bool:
        """Under the lock: another page fits beside those in hand."""
        return not self._buf or self._bytes + self.size <= self.walk.budget

    def _step(self) -> bool:
        """Read the next page into the buffer; false once the last is in."""
        with self._cond:
            after, ended = self._tail()
            size = self.size
        if ended:
            return False
        res = _read_page(self.walk.shards, self.index, after, self.until, size, self.walk.flags)
        records = self.walk._parse(self.index, after, res.page)
        last = not (res.more and records)
        upto = self.until if last else codec.encode_key(records[-1][0])
        with self._cond:
            self._buf.append(_Step(after, upto, res, records, last))
            self._bytes += len(res.page)
            self.size = max(scan.PAGE_BYTES_MIN, min(self.walk.target, len(res.page) * 2))
            self._cond.notify_all()
        return not last

    def _work(self) -> None:
        try:
            while self._step():
                with self._cond:
                    if self._stopped or not self._room():
                        break
        except BaseException as exc:  # handed to the consumer
            with self._cond:
                self._error = exc
        with self._cond:
            self._running = False
            self._cond.notify_all()

    def _take(self) -> _Step:
        step = self._buf.popleft()
        self._pos = (step.upto, step.last)
        self._bytes -= len(step.res.page)
        return step

    def next(self) -> _Step | None:
        """The next page of the range, None past its end."""
        self._adopt()
        if self._sync or self._stopped:  # stopped: by Walk.close, the caller reads on
            if not self._buf:
                self._step()
            return self._take() if self._buf else None
        with self._cond:
            while not self._buf:
                if self._error is not None:
                    raise self._error
                if self._pos[1]:
                    return None
                self._kick()
                self._cond.wait()
            step = self._take()
            self._kick()
            return step

    def cancel(self) -> None:
        """Stop reading ahead; wait out the read in flight."""
        self._adopt()
        with self._cond:
            self._stopped = True
            while self._running:
                self._cond.wait()


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
        read budget, scan.page_bytes, with the shards each reads ahead);
        ``keys_only``: pages of ``(key, b"")`` (the class reads and sends no
        record)."""
        self.shards, self.router, self.prefetch = shards, router, prefetch
        self.flags = clsops.LIST_KEYS_ONLY if keys_only else 0
        # each of the 1 + AHEAD shards read at once holds pages up to budget
        self.target = scan.page_bytes(concurrent * (1 + AHEAD))
        self.budget = 2 * self.target
        self.layout = router.layout
        self.count = min(count, self.layout.nshards)
        self._open: list[_Chain] = []

    def __iter__(self) -> Iterator[Page]:
        try:
            ahead: dict[int, _Chain] = {}
            for index in range(self.count):
                for nxt in range(index, min(self.count, index + 1 + AHEAD)):
                    if nxt not in ahead:
                        ahead[nxt] = self._start(nxt)
                yield from self._class(index, self.layout.modulus(index), ahead.pop(index))
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
        for c in self._open:
            c.cancel()
        self._open.clear()

    def _start(self, index: int, after: str = "", until: str = "") -> _Chain:
        c = _Chain(self, index, after, until)
        self._open.append(c)
        return c

    def _class(self, index: int, modulus: int, chain: _Chain) -> Iterator[Page]:
        """The records of shard ``index``'s keys (hash mod ``modulus``) in
        the range ``chain`` reads, wherever they are now: pages in key
        order, each sorted (a page of the shard merged with what its
        children hold in the same range)."""
        try:
            while (step := chain.next()) is not None:
                records, after, upto = step.records, step.after, step.upto
                moved: list[Page] = []
                for child, child_modulus, child_until in _children(
                    index, modulus, step.res.layout, upto
                ):
                    if child_until and after and child_until <= after:
                        continue
                    moved += self._class(
                        child, child_modulus, self._start(child, after, child_until)
                    )
                if moved:
                    records = list(heapq.merge(records, *moved))
                if records:
                    yield records
        finally:
            chain.cancel()
            if chain in self._open:
                self._open.remove(chain)

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
            res = _read_page(self.shards, index, after, "", FIRST_BYTES, self.flags)
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

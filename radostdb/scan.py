"""Paged reading of shard objects: the one pager of radostdb.

A page iterator reads ONE object, in omap key order:
- :class:`OmapPages`: the raw omap, ``(omap key, stored value)`` pages (or
  keys only), as RADOS holds them, whatever the object class would say of
  them: for sizes and for ``radostdb check``, which must see corrupt entries.
- :class:`RecordPages`: ``(key, data)`` pages read with the class ``list``
  method, every record verified by the codec. A shard in the middle of a
  multi-shard commit answers "pending" instead of data; the iterator hands
  that to ``on_pending(info, attempt)`` (which decides the transaction, or
  waits for it) and reads again, so a reader never sees half a commit.
  ``accept`` is a transaction the reader knows committed (the committer's
  own reads look through it).
:func:`scan` goes over many shards with such iterators.

scan design:
- Ahead: each iterator asks for its first page when it is made, and for
  the next one as soon as a page arrives, before the caller has consumed
  it. :func:`scan` keeps ``window`` shards open: when one ends, the next is
  opened, so the next shard's first page is in flight while the current
  one is read (next-shard prefetch).
- Sizes: the first page is small (records may be large); later pages aim
  at a byte budget (:func:`page_bytes`), shared between the shards read at
  once: memory is bounded by READ_BUDGET, or by one page of PAGE_BYTES_MIN
  (or of a single record) per shard when very many are read at once.
- Raw pages are read with aio. Class ``list`` pages are read with a sync
  call in a worker thread (prefetch) or in the caller's thread (no
  prefetch): librados' aio exec overruns the reply buffer of a reply that
  does not fit (python-rados then crashes), sync exec reports ERANGE and
  clsops.list_page retries with a larger buffer. The worker pool belongs to
  one process: a forked child makes its own.
- Errors: a page the class or the codec cannot decode is TDB's corrupt
  error naming the object and where in it; a missing object is empty.
- Reads are not a snapshot: pages are read one after the other, as a TDB
  traversal without a lock reads.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import clsops, codec, forks
from .errors import ERR_CORRUPT, TdbError

if TYPE_CHECKING:  # imported on first use: a process that never traverses pays nothing
    import concurrent.futures

FIRST_PAGE = 4  # records in the first raw page
PAGE_MAX = 1000  # records in a page at most
PAGE_BYTES = 8 << 20
PAGE_BYTES_MIN = 64 << 10
FIRST_PAGE_BYTES = 256 << 10
READ_BUDGET = 32 << 20  # bytes of pages in hand and in flight, over every shard read at once
READ_THREADS = 8  # class list pages read at once in the background
SCAN_WINDOW = 64  # objects whose raw omap is read at once by a scan of many shards

RawPage = list[tuple[str, Any]]
Page = list[tuple[bytes, bytes]]
OnPending = Callable[[clsops.PendingInfo, int], None]
Opener = Callable[[int, int], Iterator[Any]]  # (shard index, shards read at once) -> pages


def page_bytes(concurrent: int) -> int:
    """The byte size to aim a page at when ``concurrent`` shards are read at once."""
    return max(PAGE_BYTES_MIN, min(PAGE_BYTES, READ_BUDGET // (2 * max(1, concurrent))))


def _corrupt(obj: str, after: str, what: str) -> TdbError:
    where = f"after omap key {after!r}" if after else "at its start"
    exc = TdbError(ERR_CORRUPT, f"Corrupt database: {obj}: {what} ({where})")
    exc.errno = errno.EIO  # type: ignore[attr-defined]
    return exc


# -- raw omap -------------------------------------------------------------------------
class _RawRead:
    """One raw omap page read in flight (aio)."""

    def __init__(self, io: Any, obj: str, after: str, count: int, keys_only: bool) -> None:
        self.io, self.obj, self.count = io, obj, count
        self.op = io.create_read_op()
        if keys_only:
            self.it, _ = io.get_omap_keys(self.op, after, count)
        else:
            self.it, _ = io.get_omap_vals(self.op, after, "", count)
        self.completion = io.operate_aio_read_op(self.op, obj)

    def result(self) -> RawPage | None:
        """The page; None when the object does not exist."""
        try:
            self.completion.wait_for_complete()
            ret = self.completion.get_return_value()
            if ret == -errno.ENOENT:
                return None
            if ret < 0:
                raise clsops.error_of(-ret, f"reading {self.obj}", self.io)
            return list(self.it)
        finally:
            self.io.release_read_op(self.op)


class OmapPages:
    """The raw omap of one object as pages of ``(omap key, value)`` (values
    None with ``keys_only``), in key order; a missing object has none.
    ``close`` (or garbage collection) waits out a read still in flight."""

    def __init__(self, io: Any, obj: str, *, keys_only: bool = False, concurrent: int = 1) -> None:
        self.io, self.obj, self.keys_only = io, obj, keys_only
        self.target = page_bytes(concurrent)
        self._next: _RawRead | None = _RawRead(io, obj, "", FIRST_PAGE, keys_only)

    def __iter__(self) -> OmapPages:
        return self

    def __next__(self) -> RawPage:
        pending, self._next = self._next, None
        if pending is None:
            raise StopIteration
        page = pending.result()
        if not page:
            raise StopIteration
        if len(page) == pending.count:  # there may be more: ask now
            size = sum(len(k) for k, _ in page)
            if not self.keys_only:
                size += sum(len(v) for _, v in page)
            count = max(1, min(PAGE_MAX, self.target * len(page) // max(1, size)))
            self._next = _RawRead(self.io, self.obj, page[-1][0], count, self.keys_only)
        return page

    def close(self) -> None:
        """Stop reading (idempotent)."""
        pending, self._next = self._next, None
        if pending is not None:
            try:
                pending.result()
            except (TdbError, OSError):
                pass

    def __del__(self) -> None:
        # never wait here: the collector may run this on a librados thread
        # that the read in flight needs; the read ends on its own
        self._next = None


def omap_pages(io: Any, objs: list[str], *, keys_only: bool = False) -> Opener:
    """A :func:`scan` opener of the raw omap of ``objs``."""
    return lambda i, concurrent: OmapPages(io, objs[i], keys_only=keys_only, concurrent=concurrent)


# -- records through the class ------------------------------------------------------------
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _workers() -> concurrent.futures.ThreadPoolExecutor:
    """This process's pool of page readers (a forked child makes its own)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            import concurrent.futures

            _pool = concurrent.futures.ThreadPoolExecutor(READ_THREADS, "radostdb-scan")
        return _pool


def _after_fork_in_child() -> None:
    """The parent's readers do not exist here; its pool lock may be held."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


forks.at_fork_child(_after_fork_in_child)


class RecordPages:
    """The records of one shard as verified pages of ``(key, data)``, in key
    order, read with the class ``list`` method; a missing shard has none.

    ``start_after`` is an encoded key to start after; pages hold at most
    ``max_records``. ``accept`` (a txid, or a function giving it before each
    read) is a transaction the reader knows committed. ``on_pending(info,
    attempt)`` is called while the shard is pending another transaction,
    then the page is read again. With ``prefetch`` each next page is read in
    a worker thread as soon as the previous arrives; without it pages are
    read on demand, in the caller's thread.
    """

    def __init__(
        self,
        io: Any,
        obj: str,
        *,
        on_pending: OnPending,
        accept: int | Callable[[], int] = 0,
        start_after: str = "",
        max_records: int = PAGE_MAX,
        concurrent: int = 1,
        first_bytes: int = FIRST_PAGE_BYTES,
        prefetch: bool = True,
    ) -> None:
        self.io, self.obj, self.on_pending = io, obj, on_pending
        self._accept = accept if callable(accept) else (lambda: accept)
        self.max_records, self.prefetch = max_records, prefetch
        self.target = page_bytes(concurrent)
        self.after = start_after
        self._done = False
        self._size = max(1, min(self.target, first_bytes))
        self._next: concurrent.futures.Future[tuple[bool, bytes]] | None = None
        if prefetch:
            self._next = _workers().submit(self._read, self.after, self._size)

    def _read(self, after: str, size: int) -> tuple[bool, bytes]:
        attempt = 0
        while True:
            try:
                res = clsops.list_page(
                    self.io, self.obj, after, self.max_records, size, self._accept()
                )
            except TdbError as exc:
                if getattr(exc, "errno", 0) == errno.EIO:
                    raise _corrupt(
                        self.obj, after, "a record, key or header that does not decode"
                    ) from None
                raise
            if res.pending is None:
                return res.more, res.page
            self.on_pending(res.pending, attempt)
            attempt += 1

    def __iter__(self) -> RecordPages:
        return self

    def __next__(self) -> Page:
        if self._done:
            raise StopIteration
        future, self._next = self._next, None
        more, raw = future.result() if future is not None else self._read(self.after, self._size)
        try:
            records = codec.parse_page(raw)
        except codec.CodecError as exc:
            self._done = True
            raise _corrupt(self.obj, self.after, f"record {exc.entry} of a page: {exc}") from None
        if not records or not more:
            self._done = True
            if not records:
                raise StopIteration
            return records
        self.after = codec.encode_key(records[-1][0])
        grown = len(raw) * self.max_records // len(records) + len(raw) // 4  # as many again
        self._size = max(PAGE_BYTES_MIN, min(self.target, grown))
        if self.prefetch:
            self._next = _workers().submit(self._read, self.after, self._size)
        return records

    def close(self) -> None:
        """Stop reading (idempotent): wait out a read in flight."""
        self._done = True
        future, self._next = self._next, None
        if future is not None:
            import concurrent.futures

            concurrent.futures.wait([future])

    def __del__(self) -> None:
        self._done = True  # never wait here (see OmapPages.__del__)
        self._next = None


# -- many shards ------------------------------------------------------------------------


def scan(
    nshards: int, open_pages: Opener, *, window: int, ordered: bool = False
) -> Iterator[tuple[int, Any]]:
    """``(shard index, page)`` over shards ``0..nshards-1``.

    ``open_pages(index, concurrent)`` makes a shard's page iterator (its
    first page requested at once). ``window`` shards are open at a time;
    when one ends, the next is opened. ``ordered``: every page of a shard
    before any of the next (the next ``window - 1`` shards' first pages in
    flight meanwhile); otherwise the open shards take turns, a page each.
    """
    window = max(1, min(window, nshards))
    live: list[tuple[int, Iterator[Any]]] = []
    following = 0

    def fill() -> None:
        nonlocal following
        while len(live) < window and following < nshards:
            live.append((following, open_pages(following, window)))
            following += 1

    fill()
    try:
        while live:
            still = []
            for i, (index, pages) in enumerate(live):
                page = next(pages, None)
                if page is None:
                    continue
                yield index, page
                if ordered:  # the same shard again, until it ends
                    still.extend(live[i:])
                    break
                still.append((index, pages))
            live[:] = still
            fill()
    finally:
        for _, pages in live:
            close = getattr(pages, "close", None)
            if close is not None:
                close()

"""Growing a database's shards: one split at a time, while clients use it.

reshard design (the OSD's side and why each step is safe:
cls/radostdb/reshard.cc; where keys live: layout.py):
- The next split is linear hashing's: shard p = nshards - M, whose keys
  hash to p mod M, splits into p and the new shard q = nshards, both mod
  2M. Steps: ``split_begin`` on p; then page after page: ``split_page``
  (p's next moving records after its moved_upto), ``split_absorb`` (q takes
  them), ``split_advance`` (p drops them if unchanged and moves moved_upto
  on); at p's end the split is complete and the header's shard count grows
  by one (dbheader.grow, compared and set). Clients keep reading and
  writing throughout: a key is wherever its shard says (router.py), a
  traversal follows the move (traverse.py).
- The begin needs p to itself: refused because p is in use (a
  transaction's isolation, a lock: -EBUSY) or holds a transaction's part
  not settled yet (-EUCLEAN), it queues for SHARD EXCL on p, FIFO like any
  writer, and is sent again under it, releasing it in the same call. The
  holder of a cached isolation hears the wait and releases, settling its
  parts; a dead committer's part is decided by the resolver. Backing off
  and retrying without the lock would starve: a loader committing back to
  back leaves a new lazily settled part before every retry.
- A page's advance is sent optimistically. Refused for the same reasons,
  or with -EREMCHG (p's records changed since the page was read), the page
  is read again and the next FROZEN_PAGES pages are moved under one SHARD
  EXCL on p (taken in p's queue, kept across their steps, released by the
  last advance), so neither writers of hot keys nor a bulk loader can
  starve the move; they pause for those pages' round trips. -ERANGE or
  -ECANCELED: another resharder took the split over.
- One resharder at a time per database: a record lock on the
  transaction-lock object (key RESHARD_KEY, the lock lease, renewed by the
  lock service). The class also fences steps by owner, so a resharder that
  slept through its lock and woke behind the next one changes nothing.
- Resuming is the same procedure: begin again (taking the split over),
  continue from p's moved_upto; a split complete on p but not yet in the
  header only needs the header. Killed at any point, the database is whole
  and usable; only the keys already moved cost clients an -ESTALE each
  until someone finishes the split (``radostdb reshard``, or the next
  automatic one; ``radostdb check`` reports a split left half done).
- Automatic (:class:`Trigger`): a handle counts its writes per shard; every
  SPLIT_CHECK of them (a tenth of the threshold if less) it asks that shard
  how many records it holds (the class ``count``, on the lock service
  thread; after a transaction, whose records a shard counts only once they
  are settled, which is lazy (commit.py), it asks again SETTLED_CHECK
  later, when an idle handle has released its cached isolation and so
  settled them: one large transaction and nothing after it used to leave
  its shards past the threshold). Past the threshold (the
  database's ``split_threshold`` header field, set by ``radostdb reshard
  --threshold``; else RADOSTDB_SPLIT_THRESHOLD; else 100,000 records, as
  RGW's rgw_max_objs_per_shard; 0: never) a background thread of that
  process splits every shard of the current level (the shard count doubles,
  as RGW's resharding does), if no other resharder runs, and doubles again
  while the first shard of the new level is still past the threshold. A
  failure, whatever its cause, is retried BACKGROUND_RETRIES times with
  growing pauses, the reshard lock taken again: given up, the split stays
  half done until the next trigger, which never comes once the writes
  stop (a bench load of 10 million records once ended that way, its split
  stopped at 96 of 128 shards with no resharder left running). Each retry
  is logged at INFO, giving up at WARNING (logger ``radostdb.reshard``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import clsops, codec, dbheader, forks, layout, locking, resolver, service, wakeup
from . import cluster as clustermod
from .errors import RadostdbError, TdbError
from .kinds import Kind, Mode
from .shardclient import Shards

RESHARD_KEY = b"radostdb.reshard"
PAGE = 1000  # moving records per step
SPLIT_CHECK = 5000  # writes to a shard by one handle between two looks at its size
DEFAULT_THRESHOLD = 100_000
THRESHOLD_ENV = "RADOSTDB_SPLIT_THRESHOLD"
STEP_TRIES = 100_000  # steps of one split before giving up (a page is 1000 records)
FROZEN_PAGES = 4  # pages moved under one SHARD EXCL after an optimistic one was refused
BACKGROUND_RETRIES = 5  # a background split retried this many times after failing
BACKGROUND_PAUSE = 1.0  # seconds before its first retry, doubled for each next one
SETTLED_CHECK = 2.5  # seconds after a transaction's writes to look at the shard's size again

_log = logging.getLogger(__name__)


class ReshardError(RadostdbError):
    """A reshard could not go on (another resharder, a layout it cannot
    grow); the database is whole."""


def threshold(field: int | None) -> int:
    """Records per shard past which shards split: the database's field,
    else RADOSTDB_SPLIT_THRESHOLD, else DEFAULT_THRESHOLD; 0: never."""
    if field is not None:
        return field
    raw = os.environ.get(THRESHOLD_ENV, "")
    if not raw:
        return DEFAULT_THRESHOLD
    if not raw.isdigit():
        raise ValueError(f"{THRESHOLD_ENV}={raw!r} is not a number of records")
    return int(raw)


@dataclass
class Progress:
    """Where a reshard is: shards split so far of those asked, records moved."""

    split: int = 0
    total: int = 0
    moved: int = 0
    shard: int = -1  # the shard splitting now


class Resharder:
    """Splits the shards of one database (see the module comment). Its own
    owner id and lock books (``lease``: seconds, default the lock lease);
    ``progress(p)`` is told after every step."""

    def __init__(
        self,
        target: clustermod.Target,
        progress: Callable[[Progress], None] | None = None,
        lease: float | None = None,
    ) -> None:
        self.target = target
        self.name = target.name
        self._io: Any = None
        self.books = locking.LockTable(self.io, lease)
        self.db = resolver.DbObjects(self.io, self.name, [])
        t = target.session.op_timeout
        self.resolver = resolver.Resolver(self.db, None if t is None else t + self.books.txn_lease)
        self.shards = Shards(self.io, target.session, self.db, self.books, self.resolver)
        self.progress = progress or (lambda p: None)
        self.state = Progress()
        self.stop = threading.Event()
        self._locked = False

    def io(self) -> Any:
        if self._io is None:
            self._io = self.target.ioctx()
        return self._io

    def layout(self) -> layout.Layout:
        header = dbheader.read(self.io(), self.name)
        if header is None:
            raise ReshardError(f"database {self.name!r} does not exist")
        header.check()
        lay = header.layout
        assert lay is not None
        self.db.grow(lay.nshards)
        return lay

    # -- the reshard lock ------------------------------------------------------------------
    def lock(self, wait: bool) -> bool:
        """Take the database's reshard lock; False if another resharder has
        it and ``wait`` is False."""
        client = self.shards.client(self.db.wait_obj)
        try:
            client.lock(Kind.RECORD, Mode.EXCL, RESHARD_KEY, nonblock=not wait)
        except TdbError:
            if wait:
                raise
            return False
        self._locked = True
        return True

    def unlock(self) -> None:
        if self._locked:
            self._locked = False
            with contextlib.suppress(Exception):
                self.shards.client(self.db.wait_obj).unlock(Kind.RECORD, Mode.EXCL, RESHARD_KEY)

    def close(self) -> None:
        self.unlock()
        if self.books.objects():
            self.shards.release_all()

    # -- splitting ----------------------------------------------------------------------------
    def grow_to(self, nshards: int) -> layout.Layout:
        """Split until the database has ``nshards`` shards (or ``stop`` is set)."""
        lay = self.layout()
        self.state.total = max(0, nshards - lay.nshards)
        while lay.nshards < nshards and not self.stop.is_set():
            lay = self.split_next(lay)
        return lay

    def split_next(self, lay: layout.Layout) -> layout.Layout:
        """Split the next shard of ``lay`` (resuming a split left half done)
        and record it in the header; the layout after it."""
        if lay.nshards >= layout.MAX_SHARDS:
            raise ReshardError(f"{self.name!r} has {lay.nshards} shards, the most there can be")
        io = self.io()
        p, q, m = lay.next_split()
        pobj, qobj = self.db.shard(p), self.db.shard(q)
        self.db.grow(q + 1)
        self.state.shard = p
        owner = self.books.owner
        begun = self._step(
            pobj,
            lambda wflags: clsops.split_begin(
                io, pobj, clsops.split_begin_request(owner, wflags, p, m, q, 2 * m)
            ),
        )
        if not begun:  # not complete already: move the keys
            self._move(pobj, qobj, q, 2 * m)
        if not dbheader.grow(io, self.name, lay):
            lay = self.layout()
            if lay.nshards <= q:
                raise ReshardError(f"the header of {self.name!r} changed under the reshard")
            return lay
        self.state.split += 1
        self.progress(self.state)
        self.db.grow(q + 1)
        return lay.grown()

    def _move(self, pobj: str, qobj: str, q: int, modulus: int) -> None:
        """Move p's moving records to q, page after page, from p's
        moved_upto on. A page goes optimistically (no lock: writers of p are
        never paused); if its records changed before the advance, or a
        committer's part is not settled on p yet, the next FROZEN_PAGES
        pages go under one SHARD EXCL on p, taken in its queue and released
        by the last of their advances: writers of p then pause for those
        pages' round trips, and the move cannot be starved."""
        io = self.io()
        owner = self.books.owner
        st = clsops.state(io, pobj)
        after = st.header.moved_upto if st is not None else ""
        takeover = True
        frozen = 0
        held = False
        try:
            for _ in range(STEP_TRIES):
                try:
                    if frozen and not held:
                        self._freeze(pobj)
                        held = True
                    page = self._page(pobj, after, held)
                    clsops.split_absorb(
                        io,
                        qobj,
                        clsops.split_absorb_request(
                            owner, takeover, q, modulus, after, page.upto, page.end, page.records
                        ),
                    )
                    takeover = False
                    heads = [(k, rec[: codec.REC_HDR]) for k, rec in page.records]

                    req = functools.partial(
                        clsops.split_advance_request, owner, after=after, upto=page.upto,
                        end=page.end, heads=heads,
                    )  # fmt: skip

                    def advance(wflags: int, req: Callable[..., bytes] = req) -> int:
                        return clsops.split_advance(io, pobj, req(wflags=wflags))

                    if held:
                        last = page.end or frozen <= 1
                        held = False  # given back if the advance fails
                        dropped = self._send_held(pobj, advance, release=last)
                        held = not last
                    else:
                        dropped = advance(0)
                except (clsops.Busy, clsops.Unclean):
                    # p is in use (a transaction's isolation), or a
                    # committer's part is not settled there yet (a live one
                    # settles lazily: it would be back before every retry):
                    # frozen, the holder releases and settles, a dead one's
                    # part is decided
                    frozen = FROZEN_PAGES
                    continue
                except clsops.Canceled:
                    raise ReshardError(f"another resharder took the split of {pobj} over") from None
                except TdbError as exc:
                    code = clsops.errno_of(exc)
                    if code == errno.EREMCHG and not held:
                        frozen = FROZEN_PAGES  # the records changed since the page: freeze
                        continue
                    if code == errno.ERANGE:
                        raise ReshardError(f"another resharder moved {pobj} on") from None
                    raise
                frozen = max(0, frozen - 1)
                if dropped:
                    wakeup.wake(io, pobj)  # their waiters ask again, and are sent to q
                self.state.moved += len(page.records)
                self.progress(self.state)
                if page.end:
                    return
                after = page.upto
                if self.stop.is_set():
                    raise ReshardError("stopped")
            raise ReshardError(f"the records of {pobj} kept changing under the reshard")
        finally:
            if held:
                self._thaw(pobj)

    def _freeze(self, obj: str) -> None:
        """SHARD EXCL on obj, in its queue, for the steps that need p to
        itself (one begin, or up to FROZEN_PAGES pages; the short lease: a
        resharder that dies holding it blocks p one lease)."""
        self.shards.client(obj).lock(
            Kind.SHARD, Mode.EXCL, count=False, lease_ms=self.books.txn_lease_ms
        )

    def _thaw(self, obj: str) -> None:
        """Give back the SHARD EXCL no step released."""
        with contextlib.suppress(Exception):
            clsops.unlock(
                self.io(), obj, clsops.unlock_request(self.books.owner, Kind.SHARD, Mode.EXCL)
            )
        self.books.untrack(obj)
        with contextlib.suppress(Exception):
            wakeup.wake_waiters(self.io(), obj)

    def _page(self, pobj: str, after: str, held: bool) -> clsops.SplitPage:
        """Read p's next page; under our SHARD EXCL (``held``) a dead
        committer's part in the way is decided and the page read again,
        without the lock clsops.Unclean is the caller's (it freezes p)."""
        io = self.io()
        pace = self.shards.client(pobj).pace()
        while True:
            try:
                return clsops.split_page(io, pobj, after, PAGE)
            except clsops.Unclean:
                if not held:
                    raise
                self.resolver.unclean(pobj)
                pace.wait()

    def _step(self, obj: str, send: Callable[[int], int]) -> int:
        """Send a step that needs ``obj`` to itself: as it is, and if the
        shard is in use (-EBUSY) or holds a transaction's part not settled
        yet (-EUCLEAN: a live committer settles it lazily, so it would be
        back before every retry), again under SHARD EXCL taken in its queue:
        the holder releases, settling its parts, and the step releases the
        lock in the same call."""
        try:
            return send(0)
        except clsops.Busy:
            pass
        except clsops.Canceled:
            raise ReshardError(f"another resharder took the split of {obj} over") from None
        except clsops.Unclean:
            pass  # a dead committer's part is decided under the lock
        self._freeze(obj)
        return self._send_held(obj, send)

    def _send_held(self, obj: str, send: Callable[[int], int], release: bool = True) -> int:
        """Send a step under our SHARD EXCL on ``obj``, which it releases
        (``release``) or keeps; a part left by a dead committer is decided
        first. The lock is given back if the step fails."""
        pace = self.shards.client(obj).pace()
        flags = clsops.WRITE_ASSERT_LOCK | (clsops.WRITE_RELEASE if release else 0)
        try:
            while True:
                try:
                    out = send(flags)
                    break
                except clsops.Unclean:
                    self.resolver.unclean(obj)
                    pace.wait()
        except clsops.Canceled:
            self._thaw(obj)
            raise ReshardError(f"another resharder took the split of {obj} over") from None
        except BaseException:
            self._thaw(obj)
            raise
        if release:
            self.books.untrack(obj)
            with contextlib.suppress(Exception):
                wakeup.wake_waiters(self.io(), obj)
        return out


def reshard(
    target: clustermod.Target,
    nshards: int,
    progress: Callable[[Progress], None] | None = None,
    wait: bool = True,
) -> layout.Layout:
    """Grow database ``target`` to ``nshards`` shards, resuming a split left
    half done; the layout after. ReshardError if another resharder runs and
    ``wait`` is False."""
    r = Resharder(target, progress)
    try:
        if not r.lock(wait):
            raise ReshardError(f"another client is resharding {target.name!r}")
        return r.grow_to(nshards)
    finally:
        r.close()


def finish(target: clustermod.Target) -> layout.Layout:
    """Finish a split left half done (nothing if none): the layout after."""
    r = Resharder(target)
    try:
        r.lock(True)
        lay = r.layout()
        p, _, m = lay.next_split()
        st = clsops.state(r.io(), r.db.shard(p))
        h = st.header if st is not None else clsops.ShardHeader()
        if h.splitting or (h.modulus == 2 * m and h.index == p):
            lay = r.split_next(lay)
        return lay
    finally:
        r.close()


# -- automatic -------------------------------------------------------------------------------
class Trigger:
    """A handle's watch on its shards' sizes (see the module comment)."""

    def __init__(self, target: clustermod.Target, router: Any, field: int | None) -> None:
        self.target = target
        self.router = router
        self.threshold = threshold(field)
        # writes between looks at a shard's size: a fraction of the threshold
        self.every = max(1, min(SPLIT_CHECK, self.threshold // 10))
        self.counts: dict[int, int] = {}
        self.mutex = threading.Lock()

    def wrote(self, index: int, n: int, settled: bool = True) -> None:
        """The handle wrote n records to shard ``index`` (``settled``:
        False for a transaction's, which may wait in the shard's redo log)."""
        if not self.threshold:
            return
        with self.mutex:
            c = self.counts.get(index, 0) + n
            self.counts[index] = 0 if c >= self.every else c
        if c >= self.every:
            service.submit(lambda: self._check(index, again=not settled))

    def _check(self, index: int, again: bool = False) -> None:
        """(service thread) Ask the shard its size; past the threshold,
        start the background resharder. ``again``: not past it, ask once
        more after SETTLED_CHECK (a transaction's records count once
        settled, see the module comment)."""
        if _background.running(self.target.name):
            return
        try:
            io = self.target.ioctx()
            count = clsops.count(io, layout.shard_object(self.target.name, index), self.threshold)
        except Exception:
            return  # the next check asks again
        if count > self.threshold:
            _background.start(self.target, self.router, self.threshold)
        elif again:
            service.call_at(time.monotonic() + SETTLED_CHECK, lambda: self._check(index))

    def forget_after_fork(self) -> None:
        self.counts = {}
        self.mutex = threading.Lock()

    def close(self) -> None:
        """The handle closes: a background split goes on (the process may
        use the database again), stopped before the connections shut down."""


def _grow(r: Resharder, router: Any, limit: int) -> None:
    """The background resharder's doubling (``_Background._run``; we hold
    the reshard lock). A failure is retried after BACKGROUND_PAUSE,
    doubled each time, BACKGROUND_RETRIES times: resuming is the same
    procedure, and a split given up stays half done until the next
    trigger, which may never come once the writes stop. A retry first
    finishes the level left half split, and doubles a whole level again
    only while its first shard is past ``limit``; it takes the reshard lock
    again, and leaves the split to whoever holds it now."""
    grow, failures = True, 0
    while not r.stop.is_set():
        try:
            lay = r.layout()
            while not r.stop.is_set():
                if grow or lay.nshards != lay.level:
                    lay = r.grow_to(min(2 * lay.level, layout.MAX_SHARDS))
                    router.refresh()
                grow = True
                if lay.nshards >= layout.MAX_SHARDS:
                    return
                if clsops.count(r.io(), r.db.shard(0), limit) <= limit:
                    return
        except Exception as exc:
            if r.stop.is_set():
                raise  # stopping (the process shuts down): nothing to say
            failures += 1
            if failures > BACKGROUND_RETRIES:
                _log.warning(
                    "the background split of %s gave up after %d failures (%s); "
                    "the next split of a shard past the threshold resumes it",
                    r.name, failures, exc,
                )  # fmt: skip
                raise
            pause = BACKGROUND_PAUSE * 2 ** (failures - 1)
            _log.info("the background split of %s failed (%s); again in %g s", r.name, exc, pause)
            if r.stop.wait(pause):
                return
            r.unlock()
            if not r.lock(wait=False):
                return  # another resharder took it over
            grow = False


class _Background:
    """The process's background resharders, one per database at most."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.threads: dict[str, tuple[threading.Thread, Resharder]] = {}

    def running(self, name: str) -> bool:
        with self.mutex:
            t = self.threads.get(name)
            return t is not None and t[0].is_alive()

    def start(self, target: clustermod.Target, router: Any, limit: int) -> None:
        with self.mutex:
            t = self.threads.get(target.name)
            if t is not None and t[0].is_alive():
                return
            r = Resharder(target)
            thread = threading.Thread(
                target=self._run, args=(r, router, limit), name="radostdb-reshard", daemon=True
            )
            self.threads[target.name] = (thread, r)
            thread.start()

    @staticmethod
    def _run(r: Resharder, router: Any, limit: int) -> None:
        """Split the shards of the level the handle's layout is at (doubling
        its count), and again while the first shard of the new level still
        holds more than ``limit`` records (writers went on meanwhile, or the
        level was far behind); then tell the handle the new layout. A
        failure is retried (see ``_grow``)."""
        seen = router.layout
        try:
            if not r.lock(wait=False):
                return
            lay = r.layout()
            if lay.nshards != seen.nshards:
                return  # somebody resharded since the size was looked at
            _grow(r, router, limit)
        except Exception:
            pass  # left as it is: whole, and resumed by the next split
        finally:
            with contextlib.suppress(Exception):
                r.close()
            with contextlib.suppress(Exception):
                router.refresh()

    def stop_all(self) -> None:
        """Before the connections shut down: stop after the current step."""
        with self.mutex:
            threads = list(self.threads.values())
            self.threads.clear()
        for _, r in threads:
            r.stop.set()
        for thread, _ in threads:
            thread.join(timeout=30)

    def forget_after_fork(self) -> None:
        self.mutex = threading.Lock()
        self.threads = {}


_background = _Background()
clustermod.before_shutdown(_background.stop_all)
forks.at_fork_child(_background.forget_after_fork)


def background_running(name: str) -> bool:
    """Is a background reshard of ``name`` running in this process?"""
    return _background.running(name)


def wait_background(name: str, timeout: float | None = None) -> None:
    """Wait for this process's background reshard of ``name`` (tests, CLI)."""
    with _background.mutex:
        t = _background.threads.get(name)
    if t is not None:
        t[0].join(timeout)


__all__ = [
    "DEFAULT_THRESHOLD",
    "Progress",
    "ReshardError",
    "Resharder",
    "Trigger",
    "finish",
    "reshard",
]

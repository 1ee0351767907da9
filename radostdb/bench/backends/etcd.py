"""etcd, the distributed key-value store a user would pick instead, through
python3-etcd3 (gRPC), on a single-node etcd (see ``etcdserver``).

Each workload mapped to what an etcd user writes:
- store, fetch, delete: Put, Range (linearizable, etcd's default), DeleteRange;
- append: etcd has none: Range, then a Txn that puts the grown value if the
  key's mod_revision is unchanged (retried on conflict): two round trips;
- traversal: Range over the database's key prefix in pages of PAGE keys
  (python3-etcd3 0.12 drops ``limit``, so the paged RangeRequest is built
  here); keys_only for traverse-keys;
- txn-N: one Txn of N puts. etcd refuses a Txn that names a key twice, and
  storing a key twice in one transaction leaves the last value, so
  duplicates (only in runs with fewer records per client than N) are
  collapsed. A Txn over the server's ``--max-txn-ops`` or
  ``--max-request-bytes`` is n/a;
- record locks: python3-etcd3's ``Lock`` (a lease, then a Txn that creates
  the lock key if absent; release is a Txn deleting it if still ours), with
  a TTL of LOCK_TTL seconds, like radostdb's default lease. Its
  ``acquire`` is re-done by ``acquire`` here with the same lease and Txn:
  python3-etcd3 0.12's retry callback does not fit Debian's tenacity 8
  (a contended acquire raises TypeError); between tries it waits, as the
  library means to, for the next change of the lock key (a watch from the
  revision the failed Txn saw, so no release is missed).
Keys live under ``/<namespace>/<db>/``, locks under
``/locks/<namespace>/``; ``remove_prefix`` deletes both at the end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..spec import PAGE, Place, Spec
from .base import Backend

if TYPE_CHECKING:
    from ..workloads import Workload

LOCK_TTL = 30
LOCK_TIMEOUT = 120  # seconds a lock acquisition may wait before it is an error
RECORD_OVERHEAD = 64  # bytes a put adds to a Txn request beyond key and value


_default_excepthook = threading.excepthook


def _quiet_closed_watchers(args: Any) -> None:
    """python3-etcd3 0.12 starts a watcher thread (``etcd3_watch_*``) on the
    first watch and has no way to stop it: once its client is closed, the
    thread's next attempt fails with "Cannot invoke RPC: Channel closed!"
    and dies. That end is expected here; any other thread error is shown."""
    name = args.thread.name if args.thread is not None else ""
    if (
        name.startswith("etcd3_watch_")
        and isinstance(args.exc_value, ValueError)
        and "channel" in str(args.exc_value).lower()
        and "closed" in str(args.exc_value).lower()
    ):
        return
    _default_excepthook(args)


def client(url: str, timeout: float = 60) -> Any:
    """A python3-etcd3 client for http://HOST:PORT."""
    import etcd3

    threading.excepthook = _quiet_closed_watchers

    parts = urlsplit(url if "//" in url else f"http://{url}")
    if parts.scheme not in ("http", "") or not parts.hostname:
        raise ValueError(f"{url!r} is not an etcd URL (http://HOST:PORT)")
    return etcd3.client(host=parts.hostname, port=parts.port or 2379, timeout=timeout)


def remove_prefix(place: Place) -> int:
    """Delete every key the bench wrote to etcd (records and locks)."""
    c = client(place.etcd)
    try:
        n = c.delete_prefix(f"/{place.namespace}/").deleted
        n += c.delete_prefix(f"/locks/{place.namespace}/").deleted
        return int(n)
    finally:
        c.close()


def acquire(c: Any, lock: Any, timeout: float = LOCK_TIMEOUT) -> None:
    """Take python3-etcd3 Lock ``lock`` with client ``c``, waiting up to
    ``timeout`` seconds (TimeoutError after)."""
    from etcd3.exceptions import WatchTimedOut

    t = c.transactions
    deadline = time.monotonic() + timeout
    while True:
        lease = c.lease(lock.ttl)
        ok, resp = c.transaction(
            compare=[t.create(lock.key) == 0],
            success=[t.put(lock.key, lock.uuid, lease=lease)],
            failure=[t.get(lock.key)],
        )
        if ok:
            lock.lease = lease
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"etcd lock {lock.key} not acquired in {timeout:.0f}s")
        seen = resp[0][0][1].response_header.revision if resp and resp[0] else 0
        try:
            c.watch_once(lock.key, timeout=left, start_revision=seen + 1)
        except WatchTimedOut:
            pass


class EtcdBackend(Backend):
    name = "etcd"

    def __init__(self, place: Place, db: str, create: bool) -> None:
        from etcd3 import etcdrpc

        self.rpc = etcdrpc
        self.c = client(place.etcd)
        self.max_ops = place.etcd_max_txn_ops
        self.max_bytes = place.etcd_max_request_bytes
        self.prefix = f"/{place.namespace}/{db}/".encode()
        self.lock_prefix = f"{place.namespace}/{db}/"
        self.end = self.prefix[:-1] + b"0"  # "/" + 1: the end of the prefix range
        self.locks: dict[bytes, Any] = {}
        if create:
            self.c.delete_prefix(self.prefix)

    def unsupported(self, w: Workload, spec: Spec) -> str | None:
        if w.size > self.max_ops:
            return (
                f"etcd refuses a Txn of more than {self.max_ops} operations "
                "(the server's --max-txn-ops)"
            )
        if w.size > 1 and w.size * self._cost(spec.key_size, spec.value_size) > self.max_bytes:
            return (
                f"etcd refuses a request over {self.max_bytes} bytes "
                "(the server's --max-request-bytes)"
            )
        return super().unsupported(w, spec)

    def _cost(self, key_size: int, value_size: int) -> int:
        """Bytes one put adds to a Txn request."""
        return len(self.prefix) + key_size + value_size + RECORD_OVERHEAD

    def store(self, key: bytes, value: bytes) -> None:
        self.c.put(self.prefix + key, value)

    def fetch(self, key: bytes) -> bytes | None:
        value, _ = self.c.get(self.prefix + key)
        return value

    def delete(self, key: bytes) -> None:
        self.c.delete(self.prefix + key)

    def append(self, key: bytes, data: bytes, grown: bytes) -> None:
        k = self.prefix + key
        t = self.c.transactions
        while True:
            kvs = self.c.get_response(k).kvs
            if kvs:
                cond, value = t.mod(k) == kvs[0].mod_revision, kvs[0].value + data
            else:
                cond, value = t.version(k) == 0, data
            ok, _ = self.c.transaction(compare=[cond], success=[t.put(k, value)], failure=[])
            if ok:
                return

    def _pages(self, keys_only: bool) -> Iterator[Any]:
        start = self.prefix
        while True:
            req = self.rpc.RangeRequest(
                key=start, range_end=self.end, limit=PAGE, keys_only=keys_only
            )
            resp = self.c.kvstub.Range(
                req, self.c.timeout, credentials=self.c.call_credentials, metadata=self.c.metadata
            )
            yield resp.kvs
            if not resp.more or not resp.kvs:
                return
            start = resp.kvs[-1].key + b"\0"

    def keys(self) -> Iterator[bytes]:
        n = len(self.prefix)
        for page in self._pages(True):
            yield from (kv.key[n:] for kv in page)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        n = len(self.prefix)
        for page in self._pages(False):
            yield from ((kv.key[n:], kv.value) for kv in page)

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        last = dict(pairs)  # a key stored twice in one transaction: the last value
        put = self.c.transactions.put
        self.c.transaction(
            compare=[], success=[put(self.prefix + k, v) for k, v in last.items()], failure=[]
        )

    def load(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """Txns as large as the server takes."""
        chunk: list[tuple[bytes, bytes]] = []
        size = 0
        for k, v in pairs:
            cost = self._cost(len(k), len(v))
            if chunk and (len(chunk) >= self.max_ops or size + cost > self.max_bytes):
                self.txn(chunk)
                chunk, size = [], 0
            chunk.append((k, v))
            size += cost
        if chunk:
            self.txn(chunk)

    def lock(self, key: bytes) -> None:
        lock = self.c.lock(self.lock_prefix + key.hex(), ttl=LOCK_TTL)
        acquire(self.c, lock)
        self.locks[key] = lock

    def unlock(self, key: bytes) -> None:
        self.locks.pop(key).release()

    def close(self) -> None:
        self.c.close()

"""radostdb and its floor, raw python-rados doing the same omap operations.

- ``radostdb``: this project through its public Tdb API.
- ``rados``: SHARDS objects (more for a large database: one per
  RAW_KEYS_PER_OBJECT expected records, radostdb's default split threshold,
  as a raw client keeping its objects below Ceph's large-omap warning
  would), keys encoded as radostdb encodes them, values
  stored bare (no record header). The floor for each workload: append is ONE
  set_omap of the grown value (a raw client really needs a read first);
  record locks are cls_lock ``lock_exclusive``/``unlock`` on the key's shard
  object (one lock name per client, so clients never contend); fetch_locked
  is lock then fetch; a transaction is one set_omap write op per touched
  shard, issued in parallel (aio), with no atomicity across shards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ..spec import PAGE, SHARDS, Place
from .base import Backend, TdbCalls

LOCK_NAME = "radostdb-bench"
RAW_KEYS_PER_OBJECT = 100_000


def connect(conf: str, client_id: str, timeout: int = 30) -> Any:
    """A connected ``rados.Rados`` that gives up after ``timeout`` seconds
    (radostdb's one factory of librados clients, cluster.connect)."""
    from ...cluster import connect as make

    return make(conf, client_id, float(timeout))


def open_radostdb(place: Place, db: str, create: bool) -> Any:
    """A radostdb.Tdb on the run's place, SHARDS shards (emptied if ``create``)."""
    import radostdb

    flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
    return radostdb.Tdb(
        db,
        0,
        radostdb.DEFAULT,
        flags,
        shards=SHARDS,
        conf=place.conf,
        client_id=place.client_id,
        pool=place.pool,
        namespace=place.namespace,
    )


class RadostdbBackend(TdbCalls, Backend):
    name = "radostdb"

    def __init__(self, place: Place, db: str, create: bool) -> None:
        self.db = open_radostdb(place, db, create)

    def shape(self) -> dict[str, int]:
        from ... import clsops, layout

        storage = self.db._storage
        # give the cached transaction lock up: its last commits are settled
        # on the shards then (a shard counts settled records only)
        storage.txnlock.close()
        n = storage.router.refresh().nshards
        io = storage.io()
        counts = clsops.wait_all(
            clsops.aio_count(io, layout.shard_object(storage.name, i), 2**32 - 2) for i in range(n)
        )
        return {"shards": n, "largest": max(counts), "smallest": min(counts)}

    def settle(self) -> None:
        from ... import reshard

        reshard.wait_background(self.db._storage.name)

    def keys(self) -> Iterator[bytes]:
        return self.db.keys()

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return self.db.items()

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.db.transaction_start()
        for k, v in pairs:
            self.db.store(k, v)
        self.db.transaction_commit()

    def lock(self, key: bytes) -> None:
        self.db.chainlock(key)

    def unlock(self, key: bytes) -> None:
        self.db.chainunlock(key)

    def fetch_locked(self, key: bytes) -> bytes | None:
        return self.db.fetch_locked(key)

    def close(self) -> None:
        self.db.close()


class RadosBackend(Backend):
    """The same omap operations straight through python-rados."""

    name = "rados"

    def __init__(self, place: Place, db: str, create: bool, client: int, expected: int = 0) -> None:
        import rados

        from ... import codec

        self.rados = rados
        self.encode_key = codec.encode_key
        self.shard_of = codec.shard_of
        self.conn = connect(place.conf, place.client_id)
        self.io = self.conn.open_ioctx(place.pool)
        self.io.set_namespace(place.namespace)
        nobjs = max(SHARDS, -(-expected // RAW_KEYS_PER_OBJECT))
        self.objs = [f"raw.{db}.{i}" for i in range(nobjs)]
        self.lock_name, self.cookie = f"{LOCK_NAME}.{client}", f"c{client}"
        if create:
            for o in self.objs:  # empty objects, so that traversals find them
                with rados.WriteOpCtx() as op:
                    op.write_full(b"")
                    self.io.clear_omap(op)
                    self.io.operate_write_op(op, o)

    def _obj(self, key: bytes) -> str:
        return self.objs[self.shard_of(key, len(self.objs))]

    def store(self, key: bytes, value: bytes) -> None:
        with self.rados.WriteOpCtx() as op:
            self.io.set_omap(op, (self.encode_key(key),), (value,))
            self.io.operate_write_op(op, self._obj(key))

    def fetch(self, key: bytes) -> bytes | None:
        with self.rados.ReadOpCtx() as op:
            it, _ = self.io.get_omap_vals_by_keys(op, (self.encode_key(key),))
            self.io.operate_read_op(op, self._obj(key))
            for _, v in it:
                return bytes(v)
        return None

    def delete(self, key: bytes) -> None:
        with self.rados.WriteOpCtx() as op:
            self.io.remove_omap_keys(op, (self.encode_key(key),))
            self.io.operate_write_op(op, self._obj(key))

    def append(self, key: bytes, data: bytes, grown: bytes) -> None:
        # the floor: one write of the grown record, as if the client knew it
        self.store(key, grown)

    def _pages(self, keys_only: bool) -> Iterator[list[tuple[str, Any]]]:
        for obj in self.objs:
            start = ""
            while True:
                with self.rados.ReadOpCtx() as op:
                    if keys_only:
                        it, _ = self.io.get_omap_keys(op, start, PAGE)
                    else:
                        it, _ = self.io.get_omap_vals(op, start, "", PAGE)
                    self.io.operate_read_op(op, obj)
                    page = list(it)
                if page:
                    yield page
                if len(page) < PAGE:
                    break
                start = page[-1][0]

    def keys(self) -> Iterator[str]:
        for page in self._pages(True):
            yield from (k for k, _ in page)

    def items(self) -> Iterator[tuple[str, bytes]]:
        for page in self._pages(False):
            yield from page

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        by_obj: dict[str, tuple[list[str], list[bytes]]] = {}
        for k, v in pairs:
            ks, vs = by_obj.setdefault(self._obj(k), ([], []))
            ks.append(self.encode_key(k))
            vs.append(v)
        ops, comps = [], []
        try:
            for obj, (ks, vs) in by_obj.items():
                op = self.io.create_write_op()
                ops.append(op)
                self.io.set_omap(op, tuple(ks), tuple(vs))
                comps.append(self.io.operate_aio_write_op(op, obj))
            for c in comps:
                c.wait_for_complete()
                if c.get_return_value() < 0:
                    raise OSError(-c.get_return_value(), "raw set_omap failed")
        finally:
            for op in ops:
                self.io.release_write_op(op)

    def lock(self, key: bytes) -> None:
        self.io.lock_exclusive(self._obj(key), self.lock_name, self.cookie, duration=30)

    def unlock(self, key: bytes) -> None:
        self.io.unlock(self._obj(key), self.lock_name, self.cookie)

    def close(self) -> None:
        self.io.close()
        self.conn.shutdown()

"""The backends, one module per family, opened by name.

- ``ceph``: radostdb and its floor, raw python-rados;
- ``etcd``: the distributed key-value store a user would pick instead;
- ``cephsqlite``: SQLite on RADOS (Ceph's libcephsqlite VFS);
- ``local``: single-host engines, tdb and LMDB.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..spec import BACKENDS, LMDB_BATCH, Place
from .base import Backend

__all__ = ["BACKENDS", "Backend", "open_backend"]


def _radostdb(place: Place, db: str, create: bool, client: int, expected: int) -> Backend:
    from .ceph import RadostdbBackend

    # by the tdb file's path, as Samba opens it (names.py maps it to the database)
    return RadostdbBackend(place, os.path.join(place.workdir, f"{db}.tdb"), create)


def _rados(place: Place, db: str, create: bool, client: int, expected: int) -> Backend:
    from .ceph import RadosBackend

    return RadosBackend(place, db, create, client, expected)


def _etcd(place: Place, db: str, create: bool, client: int, expected: int) -> Backend:
    from .etcd import EtcdBackend

    return EtcdBackend(place, db, create)


def _cephsqlite(place: Place, db: str, create: bool, client: int, expected: int) -> Backend:
    from .cephsqlite import CephSqliteBackend

    return CephSqliteBackend(place, db, create)


def _tdb(place: Place, db: str, create: bool, client: int, expected: int) -> Backend:
    from .local import TdbBackend

    return TdbBackend(os.path.join(place.workdir, f"{db}.tdb"), create, expected)


def _lmdb(batch: int) -> Callable[[Place, str, bool, int, int], Backend]:
    def opener(place: Place, db: str, create: bool, client: int, expected: int) -> Backend:
        from .local import LmdbBackend

        name = "lmdb" if batch == 1 else "lmdb-batch"
        return LmdbBackend(os.path.join(place.workdir, f"{db}.{name}"), create, batch)

    return opener


OPENERS: dict[str, Callable[[Place, str, bool, int, int], Backend]] = {
    "radostdb": _radostdb,
    "rados": _rados,
    "etcd": _etcd,
    "cephsqlite": _cephsqlite,
    "tdb": _tdb,
    "lmdb": _lmdb(1),
    "lmdb-batch": _lmdb(LMDB_BATCH),
}
assert tuple(OPENERS) == BACKENDS


def open_backend(
    place: Place, backend: str, db: str, create: bool, client: int = 0, expected: int = 0
) -> Backend:
    """Open database ``db`` on ``backend`` (``create``: empty it first).
    ``client`` numbers the process (raw locks), ``expected`` the records
    (tdb's hash size)."""
    try:
        opener = OPENERS[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}") from None
    return opener(place, db, create, client, expected)

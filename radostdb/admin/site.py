"""Where the ``radostdb`` commands work: a connected cluster, pool and
namespace (a :class:`Site`), the errors they explain to an operator, and a
database's header as they read it.

Every command connects through :func:`connect`, and only through it, so
that the connection policy can change in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import rados

from .. import cluster as clustermod
from .. import dbheader, layout
from ..database import Tdb
from ..dbheader import Header
from ..errors import RadostdbError


class AdminError(RadostdbError):
    """A failure explained in one line for the operator."""


class NoDatabase(AdminError):
    """The named database does not exist."""


class CorruptDatabase(AdminError):
    """Stored data does not decode; ``radostdb check`` tells more."""


_connections: dict[tuple[str, str], Any] = {}


@dataclass
class Site:
    """A connected cluster, pool and namespace: where databases are looked for."""

    conf: str
    client_id: str
    pool: str
    namespace: str
    conn: Any = field(repr=False)
    io: Any = field(repr=False)

    @property
    def where(self) -> str:
        """'pool 'P'' or 'pool 'P' namespace 'N'', for messages."""
        ns = f" namespace {self.namespace!r}" if self.namespace else ""
        return f"pool {self.pool!r}{ns}"

    def tdb_kwargs(self) -> dict[str, Any]:
        """Keywords that make radostdb.Tdb open a database here, by its
        database name (already mapped: no path prefix taken off again)."""
        return {
            "conf": self.conf,
            "client_id": self.client_id,
            "pool": self.pool,
            "namespace": self.namespace,
            "cluster": self.conn,
            "path_prefix": "",
        }

    def open(
        self,
        name: str,
        *,
        create: bool = False,
        exclusive: bool = False,
        hash_size: int = 0,
        readonly: bool = False,
    ) -> Tdb:
        """A Tdb handle on database ``name`` here; NoDatabase if it is missing.

        ``create`` makes it if missing; with ``exclusive`` too, an existing one
        raises FileExistsError.
        """
        flags = os.O_RDONLY if readonly else os.O_RDWR
        if create:
            flags |= os.O_CREAT | (os.O_EXCL if exclusive else 0)
        try:
            return Tdb(name, hash_size, 0, flags, **self.tdb_kwargs())
        except FileNotFoundError:
            raise self.missing(name) from None

    def missing(self, name: str) -> NoDatabase:
        """The error for a database that is not here, with what to do about it."""
        return NoDatabase(
            f"database {name!r} does not exist in {self.where} of the cluster of {self.conf} "
            "(list databases with 'radostdb ls'; create one with 'radostdb restore', "
            "'radostdb import' or 'radostdb store --create')"
        )


def connect(
    conf: str | None = None,
    client_id: str | None = None,
    pool: str | None = None,
    namespace: str | None = None,
    timeout: float | None = None,
) -> Site:
    """Connect to a cluster and check the pool; defaults as radostdb.Tdb's.

    The connection is the process's shared one (cluster.connection, with
    the one timeout policy, RADOSTDB_OP_TIMEOUT), or, with ``timeout``, one
    kept per (conf, client id) with that op timeout.
    """
    conf = conf or os.environ.get("CEPH_CONF") or clustermod.DEFAULT_CONF
    client_id = client_id or os.environ.get("RADOSTDB_ID") or clustermod.DEFAULT_ID
    pool = pool or os.environ.get("RADOSTDB_POOL") or clustermod.DEFAULT_POOL
    namespace = namespace or ""
    if not os.path.isfile(conf):
        raise AdminError(
            f"no Ceph configuration file at {conf} (point --conf or CEPH_CONF at the "
            "cluster's ceph.conf)"
        )
    try:
        if timeout is None:
            conn = clustermod.connection(conf, client_id)
        else:
            conn = _connections.get((conf, client_id))
            if conn is None:
                conn = _connections[(conf, client_id)] = clustermod.connect(
                    conf, client_id, timeout)
    except OSError as exc:
        raise AdminError(str(exc.strerror or exc)) from None
    try:
        if not conn.pool_exists(pool):
            raise AdminError(
                f"pool {pool!r} does not exist in the cluster of {conf} (create it with "
                f"'ceph osd pool create {pool}', or choose one with --pool or RADOSTDB_POOL)"
            )
        io = conn.open_ioctx(pool)
    except rados.Error as exc:
        raise AdminError(
            f"cannot open pool {pool!r} in the cluster of {conf}: "
            f"{clustermod.io_error(exc, 'opening the pool')}") from None
    io.set_namespace(namespace)
    return Site(conf, client_id, pool, namespace, conn, io)


# -- a database's header ------------------------------------------------------------------
def read_header(site: Site, name: str) -> Header:
    """The header of database ``name``; NoDatabase if it has none."""
    header = dbheader.read(site.io, name)
    if header is None:
        raise site.missing(name)
    return header


def usable_header(site: Site, name: str) -> Header:
    """As read_header, and CorruptDatabase when records cannot be found with it."""
    header = read_header(site, name)
    if header.problems:
        raise CorruptDatabase(
            f"database {name!r} has an unusable header: {'; '.join(header.problems)}"
        )
    return header


def exists(site: Site, name: str) -> bool:
    """Whether database ``name`` has a header object."""
    return exists_object(site, layout.header_object(name))


def exists_object(site: Site, obj: str) -> bool:
    """Whether object ``obj`` exists."""
    try:
        site.io.stat(obj)
    except rados.ObjectNotFound:
        return False
    return True

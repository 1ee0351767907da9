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


@dataclass
class Site:
    """A connected place (cluster, pool, namespace): where databases are
    looked for, the session that reaches it, and its I/O context."""

    place: clustermod.Place
    session: clustermod.Session = field(repr=False)
    io: Any = field(repr=False)

    @property
    def conf(self) -> str:
        return self.place.conf

    @property
    def client_id(self) -> str:
        return self.place.client_id

    @property
    def pool(self) -> str:
        return self.place.pool

    @property
    def namespace(self) -> str:
        return self.place.namespace

    @property
    def conn(self) -> Any:
        """The session's connected rados.Rados."""
        return self.session.rados()

    @property
    def where(self) -> str:
        """'pool 'P'' or 'pool 'P' namespace 'N'', for messages."""
        return self.place.where

    def tdb_kwargs(self) -> dict[str, Any]:
        """Keywords that make radostdb.Tdb open a database here, by its
        database name (already mapped: no path prefix taken off again), on
        this site's session (its op timeout included)."""
        return {
            "conf": self.conf,
            "client_id": self.client_id,
            "pool": self.pool,
            "namespace": self.namespace,
            "session": self.session,
            "path_prefix": "",
        }

    def open(
        self,
        name: str,
        *,
        create: bool = False,
        exclusive: bool = False,
        hash_size: int = 0,
        shards: int = 0,
        readonly: bool = False,
    ) -> Tdb:
        """A Tdb handle on database ``name`` here; NoDatabase if it is missing.

        ``create`` makes it if missing (tdb's ``hash_size``, ``shards``
        shards; 0: the defaults); with ``exclusive`` too, an existing one
        raises FileExistsError.
        """
        flags = os.O_RDONLY if readonly else os.O_RDWR
        if create:
            flags |= os.O_CREAT | (os.O_EXCL if exclusive else 0)
        try:
            extra = {"shards": shards} if shards else {}
            return Tdb(name, hash_size, 0, flags, **self.tdb_kwargs(), **extra)
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
    """Connect to a cluster and check the pool; defaults as radostdb.Tdb's
    (the environment: this is an entry point). ``timeout``: the op timeout
    (default RADOSTDB_OP_TIMEOUT); the session is the process's shared one
    for (conf, client id, op timeout)."""
    place = clustermod.place_from_env(conf, client_id, pool, namespace)
    if not os.path.isfile(place.conf):
        raise AdminError(
            f"no Ceph configuration file at {place.conf} (point --conf or CEPH_CONF at the "
            "cluster's ceph.conf)"
        )
    try:
        session = clustermod.session_for(
            place, timeout if timeout is not None else clustermod.op_timeout_from_env()
        )
        conn = session.rados()
    except (OSError, ValueError) as exc:
        raise AdminError(str(getattr(exc, "strerror", None) or exc)) from None
    try:
        if not conn.pool_exists(place.pool):
            raise AdminError(
                f"pool {place.pool!r} does not exist in the cluster of {place.conf} (create it "
                f"with 'ceph osd pool create {place.pool}', or choose one with --pool or "
                "RADOSTDB_POOL)"
            )
        io = session.ioctx(place.pool, place.namespace)
    except OSError as exc:
        raise AdminError(
            f"cannot open pool {place.pool!r} in the cluster of {place.conf}: {exc}"
        ) from None
    except rados.Error as exc:
        raise AdminError(
            f"cannot open pool {place.pool!r} in the cluster of {place.conf}: "
            f"{session.io_error(exc, 'opening the pool')}"
        ) from None
    return Site(place, session, io)


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

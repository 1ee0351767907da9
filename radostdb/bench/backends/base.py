"""The interface every backend implements: the TDB-like calls the workloads
make, with keys and values as bytes.

A backend that cannot express a workload says why: ``lacks`` maps a
capability a workload needs (``locks``, ``fetch_locked``) to the reason, and
``unsupported`` may refuse a particular workload (etcd's cap on the
operations of one Txn). Those workloads are reported as n/a with the reason.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..spec import LOAD_CHUNK, Spec

if TYPE_CHECKING:
    from ..workloads import Workload


class Backend(abc.ABC):
    """One storage system under test, opened on one database."""

    name = "?"
    lacks: dict[str, str] = {}  # capability -> why this backend has none
    load_chunk = LOAD_CHUNK

    def shape(self) -> dict[str, int] | None:
        """How the database is laid out now (radostdb: its shards and the
        records of the largest and smallest), or None."""
        return None

    def settle(self) -> None:
        """Wait for background work the load started (radostdb: its split)."""
        return None

    def unsupported(self, w: Workload, spec: Spec) -> str | None:
        """Why this backend cannot run workload ``w`` with ``spec``, or None."""
        return self.lacks.get(w.needs) if w.needs else None

    @abc.abstractmethod
    def store(self, key: bytes, value: bytes) -> None:
        """Insert or replace one record."""

    @abc.abstractmethod
    def fetch(self, key: bytes) -> bytes | None: ...

    @abc.abstractmethod
    def delete(self, key: bytes) -> None: ...

    @abc.abstractmethod
    def append(self, key: bytes, data: bytes, grown: bytes) -> None:
        """Append data; ``grown`` is the record afterwards (for raw floors)."""

    @abc.abstractmethod
    def keys(self) -> Iterator[Any]: ...

    @abc.abstractmethod
    def items(self) -> Iterator[tuple[Any, Any]]: ...

    @abc.abstractmethod
    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """Store every pair in one atomic transaction."""

    def load(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """Bulk load, untimed: transactions of ``load_chunk`` records."""
        for i in range(0, len(pairs), self.load_chunk):
            self.txn(pairs[i : i + self.load_chunk])

    def lock(self, key: bytes) -> None:
        raise NotImplementedError(self.lacks.get("locks", f"{self.name} has no record locks"))

    def unlock(self, key: bytes) -> None:
        raise NotImplementedError(self.lacks.get("locks", f"{self.name} has no record locks"))

    def fetch_locked(self, key: bytes) -> bytes | None:
        """Lock the record and read it (released with ``unlock``)."""
        self.lock(key)
        return self.fetch(key)

    def locked_update(self, key: bytes, value: bytes) -> None:
        """Samba's read-modify-write of one record under its record lock;
        backends without record locks override it with what they have."""
        self.fetch_locked(key)
        self.store(key, value)
        self.unlock(key)

    def flush(self) -> None:
        """Finish buffered work (timed: the end of every chunk)."""
        return None  # most backends buffer nothing

    @abc.abstractmethod
    def close(self) -> None: ...


class TdbCalls:
    """The single-record calls of a backend over a tdb-API handle ``self.db``
    (Samba's python3-tdb or radostdb.Tdb): the same calls, so the same code."""

    db: Any

    def store(self, key: bytes, value: bytes) -> None:
        self.db.store(key, value)

    def fetch(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def delete(self, key: bytes) -> None:
        self.db.delete(key)

    def append(self, key: bytes, data: bytes, grown: bytes) -> None:
        self.db.append(key, data)

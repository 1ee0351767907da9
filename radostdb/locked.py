"""The record that ``Tdb.do_locked`` hands to its function (Samba's
dbwrap_do_locked): the record's value under its lock, and the change the
function asks for.

do_locked design:
- Samba changes its hottest records (share modes, g_lock, locking.tdb) this
  way: lock the record, look at it, maybe store or delete it, unlock. The
  whole sequence is known in advance, so radostdb sends it as two class
  calls: the lock and the read together (``fetch_locked``), then the change
  and the unlock together (an apply with RELEASE: shardclient
  ``write_and_unlock``), where chainlock, fetch, store and chainunlock take
  three or four. The handoff to the next waiter happens in that last call.
- The change is buffered here and sent when the function returns: the value
  the function sees is the record's; its own store is seen by ``value``
  afterwards; several stores leave the last. TDB's checks that need the
  record (INSERT of an existing key, MODIFY or delete of a missing one)
  are made here, at once, on the value read under the lock.
- A function that raises changes nothing; the lock is released all the same.
"""

from __future__ import annotations

from . import flags as F
from .errors import ERR_EXISTS, ERR_NOEXIST, TdbError
from .kinds import Op

_UNCHANGED = object()


class LockedRecord:
    """A record held under its lock for the length of a ``do_locked`` call."""

    __slots__ = ("_change", "key", "value")

    def __init__(self, key: bytes, value: bytes | None) -> None:
        self.key = key
        self.value = value  # the record's data (None: it does not exist), as changed so far
        self._change: object = _UNCHANGED

    def store(self, data: bytes, flag: int = F.REPLACE) -> None:
        """Store ``data`` (REPLACE, INSERT: the record must not exist, MODIFY:
        it must), when the function returns."""
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if flag == F.INSERT and self.value is not None:
            raise TdbError(ERR_EXISTS)
        if flag == F.MODIFY and self.value is None:
            raise TdbError(ERR_NOEXIST)
        self.value = self._change = data

    def append(self, data: bytes) -> None:
        """Add ``data`` to the end of the value (a missing record starts empty)."""
        self.store((self.value or b"") + data)

    def delete(self) -> None:
        """Delete the record (missing: TDB's NOEXIST error), when the function returns."""
        if self.value is None:
            raise TdbError(ERR_NOEXIST)
        self.value = None
        self._change = None

    def entry(self) -> tuple[int, bytes, bytes] | None:
        """The batch entry of the change (None: unchanged)."""
        if self._change is _UNCHANGED:
            return None
        if self._change is None:
            return (Op.DISCARD, self.key, b"")
        assert isinstance(self._change, bytes)
        return (Op.PUT, self.key, self._change)

    def __repr__(self) -> str:
        return f"<radostdb.LockedRecord {self.key!r}: {self.value!r}>"

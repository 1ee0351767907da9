"""The domain's enumerations, shared by the client and the object class
(cls/radostdb/types.h has the same values; tests/unit/test_wire.py checks
them against the header): the operations of a batch, lock kinds and modes,
journal record states. The wire module (clsops.py) encodes them; the
buffer of a transaction (txn.py) and the memory backend use them too.
"""

from __future__ import annotations

from enum import IntEnum

from . import flags


class Op(IntEnum):
    """Operations of an ``apply`` batch (rtdb_apply_op)."""

    PUT = 1
    INSERT = 2
    MODIFY = 3
    APPEND = 4
    DELETE = 5
    DISCARD = 6


class Kind(IntEnum):
    """Lock kinds (rtdb_lock_kind)."""

    RECORD = 1
    SHARD = 2
    TXN = 3
    ISOLATION = 4
    COMMIT = 5
    USER = 6
    WATCH = 7  # a watched record (watch.py): conflicts with nothing


class Mode(IntEnum):
    """Lock modes (rtdb_lock_mode)."""

    EXCL = 1
    SHARED = 2


class TxnState(IntEnum):
    """Journal record states (rtdb_txn_state)."""

    STAGED = 1
    COMPLETE = 2
    ABORTED = 3


# tdb_store's flag -> the batch operation that does it
STORE_OPS = {flags.REPLACE: Op.PUT, flags.INSERT: Op.INSERT, flags.MODIFY: Op.MODIFY}


def store_op(flag: int) -> Op:
    """The batch operation of a tdb_store flag (REPLACE for anything else)."""
    return STORE_OPS.get(flag, Op.PUT)

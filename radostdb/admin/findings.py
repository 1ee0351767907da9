"""What ``radostdb check`` (and ``info``) report: a :class:`Finding` per
problem, of one of FINDING_KINDS, with what a repair did about it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from ..tdbdump import quoted
from .serialize import KEY, SKIP


class Kind(StrEnum):
    """What a finding is about."""

    HEADER = "header"  # the header object is missing fields or has wrong values
    OBJECT_HEADER = "object-header"  # class metadata of the header or transaction-lock object
    SHARD_HEADER = "shard-header"  # a shard's class metadata (omap header) does not decode
    JOURNAL = "journal"  # a journal entry that does not decode, or names missing shards
    BAD_KEY = "bad-key"  # an omap key that is not a radostdb key encoding
    CORRUPT_RECORD = "corrupt-record"  # a record that fails its format or crc32c
    MISPLACED = "misplaced"  # a record stored in a shard other than its key's
    TRANSACTION = "transaction"  # a multi-shard commit left unfinished (journal, pending shard)
    EXPIRED_LOCK = "expired-lock"  # a lock whose lease ran out, still in a lock table
    LAYOUT = (
        "layout"  # a split left half done, or a shard whose recorded layout is not the header's
    )


FINDING_KINDS = tuple(k.value for k in Kind)

# shard object names, as layout.shard_object makes them: index and stem
SHARD_RE = re.compile(r"radostdb\.s(\d{5})([.#].+)\Z", re.DOTALL)
REDO_UNREADABLE = "it holds a redo log that does not decode either"  # shard-header findings
AT_RISK_SHOWN = 10  # keys listed in a repair's text; JSON has them all


def shard_index(obj: str) -> int | None:
    """The shard index of a shard object's name; None for other objects."""
    m = SHARD_RE.match(obj)
    return int(m.group(1)) if m else None


def display_keys(keys: list[bytes]) -> str:
    """Keys for a message: the first AT_RISK_SHOWN, quoted, and how many more."""
    shown = ", ".join(quoted(k) for k in keys[:AT_RISK_SHOWN])
    more = len(keys) - AT_RISK_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


@dataclass
class Finding:
    """One problem found by check; ``repair`` says what was done about it, if
    anything, and ``at_risk`` lists the records a repair could not vouch for
    (the writes of a transaction it had to decide without its journal)."""

    kind: Kind
    object: str
    message: str
    key: bytes | None = field(default=None, metadata=KEY)
    shard: int | None = None
    omap_key: str | None = None
    txid: int | None = None  # the transaction concerned, if any
    repairable: bool = field(default=False, metadata=SKIP)
    # a transaction the journal cannot decide as it is (repair.py decides it)
    damaged: bool = field(default=False, metadata=SKIP)
    repair: str | None = None
    repaired: bool = False
    at_risk: list[bytes] = field(default_factory=list, metadata=KEY)

    def describe(self) -> str:
        """One line: kind, where, what."""
        where = self.object if self.shard is None else f"shard {self.shard} ({self.object})"
        what = f" key {quoted(self.key)}" if self.key is not None else ""
        if self.key is None and self.omap_key is not None:
            what = f" omap key {self.omap_key!r}"
        return f"{self.kind}: {where}{what}: {self.message}"

    def done(self, what: str, repaired: bool = True) -> None:
        """Record what the repair did (``repaired``: the problem is gone)."""
        self.repair, self.repaired = what, repaired

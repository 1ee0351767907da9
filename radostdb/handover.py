"""What a transaction's "G" hands on besides the transaction lock: the
shards' records as the giver's transaction left them, and which of its
commits may still be pending where.

handover design (the protocol is txnlock.py's; this module is the message):
- A holder that hands the transaction lock on while others queue for it
  keeps its isolation of the shards it touched ("parked", txnlock.py):
  isolations share, so the next holder is not kept out, and a shard that
  some holder's isolation covered without a gap had no write but the
  transactions': what the giver's transaction left there is what the next
  one finds. Its snapshots (snapshot.py: small shards read whole), with
  its own writes merged in, thus answer the next holder's reads of every
  shard the next holder itself held parked since before it queued (the
  proof is at the top of txnlock.py), with no round trip.
- The giver's multi-shard commits may still be pending on their shards
  (commit.py settles lazily; the giver settles them as it hands on, in
  the round of its release, but the next holder's calls may get there
  first). The message says which committed transaction each shard may be
  pending: the next holder reads through it (``accept``) and settles it
  with its own write there, instead of deciding it from the journal.
- Encoding (little-endian): u8 VERSION; u32 n, n times (u32 shard, u64
  txid); u32 m, m times (u32 shard, u32 modulus, u32 records, records
  times (u32 key length, key, u32 data length, data)). Snapshots are added
  while the message stays within MAX bytes (the rest are read by the next
  holder as usual); it travels base64 in the "G" (wakeup.py).
- A message that does not decode is ignored (the next holder reads).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .kinds import Op
from .snapshot import Snapshot

VERSION = 1
MAX = 12 << 10  # bytes of a handover at most (a "G" must fit a datagram and a notify)

_U32 = struct.Struct("<I")
_PENDING = struct.Struct("<IQ")
_SNAP = struct.Struct("<III")


@dataclass
class Handover:
    """Shard index -> the committed transaction it may be pending, and
    shard index -> its records as the giver's transaction left them."""

    pending: dict[int, int] = field(default_factory=dict)
    snapshots: dict[int, Snapshot] = field(default_factory=dict)

    def encode(self) -> bytes:
        out = bytearray([VERSION])
        out += _U32.pack(len(self.pending))
        for index, txid in sorted(self.pending.items()):
            out += _PENDING.pack(index, txid)
        count_at = len(out)
        out += _U32.pack(0)
        count = 0
        for index, snap in sorted(self.snapshots.items()):
            part = bytearray(_SNAP.pack(index, snap.modulus, len(snap.records)))
            for key, data in snap.records.items():
                part += _U32.pack(len(key)) + key + _U32.pack(len(data)) + data
            if len(out) + len(part) > MAX:
                continue  # too big to carry: the next holder reads this shard
            out += part
            count += 1
        out[count_at : count_at + 4] = _U32.pack(count)
        return bytes(out)

    @classmethod
    def decode(cls, raw: bytes) -> Handover | None:
        """The handover ``raw`` encodes; None if it does not decode."""
        try:
            return cls._decode(memoryview(raw))
        except (struct.error, ValueError, IndexError):
            return None

    @classmethod
    def _decode(cls, raw: memoryview) -> Handover | None:
        if not raw or raw[0] != VERSION:
            return None
        at = 1
        (n,) = _U32.unpack_from(raw, at)
        at += 4
        pending = {}
        for _ in range(n):
            index, txid = _PENDING.unpack_from(raw, at)
            at += _PENDING.size
            pending[index] = txid
        (m,) = _U32.unpack_from(raw, at)
        at += 4
        snapshots = {}
        for _ in range(m):
            index, modulus, count = _SNAP.unpack_from(raw, at)
            at += _SNAP.size
            records = {}
            for _ in range(count):
                key, at = _chunk(raw, at)
                records[key], at = _chunk(raw, at)
            snapshots[index] = Snapshot(index, modulus, records)
        if at != len(raw):
            return None
        return cls(pending, snapshots)


def _chunk(raw: memoryview, at: int) -> tuple[bytes, int]:
    (size,) = _U32.unpack_from(raw, at)
    at += 4
    if at + size > len(raw):
        raise ValueError("a chunk runs past the end")
    return bytes(raw[at : at + size]), at + size


def merge(snap: Snapshot, entries: list[tuple[int, bytes, bytes]]) -> Snapshot | None:
    """``snap`` with a committed transaction's entries of its shard applied
    (a transaction commits PUT and DISCARD only: txn.py); None if an entry
    is of another kind or of a key the snapshot does not answer for."""
    records = dict(snap.records)
    for op, key, data in entries:
        if not snap.knows(key):
            return None
        if op == Op.PUT:
            records[key] = data
        elif op == Op.DISCARD:
            records.pop(key, None)
        else:
            return None
    return Snapshot(snap.index, snap.modulus, records)

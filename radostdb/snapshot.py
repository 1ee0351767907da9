"""A small shard read whole by a transaction, in the round trip of its
first read there.

snapshot design:
- A transaction holds the isolation of every shard it read (txnlock.py):
  no other handle writes there until the transaction ends, and no
  resharder's step runs there. So a shard's records, read once under that
  isolation, answer the transaction's later reads of the shard without a
  round trip each, as tdb's reads inside a transaction are reads of its
  own mapped file. Samba's transactional databases (secrets, registry,
  passdb, group mapping) are small and read many records a transaction.
- The first read of a shard in a transaction sends a class ``list`` of at
  most RECORDS records and BYTES bytes (LIST_STRICT: never more, so the
  aio reply cannot overflow) behind the read, in the same round trip and
  ordered after the isolation request. A whole page (``more`` unset) is
  the shard's snapshot for the rest of the transaction; a shard that does
  not fit is remembered as big by its shard client, which asks no more.
- A snapshot's absent key is missing only if the shard holds such keys
  (the class's own rule, server.h: owns): a shard never resharded holds
  what it is sent; a resharded one the keys hashing to its index modulo
  its modulus, and a splitting one is never kept. Any other key is read
  from the OSD, whose -ESTALE sends the caller to the right shard.
- A list that met a pending transaction, or came before a queued isolation
  was granted, is not kept. The transaction's own writes are in its
  overlay (txn.py), read before this; the snapshots die with the
  transaction.
"""

from __future__ import annotations

from . import clsops, codec

RECORDS = 64  # records a shard may have to be read whole
BYTES = 32 << 10  # bytes of keys and records it may have


class Snapshot:
    """The records of one shard as the transaction's isolation froze them."""

    __slots__ = ("index", "modulus", "records")

    def __init__(self, index: int, modulus: int, records: dict[bytes, bytes]) -> None:
        self.index, self.modulus, self.records = index, modulus, records

    @classmethod
    def of(cls, index: int, page: clsops.ListResult) -> Snapshot | None:
        """The snapshot a whole page gives, or None (partial, pending,
        splitting, or not decodable: the reads go to the OSD)."""
        if page.more or page.pending is not None or page.layout.splitting:
            return None
        if page.layout.modulus and page.layout.index != index:
            return None
        try:
            records = dict(codec.parse_page(page.page))
        except codec.CodecError:
            return None
        return cls(index, page.layout.modulus, records)

    def knows(self, key: bytes) -> bool:
        """Does the snapshot answer for key (present, or missing for sure)?"""
        if key in self.records or not self.modulus:
            return True
        return codec.key_hash(key) % self.modulus == self.index

    def get(self, key: bytes) -> bytes | None:
        return self.records.get(key)

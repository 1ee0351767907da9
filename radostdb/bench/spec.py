"""What a run measures and where: sizes, counts, keys, the backends' families.

Everything here is picklable: worker processes get the same Spec and Place
as the parent, so every process derives the same keys and picks.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import cached_property

SHARDS = 8  # shard objects of radostdb, and of the raw rados floor
PAGE = 1000  # records per page of a traversal (rados, etcd)
LOAD_CHUNK = 5000  # records per untimed loading transaction
LMDB_BATCH = 1000  # writes per LMDB write transaction (lmdb-batch)
START_DELAY = 0.02  # seconds between telling workers to run and their common start
MIX = (0.80, 0.15)  # mixed: fetch share, store share; the rest are locked updates
SCALE_SIZES = (10_000, 100_000, 1_000_000)
SCALE_WORKLOADS = ("store", "fetch", "traverse-keys", "traverse-items")

# Backends, by family: the order of the columns.
CEPH = ("radostdb", "rados")  # this project, and its floor
PEERS = ("etcd", "cephsqlite")  # what a user would pick instead
LOCAL = ("tdb", "lmdb", "lmdb-batch")  # single-host engines, for scale
BACKENDS = (*CEPH, *PEERS, *LOCAL)
ON_CLUSTER = ("radostdb", "rados", "cephsqlite")  # need the Ceph cluster
SCALING = ("radostdb", "rados", "etcd")  # in the 1-vs-N clients table

SCALED = (*CEPH, *LOCAL)  # in the growing-database run (the peers would double its time)

# Operations per chunk relative to --ops: local engines run 10x (their
# microsecond calls need long chunks to be timed); etcd half (its locks and
# appends take several round trips: a default run stays within minutes);
# SQLite on RADOS, a few hundred calls a second, a tenth (its share of a
# round would otherwise last seconds).
OPS_FACTOR = {"tdb": 10.0, "lmdb": 10.0, "lmdb-batch": 10.0, "etcd": 0.5, "cephsqlite": 0.1}


@dataclass(frozen=True)
class Spec:
    """What every backend is given: sizes, counts, seed."""

    records: int = 10_000
    ops: int = 10_000
    key_size: int = 16
    value_size: int = 100
    rounds: int = 20
    seed: int = 42

    @cached_property
    def value(self) -> bytes:
        return random.Random(self.seed).randbytes(self.value_size)

    @cached_property
    def _pad(self) -> bytes:
        rng = random.Random(self.seed + 1)
        return bytes(rng.randrange(33, 127) for _ in range(4096 + self.key_size))

    def key(self, tag: str, i: int) -> bytes:
        """Key i of a family: the tag and a counter, padded to key_size bytes
        of printable ASCII."""
        head = f"{tag}{i:08d}".encode()
        n = self.key_size - len(head)
        if n <= 0:
            return head
        off = (i * 7919) % 4096
        return head + self._pad[off : off + n]

    def records_range(self, start: int, stop: int) -> list[tuple[bytes, bytes]]:
        return [(self.key("r", i), self.value) for i in range(start, stop)]

    def calls_per_round(self, size: int, walk: bool, backend: str) -> int:
        """Calls one client makes per round: transactions of ``size`` records,
        or one traversal of the whole database (``walk``)."""
        if walk:
            return 1
        total = max(3 * self.rounds, self.ops // size)  # txn-1000: 3 per round at least
        return max(1, math.ceil(total / self.rounds * OPS_FACTOR.get(backend, 1.0)))

    def sample(
        self, w: str, client: int, nclients: int, rnd: int, n: int, records: int
    ) -> list[bytes]:
        """n keys of existing records from this client's slice (client c owns
        records c, c+N, c+2N, ...)."""
        rng = random.Random(f"{self.seed}:{w}:{client}:{rnd}")
        per = max(1, records // nclients)
        return [self.key("r", client + nclients * rng.randrange(per)) for _ in range(n)]


@dataclass(frozen=True)
class Place:
    """Where the databases live: the cluster, the bench's namespace in it, a
    local work directory and the etcd endpoint."""

    conf: str
    pool: str
    client_id: str
    namespace: str
    workdir: str
    etcd: str = ""  # http://HOST:PORT, "" when etcd is not measured
    etcd_max_txn_ops: int = 128  # the server's --max-txn-ops
    etcd_max_request_bytes: int = 1_572_864  # the server's --max-request-bytes

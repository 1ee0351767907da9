"""radostdb-bench: radostdb beside its floor, its peers and local engines.

Backends, all on the same keys and values in one run:
- ``radostdb``: this project, through its public Tdb API;
- ``rados``: the same omap operations issued straight with python-rados:
  the floor, and the reference of the radostdb/rados ratio;
- ``etcd``: what a user needing one database for many hosts would pick
  instead, a single-node etcd (throwaway, data on tmpfs, or ``--etcd URL``):
  the reference of the radostdb/etcd ratio;
- ``cephsqlite``: SQLite on RADOS (Ceph's libcephsqlite VFS) on the same
  cluster, pool and namespace as radostdb;
- ``tdb``, ``lmdb``, ``lmdb-batch``: single-host engines, for scale.

Modules: ``spec`` (sizes, keys, families), ``workloads`` (the table of
workloads), ``backends`` (one module per family), ``runner`` (chunks in
worker processes), ``run`` (interleaved rounds: the measurement design),
``stats``, ``opcount`` (RADOS ops per call counted on the OSDs),
``contention`` (N clients on one lock), ``environment`` (cluster, etcd,
clean-up), ``etcdserver`` (the throwaway etcd), ``report`` (tables),
``plot`` (PNG), ``cli`` (the command). Everything written to a cluster goes
into the run's own namespace, and to etcd under its own prefix, removed at
the end.
"""

from .cli import main

__all__ = ["main"]

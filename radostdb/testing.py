"""pytest plugin: a real Ceph cluster for the test session.

Loaded with ``-p radostdb.testing`` (pyproject.toml does it for this repo).
It stays in the installed package on purpose: a project that builds on
radostdb loads it the same way to test against a throwaway cluster, which
needs the installed launcher (devcluster.py) and the built object class
anyway. Nothing else in radostdb imports it, so pytest is needed only by
whoever loads it.

- ``ceph_cluster`` (session): a :class:`ClusterInfo` for the cluster under test.
  By default a throwaway :class:`~radostdb.devcluster.DevCluster` (one memstore
  OSD) is started in a temporary directory and stopped at the end of the
  session: by pytest's teardown (also on Ctrl-C), and, if pytest dies any
  other way (SIGTERM, kill -9), by the cluster's keeper process, which
  watches the pytest process. To run the suite against an existing
  cluster instead, export both ``CEPH_CONF`` and ``RADOSTDB_POOL`` (and
  ``RADOSTDB_ID`` if the client is not ``admin``): the tests then create and
  remove their databases in that pool.
- When no cluster can be started the cluster tests are skipped, unless
  ``RADOSTDB_REQUIRE_CLUSTER=1``: then the run fails.
- ``rados_client`` (session): a connected ``rados.Rados``; ``ioctx``: an
  I/O context on the test pool; ``db_name``: a fresh database name per test;
  ``cluster_env``: environment variables for child processes.
- ``replicated_cluster`` (module): a throwaway cluster of its own for fault
  tests, whatever the session's cluster is: 3 bluestore OSDs, pool size 3,
  min_size 2. Tests may kill and restart its daemons (``.dev``); it is
  stopped when the module's tests are done, and by its keeper if pytest dies.
  Daemons a failed test left down are started again first, so that the
  handles still open can close (against a dead cluster they would wait for
  ever).
- The session's throwaway cluster is watched: when one of its daemons has
  died after a test (no test stops them), the run ends there with the
  daemon's log tail, instead of every later test timing out against a dead
  OSD.
- ``record_figure``: ``record_figure(name, value, unit)`` keeps a measured
  figure (stall times and the like); every figure of the session is listed
  at the end of the run, under "radostdb figures", and in the test's
  ``user_properties`` (junit XML).
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import cluster as clustermod
from .devcluster import ClusterError, DevCluster

TRUE_WORDS = ("1", "true", "yes", "on")
REPLICATED_OSDS = 3
FIGURES = pytest.StashKey[list[tuple[str, str, Any, str]]]()
LOG_TAIL = 60  # lines of a dead daemon's log shown when the run ends for it
REVIVE_TIMEOUT = 120.0  # seconds a cluster left down by a failed test has to start again
_session_dev: list[DevCluster] = []  # the session's throwaway cluster, once up


def env_flag(name: str) -> bool:
    """True when environment variable ``name`` is set to a true word."""
    return os.environ.get(name, "").strip().lower() in TRUE_WORDS


@dataclass
class ClusterInfo:
    """Where the cluster under test is and how to reach it."""

    conf: str
    pool: str
    client_id: str = "admin"
    dev: DevCluster | None = None
    env: dict[str, str] = field(default_factory=dict)

    def child_env(self) -> dict[str, str]:
        """os.environ plus what a child process needs to reach this cluster."""
        env = dict(os.environ)
        env.update(CEPH_CONF=self.conf, RADOSTDB_POOL=self.pool, RADOSTDB_ID=self.client_id)
        return env


def _unavailable(reason: str) -> None:
    if env_flag("RADOSTDB_REQUIRE_CLUSTER"):
        pytest.fail(f"RADOSTDB_REQUIRE_CLUSTER=1 but no cluster: {reason}", pytrace=False)
    pytest.skip(f"no Ceph cluster: {reason}")


@pytest.fixture(scope="session")
def ceph_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfo]:
    conf = os.environ.get("CEPH_CONF")
    pool = os.environ.get("RADOSTDB_POOL")
    if conf and pool:
        if not os.path.isfile(conf):
            _unavailable(f"CEPH_CONF={conf} does not exist")
        yield ClusterInfo(conf, pool, os.environ.get("RADOSTDB_ID", "admin"))
        return
    yield from _throwaway_cluster(tmp_path_factory)


def _throwaway_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfo]:
    """Start a DevCluster for the session and point the environment at it, so
    radostdb's defaults (CEPH_CONF, RADOSTDB_POOL, RADOSTDB_ID) find it."""
    base = os.environ.get("RADOSTDB_TEST_CLUSTER_DIR") or str(
        tmp_path_factory.mktemp("cluster", numbered=True)
    )
    dev = DevCluster(base)
    try:
        dev.up(owner=os.getpid())
    except (ClusterError, OSError) as exc:
        _unavailable(str(exc))
    names = ("CEPH_CONF", "RADOSTDB_POOL", "RADOSTDB_ID", "RADOSTDB_OP_TIMEOUT")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(
        CEPH_CONF=str(dev.conf),
        RADOSTDB_POOL=dev.pool,
        RADOSTDB_ID="admin",
        RADOSTDB_OP_TIMEOUT=os.environ.get("RADOSTDB_OP_TIMEOUT", "120"),
    )
    _session_dev.append(dev)
    try:
        yield ClusterInfo(str(dev.conf), dev.pool, "admin", dev)
    finally:
        _session_dev.clear()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        clustermod.shutdown_all(final=False)  # handles go while the cluster is up
        dev.down()


@pytest.fixture(scope="session")
def rados_client(ceph_cluster: ClusterInfo) -> Iterator[Any]:
    client = clustermod.connect(ceph_cluster.conf, ceph_cluster.client_id, timeout=60.0)
    yield client
    client.shutdown()


@pytest.fixture
def ioctx(rados_client: Any, ceph_cluster: ClusterInfo) -> Iterator[Any]:
    io = rados_client.open_ioctx(ceph_cluster.pool)
    yield io
    io.close()


@pytest.fixture
def db_name(request: pytest.FixtureRequest, ceph_cluster: ClusterInfo) -> str:
    """A database name no other test uses, on the cluster under test."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:40].strip("-")
    return f"t-{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cluster_env(ceph_cluster: ClusterInfo) -> dict[str, str]:
    """Environment for a child process that uses the cluster under test."""
    return ceph_cluster.child_env()


@pytest.fixture
def scratch_dir() -> Iterator[str]:
    """A short temporary directory (Ceph admin-socket paths must stay short)."""
    with tempfile.TemporaryDirectory(prefix="rtdb-", dir="/tmp") as d:
        yield d


@pytest.fixture(scope="module")
def replicated_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfo]:
    """A 3-OSD bluestore cluster (size 3, min_size 2) for one test module."""
    dev = DevCluster(
        tmp_path_factory.mktemp("replicated", numbered=True),
        osds=REPLICATED_OSDS,
        store="bluestore",
    )
    try:
        dev.up(owner=os.getpid())
    except (ClusterError, OSError) as exc:
        dev.down()
        _unavailable(f"the {REPLICATED_OSDS}-OSD bluestore cluster did not start: {exc}")
    try:
        yield ClusterInfo(str(dev.conf), dev.pool, "admin", dev)
    finally:
        _revive(dev)
        clustermod.shutdown_all(final=False)  # handles go while the cluster is up
        dev.down()


def _revive(dev: DevCluster) -> None:
    """A test that failed with daemons of ``dev`` down (killed, not yet
    started again): start them, so that the handles still open can release
    their locks and unwatch; against a cluster that cannot answer, they
    would wait for ever and the run would hang in the teardown."""
    status = dev.status()
    if all(status.values()):
        return
    try:
        if not all(alive for name, alive in status.items() if name.startswith("mon.")):
            dev.crash()  # the monitor is gone: the whole cluster starts again
            dev.start(timeout=REVIVE_TIMEOUT, owner=os.getpid())
            return
        for name, alive in status.items():
            if not alive and name.startswith("osd."):
                dev.start_osd(int(name.split(".")[1]))
        dev.wait_writable(REVIVE_TIMEOUT)
    except (ClusterError, OSError) as exc:
        print(f"radostdb: the replicated cluster could not be started again: {exc}")


@pytest.fixture
def record_figure(request: pytest.FixtureRequest) -> Callable[[str, Any, str], None]:
    """record_figure(name, value, unit=""): keep a measured figure for the report."""

    def record(name: str, value: Any, unit: str = "") -> None:
        if isinstance(value, float):
            value = round(value, 2)
        request.config.stash.setdefault(FIGURES, []).append(
            (request.node.nodeid, name, value, unit)
        )
        request.node.user_properties.append((name, f"{value} {unit}".strip()))

    return record


def dead_daemons(dev: DevCluster) -> str:
    """What to say of ``dev``'s daemons that are no longer running: each
    one's name, PID and log tail; empty when all run."""
    said = []
    for d in dev.daemons():
        if d.alive():
            continue
        try:
            tail = Path(d.log).read_text(errors="replace").splitlines()[-LOG_TAIL:]
        except OSError as exc:
            tail = [f"(no log: {exc})"]
        said.append(f"{d.name} (pid {d.pid}) is gone; the end of {d.log}:\n" + "\n".join(tail))
    return "\n\n".join(said)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """After each test: if the session's cluster lost a daemon, end the run."""
    if not _session_dev:
        return
    said = dead_daemons(_session_dev[0])
    if said:
        pytest.exit(
            f"the session's throwaway cluster lost a daemon during or before {item.nodeid}; "
            f"no later test can pass:\n{said}",
            returncode=3,
        )


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash.get(FIGURES, [])
    if not figures:
        return
    terminalreporter.section("radostdb figures")
    last = None
    for nodeid, name, value, unit in figures:
        if nodeid != last:
            terminalreporter.write_line(nodeid)
            last = nodeid
        terminalreporter.write_line(f"    {name}: {value} {unit}".rstrip())

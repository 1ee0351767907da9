"""``radostdb ctdb-lock``, CTDB's cluster lock helper, on the real cluster:
its protocol on its own (the cases of ctdb's cluster_mutex_test), the lease
that ends it before another node can take the lock, and three real ctdbd
daemons electing their leader with it.

Every helper runs as a real process (the venv's ``radostdb`` script, as
ctdbd execs it); the lock table of the object is read through the class's
``state`` method to see who holds it. Timings are kept with record_figure.

The helpers use a copy of the cluster's ceph.conf whose [client] section
turns the admin socket off: a conf that gives every client the same socket
path (as the throwaway cluster's did) makes the next client's connect wait
10 s for the socket of a SIGSTOPped one. The throwaway cluster's conf now
does the same; the copy keeps it true on any cluster.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ctdbd
import pytest

from radostdb import clsops, ctdblock
from radostdb.testing import ClusterInfo, env_flag

LEASE = 3.0
RADOSTDB = str(Path(sys.executable).parent / "radostdb")
ANSWER_WAIT = 30.0  # seconds a helper may take to answer (interpreter start + connect)


@pytest.fixture(scope="module")
def helper_conf(ceph_cluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The cluster's ceph.conf, with no admin socket for clients."""
    path = tmp_path_factory.mktemp("ctdb-lock") / "ceph.conf"
    path.write_text(Path(ceph_cluster.conf).read_text() + "\n[client]\nadmin_socket =\n")
    return str(path)


@pytest.fixture
def lock_object() -> str:
    return f"ctdb-lock-{uuid.uuid4().hex[:10]}"


class Helper:
    """One ``radostdb ctdb-lock`` process and the read end of its stdout."""

    def __init__(self, argv: list[str], env: dict[str, str], parent: bool = False) -> None:
        rfd, wfd = os.pipe()
        self.rfd = rfd
        self.started = time.monotonic()
        if parent:
            # a parent process of its own that starts the helper and waits
            code = textwrap.dedent(
                """
                import subprocess, sys, time
                fd = int(sys.argv[1])
                p = subprocess.Popen(sys.argv[2:], stdout=fd, pass_fds=[fd])
                print(p.pid, flush=True)
                p.wait()
                time.sleep(600)
                """
            )
            self.parent: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-c", code, str(wfd), *argv],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=[wfd],
                start_new_session=True,
            )
            assert self.parent.stdout is not None
            self.pid = int(self.parent.stdout.readline())
            self.proc: subprocess.Popen[bytes] | None = None
        else:
            self.parent = None
            self.proc = subprocess.Popen(
                argv, env=env, stdout=wfd, stderr=subprocess.PIPE, start_new_session=True
            )
            self.pid = self.proc.pid
        os.close(wfd)

    def read(self, timeout: float = ANSWER_WAIT) -> bytes:
        """The next byte of the helper's stdout; b"" at EOF; raises on timeout."""
        ready, _, _ = select.select([self.rfd], [], [], timeout)
        if not ready:
            raise AssertionError(f"helper {self.pid} said nothing in {timeout}s")
        return os.read(self.rfd, 1)

    def answer(self) -> bytes:
        status = self.read()
        self.answered = time.monotonic() - self.started
        return status

    def eof_within(self, timeout: float) -> float:
        """Seconds until the helper's stdout reaches EOF (fails after timeout)."""
        start = time.monotonic()
        rest = self.read(timeout)
        assert rest == b"", f"helper wrote more than one byte: {rest!r}"
        return time.monotonic() - start

    def wait(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        assert self.proc is not None and self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def cleanup(self) -> None:
        for pid in (self.pid, self.parent.pid if self.parent else None):
            if pid is not None and ctdbd.alive(pid):
                try:
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in (self.proc, self.parent):
            if p is not None:
                p.wait(10)
                for stream in (p.stdout, p.stderr):
                    if stream is not None:
                        stream.close()
        os.close(self.rfd)


@pytest.fixture
def helper(
    ceph_cluster: ClusterInfo, helper_conf: str, lock_object: str
) -> Iterator[Callable[..., Helper]]:
    """helper(*extra, obj=, parent=False, env=...) starts a helper on the test's object."""
    started: list[Helper] = []

    def start(
        *extra: str,
        obj: str | None = None,
        parent: bool = False,
        lease: float = LEASE,
        env: dict[str, str] | None = None,
    ) -> Helper:
        argv = [RADOSTDB, "ctdb-lock", "--conf", helper_conf, "--pool", ceph_cluster.pool]
        argv += ["--id", ceph_cluster.client_id, "--lease", str(lease), *extra]
        argv.append(obj or lock_object)
        h = Helper(argv, env or ceph_cluster.child_env(), parent=parent)
        started.append(h)
        return h

    yield start
    for h in started:
        h.cleanup()


def holders(ioctx: Any, obj: str) -> list[bytes]:
    """Owners holding a lock in ``obj``'s lock table, as the OSD says."""
    st = clsops.state(ioctx, obj)
    return [] if st is None else [e.owner for e in st.header.entries if e.held]


# -- the protocol on its own ------------------------------------------------------------
def test_lock_answers_0_and_holds(
    helper: Callable[..., Helper], ioctx: Any, lock_object: str, record_figure: Any
) -> None:
    h = helper()
    assert h.answer() == ctdblock.HOLDING
    record_figure("helper start to answer 0", h.answered, "s")
    assert len(holders(ioctx, lock_object)) == 1
    time.sleep(LEASE * 1.5)  # renewals keep it past its first lease
    assert len(holders(ioctx, lock_object)) == 1
    assert h.proc is not None and h.proc.poll() is None
    h.signal(signal.SIGTERM)
    assert h.eof_within(5) < 5
    assert h.wait() == 0
    assert holders(ioctx, lock_object) == []  # released, not left to expire


def test_lock_then_lock_is_contended(
    helper: Callable[..., Helper], ioctx: Any, lock_object: str, record_figure: Any
) -> None:
    first = helper()
    assert first.answer() == ctdblock.HOLDING
    second = helper()
    assert second.answer() == ctdblock.CONTENDED
    record_figure("contended helper start to answer 1", second.answered, "s")
    assert second.eof_within(5) < 5
    assert second.wait() == 0
    assert second.stderr() == ""  # contention is not an error: ctdbd's log stays quiet
    assert len(holders(ioctx, lock_object)) == 1
    assert first.proc is not None and first.proc.poll() is None


def test_lock_cancel_then_lock(helper: Callable[..., Helper]) -> None:
    first = helper()
    assert first.answer() == ctdblock.HOLDING
    first.signal(signal.SIGTERM)  # ctdbd's cancel
    first.eof_within(5)
    assert first.wait() == 0
    again = helper()
    assert again.answer() == ctdblock.HOLDING


def test_sigint_releases(helper: Callable[..., Helper], ioctx: Any, lock_object: str) -> None:
    h = helper()
    assert h.answer() == ctdblock.HOLDING
    h.signal(signal.SIGINT)
    h.eof_within(5)
    assert h.wait() == 0
    assert holders(ioctx, lock_object) == []


def test_parent_gone_frees_the_lock(
    helper: Callable[..., Helper], ioctx: Any, lock_object: str, record_figure: Any
) -> None:
    h = helper(parent=True)
    assert h.answer() == ctdblock.HOLDING
    assert h.parent is not None
    killed = time.monotonic()
    os.kill(h.parent.pid, signal.SIGKILL)
    h.parent.wait(10)
    released = h.eof_within(LEASE)
    deadline = time.monotonic() + 5
    while holders(ioctx, lock_object) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holders(ioctx, lock_object) == [], "the helper left its lock behind"
    record_figure("parent kill -9 to lock released", time.monotonic() - killed, "s")
    assert released < 2.0
    again = helper()
    assert again.answer() == ctdblock.HOLDING


def test_stopped_holder_loses_and_exits(
    helper: Callable[..., Helper], ioctx: Any, lock_object: str, record_figure: Any
) -> None:
    holder = helper()
    assert holder.answer() == ctdblock.HOLDING
    holder.signal(signal.SIGSTOP)
    stopped = time.monotonic()
    tries = 0
    while True:
        tries += 1
        other = helper()
        status = other.answer()
        if status == ctdblock.HOLDING:
            break
        assert status == ctdblock.CONTENDED
        assert time.monotonic() - stopped < LEASE + 5, "the lock never came free"
    took = time.monotonic() - stopped
    record_figure("SIGSTOP of the holder to another helper holding", took, "s")
    record_figure("helpers started until one held", tries)
    assert took <= LEASE + 2
    # the stopped holder, resumed, finds its lease unconfirmed and leaves at once
    holder.signal(signal.SIGCONT)
    left = holder.eof_within(3)
    record_figure("resumed holder: SIGCONT to EOF", left, "s")
    assert holder.wait() == ctdblock.EXIT_LOST
    assert "given up" in holder.stderr() or "lost" in holder.stderr()
    # and it did not unlock the new holder's lock
    assert len(holders(ioctx, lock_object)) == 1
    assert helper().answer() == ctdblock.CONTENDED


def _osd_pids(conf: str) -> list[int]:
    """PIDs of the cluster's OSDs on this machine, from its run_dir's pid files."""
    run_dir = None
    for line in Path(conf).read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("run_dir", "run dir"):
            run_dir = value.strip()
    pids = []
    for pid_file in Path(run_dir or "/nonexistent").glob("osd.*.pid"):
        pid = int(pid_file.read_text().split()[0])
        if ctdbd.alive(pid):
            pids.append(pid)
    return pids


def test_unreachable_osd_ends_the_helper_before_its_lease(
    helper: Callable[..., Helper], ceph_cluster: ClusterInfo, record_figure: Any
) -> None:
    """The OSD freezes (SIGSTOP: renewals hang, unanswered): the helper must
    close stdout before the lease it last had confirmed can end."""
    osds = _osd_pids(ceph_cluster.conf)
    if not osds:
        reason = f"no local OSD pid file in the run_dir of {ceph_cluster.conf}"
        if env_flag("RADOSTDB_REQUIRE_CLUSTER"):
            pytest.fail(reason)
        pytest.skip(reason)
    h = helper()
    assert h.answer() == ctdblock.HOLDING
    time.sleep(LEASE / 2)
    frozen = time.monotonic()
    for pid in osds:
        os.kill(pid, signal.SIGSTOP)
    try:
        left = h.eof_within(LEASE + 5)
        code = h.wait(10)
    finally:
        for pid in osds:
            os.kill(pid, signal.SIGCONT)
    record_figure("OSD frozen to helper EOF", left, "s")
    record_figure("lease", LEASE, "s")
    # the last confirmed renewal was sent before the freeze: its lease ends
    # no earlier than frozen + 0 + LEASE; the helper must be gone before that
    assert left < LEASE - ctdblock.margin_for(LEASE) + 0.5
    assert left < LEASE
    assert code == ctdblock.EXIT_LOST
    assert "no renewal confirmed" in h.stderr()
    assert time.monotonic() - frozen < LEASE + 10


def test_bad_pool_answers_3(helper: Callable[..., Helper]) -> None:
    h = helper("--pool", f"no-such-pool-{uuid.uuid4().hex[:6]}")
    assert h.answer() == ctdblock.ERROR
    h.eof_within(5)
    assert h.wait() == ctdblock.EXIT_ERROR
    assert "does not exist" in h.stderr()


def test_bad_conf_answers_3(helper: Callable[..., Helper], tmp_path: Path) -> None:
    h = helper("--conf", str(tmp_path / "missing.conf"))
    assert h.answer() == ctdblock.ERROR
    h.eof_within(5)
    assert "no Ceph configuration" in h.stderr()


def test_bad_arguments_answer_3(helper: Callable[..., Helper]) -> None:
    h = helper("--lease", "soon")
    assert h.answer() == ctdblock.ERROR
    h.eof_within(5)
    assert h.wait() == 2  # click's usage error; ctdbd reads the byte, not the code
    assert "--lease" in h.stderr()


# the caps README.rst's "Clustered Samba" section gives the helper's client
HELPER_CAPS = ("allow r", "allow pool={pool} class radostdb")


@pytest.fixture
def cephx_user(
    ceph_cluster: ClusterInfo, rados_client: Any, helper_conf: str, tmp_path: Path
) -> Iterator[Callable[[str, str], tuple[str, str]]]:
    """cephx_user(mon_caps, osd_caps) -> (client id, conf naming its keyring)."""
    made: list[str] = []

    def make(mon: str, osd: str) -> tuple[str, str]:
        cid = f"ctdb-{uuid.uuid4().hex[:8]}"
        entity = f"client.{cid}"
        cmd = {
            "prefix": "auth get-or-create",
            "entity": entity,
            "caps": ["mon", mon, "osd", osd.format(pool=ceph_cluster.pool)],
            "format": "plain",
        }
        ret, out, err = rados_client.mon_command(json.dumps(cmd), b"")
        assert ret == 0, err
        made.append(entity)
        keyring = tmp_path / f"{cid}.keyring"
        keyring.write_bytes(out)
        conf = tmp_path / f"{cid}.conf"
        text = Path(helper_conf).read_text()
        conf.write_text(text + f"\n[{entity}]\nkeyring = {keyring}\n")
        return cid, str(conf)

    yield make
    for entity in made:
        rados_client.mon_command(json.dumps({"prefix": "auth rm", "entity": entity}), b"")


def test_documented_caps_suffice(
    helper: Callable[..., Helper],
    cephx_user: Callable[[str, str], tuple[str, str]],
    ioctx: Any,
    lock_object: str,
) -> None:
    cid, conf = cephx_user(*HELPER_CAPS)
    as_user = ("--id", cid, "--conf", conf)
    holder = helper(*as_user)
    assert holder.answer() == ctdblock.HOLDING
    time.sleep(LEASE)  # its renewals pass too
    assert helper(*as_user).answer() == ctdblock.CONTENDED
    holder.signal(signal.SIGTERM)
    holder.eof_within(5)
    assert holder.wait() == 0
    assert holders(ioctx, lock_object) == []  # its unlock passed


def test_without_class_caps_answers_3(
    helper: Callable[..., Helper], cephx_user: Callable[[str, str], tuple[str, str]]
) -> None:
    cid, conf = cephx_user("allow r", "allow r pool={pool}")
    h = helper("--id", cid, "--conf", conf)
    assert h.answer() == ctdblock.ERROR
    h.eof_within(5)
    assert "permission denied" in h.stderr()


# -- with real ctdbd ---------------------------------------------------------------------
CTDB_LEASE = 3
LEADER_TIMEOUT = 2  # ctdb.conf [cluster] leader timeout: ctdb waits this long before an election


@pytest.fixture
def ctdb_nodes(
    ceph_cluster: ClusterInfo, helper_conf: str, lock_object: str, tmp_path: Path
) -> Iterator[ctdbd.Nodes]:
    """Three ctdbd on 127.0.0.1-3 whose cluster lock is radostdb ctdb-lock;
    stopped (by recorded PID) however the test ends."""
    why = ctdbd.installed()
    if why is not None:
        if env_flag("RADOSTDB_REQUIRE_CLUSTER"):
            pytest.fail(f"RADOSTDB_REQUIRE_CLUSTER=1 but {why}")
        pytest.skip(why)
    line = (
        f"!{RADOSTDB} ctdb-lock --conf {helper_conf} --id {ceph_cluster.client_id} "
        f"--pool {ceph_cluster.pool} --lease {CTDB_LEASE} {lock_object}"
    )
    root = Path("/tmp") / f"rtdb-ctdb-{uuid.uuid4().hex[:8]}"  # short: unix socket paths
    nodes = ctdbd.Nodes(root, line, leader_timeout=LEADER_TIMEOUT)
    try:
        nodes.setup()
        nodes.start()
        yield nodes
    finally:
        killed = nodes.stop()
        if killed:
            print(f"ctdb processes that needed SIGKILL: {killed}")
        if not os.environ.get("RADOSTDB_KEEP_CTDB"):
            shutil.rmtree(root, ignore_errors=True)


def _settled_helpers(nodes: ctdbd.Nodes, timeout: float = 15.0) -> dict[int, list[int]]:
    """pnn -> helper PIDs once exactly one helper runs in the cluster: ctdbd
    also starts short-lived helpers to check that the lock is held (they
    answer 1 and exit)."""
    deadline = time.monotonic() + timeout
    while True:
        helpers = {n.pnn: nodes.helpers(n) for n in nodes.nodes}
        if sum(len(h) for h in helpers.values()) == 1 or time.monotonic() > deadline:
            return helpers
        time.sleep(0.1)


def test_ctdbd_elects_a_leader_that_holds_the_lock_and_fails_over(
    ctdb_nodes: ctdbd.Nodes, ioctx: Any, lock_object: str, record_figure: Any
) -> None:
    nodes = ctdb_nodes
    leader, took = nodes.wait_healthy([0, 1, 2], timeout=90)
    record_figure("ctdbd start to 3 nodes OK with a leader", took, "s")
    old = nodes.nodes[leader]
    helpers = _settled_helpers(nodes)
    assert len(helpers[leader]) == 1, (helpers, nodes.logs())
    assert all(not helpers[p] for p in helpers if p != leader), helpers
    owners = holders(ioctx, lock_object)
    assert len(owners) == 1, owners
    old_owner = owners[0]
    old_helper = helpers[leader][0]

    killed = time.monotonic()
    nodes.kill(old)  # kill -9 of the leader's ctdbd
    released = taken = None
    new_owner = None
    while time.monotonic() - killed < 60:
        now_owners = holders(ioctx, lock_object)
        if released is None and old_owner not in now_owners:
            released = time.monotonic() - killed
        if now_owners and old_owner not in now_owners:
            taken = time.monotonic() - killed
            new_owner = now_owners[0]
            break
        time.sleep(0.05)
    assert taken is not None, f"no node took the lock in 60 s\n{nodes.logs()}"
    record_figure("leader kill -9 to old helper's lock gone", released, "s")
    record_figure("leader kill -9 to lock held by another node", taken, "s")
    assert not ctdbd.alive(old_helper), "the dead leader's helper outlived it"
    assert new_owner != old_owner
    rest = [n.pnn for n in nodes.nodes if n.pnn != leader]
    new_leader, _ = nodes.wait_healthy(rest, timeout=60)
    record_figure("leader kill -9 to ctdb status OK again", time.monotonic() - killed, "s")
    assert new_leader != leader
    helpers = _settled_helpers(nodes)
    assert len(helpers[new_leader]) == 1, helpers
    assert all(not helpers[p] for p in helpers if p != new_leader), helpers
    assert len(holders(ioctx, lock_object)) == 1
    assert taken <= CTDB_LEASE + 2, (
        f"takeover took {taken:.1f}s (ctdb leader timeout {LEADER_TIMEOUT}s)\n{nodes.logs()}"
    )

"""The throwaway cluster launcher, the object-class skeleton and cephx."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rados
from click.testing import CliRunner

from radostdb.cli import main
from radostdb.cluster import connect
from radostdb.devcluster import ClusterError, Daemon, DevCluster
from radostdb.testing import ClusterInfo, _revive


def ceph_pids(directory: str) -> list[int]:
    """PIDs of live ceph daemons whose command line names this cluster's conf."""
    conf = os.path.join(directory, "ceph.conf").encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        daemon = os.path.basename(argv[0]) in (b"ceph-mon", b"ceph-osd") and conf in argv
        if daemon and not Daemon("osd.x" if b"osd" in argv[0] else "mon.x", int(entry), "").gone():
            pids.append(int(entry))
    return pids


def read_lease_ratio(d: str, osd: int) -> float:
    """The running OSD's osd_pool_default_read_lease_ratio (admin socket)."""
    r = subprocess.run(
        [
            "ceph",
            "--admin-daemon",
            f"{d}/run/osd.{osd}.asok",
            "config",
            "get",
            "osd_pool_default_read_lease_ratio",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return float(json.loads(r.stdout)["osd_pool_default_read_lease_ratio"])


def test_cli_up_status_down(scratch_dir: str) -> None:
    """`cluster up` prints CEPH_CONF, `ceph -s` sees the OSD, `down` leaves nothing."""
    d = os.path.join(scratch_dir, "c")
    up = subprocess.run(
        [sys.executable, "-m", "radostdb.cli", "cluster", "up", "--dir", d],
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == f"export CEPH_CONF={d}/ceph.conf"
        status = CliRunner().invoke(main, ["cluster", "status", "--dir", d])
        assert status.exit_code == 0
        assert "mon.a    up" in status.output and "osd.0    up" in status.output
        s = subprocess.run(
            ["ceph", "-c", f"{d}/ceph.conf", "--connect-timeout", "20", "-s", "-f", "json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert s.returncode == 0, s.stderr
        osdmap = json.loads(s.stdout)["osdmap"]
        assert (osdmap["num_osds"], osdmap["num_up_osds"]) == (1, 1)
        assert len(ceph_pids(d)) == 2
        # the daemons run with the allocator recorded for them (tcmalloc
        # when installed: ceph-osd itself is linked with glibc malloc here)
        chosen = json.loads(Path(d, "pids.json").read_text())["allocator"]
        assert chosen == ("tcmalloc" if ctypes.util.find_library("tcmalloc") else "libc")
        for pid in ceph_pids(d):
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert ("libtcmalloc" in maps) == (chosen == "tcmalloc"), pid
        # one OSD: a 300 s read lease, so that a stalled OSD's PGs do not stay
        # "waiting for readable" (Ceph 16.2's laggy-PG defect)
        assert read_lease_ratio(d, 0) == 15.0
    finally:
        down = CliRunner().invoke(main, ["cluster", "down", "--dir", d])
    assert down.exit_code == 0
    assert "stopped: osd.0, mon.a" in down.output
    assert ceph_pids(d) == []
    again = CliRunner().invoke(main, ["cluster", "down", "--dir", d])
    assert again.exit_code == 0 and "nothing was running" in again.output
    status = CliRunner().invoke(main, ["cluster", "status", "--dir", d])
    assert status.exit_code == 1 and "mon.a    down" in status.output
    assert os.path.exists(f"{d}/ceph.conf"), "down must remove nothing"


def test_libc_allocator_runs_daemons_as_built(scratch_dir: str) -> None:
    """--allocator libc: no preloaded malloc in a daemon, also after a restart."""
    d = os.path.join(scratch_dir, "libc")
    up = CliRunner().invoke(main, ["cluster", "up", "--dir", d, "--allocator", "libc"])
    try:
        assert up.exit_code == 0, up.output
        assert "libc malloc" in up.output
        c = DevCluster(d)
        c.restart_osd(0)
        for pid in ceph_pids(d):
            assert "libtcmalloc" not in Path(f"/proc/{pid}/maps").read_text(), pid
        assert len(ceph_pids(d)) == 2
    finally:
        CliRunner().invoke(main, ["cluster", "down", "--dir", d])
    assert ceph_pids(d) == []


def test_half_started_cluster_goes_down(scratch_dir: str) -> None:
    """An `up` that fails after daemons started stops them and says what failed."""
    c = DevCluster(f"{scratch_dir}/half", pg_num=100000)  # the pool cannot be created
    with pytest.raises(ClusterError, match="osd pool create"):
        c.up()
    assert {d.name for d in c.daemons()} == {"mon.a", "osd.0"}
    assert not any(c.status().values())
    assert ceph_pids(c.dir.as_posix()) == []
    assert c.down() == []


def test_killed_owner_takes_its_cluster_down(scratch_dir: str) -> None:
    """kill -9 of the process that owns a cluster (a test run) still stops it."""
    d = f"{scratch_dir}/owned"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from radostdb.devcluster import DevCluster\n"
            "with DevCluster(sys.argv[1]):\n"
            "    print('up', flush=True)\n"
            "    time.sleep(600)\n",
            d,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None and owner.stdout.readline().strip() == "up"
    assert len(ceph_pids(d)) == 2
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 30
    while ceph_pids(d) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ceph_pids(d) == []


def assert_writable(c: DevCluster, obj: str) -> None:
    """The pool of ``c`` takes a write, and reads it back."""
    with c.admin() as admin:
        io = admin.open_ioctx(c.pool)
        io.write_full(obj, b"x")
        assert io.read(obj) == b"x"
        io.close()


def test_osd_kill_and_restart(scratch_dir: str) -> None:
    """The reliability-test controls: kill -9 one OSD, start it, restart it
    (bluestore: a memstore OSD loses its data when killed)."""
    with DevCluster(f"{scratch_dir}/k", osds=2, store="bluestore") as c:
        first = c.osd(1)
        assert first is not None and first.alive()
        c.kill_osd(1)
        assert c.status() == {"mon.a": True, "osd.0": True, "osd.1": False}
        c.start_osd(1)
        second = c.osd(1)
        assert second is not None and second.alive() and second.pid != first.pid
        c.restart_osd(0)
        assert all(c.status().values())
        assert read_lease_ratio(c.dir.as_posix(), 0) == 0.8  # peers: Ceph's default
        assert_writable(c, "after-restart")
    assert ceph_pids(c.dir.as_posix()) == []


def test_a_cluster_left_down_by_a_failed_test_is_started_again(scratch_dir: str) -> None:
    """The replicated fixture's teardown (testing._revive): an OSD left
    killed is started, and so is a cluster whose every daemon was killed;
    either way the pool takes writes again."""
    with DevCluster(f"{scratch_dir}/r", osds=1, store="bluestore") as c:
        for down in (lambda: c.kill_osd(0), c.crash):
            down()
            assert not all(c.status().values())
            _revive(c)
            assert all(c.status().values()), c.status()
            assert_writable(c, "revived")
    assert ceph_pids(c.dir.as_posix()) == []


def test_class_version(ioctx: rados.Ioctx, db_name: str) -> None:
    """Our class is loaded; `version` answers on an existing object (the OSD
    refuses calls on a missing object with ENOENT before the class runs)."""
    ioctx.write_full(db_name, b"")
    assert ioctx.execute(db_name, "radostdb", "version", b"") == (1, b"2")
    with pytest.raises(rados.ObjectNotFound):
        ioctx.execute(db_name + "-missing", "radostdb", "version", b"")


def test_write_read_with_generated_keyring(ceph_cluster: ClusterInfo, db_name: str) -> None:
    """The generated ceph.conf and keyring work as they are."""
    client = rados.Rados(conffile=ceph_cluster.conf, name=f"client.{ceph_cluster.client_id}")
    client.connect(timeout=30)
    try:
        io = client.open_ioctx(ceph_cluster.pool)
        io.write_full(db_name, b"hello")
        assert io.read(db_name) == b"hello"
        io.remove_object(db_name)
        io.close()
    finally:
        client.shutdown()


def test_cephx_namespace_confinement(
    ceph_cluster: ClusterInfo, rados_client: rados.Rados, scratch_dir: str, db_name: str
) -> None:
    """A client whose caps allow one namespace is refused outside it."""
    entity = f"client.{db_name[:30]}"
    ret, out, err = rados_client.mon_command(
        json.dumps(
            {
                "prefix": "auth get-or-create",
                "entity": entity,
                "caps": [
                    "mon",
                    "allow r",
                    "osd",
                    f"allow rw pool={ceph_cluster.pool} namespace=ns1",
                ],
                "format": "plain",
            }
        ),
        b"",
    )
    assert ret == 0, err
    keyring = Path(scratch_dir) / "client.keyring"
    keyring.write_bytes(out)
    client = rados.Rados(conffile=ceph_cluster.conf, name=entity, conf={"keyring": str(keyring)})
    client.conf_set("rados_osd_op_timeout", "30")
    client.connect(timeout=30)
    try:
        io = client.open_ioctx(ceph_cluster.pool)
        io.set_namespace("ns1")
        io.write_full(db_name, b"inside")
        assert io.read(db_name) == b"inside"
        io.set_namespace("ns2")
        with pytest.raises(rados.PermissionError):
            io.write_full(db_name, b"outside")
        io.set_namespace("")
        with pytest.raises(rados.PermissionError):
            io.read(db_name)
        io.close()
    finally:
        client.shutdown()
        rados_client.mon_command(json.dumps({"prefix": "auth rm", "entity": entity}), b"")


INNER_SUITE = """
import os, signal
from radostdb.testing import ClusterInfo, _revive

def test_a_dead_osd(ceph_cluster: ClusterInfo) -> None:
    (osd,) = [d for d in ceph_cluster.dev.daemons() if d.kind == "osd"]
    os.kill(osd.pid, signal.SIGKILL)  # as an OSD that crashed would

def test_after_it(ceph_cluster: ClusterInfo) -> None:
    pass
"""


def test_a_run_ends_when_its_cluster_loses_a_daemon(scratch_dir: str) -> None:
    """A suite whose throwaway cluster lost its OSD ends after that test with
    the OSD's log tail (the next tests would only time out against it)."""
    Path(scratch_dir, "test_inner.py").write_text(INNER_SUITE)
    env = {k: v for k, v in os.environ.items() if k not in ("CEPH_CONF", "RADOSTDB_POOL")}
    env["RADOSTDB_TEST_CLUSTER_DIR"] = f"{scratch_dir}/cluster"
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "radostdb.testing", "-v", "test_inner.py"],
        cwd=scratch_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(r.stdout[-3000:])
    assert r.returncode == 3, r.stdout + r.stderr
    assert "test_inner.py::test_a_dead_osd PASSED" in r.stdout
    assert "test_after_it" not in r.stdout.split("test_a_dead_osd PASSED", 1)[1]
    assert "lost a daemon during or before test_inner.py::test_a_dead_osd" in r.stdout
    assert "osd.0.log" in r.stdout and "is gone" in r.stdout
    assert ceph_pids(f"{scratch_dir}/cluster") == []  # the mon stopped all the same


def test_a_memstore_cluster_never_blocks_writes_as_full(scratch_dir: str) -> None:
    """memstore's count of used bytes is no measure of anything here (it
    leaves omap out, and it has gone below zero under load, which the OSD
    took for full and blocked every write): a throwaway memstore cluster
    keeps taking writes past its device size, with no full flag."""
    with DevCluster(f"{scratch_dir}/m", memstore_bytes=1 << 20) as c:
        client = connect(str(c.conf), "admin", timeout=30)
        try:
            io = client.open_ioctx(c.pool)
            for i in range(8):  # 8 MiB on a 1 MiB memstore
                io.write_full(f"big-{i}", b"x" * (1 << 20))
            time.sleep(7)  # the OSD checks its fullness every few seconds (tick)
            io.write_full("after", b"y")  # a full OSD would block this for good
            assert io.read("after") == b"y"
            io.close()
        finally:
            client.shutdown()
        health = subprocess.run(
            ["ceph", "-c", str(c.conf), "health", "detail"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert "FULL" not in health, health

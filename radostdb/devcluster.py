"""A throwaway local Ceph cluster: one monitor and N OSDs on 127.0.0.1.

Used by the test suite, by ``radostdb-bench`` when no cluster is configured,
and by developers (``radostdb cluster up --dir DIR``). Everything the cluster
needs lives in DIR: ``ceph.conf``, cephx keyrings, daemon data, logs, admin
sockets, a class directory (the stock object classes plus our
``libcls_radostdb.so``) and ``pids.json``, the record of every daemon started.

Decisions:
- No manager daemon: the monitor and OSDs are enough for I/O. Only monitor
  commands are used (manager commands hang forever without a manager), and
  every one runs with a timeout (``rados_mon_op_timeout``).
- Daemons run in the foreground (``-f``) as children in their own session, so
  the PID we record is the daemon's own; ``down`` stops exactly those PIDs
  (SIGTERM, then SIGKILL after a grace period) and checks ``/proc`` first so a
  reused PID is never signalled.
- cephx is on. ``DIR/ceph.client.admin.keyring`` holds the admin key and is
  named in ``ceph.conf``, so ``ceph -c DIR/ceph.conf`` and
  ``rados.Rados(conffile=DIR/ceph.conf)`` work as they are.
- memstore (default) is fastest but keeps data only across a clean stop;
  bluestore on a sparse file outside the OSD directory survives ``kill -9``.
  A memstore cluster never marks itself full (``MEMSTORE_NEVER_FULL``: its
  count of used bytes leaves omap out and can go below zero, which blocked
  every write of a test run).
- Allocator: Ceph's own build links its daemons with tcmalloc when gperftools
  is there (its CMake falls back to jemalloc, then libc); Debian's ceph-osd
  and ceph-mon are linked with glibc malloc, whose consolidation of small
  freed chunks dominates OSD profiles of omap-heavy class calls. So the
  daemons run with tcmalloc preloaded (``LD_PRELOAD``, and the 128 MiB thread
  cache Ceph's packaging sets) when ``libtcmalloc.so.4`` is installed
  (allocator "auto" or "tcmalloc"); "libc" runs them as Debian built them.
  The choice is recorded in ``pids.json`` so restarted daemons keep it.
- One OSD: pools get a 300 s read lease (``_read_lease``), so that a stall
  of the OSD does not strand a PG in Ceph 16.2's laggy state.
- Fault injection for reliability tests: ``kill_osd``/``start_osd`` for one
  OSD, ``crash`` (SIGKILL of every daemon at once) and ``start`` (a created
  cluster's daemons started again by a new keeper, data kept on bluestore),
  ``wait_writable`` for the pool to take writes again, ``wait_osds_up`` for
  restarted OSDs to be marked up in the OSD map.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RadostdbError

STOCK_CLASS_DIR = Path("/usr/lib/x86_64-linux-gnu/rados-classes")
CLASS_LIB = "libcls_radostdb.so"
STORES = ("memstore", "bluestore")
# memstore counts only object data as used (omap, where radostdb's records
# live, is not counted), and its count can go below zero: seen at -12 KB
# after minutes of transactions and splits on a loaded machine, which the
# OSD reads as 4e9 times full ("full status failsafe engaged, dropping
# updates"), so every later write blocks. Its full checks guard nothing real
# here, so a memstore cluster is made with ratios no count reaches (Ceph
# reads a ratio above 1 as a percentage; the map's are set at creation only).
MEMSTORE_NEVER_FULL = (
    "mon_osd_nearfull_ratio = 1e14\nmon_osd_backfillfull_ratio = 2e14\n"
    "mon_osd_full_ratio = 3e14\nosd_failsafe_full_ratio = 4e14\n"
)
STOP_GRACE = 10.0
DAEMON_BINARIES = {"mon": "ceph-mon", "osd": "ceph-osd"}
ALLOCATORS = ("auto", "tcmalloc", "libc")
TCMALLOC_ENV = {"TCMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES": str(128 << 20)}


def resolve_allocator(choice: str) -> str:
    """The allocator the daemons get: "tcmalloc" or "libc" ("auto": tcmalloc
    when installed). ClusterError for "tcmalloc" without the library."""
    if choice not in ALLOCATORS:
        raise ClusterError(f"unknown allocator {choice!r}: choose one of {', '.join(ALLOCATORS)}")
    if choice == "libc":
        return "libc"
    if ctypes.util.find_library("tcmalloc"):
        return "tcmalloc"
    if choice == "tcmalloc":
        raise ClusterError(
            "allocator tcmalloc: libtcmalloc.so.4 is not installed "
            "(apt-get install libgoogle-perftools4)"
        )
    return "libc"


def daemon_env(allocator: str) -> dict[str, str]:
    """The environment of a daemon run with ``allocator`` (resolved)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if allocator == "tcmalloc":
        lib = ctypes.util.find_library("tcmalloc") or "libtcmalloc.so.4"
        env.update(TCMALLOC_ENV, LD_PRELOAD=lib)
    return env


class ClusterError(RadostdbError, RuntimeError):
    """The dev cluster could not be started, stopped or reached."""


@dataclass
class Daemon:
    """One daemon of the cluster as recorded in ``pids.json``."""

    name: str  # "mon.a", "osd.0"
    pid: int
    log: str

    @property
    def kind(self) -> str:
        return self.name.split(".", 1)[0]

    def alive(self) -> bool:
        """True when PID runs the daemon binary we started (not a reused PID)."""
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        argv0 = cmdline.split(b"\0", 1)[0]
        return not self.gone() and os.path.basename(argv0).decode() == DAEMON_BINARIES[self.kind]

    def gone(self) -> bool:
        """True once the process has exited: it no longer exists, or it is a zombie
        none of whose threads still runs (a killed daemon's main thread turns
        zombie before its other threads have let go of files and locks)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            if stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X"):
                return False
            return len(os.listdir(f"/proc/{self.pid}/task")) <= 1
        except OSError:
            return True


def find_class_library() -> Path:
    """Locate ``libcls_radostdb.so``, building it from ``cls/`` when needed.

    ``RADOSTDB_CLASS_PATH`` names it explicitly; otherwise the source tree the
    package was installed from (``pip install -e .``) is used.
    """
    env = os.environ.get("RADOSTDB_CLASS_PATH")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ClusterError(f"RADOSTDB_CLASS_PATH={env} is not a file")
        return path
    cls_dir = Path(__file__).resolve().parent.parent / "cls"
    lib = cls_dir / CLASS_LIB
    if (cls_dir / "Makefile").is_file():
        proc = subprocess.run(
            ["make", "-s", "-C", str(cls_dir)], capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0:
            raise ClusterError(f"building the object class failed:\n{proc.stdout}{proc.stderr}")
    if not lib.is_file():
        raise ClusterError(
            f"object class {CLASS_LIB} not found (looked in {cls_dir}); "
            "build it with 'make -C cls' or set RADOSTDB_CLASS_PATH"
        )
    return lib


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], what: str, timeout: float = 60.0, log: Path | None = None) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"{what}: timed out after {timeout:.0f}s ({' '.join(argv)})") from exc
    except FileNotFoundError as exc:
        raise ClusterError(f"{what}: {argv[0]} is not installed (run 'make deps')") from exc
    if proc.returncode != 0:
        where = f"; see {log}" if log else ""
        raise ClusterError(
            f"{what} failed (exit {proc.returncode}){where}: {(proc.stderr or proc.stdout).strip()}"
        )
    return proc.stdout


class DevCluster:
    """A throwaway cluster in ``directory``; also a context manager.

    >>> with DevCluster("/tmp/c", osds=3, store="bluestore") as c:
    ...     c.kill_osd(1); c.start_osd(1)
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        osds: int = 1,
        store: str = "memstore",
        pool: str = "radostdb",
        pg_num: int = 8,
        memstore_bytes: int = 4 << 30,
        bluestore_bytes: int = 16 << 30,
        allocator: str = "auto",
    ) -> None:
        if osds < 1:
            raise ClusterError("a cluster needs at least one OSD")
        if store not in STORES:
            raise ClusterError(f"unknown object store {store!r}: choose one of {', '.join(STORES)}")
        self.dir = Path(directory).resolve()
        self.osds = osds
        self.store = store
        self.pool = pool
        self.pg_num = pg_num
        self.memstore_bytes = memstore_bytes
        self.bluestore_bytes = bluestore_bytes
        self.allocator = resolve_allocator(allocator)
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # -- paths -------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.dir / "ceph.conf"

    @property
    def admin_keyring(self) -> Path:
        return self.dir / "ceph.client.admin.keyring"

    @property
    def pids_file(self) -> Path:
        return self.dir / "pids.json"

    def log_of(self, name: str) -> Path:
        return self.dir / "log" / f"{name}.log"

    # -- pid records -------------------------------------------------------
    def daemons(self) -> list[Daemon]:
        """Every daemon recorded in ``pids.json`` (running or not)."""
        try:
            data = json.loads(self.pids_file.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ClusterError(f"cannot read {self.pids_file}: {exc}") from exc
        return [Daemon(d["name"], int(d["pid"]), d["log"]) for d in data.get("daemons", [])]

    def _record(self, daemon: Daemon) -> None:
        daemons = [d for d in self.daemons() if d.name != daemon.name] + [daemon]
        meta = self._meta()
        meta["daemons"] = [d.__dict__ for d in daemons]
        tmp = self.pids_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(self.pids_file)

    def _meta(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.pids_file.read_text()))
        except (OSError, ValueError):
            return {
                "osds": self.osds,
                "store": self.store,
                "pool": self.pool,
                "allocator": self.allocator,
            }

    def status(self) -> dict[str, bool]:
        """Map of daemon name to whether it is running."""
        return {d.name: d.alive() for d in self.daemons()}

    # -- lifecycle ---------------------------------------------------------
    def up(self, timeout: float = 120.0, owner: int | None = None) -> DevCluster:
        """Create and start the cluster; return when a write to the pool succeeds.

        The daemons are started by a keeper process (``python -m
        radostdb.devcluster keep``) that stays in the background as their
        parent: it reaps them when they exit, and when ``owner`` (a PID) is
        given and that process dies, however it dies, the keeper stops the
        cluster. The keeper exits once no daemon of the cluster runs.
        """
        if any(self.status().values()):
            raise ClusterError(f"a cluster is already running in {self.dir}; 'down' it first")
        for tool in ("ceph-mon", "ceph-osd", "ceph-authtool", "monmaptool"):
            if shutil.which(tool) is None:
                raise ClusterError(f"{tool} is not installed (run 'make deps' as root)")
        self.dir.mkdir(parents=True, exist_ok=True)
        return self._launch_keeper("create", timeout, owner)

    def start(self, timeout: float = 120.0, owner: int | None = None) -> DevCluster:
        """Start again every daemon of a cluster that ``up`` created and that is
        now stopped (``down`` or ``crash``); return when the pool takes writes.

        Nothing is re-created: with bluestore the data is what the OSDs kept.
        A new keeper becomes the daemons' parent, as in ``up``.
        """
        if any(self.status().values()):
            raise ClusterError(f"daemons of the cluster in {self.dir} still run; 'down' it first")
        if not (self.dir / "mon.a").is_dir() or not self.conf.is_file():
            raise ClusterError(f"no cluster was created in {self.dir}; use 'up'")
        return self._launch_keeper("resume", timeout, owner)

    def _launch_keeper(self, mode: str, timeout: float, owner: int | None) -> DevCluster:
        meta = self._meta()
        params = {
            "osds": meta.get("osds", self.osds),
            "store": meta.get("store", self.store),
            "pool": meta.get("pool", self.pool),
            "pg_num": self.pg_num,
            "memstore_bytes": self.memstore_bytes,
            "bluestore_bytes": self.bluestore_bytes,
            "allocator": meta.get("allocator", self.allocator),
        }
        if mode == "create":
            params.update(
                osds=self.osds, store=self.store, pool=self.pool, allocator=self.allocator
            )
        with open(self.dir / "keeper.log", "ab") as log:
            keeper = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "radostdb.devcluster",
                    "keep",
                    str(self.dir),
                    json.dumps(params),
                    str(owner or 0),
                    str(timeout),
                    mode,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        self._children[keeper.pid] = keeper
        assert keeper.stdout is not None
        line = keeper.stdout.readline().decode().strip()
        keeper.stdout.close()
        if line == "ready":
            return self
        self.down()
        if line.startswith("error: "):
            raise ClusterError(line[len("error: ") :])
        raise ClusterError(f"the cluster keeper died ({line!r}); see {self.dir / 'keeper.log'}")

    def _start(self, timeout: float, mode: str = "create") -> None:
        """Create (or, with mode "resume", restart) and start everything, in
        this process (the keeper)."""
        try:
            if mode == "resume":
                self._resume(timeout)
            else:
                self._create(timeout)
        except BaseException:
            self.down()
            raise

    def _resume(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._spawn("mon.a", ["ceph-mon", "-c", str(self.conf), "-i", "a", "-f"])
        with self.admin(deadline) as admin:
            for i in range(self.osds):
                self.start_osd(i)
            self._wait_for_write(admin, deadline)

    def _keep(self, owner: int) -> None:
        """The keeper's loop: reap daemons; stop them all if the owner dies."""
        while True:
            while True:
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    pid = 0
                if pid == 0:
                    break
            if owner and not Path(f"/proc/{owner}").exists():
                self.down()
            if not any(d.alive() for d in self.daemons()):
                return
            time.sleep(0.2)

    def _create(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self.dir.exists() and any(self.dir.iterdir()):
            for sub in ("mon.a", "classes", "log", "run"):
                shutil.rmtree(self.dir / sub, ignore_errors=True)
            for old in self.dir.glob("osd.*"):
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
            for f in (
                "pids.json",
                "monmap",
                "mon.keyring",
                "ceph.conf",
                "ceph.client.admin.keyring",
            ):
                (self.dir / f).unlink(missing_ok=True)
        for sub in ("log", "run", "classes"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.pids_file.write_text(
            json.dumps(
                {
                    "osds": self.osds,
                    "store": self.store,
                    "pool": self.pool,
                    "allocator": self.allocator,
                    "daemons": [],
                }
            )
        )
        self._populate_class_dir()
        port = _free_port()
        fsid = str(uuid.uuid4())
        self._write_conf(fsid, port)
        mon_keyring = self.dir / "mon.keyring"
        authtool = ["ceph-authtool"]
        _run(
            authtool
            + [
                "--create-keyring",
                str(mon_keyring),
                "--gen-key",
                "-n",
                "mon.",
                "--cap",
                "mon",
                "allow *",
            ],
            "creating the monitor key",
        )
        _run(
            authtool
            + [
                "--create-keyring",
                str(self.admin_keyring),
                "--gen-key",
                "-n",
                "client.admin",
                "--cap",
                "mon",
                "allow *",
                "--cap",
                "osd",
                "allow *",
                "--cap",
                "mgr",
                "allow *",
            ],
            "creating the admin key",
        )
        _run(
            authtool + [str(mon_keyring), "--import-keyring", str(self.admin_keyring)],
            "importing the admin key",
        )
        monmap = self.dir / "monmap"
        _run(
            [
                "monmaptool",
                "--create",
                "--addv",
                "a",
                f"[v2:127.0.0.1:{port}]",
                "--fsid",
                fsid,
                str(monmap),
            ],
            "creating the monmap",
        )
        _run(
            [
                "ceph-mon",
                "-c",
                str(self.conf),
                "--mkfs",
                "-i",
                "a",
                "--monmap",
                str(monmap),
                "--keyring",
                str(mon_keyring),
            ],
            "mkfs of mon.a",
            log=self.log_of("mon.a"),
        )
        self._spawn("mon.a", ["ceph-mon", "-c", str(self.conf), "-i", "a", "-f"])
        with self.admin(deadline) as admin:
            for i in range(self.osds):
                self._create_osd(admin, i)
            for i in range(self.osds):
                self.start_osd(i)
            size = min(3, self.osds)
            self._mon(
                admin,
                {
                    "prefix": "osd pool create",
                    "pool": self.pool,
                    "pg_num": self.pg_num,
                    "pgp_num": self.pg_num,
                    "pool_type": "replicated",
                    "autoscale_mode": "off",
                },
            )
            self._mon(
                admin,
                {
                    "prefix": "osd pool set",
                    "pool": self.pool,
                    "var": "size",
                    "val": str(size),
                    "yes_i_really_mean_it": True,
                },
            )
            self._mon(
                admin,
                {
                    "prefix": "osd pool set",
                    "pool": self.pool,
                    "var": "min_size",
                    "val": str(1 if size < 3 else 2),
                },
            )
            self._mon(
                admin,
                {
                    "prefix": "osd pool application enable",
                    "pool": self.pool,
                    "app": "radostdb",
                    "yes_i_really_mean_it": True,
                },
            )
            self._wait_for_write(admin, deadline)

    def _populate_class_dir(self) -> None:
        classes = self.dir / "classes"
        for lib in STOCK_CLASS_DIR.glob("libcls_*.so*"):
            (classes / lib.name).symlink_to(lib)
        (classes / CLASS_LIB).symlink_to(find_class_library().resolve())

    def _write_conf(self, fsid: str, port: int) -> None:
        d = self.dir
        store = (
            f"osd_objectstore = memstore\nmemstore_device_bytes = {self.memstore_bytes}\n"
            if self.store == "memstore"
            else (
                "osd_objectstore = bluestore\nbluestore_block_create = true\n"
                f"bluestore_block_size = {self.bluestore_bytes}\n"
                f"bluestore_block_path = {d}/osd.$id.block\n"
                "bluestore_fsck_on_mount = false\nbluestore_fsck_on_umount = false\n"
                "bluestore_cache_size = 268435456\n"
            )
        )
        self.conf.write_text(
            f"""# written by radostdb.devcluster; a throwaway cluster
[global]
fsid = {fsid}
mon_host = [v2:127.0.0.1:{port}]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr1 = false
ms_bind_ipv6 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = {self.admin_keyring}
run_dir = {d}/run
admin_socket = {d}/run/$name.asok
pid_file = {d}/run/$name.pid
log_file = {d}/log/$name.log
log_to_stderr = false
err_to_stderr = false
mon_cluster_log_file = {d}/log/cluster.log
crash_dir = {d}/run/crash
osd_pool_default_size = {min(3, self.osds)}
osd_pool_default_min_size = 1
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
auth_allow_insecure_global_id_reclaim = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
mon_warn_on_pool_no_redundancy = false
{self._read_lease()}{MEMSTORE_NEVER_FULL if self.store == "memstore" else ""}
[client]
# clients (every test process, all client.admin) share no admin socket: a
# second client would stall 10 s probing the socket of a stopped one
admin_socket =

[mon]
mon_data = {d}/mon.$id
keyring = {d}/mon.keyring

[osd]
osd_data = {d}/$name
keyring = {d}/$name/keyring
osd_class_dir = {d}/classes
osd_class_load_list = *
osd_class_default_list = *
{store}"""
        )

    def _read_lease(self) -> str:
        """One OSD: a read lease of 300 s instead of 16 s (0.8 x the 20 s
        heartbeat grace). The lease keeps a cut-off primary from serving
        reads after a peer took over; with one OSD there is no peer, and
        Ceph 16.2 has a defect (fixed upstream later: a laggy PG missing its
        readability recheck) that leaves a PG "waiting for readable" for good
        after the OSD stalled past its lease (SIGSTOP, a suspended machine)."""
        return "osd_pool_default_read_lease_ratio = 15\n" if self.osds == 1 else ""

    def _spawn(self, name: str, argv: list[str]) -> Daemon:
        log = self.log_of(name)
        with open(self.dir / "log" / f"{name}.stdout", "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=daemon_env(self._meta().get("allocator", "libc")),
            )
        self._children[proc.pid] = proc
        daemon = Daemon(name, proc.pid, str(log))
        self._record(daemon)
        time.sleep(0.05)
        if proc.poll() is not None:
            raise ClusterError(f"{name} exited at once (status {proc.returncode}); see {log}")
        return daemon

    # -- admin connection --------------------------------------------------
    @contextlib.contextmanager
    def admin(self, deadline: float | None = None) -> Iterator[Any]:
        """A connected ``rados.Rados`` as client.admin (radostdb's one factory,
        cluster.connect), shut down on exit."""
        from .cluster import connect

        left = 30.0 if deadline is None else max(1.0, deadline - time.monotonic())
        try:
            cluster = connect(str(self.conf), "admin", timeout=max(left, 30.0))
        except OSError as exc:
            raise ClusterError(
                f"cannot connect to the monitor ({exc.strerror}); see {self.log_of('mon.a')}"
            ) from exc
        try:
            yield cluster
        finally:
            cluster.shutdown()

    def _mon(self, admin: Any, cmd: dict[str, Any], inbuf: bytes = b"") -> bytes:
        ret, out, errs = admin.mon_command(json.dumps(cmd), inbuf)
        if ret != 0:
            raise ClusterError(
                f"monitor command '{cmd['prefix']}' failed ({os.strerror(-ret)}): {errs}; "
                f"see {self.log_of('mon.a')}"
            )
        return bytes(out)

    def _create_osd(self, admin: Any, i: int) -> None:
        name = f"osd.{i}"
        data = self.dir / name
        data.mkdir(parents=True, exist_ok=True)
        keyring = data / "keyring"
        _run(
            ["ceph-authtool", "--create-keyring", str(keyring), "--gen-key", "-n", name],
            f"creating the {name} key",
        )
        osd_uuid = str(uuid.uuid4())
        self._mon(admin, {"prefix": "osd new", "uuid": osd_uuid, "id": i})
        self._mon(
            admin,
            {
                "prefix": "auth add",
                "entity": name,
                "caps": ["osd", "allow *", "mon", "allow profile osd"],
            },
            keyring.read_bytes(),
        )
        _run(
            ["ceph-osd", "-c", str(self.conf), "-i", str(i), "--mkfs", "--osd-uuid", osd_uuid],
            f"mkfs of {name}",
            timeout=120,
            log=self.log_of(name),
        )

    def wait_writable(self, timeout: float = 120.0) -> float:
        """Wait until a write to the pool succeeds (after OSDs were killed or
        restarted); return the seconds waited. Daemons deliberately left down
        are no error; no write within ``timeout`` is."""
        started = time.monotonic()
        deadline = started + timeout
        with self.admin(deadline) as admin:
            self._wait_for_write(admin, deadline, all_up=False)
        return time.monotonic() - started

    def wait_osds_up(self, timeout: float = 120.0) -> float:
        """Wait until the OSD map marks up every OSD whose daemon runs (a
        restarted OSD has booted and rejoined); return the seconds waited."""
        started = time.monotonic()
        deadline = started + timeout
        with self.admin(deadline) as admin:
            while True:
                dump = json.loads(self._mon(admin, {"prefix": "osd dump", "format": "json"}))
                up = {o["osd"] for o in dump["osds"] if o["up"]}
                running = {
                    int(n.split(".")[1])
                    for n, alive in self.status().items()
                    if alive and n.startswith("osd.")
                }
                if running <= up:
                    return time.monotonic() - started
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"osd.{', osd.'.join(map(str, sorted(running - up)))} not marked up "
                        f"within {timeout:.0f}s; see {self.dir / 'log'}"
                    )
                time.sleep(0.2)

    def _wait_for_write(self, admin: Any, deadline: float, all_up: bool = True) -> None:
        import rados

        ioctx = admin.open_ioctx(self.pool)
        try:
            last: Exception | None = None
            while time.monotonic() < deadline:
                comp = ioctx.aio_write_full("radostdb-devcluster-probe", b"ok")
                t_end = min(deadline, time.monotonic() + 5)
                while not comp.is_complete() and time.monotonic() < t_end:
                    time.sleep(0.02)
                if comp.is_complete() and comp.get_return_value() == 0:
                    return
                last = rados.Error(f"probe write returned {comp.get_return_value()}")
                dead = [n for n, up in self.status().items() if not up]
                if dead and all_up:
                    raise ClusterError(
                        f"{', '.join(dead)} died while waiting for the pool; see "
                        + ", ".join(str(self.log_of(n)) for n in dead)
                    )
            raise ClusterError(
                f"pool {self.pool} accepted no write before the deadline ({last}); see "
                f"{self.dir / 'log'}"
            )
        finally:
            ioctx.close()

    # -- single OSDs -------------------------------------------------------
    def osd(self, i: int) -> Daemon | None:
        return next((d for d in self.daemons() if d.name == f"osd.{i}"), None)

    def start_osd(self, i: int) -> None:
        """Start OSD ``i`` (created by ``up``) unless it runs already."""
        current = self.osd(i)
        if current is not None and current.alive():
            return
        if not (self.dir / f"osd.{i}" / "keyring").exists():
            raise ClusterError(f"osd.{i} was never created in {self.dir}")
        self._spawn(f"osd.{i}", ["ceph-osd", "-c", str(self.conf), "-i", str(i), "-f"])

    def stop_osd(self, i: int, grace: float = STOP_GRACE) -> None:
        """Stop OSD ``i`` cleanly (SIGTERM, SIGKILL after ``grace`` seconds)."""
        d = self.osd(i)
        if d is not None:
            self._stop(d, grace)

    def kill_osd(self, i: int) -> None:
        """SIGKILL OSD ``i`` (a crash, as far as Ceph can tell)."""
        d = self.osd(i)
        if d is not None:
            self._stop(d, 0.0)

    def restart_osd(self, i: int) -> None:
        self.stop_osd(i)
        self.start_osd(i)

    def pids(self) -> dict[str, int]:
        """PID of every running daemon, by name ("mon.a", "osd.0", ...)."""
        return {d.name: d.pid for d in self.daemons() if d.alive()}

    def crash(self) -> list[str]:
        """SIGKILL every running daemon at once (a power cut, as far as Ceph can
        tell) and wait until they are gone; return their names. ``start``
        brings the cluster back."""
        running = [d for d in self.daemons() if d.alive()]
        for d in running:
            try:
                os.kill(d.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for d in running:
            self._stop(d, 0.0)
        for pid, proc in list(self._children.items()):  # the keeper exits once all are gone
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                continue
            self._children.pop(pid, None)
        return [d.name for d in running]

    # -- teardown ----------------------------------------------------------
    def _stop(self, d: Daemon, grace: float) -> None:
        """Signal ``d`` (SIGTERM, or SIGKILL when grace is 0) and wait until it is gone."""
        if not d.alive():
            self._reap(d.pid)
            return
        sig = signal.SIGTERM if grace > 0 else signal.SIGKILL
        for s, wait in ((sig, grace), (signal.SIGKILL, 30.0)):
            if s != sig and d.gone():
                break
            try:
                os.kill(d.pid, s)
            except ProcessLookupError:
                break
            end = time.monotonic() + wait
            while not d.gone() and time.monotonic() < end:
                self._reap(d.pid)
                time.sleep(0.02)
            if d.gone():
                break
        self._reap(d.pid)
        if not d.gone():
            raise ClusterError(f"{d.name} (pid {d.pid}) did not exit after SIGKILL")

    def _reap(self, pid: int) -> None:
        proc = self._children.get(pid)
        if proc is not None and proc.poll() is not None:
            del self._children[pid]

    def down(self, grace: float = STOP_GRACE) -> list[str]:
        """Stop every recorded daemon (OSDs first); return the names stopped.

        Removes nothing from the directory; safe to call twice or after a
        half-finished ``up``.
        """
        daemons = sorted(self.daemons(), key=lambda d: d.kind == "mon")
        running = [d for d in daemons if d.alive()]
        for d in running:
            try:
                os.kill(d.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for d in running:
            self._stop(d, grace)
        for pid, proc in list(self._children.items()):  # the keeper exits once all are gone
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                continue
            self._children.pop(pid, None)
        return [d.name for d in running]

    def __enter__(self) -> DevCluster:
        return self.up(owner=os.getpid())

    def __exit__(self, *exc: object) -> None:
        self.down()

    def env(self) -> dict[str, str]:
        """Environment variables pointing radostdb at this cluster."""
        return {"CEPH_CONF": str(self.conf), "RADOSTDB_POOL": self.pool, "RADOSTDB_ID": "admin"}


def _keeper_main(argv: list[str]) -> int:
    """``python -m radostdb.devcluster keep DIR PARAMS_JSON OWNER_PID TIMEOUT [MODE]``

    MODE is ``create`` (the default: a new cluster) or ``resume`` (start the
    daemons of a cluster created before)."""
    directory, params, owner, timeout = argv[0], json.loads(argv[1]), int(argv[2]), argv[3]
    mode = argv[4] if len(argv) > 4 else "create"
    cluster = DevCluster(directory, **params)
    try:
        cluster._start(float(timeout), mode)
    except BaseException as exc:
        print(f"error: {' '.join(str(exc).split())}", flush=True)
        return 1
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    cluster._keep(owner)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["keep"]:
        sys.exit(
            "usage: python -m radostdb.devcluster keep DIR PARAMS OWNER TIMEOUT [MODE] "
            "(internal; use 'radostdb cluster up')"
        )
    sys.exit(_keeper_main(sys.argv[2:]))

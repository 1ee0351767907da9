"""Real ctdbd daemons on this machine for the cluster-lock tests, set up as
ctdb's own tests/local_daemons.sh does.

launcher design:
- Node N gets a directory of its own (CTDB_BASE, with CTDB_TEST_MODE=yes so
  that ctdbd keeps its socket, pid file and run state under it): ctdb.conf,
  nodes, an EMPTY public_addresses (no address is ever added to an
  interface: nothing leaves 127.0.0.0/8), db/ and a log file. Node
  addresses are 127.0.0.1, .2, .3 on the common port.
- The cluster lock line is the caller's (``!radostdb ctdb-lock …``).
  Realtime scheduling is off (a test box), failover is disabled (no public
  addresses to move).
- ctdbd daemonises, so its PID comes from its pid file. Every process of a
  node (ctdbd, its eventd, recovery daemon, lock helper) is recorded as
  (pid, start time) whenever the launcher looks (:meth:`Nodes.record`), so
  processes reparented to init after a ``kill -9`` are still found, and a
  recycled PID is never signalled. :meth:`Nodes.stop` (the fixture's
  finalizer, which also runs on Ctrl-C) sends SIGTERM, waits, then SIGKILL,
  by recorded PID only.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CTDBD = "/usr/sbin/ctdbd"
CTDB = "/usr/bin/ctdb"
ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
STATUS_LINE = re.compile(r"^pnn:(\d+)\s+(\S+)\s+(\S+)")


def installed() -> str | None:
    """Why ctdbd cannot run here, or None when it can."""
    for tool in (CTDBD, CTDB):
        if not os.access(tool, os.X_OK):
            return f"{tool} is not installed (apt-get install ctdb; 'make deps' does it)"
    if os.geteuid() != 0:
        return "ctdbd needs root"
    return None


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw.rsplit(")", 1)[1].split()[19])


def _ppid(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw.rsplit(")", 1)[1].split()[1])


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """PIDs of every living descendant of ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _ppid(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int, started: int | None = None) -> bool:
    """Is ``pid`` running (and the same process, when its start time is given)?"""
    now = _start_time(pid)
    if now is None or (started is not None and now != started):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Node:
    pnn: int
    base: Path
    address: str

    @property
    def pid_file(self) -> Path:
        return self.base / "run" / "ctdbd.pid"

    @property
    def log(self) -> Path:
        return self.base / "log.ctdb"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(CTDB_BASE=str(self.base), CTDB_TEST_MODE="yes")
        return env

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def ctdb(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run the ``ctdb`` tool against this node's socket."""
        try:
            return subprocess.run(
                [CTDB, *args],
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess([CTDB, *args], -1, "", f"timed out after {timeout}s")

    def status(self, timeout: float = 5.0) -> dict[int, str] | None:
        """pnn -> flags ("OK", "DISCONNECTED|UNHEALTHY|INACTIVE", …) as
        ``ctdb status`` on this node says; None when it does not answer."""
        res = self.ctdb("status", timeout=timeout)
        if res.returncode != 0:
            return None
        out = {}
        for line in res.stdout.splitlines():
            m = STATUS_LINE.match(line)
            if m:
                out[int(m.group(1))] = m.group(3)
        return out

    def leader(self, timeout: float = 5.0) -> int | None:
        res = self.ctdb("leader", timeout=timeout)
        text = res.stdout.strip()
        return int(text) if res.returncode == 0 and text.isdigit() else None


@dataclass
class Nodes:
    """Three local ctdbd daemons and every process they started."""

    root: Path
    lock_line: str
    leader_timeout: int = 5
    nodes: list[Node] = field(default_factory=list)
    recorded: dict[int, int] = field(default_factory=dict)  # pid -> start time

    def setup(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        (self.root / "nodes").write_text("".join(f"{a}\n" for a in ADDRESSES))
        for pnn, address in enumerate(ADDRESSES):
            base = self.root / f"node.{pnn}"
            for d in ("db/volatile", "db/persistent", "db/state", "events/legacy", "run", "var"):
                (base / d).mkdir(parents=True, exist_ok=True)
            shutil.copy(self.root / "nodes", base / "nodes")
            (base / "public_addresses").write_text("")  # never an address on an interface
            (base / "notify.sh").write_text("#!/bin/sh\nexit 0\n")
            (base / "notify.sh").chmod(0o755)
            (base / "ctdb.conf").write_text(
                f"[logging]\n\tlocation = file:{base}/log.ctdb\n\tlog level = NOTICE\n"
                f"[cluster]\n\tnode address = {address}\n\tcluster lock = {self.lock_line}\n"
                f"\tleader timeout = {self.leader_timeout}\n"
                f"[database]\n\tvolatile database directory = {base}/db/volatile\n"
                f"\tpersistent database directory = {base}/db/persistent\n"
                f"\tstate database directory = {base}/db/state\n"
                "[failover]\n\tdisabled = true\n"
                "[legacy]\n\trealtime scheduling = false\n"
            )
            self.nodes.append(Node(pnn, base, address))

    def start(self) -> None:
        """Start every node's ctdbd (it daemonises) and record its PID."""
        for node in self.nodes:
            subprocess.run(
                [CTDBD],
                env=node.env(),
                check=True,
                timeout=30,
                stdout=subprocess.DEVNULL,
                stderr=open(node.base / "ctdbd.stderr", "wb"),  # noqa: SIM115
            )
        deadline = time.monotonic() + 20
        while any(n.pid() is None for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"a ctdbd wrote no pid file under {self.root}")
            time.sleep(0.1)
        self.record()

    def record(self) -> None:
        """Note every living process of the nodes (ctdbd and descendants)."""
        for node in self.nodes:
            pid = node.pid()
            if pid is None or not alive(pid):
                continue
            for p in [pid, *descendants(pid)]:
                started = _start_time(p)
                if started is not None:
                    self.recorded.setdefault(p, started)

    def helpers(self, node: Node) -> list[int]:
        """PIDs of the lock helpers running under ``node``'s ctdbd."""
        pid = node.pid()
        if pid is None or not alive(pid):
            return []
        return [p for p in descendants(pid) if "ctdb-lock" in cmdline(p)]

    def wait_healthy(
        self, expect: list[int], timeout: float = 60.0, via: Node | None = None
    ) -> tuple[int, float]:
        """Wait until ``ctdb status`` (on ``via``, or the first node of
        ``expect``) shows every pnn of ``expect`` OK and a leader among
        them; (leader, seconds waited)."""
        node = via or self.nodes[expect[0]]
        start = time.monotonic()
        last: object = None
        while time.monotonic() - start < timeout:
            status = node.status()
            last = status
            if status and all(status.get(p) == "OK" for p in expect):
                leader = node.leader()
                if leader in expect:
                    self.record()
                    return leader, time.monotonic() - start
            time.sleep(0.2)
        raise AssertionError(f"ctdb status never showed {expect} OK with a leader: {last}")

    def kill(self, node: Node, sig: int = signal.SIGKILL) -> None:
        self.record()
        pid = node.pid()
        assert pid is not None and alive(pid)
        os.kill(pid, sig)

    def stop(self, grace: float = 10.0) -> list[int]:
        """Stop every recorded process, by PID: SIGTERM, then SIGKILL after
        ``grace``. Returns the PIDs that had to be killed."""
        self.record()
        living = {p: s for p, s in self.recorded.items() if alive(p, s)}
        for pid, started in living.items():
            if alive(pid, started):
                try:
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(p, s) for p, s in living.items()):
            time.sleep(0.1)
        killed = []
        for pid, started in living.items():
            if alive(pid, started):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
        return killed

    def logs(self, lines: int = 40) -> str:
        """The tail of every node's log, for a failure message."""
        out = []
        for node in self.nodes:
            try:
                text = node.log.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = ["(no log)"]
            out.append(f"--- node {node.pnn} ({node.log})\n" + "\n".join(text))
        return "\n".join(out)

"""A throwaway single-node etcd for the bench (Debian's etcd-server).

- Bound to 127.0.0.1 on two free ports (client, peer); its data directory on
  tmpfs (/dev/shm when there is one), so that, like a memstore OSD, nothing
  it writes reaches a disk: etcd still fsyncs its WAL, but on tmpfs that
  costs nothing.
- Limits raised for the bench's transactions: ``--max-txn-ops`` (default
  128) to MAX_TXN_OPS, so that a 1000-record Txn is allowed, and
  ``--max-request-bytes`` (default 1.5 MiB) to MAX_REQUEST_BYTES. A user
  with larger transactions raises them the same way.
- Its PID is recorded when it starts and ``stop`` signals exactly that PID
  (SIGTERM, SIGKILL after a grace period), after checking that it still runs
  etcd. The bench stops it in a ``finally`` (exceptions, Ctrl-C); the child
  also gets SIGTERM from the kernel when the bench dies any other way
  (util-linux ``setpriv --pdeathsig``, which execs etcd under the same PID;
  a ``preexec_fn`` is unsafe in a process with threads).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

MAX_TXN_OPS = 10_000
MAX_REQUEST_BYTES = 64 << 20
START_TIMEOUT = 30.0
STOP_GRACE = 10.0


class EtcdError(RuntimeError):
    """etcd could not be started or reached."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EtcdServer:
    """``with EtcdServer() as e: e.url`` — a single-node etcd, stopped on exit."""

    def __init__(self, binary: str = "etcd") -> None:
        self.binary = binary
        self.pid = 0
        self.url = ""
        self.dir = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return Path(self.dir) / "etcd.log"

    def start(self) -> EtcdServer:
        exe = shutil.which(self.binary)
        if exe is None:
            raise EtcdError(f"{self.binary} is not installed (Debian etcd-server: 'make deps')")
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.dir = tempfile.mkdtemp(prefix="rtdb-bench-etcd-", dir=base)
        client, peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        setpriv = shutil.which("setpriv")
        argv = [
            *([setpriv, "--pdeathsig", "TERM"] if setpriv else []),
            exe,
            "--name=bench",
            f"--data-dir={self.dir}/data",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=bench={peer_url}",
            f"--max-txn-ops={MAX_TXN_OPS}",
            f"--max-request-bytes={MAX_REQUEST_BYTES}",
            "--logger=zap",
            "--log-level=warn",
        ]
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.pid = self._proc.pid
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        import etcd3

        host, port = self.url.rsplit("//", 1)[1].split(":")
        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise EtcdError(
                    f"etcd exited at once (status {self._proc.returncode}): {self._tail()}"
                )
            client = etcd3.client(host=host, port=int(port), timeout=2)
            try:
                client.status()
                return
            except Exception as exc:  # not listening yet
                last = exc
            finally:
                client.close()
            time.sleep(0.1)
        raise EtcdError(f"etcd did not answer within {START_TIMEOUT:.0f}s ({last}): {self._tail()}")

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:].strip()
        except OSError:
            return "(no log)"

    def running(self) -> bool:
        """True while the recorded PID runs etcd, or setpriv about to exec it
        (never a reused PID)."""
        if not self.pid:
            return False
        try:
            argv0 = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0", 1)[0]
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return False
        return state not in ("Z", "X") and os.path.basename(argv0) in (b"etcd", b"setpriv")

    def stop(self) -> None:
        """Stop the recorded PID and remove the data directory; safe to repeat."""
        if self.running():
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            while self.running() and time.monotonic() < deadline:
                if self._proc is not None and self._proc.poll() is not None:
                    break
                time.sleep(0.05)
            if self.running():
                os.kill(self.pid, signal.SIGKILL)
        if self._proc is not None:
            try:
                self._proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
            self._proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

"""Host-local delivery of the "G" a lock's giver sends to a waiter's inbox.

localwake design:
- A process makes an inbox (wakeup.py: an object in RADOS, watched) the
  first time one of its lock requests has to queue. With it, it binds a
  datagram socket in the abstract UNIX namespace, named after the inbox
  (``radostdb.inbox.<16 hex>``: 64 random bits, so the name is that
  inbox's alone), and reads it on a thread of its own (``Receiver``).
- A giver sends its "G" to that name first (``Sender``). When the name is
  bound in the giver's network namespace, the waiter is a process of this
  host: the kernel delivers the message in microseconds, and no notify is
  sent. A notify goes through the OSD and its watch machinery: 0.5-1 ms
  between a giver's send and the waiter's callback on the bench machine,
  while the next holder of a hot record waits. When the name is not bound
  (the waiter is on another host, in another network namespace, or gone),
  the socket is full, or the message is longer than MESSAGE_MAX, the giver
  sends the notify as before. A "G" only wakes its waiter; the lock table
  in RADOS stays the truth (wakeup.py), so which way it came changes
  nothing else.
- Trust: an abstract socket has no file permissions; any local process
  can send to it. The receiver asks the kernel for each sender's
  credentials (SO_PASSCRED) and drops messages from any uid but its own
  and root's: a "G" is believed from those who could read the cluster's
  keyring as we do, as a notify is from those who hold a key.
- Fork: a child closes its copy of the parent's sockets (the parent keeps
  them bound and reads them) and binds its own with its own inboxes; exec
  closes them (SOCK_CLOEXEC). Closing an inbox closes its socket: the name
  is free at once.
- ``RADOSTDB_LOCAL_WAKE=0`` turns it off: every "G" goes by notify.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Callable

ENV = "RADOSTDB_LOCAL_WAKE"
MESSAGE_MAX = 32 << 10  # bytes of a "G" sent by socket at most (a full one is about 22 KiB)
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid


def enabled() -> bool:
    """Is host-local delivery on (``RADOSTDB_LOCAL_WAKE`` is not "0")?"""
    return os.environ.get(ENV, "1") != "0"


def address(number: int) -> str:
    """The abstract socket name of inbox ``number``."""
    return f"\0radostdb.inbox.{number:016x}"


def _sender_uid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS) and len(
            data
        ) >= _UCRED.size:
            return int(_UCRED.unpack_from(data)[1])
    return None


class Receiver:
    """One inbox's socket, and the thread that hands what it reads to
    ``deliver`` (from a trusted sender, whole)."""

    def __init__(self, number: int, deliver: Callable[[bytes], None]) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            sock.bind(address(number))
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.deliver = deliver
        self.closed = False
        self.thread = threading.Thread(
            target=self._run, name=f"radostdb-inbox-{number:016x}", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        trusted = {os.geteuid(), 0}
        sock = self.sock
        space = socket.CMSG_SPACE(_UCRED.size)
        try:
            while not self.closed:
                try:
                    data, ancillary, flags, _ = sock.recvmsg(MESSAGE_MAX + 1, space)
                except InterruptedError:
                    continue
                except OSError:
                    return
                if self.closed:
                    return
                if flags & socket.MSG_TRUNC or _sender_uid(ancillary) not in trusted:
                    continue
                try:
                    self.deliver(data)
                except Exception:  # a bad message must not end the inbox's delivery
                    continue
        finally:
            sock.close()  # the name is free once the thread is out

    def close(self) -> None:
        """Stop reading and free the name (the thread closes the socket)."""
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread's recvmsg
        except OSError:
            self.sock.close()

    def forget(self) -> None:
        """In a forked child: close our copy (the parent still reads it)."""
        self.closed = True
        self.sock.close()


class Sender:
    """Sends "G"s to the inboxes bound on this host (one socket per process)."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.lock = threading.Lock()

    def send(self, number: int, msg: bytes) -> bool:
        """Deliver ``msg`` to inbox ``number`` on this host; False when it
        cannot be (not bound here, full, too long, or turned off): send the
        notify then."""
        if len(msg) > MESSAGE_MAX or not enabled():
            return False
        sock = self.sock
        if sock is None:
            with self.lock:
                if self.sock is None:
                    self.sock = socket.socket(
                        socket.AF_UNIX,
                        socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK,
                    )
                sock = self.sock
        try:
            sock.sendto(msg, address(number))
        except OSError:
            return False
        return True

    def forget(self) -> None:
        """In a forked child: make our own socket when we first send."""
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.lock = threading.Lock()

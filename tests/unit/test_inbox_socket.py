"""The inbox socket (localwake.py) believes only its own user and root: the
same message sent by user nobody is dropped, sent by us it is delivered."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from radostdb import localwake

NOBODY = 65534
SEND = """
import socket, sys
sys.path.insert(0, sys.argv[3])
from radostdb.localwake import address
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(sys.argv[2].encode(), address(int(sys.argv[1])))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="sending as another user needs root")
def test_a_message_from_another_user_is_dropped() -> None:
    number = int.from_bytes(os.urandom(8), "little") | 1
    got: list[bytes] = []
    ours = threading.Event()

    def deliver(msg: bytes) -> None:
        got.append(msg)
        if msg == b"from us":
            ours.set()

    receiver = localwake.Receiver(number, deliver)
    root = os.path.dirname(os.path.dirname(localwake.__file__))
    try:
        for user, msg in ((NOBODY, "from nobody"), (None, "from us")):
            subprocess.run(
                [sys.executable, "-c", SEND, str(number), msg, root],
                check=True,
                user=user,
                timeout=30,
            )
        assert ours.wait(10)  # sent after nobody's: nobody's came first or not at all
    finally:
        receiver.close()
    assert got == [b"from us"]

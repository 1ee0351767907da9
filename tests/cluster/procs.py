"""Worker processes for the multi-process tests, started as a fresh
interpreter (``spawn``) or forked (``fork``) from a process that has used
radostdb, as Samba's smbd forks its children.

- ``python(code, env, *args, method=...)`` runs ``code`` (dedented) as the
  worker. With ``fork`` it first runs :data:`ZYGOTE`: the process opens a
  database of its own, stores, commits a transaction (its transaction lock
  stays cached) and holds a record lock, so its lock-service thread runs;
  then it forks, and the CHILD runs ``code`` (stdin, stdout and stderr are
  inherited), while the parent waits for it with its handles open and ends
  as the child ended (its exit code, or killed by the same signal).
- Every worker leads a process group of its own: :func:`signal` sends to
  the group, so ``kill -9`` or SIGSTOP reach the worker however it was
  started (with ``fork`` they reach its parent too, whose state lives in a
  database of its own).
- ``line``/``expect``/``say``/``finish`` talk to workers line by line.
- With ``RADOSTDB_TEST_CRASH_AT`` in ``env`` the worker installs that crash
  point (crashpoints.py) before its code runs.
- :data:`LOCKER` is the hot-record worker several tests share.
"""

from __future__ import annotations

import os
import queue
import signal as signals
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import crashpoints
import pytest

METHODS = ("spawn", "fork")

ZYGOTE = """\
def _radostdb_zygote():
    import os, radostdb
    db = radostdb.Tdb(os.environ["RADOSTDB_ZYGOTE_DB"], 0, 0, os.O_RDWR | os.O_CREAT)
    db.store(b"zygote", b"1")
    with db.transaction():  # the transaction lock stays cached across the fork
        db.store(b"txn", b"1")
    db.chainlock(b"held")  # held across the fork: the service thread renews it
    pid = os.fork()
    if pid == 0:
        return db  # the worker: the handle is inherited, never used
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    db.chainunlock(b"held")
    db.close()
    if code < 0:  # die as the worker died, so that the test sees its signal
        import signal
        if -code not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)
_radostdb_inherited = _radostdb_zygote()
"""

# A hot-record worker: ``DB END [START [MODE]]``: from the agreed START (a
# time.time(); 0: at once) to END it loops +1 on b"hot", with chainlock ->
# get -> store -> chainunlock, or (MODE do_locked) Tdb.do_locked, no think
# time; then prints its count.
LOCKER = """
    import os, sys, time, radostdb
    db = radostdb.Tdb(sys.argv[1], 0, 0, os.O_RDWR)
    end = float(sys.argv[2])
    start = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    mode = sys.argv[4] if len(sys.argv) > 4 else "chainlock"
    if start:
        assert time.time() < start, "opened after the agreed start"
        time.sleep(start - time.time())

    def bump(rec):
        rec.store(b"%d" % (int(rec.value) + 1))

    n = 0
    while time.time() < end:
        if mode == "do_locked":
            db.do_locked(b"hot", bump)
        else:
            db.chainlock(b"hot")
            db.store(b"hot", b"%d" % (int(db[b"hot"]) + 1))
            db.chainunlock(b"hot")
        n += 1
    print(n, flush=True)
"""

_lines: dict[int, queue.Queue[str]] = {}


def python(
    code: str, env: dict[str, str], *args: str, method: str = "spawn"
) -> subprocess.Popen[str]:
    """Start a worker running ``code`` with ``args`` (see the module comment)."""
    if method not in METHODS:
        raise ValueError(f"unknown start method {method!r}")
    source = textwrap.dedent(code)
    env = dict(env)
    if env.get(crashpoints.ENV):  # the worker (never the zygote) dies at that step
        source = crashpoints.prelude() + source
    if method == "fork":
        source = ZYGOTE + source
        env["RADOSTDB_ZYGOTE_DB"] = f"zygote-{uuid.uuid4().hex[:12]}"
    return subprocess.Popen(
        [sys.executable, "-c", source, *args],
        env=env,
        start_new_session=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def signal(proc: subprocess.Popen[str], sig: int) -> None:
    """Send ``sig`` to the worker (its process group)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def kill(proc: subprocess.Popen[str]) -> None:
    """kill -9 the worker and reap it."""
    signal(proc, signals.SIGKILL)
    proc.wait()


def line(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """The worker's next stdout line ("<timeout>" if none came in time; ""
    at its end). One reader thread per worker, so a line is never lost."""
    q = _lines.get(proc.pid)
    if q is None:
        q = _lines[proc.pid] = queue.Queue()
        out = proc.stdout
        assert out is not None

        def pump() -> None:
            for text in iter(out.readline, ""):
                q.put(text)
            q.put("")

        threading.Thread(target=pump, daemon=True).start()
    try:
        return q.get(timeout=timeout).strip()
    except queue.Empty:
        return "<timeout>"


def expect(proc: subprocess.Popen[str], want: str, timeout: float = 60) -> float:
    """Wait for the line ``want`` from the worker; returns when it came (monotonic)."""
    got = line(proc, timeout)
    if got != want:
        kill(proc)
        err = proc.stderr.read() if proc.stderr else ""
        pytest.fail(f"expected {want!r} from the worker, got {got!r}; stderr:\n{err}")
    return time.monotonic()


def say(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(text + "\n")
    proc.stdin.flush()


def finish(procs: list[subprocess.Popen[str]], timeout: float = 120) -> list[str]:
    """Wait for every worker (it must exit 0); their remaining output."""
    outs = []
    for p in procs:
        if p.pid in _lines:  # its stdout is read by a pump thread
            assert p.stdin is not None
            p.stdin.close()
            texts = []
            while (text := line(p, timeout)) not in ("", "<timeout>"):
                texts.append(text)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                kill(p)
            err = p.stderr.read() if p.stderr else ""
            out = "\n".join(texts)
        else:
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill(p)
                out, err = p.communicate()
                pytest.fail(f"a worker hung; stderr:\n{err}")
        assert p.returncode == 0, err
        outs.append(out.strip())
    return outs

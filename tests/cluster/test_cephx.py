"""cephx in practice: what a read-only client can and cannot do, the exact caps
a read-write radostdb client needs, and namespace confinement through radostdb.

Every operation of a restricted client runs in a child process with a time
limit, so a call that hangs fails the test (and says which call) instead of
hanging the suite. The raw python-rados namespace test lives in
test_devcluster.py; the one here goes through radostdb and its CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rados

import radostdb
from radostdb.errors import ERR_EINVAL, ERR_RDONLY
from radostdb.testing import ClusterInfo

CREATE = os.O_CREAT | os.O_RDWR
OP_LIMIT = 90.0  # seconds a restricted client's whole run may take
RECORDS = {b"k%03d" % i: b"v%03d" % i for i in range(40)}  # over every shard

# The caps README.rst documents for a read-write client (broad, and naming
# the two object classes radostdb calls), and for a reader.
RW_CAPS = ("allow r", "allow rwx pool={pool}")
RW_CLASS_CAPS = (
    "allow r",
    "allow rw pool={pool}, allow pool={pool} class radostdb, allow pool={pool} class lock",
)
RW_NS_CAPS = ("allow r", "allow rwx pool={pool} namespace={ns}")
RO_CAPS = ("allow r", "allow r pool={pool}, allow class-read pool={pool}")


@dataclass
class Client:
    """A cephx client made for one test: its id and a ceph.conf naming its key."""

    client_id: str
    conf: str
    pool: str

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(CEPH_CONF=self.conf, RADOSTDB_ID=self.client_id, RADOSTDB_POOL=self.pool)
        env.pop("RADOSTDB_OP_TIMEOUT", None)  # show what a user gets: no timeout set
        return env


@pytest.fixture
def make_client(
    ceph_cluster: ClusterInfo, rados_client: rados.Rados, scratch_dir: str
) -> Iterator[Callable[..., Client]]:
    """make_client(mon_caps, osd_caps, ns=...) -> a Client with exactly those caps."""
    made: list[str] = []

    def make(mon: str, osd: str, ns: str = "") -> Client:
        cid = f"rtdb-{uuid.uuid4().hex[:10]}"
        entity = f"client.{cid}"
        osd = osd.format(pool=ceph_cluster.pool, ns=ns)
        ret, out, err = rados_client.mon_command(
            json.dumps(
                {
                    "prefix": "auth get-or-create",
                    "entity": entity,
                    "caps": ["mon", mon, "osd", osd],
                    "format": "plain",
                }
            ),
            b"",
        )
        assert ret == 0, f"cannot create {entity} (caps mon {mon!r} osd {osd!r}): {err}"
        made.append(entity)
        keyring = Path(scratch_dir) / f"{cid}.keyring"
        keyring.write_bytes(out)
        conf = Path(scratch_dir) / f"{cid}.conf"
        conf.write_text(
            Path(ceph_cluster.conf).read_text() + f"\n[{entity}]\nkeyring = {keyring}\n"
        )
        return Client(cid, str(conf), ceph_cluster.pool)

    yield make
    for entity in made:
        rados_client.mon_command(json.dumps({"prefix": "auth rm", "entity": entity}), b"")


PROBE = """
    import json, os, sys, time, traceback, radostdb
    spec = json.loads(sys.argv[1])
    db = None
    def run(op):
        global db
        if op == "open":
            db = radostdb.Tdb(spec["name"], 0, spec.get("tdb_flags", 0), spec["flags"],
                              namespace=spec.get("ns") or None, lock_lease=5)
            return None
        if op == "fetch":
            return db.get(b"k001").decode()
        if op == "traverse":
            return len(list(db.items()))
        if op == "store":
            db.store(b"k001", b"changed")
            return db.get(b"k001").decode()
        if op == "append":
            db.append(b"k002", b"+")
            return db.get(b"k002").decode()
        if op == "delete":
            db.delete(b"k003")
            return db.get(b"k003")
        if op == "chainlock":
            db.chainlock(b"k004")
            db.store(b"k004", b"locked")
            db.chainunlock(b"k004")
            return db.get(b"k004").decode()
        if op == "fetch_locked":
            value = db.fetch_locked(b"k005").decode()
            db.chainunlock(b"k005")
            return value
        if op == "chainlock_read":
            db.chainlock_read(b"k006")
            db.chainunlock_read(b"k006")
            return None
        if op == "lock_all":
            db.lock_all()
            db.unlock_all()
            return None
        if op == "transaction":
            with db.transaction():
                for i in range(10, 40):
                    db.store(b"k%03d" % i, b"t%03d" % i)
            return sorted(db[b"k%03d" % i].decode() for i in range(10, 40))[0]
        if op == "transaction_start":
            db.transaction_start()
            db.transaction_cancel()
            return None
        if op == "close":
            db.close()
            return None
        raise ValueError(op)
    for op in spec["ops"]:
        print(json.dumps({"start": op}), flush=True)
        t0 = time.monotonic()
        try:
            value = run(op)
            out = {"op": op, "ok": True, "value": value}
        except BaseException as exc:
            out = {"op": op, "ok": False, "type": type(exc).__name__,
                   "tdb": isinstance(exc, radostdb.TdbError),
                   "args": [a if isinstance(a, (int, str)) else repr(a) for a in exc.args]}
        out["seconds"] = round(time.monotonic() - t0, 3)
        print(json.dumps(out), flush=True)
    print(json.dumps({"exit": "clean"}), flush=True)
"""


def probe(
    client: Client,
    name: str,
    ops: list[str],
    flags: int = os.O_RDWR,
    tdb_flags: int = 0,
    ns: str = "",
) -> dict[str, dict[str, Any]]:
    """Run ``ops`` as ``client`` in a child process; the outcome of each by name.

    A child that does not finish within OP_LIMIT seconds fails the test,
    naming the call it was in."""
    spec = {"name": name, "ops": ops, "flags": flags, "tdb_flags": tdb_flags, "ns": ns}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PROBE), json.dumps(spec)],
        env=client.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=OP_LIMIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        lines = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
        stuck = lines[-1].get("start") if lines else "<before the first call>"
        pytest.fail(
            f"client.{client.client_id} hung: {stuck!r} did not return within {OP_LIMIT:.0f}s "
            f"(outcomes so far: {lines}); stderr:\n{err[-3000:]}"
        )
    lines = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
    assert proc.returncode == 0 and lines and lines[-1] == {"exit": "clean"}, (
        proc.returncode,
        lines,
        err[-3000:],
    )
    return {ln["op"]: ln for ln in lines if "op" in ln}


def refused(outcome: dict[str, Any]) -> bool:
    """True for TDB's read-only error or a permission error (EPERM/EACCES)."""
    if outcome["ok"]:
        return False
    if outcome["tdb"]:
        return outcome["args"][0] == ERR_RDONLY
    return outcome["type"] == "PermissionError"


def cli(client: Client, *args: str, ns: str = "") -> subprocess.CompletedProcess[str]:
    """``radostdb ARGS`` as ``client``, in a real process with a time limit."""
    argv = [sys.executable, "-m", "radostdb.cli", "--timeout", "30"]
    if ns:
        argv += ["--namespace", ns]
    try:
        return subprocess.run(
            argv + list(args),
            env=client.env(),
            capture_output=True,
            text=True,
            timeout=OP_LIMIT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"'radostdb {' '.join(args)}' as client.{client.client_id} hung: {exc}")


def fill(name: str, namespace: str = "") -> None:
    db = radostdb.Tdb(name, 8, 0, CREATE, namespace=namespace or None)
    with db.transaction():
        for k, v in RECORDS.items():
            db.store(k, v)
    db.close()


WRITES = [
    "store",
    "append",
    "delete",
    "chainlock",
    "fetch_locked",
    "chainlock_read",
    "lock_all",
    "transaction_start",
    "transaction",
]


def test_read_only_client_reads_and_is_refused_writes(
    make_client: Callable[..., Client], db_name: str
) -> None:
    """Caps ``osd 'allow r, allow class-read'``, database opened O_RDWR (as
    code written for tdb does): fetch and traverse work; every write, lock and
    transaction is refused with TDB's read-only error or a permission error,
    promptly; the records are unchanged."""
    fill(db_name)
    client = make_client(*RO_CAPS)
    got = probe(client, db_name, ["open", "fetch", "traverse", *WRITES, "close"])
    assert got["open"]["ok"], f"open refused: {got['open']}"
    assert got["fetch"] == {**got["fetch"], "ok": True, "value": "v001"}
    assert got["traverse"] == {**got["traverse"], "ok": True, "value": len(RECORDS)}
    wrong = {op: got[op] for op in WRITES if not refused(got[op])}
    assert not wrong, f"not refused with TDB's read-only or a permission error: {wrong}"
    assert got["close"]["ok"], got["close"]
    assert dict(radostdb.Tdb(db_name).items()) == RECORDS


def test_read_only_client_opened_read_only(
    make_client: Callable[..., Client], db_name: str
) -> None:
    """The same client opening O_RDONLY: reads work, writes get TDB's
    read-only error without asking the cluster."""
    fill(db_name)
    client = make_client(*RO_CAPS)
    got = probe(
        client,
        db_name,
        ["open", "fetch", "traverse", "store", "transaction_start", "close"],
        flags=os.O_RDONLY,
    )
    assert got["open"]["ok"] and got["close"]["ok"], got
    assert (got["fetch"]["value"], got["traverse"]["value"]) == ("v001", len(RECORDS))
    # as tdb on a read-only handle: a write is 10, a transaction 9
    assert got["store"]["tdb"] and got["store"]["args"][0] == ERR_RDONLY, got["store"]
    assert got["transaction_start"]["tdb"], got["transaction_start"]
    assert got["transaction_start"]["args"][0] == ERR_EINVAL, got["transaction_start"]


def test_read_only_client_cli(make_client: Callable[..., Client], db_name: str) -> None:
    """The CLI with read-only caps: get, dump, info and check work; store
    fails with one 'Error:' line (exit 1), not a traceback or a hang."""
    fill(db_name)
    client = make_client(*RO_CAPS)
    for args in (
        ["get", db_name, "k001"],
        ["dump", db_name],
        ["info", db_name],
        ["check", db_name],
    ):
        r = cli(client, *args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    assert cli(client, "get", db_name, "k001").stdout == "v001"  # the bytes as they are
    r = cli(client, "store", db_name, "k001", "changed")
    assert r.returncode == 1 and r.stderr.startswith("Error: "), (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert radostdb.Tdb(db_name)[b"k001"] == b"v001"


ALL_OPS = [
    "open",
    "fetch",
    "traverse",
    "store",
    "append",
    "delete",
    "chainlock",
    "fetch_locked",
    "chainlock_read",
    "lock_all",
    "transaction_start",
    "transaction",
    "close",
]
EXPECTED = {
    "fetch": "v001",
    "traverse": len(RECORDS),
    "store": "changed",
    "append": "v002+",
    "delete": None,
    "chainlock": "locked",
    "fetch_locked": "v005",
    "transaction": "t010",
}


def _can_do_everything(client: Client, name: str, ns: str = "") -> None:
    got = probe(client, name, ALL_OPS, flags=CREATE, ns=ns)
    failed = {op: o for op, o in got.items() if not o["ok"]}
    assert not failed, f"client.{client.client_id} was refused: {failed}"
    for op, value in EXPECTED.items():
        assert got[op]["value"] == value, got[op]
    # CLEAR_IF_FIRST: the first opener wipes the records
    got = probe(
        client,
        name,
        ["open", "traverse", "store", "close"],
        flags=CREATE,
        tdb_flags=radostdb.CLEAR_IF_FIRST,
        ns=ns,
    )
    assert all(o["ok"] for o in got.values()), got
    assert got["traverse"]["value"] == 0
    for args in (
        ["ls"],
        ["info", name],
        ["check", name],
        ["dump", name],
        ["store", name, "cli", "yes"],
        ["get", name, "cli"],
    ):
        r = cli(client, *args, ns=ns)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    assert name in cli(client, "ls", ns=ns).stdout


def test_clear_if_first_needs_the_lock_class(
    make_client: Callable[..., Client], db_name: str
) -> None:
    """Why the documented caps name the stock ``lock`` class: without it
    records, locks and transactions work, but a CLEAR_IF_FIRST open (which
    serialises on a RADOS lock) is refused with a permission error."""
    fill(db_name)
    client = make_client("allow r", "allow rw pool={pool}, allow pool={pool} class radostdb")
    got = probe(client, db_name, ["open", "store", "chainlock", "transaction", "close"])
    assert all(o["ok"] for o in got.values()), got
    got = probe(client, db_name, ["open"], tdb_flags=radostdb.CLEAR_IF_FIRST)
    assert got["open"]["type"] == "PermissionError", got


@pytest.mark.parametrize("caps", [RW_CAPS, RW_CLASS_CAPS], ids=["rwx", "rw-classes"])
def test_read_write_caps_are_enough(
    make_client: Callable[..., Client], db_name: str, caps: tuple[str, str]
) -> None:
    """A client with exactly the documented caps (``mon 'allow r' osd 'allow
    rwx pool=P'``, or ``rw`` plus the classes ``radostdb`` and ``lock``)
    creates a database and uses all of radostdb: records, locks,
    transactions, CLEAR_IF_FIRST, and the CLI's ls, info, check."""
    client = make_client(*caps)
    fill(db_name)
    _can_do_everything(client, db_name)
    fresh = f"{db_name}-new"
    got = probe(client, fresh, ["open", "store", "transaction", "close"], flags=CREATE)
    assert all(o["ok"] for o in got.values()), got


def test_namespace_confined_client(make_client: Callable[..., Client], db_name: str) -> None:
    """``osd 'allow rwx pool=P namespace=N'``: a full radostdb client inside N;
    outside N, opening a database is refused with a permission error (no
    hang), and the CLI says so in one line."""
    ns = f"ns-{uuid.uuid4().hex[:8]}"
    client = make_client(*RW_NS_CAPS, ns=ns)
    fill(db_name, namespace=ns)
    fill(db_name)  # the same name outside the namespace
    _can_do_everything(client, db_name, ns=ns)
    for other in ("", f"{ns}-other"):
        got = probe(client, db_name, ["open"], flags=CREATE, ns=other)
        assert got["open"]["type"] == "PermissionError", got
        r = cli(client, "get", db_name, "k001", ns=other)
        assert r.returncode == 1 and r.stderr.startswith("Error: "), (r.stdout, r.stderr)
        assert r.stderr.count("\n") == 1, r.stderr
    assert radostdb.Tdb(db_name)[b"k001"] == b"v001"  # untouched outside

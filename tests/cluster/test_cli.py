"""The ``radostdb`` command line on a real cluster.

Every command, its error paths (exit status and message), and the round
trips against Samba's tdbdump/tdbrestore and real .tdb files. ``--help`` and
the errors given before any connection are in tests/unit/test_cli_args.py.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import crashpoints
import pytest
import rados
import tdb
from helpers import error, make_db, ok

import radostdb
from radostdb import admin, codec, layout, tdbdump, wakeup
from radostdb.testing import ClusterInfo

CREATE = os.O_CREAT | os.O_RDWR
MIB = 1 << 20
RADOSTDB = f"{shlex.quote(sys.executable)} -m radostdb.cli"  # the CLI in a real process


def info_fields(text: str) -> dict[str, str]:
    """The ``field: value`` lines of ``radostdb info``."""
    return dict(
        (k, v.strip())
        for k, _, v in (ln.partition(":") for ln in text.splitlines())
        if not k.startswith(" ")
    )


def dump_blocks(text: bytes) -> list[bytes]:
    """A tdbdump output split into its record blocks ("{\\n…}\\n"), sorted."""
    blocks = re.findall(rb"\{\n.*?\n\}\n", text, re.DOTALL)
    assert sum(len(b) for b in blocks) == len(text), "text outside record blocks"
    return sorted(blocks)


def tdbdump_file(path: str | Path, *args: str) -> bytes:
    return subprocess.run(["tdbdump", *args, str(path)], check=True, capture_output=True).stdout


# -- finding the cluster, pool and database --------------------------------------------
def test_missing_conf_says_which(cli: Any) -> None:
    error(
        cli("--conf", "/nonexistent/ceph.conf", "ls"),
        "no Ceph configuration file at /nonexistent/ceph.conf",
        "--conf",
        "CEPH_CONF",
    )


def test_unreachable_cluster_says_which(
    cli: Any, scratch_dir: str, ceph_cluster: ClusterInfo
) -> None:
    conf = Path(scratch_dir) / "dead.conf"
    keyring = Path(ceph_cluster.conf).parent / f"ceph.client.{ceph_cluster.client_id}.keyring"
    conf.write_text(f"[global]\nmon_host = 127.0.0.1:1\nkeyring = {keyring}\n")
    error(
        cli("--conf", str(conf), "--timeout", "2", "ls"),
        f"cannot connect to the Ceph cluster of {conf} as client.{ceph_cluster.client_id}",
    )


def test_unknown_client_says_which(cli: Any) -> None:
    error(cli("--id", "nobody-xyz", "--timeout", "5", "ls"), "as client.nobody-xyz")


def test_missing_pool_says_which_and_how(cli: Any) -> None:
    error(
        cli("--pool", "no-such-pool-xyz", "ls"),
        "pool 'no-such-pool-xyz' does not exist",
        "ceph osd pool create no-such-pool-xyz",
    )


@pytest.mark.parametrize(
    "args",
    [
        ("info", "{}"),
        ("dump", "{}"),
        ("dump", "{}", "-k", "k"),
        ("get", "{}", "k"),
        ("store", "{}", "k", "v"),
        ("append", "{}", "k", "v"),
        ("delete", "{}", "k"),
        ("check", "{}"),
        ("wipe", "--yes", "{}"),
        ("rm", "--yes", "{}"),
        ("export", "{}", "{file}"),
    ],
    ids=lambda a: a[0],
)
def test_missing_database_says_which_and_how(
    cli: Any, db_name: str, scratch_dir: str, ceph_cluster: ClusterInfo, args: tuple[str, ...]
) -> None:
    out = os.path.join(scratch_dir, "out.tdb")
    argv = [a.format(db_name, file=out) for a in args]
    error(
        cli(*argv),
        f"database {db_name!r} does not exist in pool {ceph_cluster.pool!r}",
        "radostdb ls",
    )
    assert not os.path.exists(out)
    assert not admin.exists(admin.connect(), db_name), "nothing was created"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("rados://pool/name", "--pool and --namespace"),
        ("x" * 4096, "4096 bytes long; the limit is 4095"),
        ("/tmp/", "names a directory"),
        ("a\0b", "null character"),
    ],
    ids=["empty", "url", "too-long", "directory", "nul"],
)
def test_bad_database_name_is_a_usage_error(cli: Any, name: str, why: str) -> None:
    error(cli("get", name, "k"), "Invalid value for 'NAME'", why, code=2)


def test_namespace_keeps_databases_apart(cli: Any, db_name: str) -> None:
    empty = ok(cli("--namespace", f"empty-{db_name}", "ls"))
    assert empty.stdout == "" and "no databases in pool" in empty.stderr
    ok(cli("--namespace", "ns-cli", "store", "--create", db_name, "k", "v"))
    assert db_name not in ok(cli("ls")).stdout
    assert db_name in ok(cli("--namespace", "ns-cli", "ls")).stdout
    error(cli("get", db_name, "k"), "does not exist in pool")
    assert ok(cli("--namespace", "ns-cli", "get", db_name, "k")).stdout == "v"
    ok(cli("--namespace", "ns-cli", "rm", "--yes", db_name))


# -- single records -------------------------------------------------------------------
def test_store_get_append_delete(cli: Any, db_name: str, scratch_dir: str) -> None:
    error(cli("store", db_name, "k", "v"), "does not exist")
    ok(cli("store", "--create", db_name, "greeting", "hello"))
    assert ok(cli("get", db_name, "greeting")).stdout_bytes == b"hello"
    ok(cli("append", db_name, "greeting", " world"))
    assert ok(cli("get", db_name, "greeting")).stdout_bytes == b"hello world"
    ok(cli("store", "--hex", db_name, "6b00", "00ff0a"))
    assert ok(cli("get", db_name, "--hex", "6b00")).stdout == "00ff0a\n"
    blob = bytes(range(256)) * 10
    path = Path(scratch_dir) / "blob"
    path.write_bytes(blob)
    ok(cli("store", db_name, f"@{path}", f"@{path}"))
    assert ok(cli("get", db_name, f"@{path}")).stdout_bytes == blob
    ok(cli("append", db_name, "piped", "@-", input=b"\x00\x01"))
    ok(cli("append", db_name, "piped", "@-", input=b"\x02"))
    assert ok(cli("get", db_name, "piped")).stdout_bytes == b"\x00\x01\x02"
    ok(cli("store", db_name, "@@at", "@@value"))
    assert ok(cli("get", db_name, "@@at")).stdout == "@value"
    db = radostdb.Tdb(db_name)
    assert db[b"@at"] == b"@value" and db[b"k\x00"] == b"\x00\xff\x0a"
    db.close()
    ok(cli("delete", db_name, "greeting"))
    error(cli("get", db_name, "greeting"), 'key "greeting" not found')
    error(cli("delete", db_name, "greeting"), 'key "greeting" does not exist')


def test_insert_and_modify(cli: Any, db_name: str) -> None:
    ok(cli("store", "--create", "--insert", db_name, "k", "1"))
    error(cli("store", "--insert", db_name, "k", "2"), 'key "k" already exists', "--insert")
    error(cli("store", "--modify", db_name, "nokey", "2"), 'key "nokey" does not exist', "--modify")
    ok(cli("store", "--modify", db_name, "k", "3"))
    assert ok(cli("get", db_name, "k")).stdout == "3"


def test_bad_key_arguments_are_usage_errors(cli: Any, db_name: str) -> None:
    make_db(db_name, {b"k": b"v"})
    error(cli("get", "--hex", db_name, "zz"), "is not hex", code=2)
    error(cli("get", db_name, "@/nonexistent/file"), "cannot read /nonexistent/file", code=2)
    error(cli("store", db_name, "k", "@/nonexistent/file"), "VALUE", code=2)
    error(cli("get", db_name), "Missing argument 'KEY'", code=2)


def test_broken_pipe_ends_quietly(ceph_cluster: ClusterInfo, db_name: str) -> None:
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    with db.transaction():
        for i in range(20000):
            db.store(b"key%05d" % i, b"x" * 100)
    db.close()
    proc = subprocess.run(
        f"{RADOSTDB} dump {db_name} | head -c 10",
        shell=True,
        capture_output=True,
        env=ceph_cluster.child_env(),
    )
    assert proc.stdout == b"{\nkey(8) =" and proc.stderr == b"", proc.stderr


# -- listing and info ------------------------------------------------------------------
def test_ls_and_info(cli: Any, db_name: str, ceph_cluster: ClusterInfo) -> None:
    # the first CLEAR_IF_FIRST handle clears: it opens before the records are stored
    holder = radostdb.Tdb(db_name, 0, radostdb.CLEAR_IF_FIRST, CREATE, shards=3)
    make_db(db_name, {b"a": b"12345", b"\x00": b""}, shards=3)
    line = next(ln for ln in ok(cli("ls")).stdout.splitlines() if ln.startswith(db_name + " "))
    assert line.split()[1:] == ["3", "2", str(1 + 5 + 1)]
    (entry,) = [d for d in json.loads(ok(cli("ls", "--json")).stdout) if d["name"] == db_name]
    assert entry["nshards"] == 3 and entry["records"] == 2 and entry["bytes"] == 7
    plain = radostdb.Tdb(db_name)  # not counted, as in tdb
    text = ok(cli("info", db_name)).stdout
    fields = info_fields(text)
    assert fields["name"] == db_name and fields["nshards"] == "3" and fields["records"] == "2"
    assert fields["open by"].startswith("1 CLEAR_IF_FIRST handle(s): client.")
    assert fields["locks"] == "0 held" and fields["transaction"] == "none unfinished"
    assert fields["problems"] == "none"
    info = json.loads(ok(cli("info", "--json", "--shards", db_name)).stdout)
    assert info["records"] == 2 and len(info["shards"]) == 3 and len(info["open_by"]) == 1
    assert info["seqnum"] == holder.seqnum
    holder.close()
    plain.close()


def test_inboxes_lists_and_prunes_the_dead_ones(cli: Any, db_name: str) -> None:
    """An inbox nobody watches (a process killed: here an object made as
    one) is listed as such and pruned; this process's own, watched, stays."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.chainlock(b"k")  # a blocking request: this process makes its inbox
    db.chainunlock(b"k")
    io = db._storage.shards[0].io()  # type: ignore[union-attr]
    mine = wakeup.inbox_name(wakeup.inbox(io))
    dead = wakeup.inbox_name(int.from_bytes(os.urandom(8), "little") | 1)
    io.write_full(dead, b"")
    rows = {r["obj"]: r for r in json.loads(ok(cli("inboxes", "--json")).stdout)}
    assert rows[mine]["watchers"] == 1 and rows[dead]["watchers"] == 0
    text = ok(cli("inboxes")).stdout
    assert f"{dead}         0" in text and "unwatched (left by processes that died)" in text
    rows = {r["obj"]: r for r in json.loads(ok(cli("inboxes", "--prune", "--json")).stdout)}
    assert rows[dead]["pruned"] and not rows[mine]["pruned"]
    with pytest.raises(rados.ObjectNotFound):
        io.stat(dead)
    io.stat(mine)
    db.close()


# -- dump / restore / import / export ------------------------------------------------
def tricky_records(n: int = 10_000, big: int = 3) -> dict[bytes, bytes]:
    """n records: binary keys with NUL bytes, the empty key, empty and 1 MiB values."""
    rng = random.Random(6)
    recs: dict[bytes, bytes] = {b"": b"the empty key", b"\x00": b"", b'"\\': b'"\\'}
    recs[b"SECRETS/SID/DOMAIN\x00"] = bytes(range(256))
    for i in range(big):
        recs[b"big%d\x00" % i] = rng.randbytes(MIB)
    while len(recs) < n:
        i = len(recs)
        key = rng.randbytes(rng.randrange(1, 24)) if i % 3 else b"user/%06d\x00" % i
        recs[key] = b"" if i % 7 == 0 else rng.randbytes(rng.randrange(1, 200))
    return recs


def write_tdb_file(path: Path, records: dict[bytes, bytes]) -> None:
    t = tdb.Tdb(str(path), 10007, tdb.DEFAULT, CREATE, 0o600)
    t.transaction_start()
    for k, v in records.items():
        t.store(k, v)
    t.transaction_commit()
    t.close()


@pytest.fixture(scope="module")
def tdb_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[bytes, bytes]]:
    recs = tricky_records()
    path = tmp_path_factory.mktemp("tdb") / "src.tdb"
    write_tdb_file(path, recs)
    return path, recs


def test_round_trips_with_real_tdbdump(
    cli: Any,
    db_name: str,
    scratch_dir: str,
    tdb_file: tuple[Path, dict[bytes, bytes]],
    ceph_cluster: ClusterInfo,
) -> None:
    path, recs = tdb_file
    reference = tdbdump_file(path)
    ref_blocks = dump_blocks(reference)
    assert len(ref_blocks) == len(recs) == 10_000

    result = ok(cli("import", str(path), db_name))
    assert result.stdout == "" and f"imported {len(recs)} records" in result.stderr
    dumped = ok(cli("dump", db_name)).stdout_bytes
    assert dump_blocks(dumped) == ref_blocks, "import + dump == tdbdump FILE"
    keys = [k for _, k, _ in tdbdump.parse(io.BytesIO(dumped))]
    assert keys == sorted(recs), "dump lists records in key order"

    exported = Path(scratch_dir) / "export.tdb"
    ok(cli("export", db_name, str(exported)))
    assert dump_blocks(tdbdump_file(exported)) == ref_blocks, "export + tdbdump == tdbdump FILE"

    # a real pipe from Samba's tdbdump into radostdb restore
    name2 = db_name + "-2"
    proc = subprocess.run(
        f"tdbdump {path} | {RADOSTDB} restore --quiet {name2}",
        shell=True,
        capture_output=True,
        env=ceph_cluster.child_env(),
    )
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    assert ok(cli("dump", name2)).stdout_bytes == dumped

    # and back into a real .tdb file with Samba's tdbrestore
    restored = Path(scratch_dir) / "restored.tdb"
    proc = subprocess.run(
        f"{RADOSTDB} dump {name2} | tdbrestore {restored}",
        shell=True,
        capture_output=True,
        env=ceph_cluster.child_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert dump_blocks(tdbdump_file(restored)) == ref_blocks

    text_key = "SECRETS/SID/DOMAIN"
    db = radostdb.Tdb(name2)
    db.store(text_key.encode(), b'value "quoted" \\ \x00\xff')
    db.close()
    t = tdb.Tdb(str(restored), 0, tdb.DEFAULT, os.O_RDWR)
    t.store(text_key.encode(), b'value "quoted" \\ \x00\xff')
    t.close()
    assert ok(cli("dump", name2, "-k", text_key)).stdout_bytes == tdbdump_file(
        restored, "-k", text_key
    )
    error(cli("dump", name2, "-k", "no-such-key"), 'key "no-such-key" not found')
    for name in (db_name, name2):
        # --force: this process's lock waits keep a watch on the header (locking.py)
        ok(cli("rm", "--yes", "--force", name))


def test_dump_of_an_empty_database_is_empty(cli: Any, db_name: str) -> None:
    make_db(db_name, {})
    assert ok(cli("dump", db_name)).stdout_bytes == b""


def test_restore_errors_name_the_line_and_write_nothing(
    cli: Any, db_name: str, tmp_path: Path
) -> None:
    good = b'{\nkey(1) = "a"\ndata(1) = "b"\n}\n'
    cases = [
        (good + b'{\nkey(2) = "c"\ndata(1) = "d"\n}\n', "line 6: key length 2"),
        (good + b'{\nkey(1) = "a"\ndata(1) = "d"\n}\n', 'line 5: key "a" appears a second'),
        (good + b"}\n", "line 5: expected '{'"),
        (good + b'{\nkey(1) = "a"\n', "line 7: unexpected end of input"),
        (good + b'{\nkey(1) = "\\zz"\n', "line 6: key: bad escape"),
        (good + b'{\ndata(1) = "a"\n', "line 6: expected key(LENGTH)"),
    ]
    for text, fragment in cases:
        error(cli("restore", db_name, input=text), fragment, "nothing was written")
        assert not admin.exists(admin.connect(), db_name)
    ok(cli("restore", db_name, input=good.replace(b'"b"', b'"\\62"')))  # hex escape
    assert radostdb.Tdb(db_name)[b"a"] == b"b"
    dump = tmp_path / "x.dump"
    dump.write_bytes(b'{\nkey(0) = ""\ndata(2) = "\\00\\0a"\n}\n')  # lowercase hex too
    ok(cli("restore", "-i", str(dump), db_name + "-2"))
    assert radostdb.Tdb(db_name + "-2")[b""] == b"\x00\n"


def test_restore_and_import_refuse_a_database_with_records(
    cli: Any, db_name: str, scratch_dir: str
) -> None:
    make_db(db_name, {b"old": b"1"})
    dump = b'{\nkey(3) = "new"\ndata(1) = "2"\n}\n'
    error(cli("restore", db_name, input=dump), "already has records", "--replace")
    path = Path(scratch_dir) / "one.tdb"
    write_tdb_file(path, {b"new": b"2"})
    error(cli("import", str(path), db_name), "already has records")
    assert radostdb.Tdb(db_name)[b"old"] == b"1"
    ok(cli("restore", "--replace", db_name, input=dump))
    assert list(radostdb.Tdb(db_name).items()) == [(b"new", b"2")]
    radostdb.Tdb(db_name).clear()
    ok(cli("import", "--quiet", str(path), db_name))  # empty: allowed
    assert list(radostdb.Tdb(db_name).items()) == [(b"new", b"2")]


def test_import_export_file_errors(cli: Any, db_name: str, scratch_dir: str) -> None:
    error(cli("import", "/nonexistent.tdb", db_name), "does not exist", code=2)
    bogus = Path(scratch_dir) / "bogus.tdb"
    bogus.write_bytes(b"not a tdb file at all" * 100)
    error(cli("import", str(bogus), db_name), f"cannot open {bogus} as a TDB file")
    assert not admin.exists(admin.connect(), db_name)
    make_db(db_name, {b"k": b"v"})
    error(cli("export", db_name, str(bogus)), "exists", "--force")
    assert bogus.read_bytes().startswith(b"not a tdb")
    ok(cli("export", "--force", "--quiet", db_name, str(bogus)))
    assert tdbdump_file(bogus) == b'{\nkey(1) = "k"\ndata(1) = "v"\n}\n'
    assert sorted(os.listdir(scratch_dir)) == ["bogus.tdb"], "no temporary file left"


def test_progress_and_quiet(cli: Any, db_name: str, scratch_dir: str) -> None:
    path = Path(scratch_dir) / "p.tdb"
    write_tdb_file(path, {b"k%d" % i: b"v" for i in range(5000)})
    result = ok(cli("import", "--progress", str(path), db_name))
    assert result.stdout == "" and "5000/5000" in result.stderr
    out = Path(scratch_dir) / "out.tdb"
    result = ok(cli("export", "--quiet", db_name, str(out)))
    assert result.stdout == "" and result.stderr == ""


# -- Samba paths --------------------------------------------------------------------------
@pytest.fixture
def samba_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory standing for /var/lib/samba, the current directory while the
    test runs; the databases its paths name are removed afterwards."""
    root = tmp_path.resolve() / "samba"
    (root / "private").mkdir(parents=True)
    monkeypatch.chdir(root)
    yield root
    site = admin.connect()
    for name in admin.database_names(site):
        if name.startswith(str(tmp_path.resolve())):
            admin.remove(site, name, force=True)


def test_import_stores_where_samba_looks(
    cli: Any, samba_tree: Path, tdb_file: tuple[Path, dict[bytes, bytes]]
) -> None:
    """'import FILE' names the database by FILE's absolute path: Samba code
    opening FILE through radostdb finds every record; 'export FILE' writes
    it back."""
    src, recs = tdb_file
    secrets = samba_tree / "private" / "secrets.tdb"
    write_tdb_file(secrets, recs)
    result = ok(cli("import", "--quiet", "private//./secrets.tdb"))  # relative, not normalised
    assert result.stderr == ""
    db = radostdb.Tdb(str(secrets))
    assert dict(db.items()) == recs, "every record, under the file's path"
    db.close()
    for spelling in (str(secrets), "private/secrets.tdb", "private/../private/secrets.tdb"):
        assert ok(cli("get", spelling, "--hex", "00")).stdout == recs[b"\x00"].hex() + "\n"
    line = next(ln for ln in ok(cli("ls")).stdout.splitlines() if ln.startswith(str(secrets)))
    assert line.split()[1:3] == ["8", str(len(recs))]
    fields = info_fields(ok(cli("info", "private/secrets.tdb")).stdout)
    assert fields["name"] == str(secrets) and fields["object"] == "radostdb.db." + str(secrets)

    error(cli("export", str(secrets)), "exists", "--force")
    secrets.unlink()
    ok(cli("export", "--quiet", "private/secrets.tdb"))  # back to where it came from
    assert dump_blocks(tdbdump_file(secrets)) == dump_blocks(tdbdump_file(src))
    copy = samba_tree / "copy.tdb"
    ok(cli("export", "--quiet", "private/secrets.tdb", str(copy)))  # NAME FILE, as before
    assert dump_blocks(tdbdump_file(copy)) == dump_blocks(tdbdump_file(src))
    error(cli("export", "a", "b", "c"), "expected [NAME] FILE", code=2)
    error(cli("export", "--force", str(samba_tree)), "is a directory", code=2)
    error(cli("export", "--force", f"{samba_tree}/"), "names a directory", code=2)
    ok(cli("rm", "--yes", "--force", "private/secrets.tdb"))
    assert not admin.exists(admin.connect(), str(secrets))


def test_import_name_and_long_paths(cli: Any, samba_tree: Path, db_name: str) -> None:
    one = samba_tree / "one"  # a file name that is not path-like on its own
    write_tdb_file(one, {b"k": b"v"})
    ok(cli("import", "--quiet", "one"))
    assert radostdb.Tdb(str(one))[b"k"] == b"v", "FILE is a path even without / or .tdb"
    ok(cli("import", "--quiet", "one", db_name))  # an explicit plain NAME stays plain
    assert radostdb.Tdb(db_name)[b"k"] == b"v"
    deep = samba_tree.joinpath(*["d" * 200] * 19)
    deep.mkdir(parents=True)
    long_file = deep / "registry.tdb"
    assert 3800 < len(str(long_file).encode()) < 4096
    write_tdb_file(long_file, {b"HKLM": b"x"})
    ok(cli("import", "--quiet", str(long_file)))
    listed = [ln.split()[0] for ln in ok(cli("ls")).stdout.splitlines()[1:]]
    assert str(long_file) in listed, "ls shows the full name of a hashed database"
    (entry,) = [
        d for d in json.loads(ok(cli("ls", "--json")).stdout) if d["name"] == str(long_file)
    ]
    assert entry["records"] == 1
    fields = info_fields(ok(cli("info", str(long_file))).stdout)
    assert fields["name"] == str(long_file) and fields["object"].startswith("radostdb.db#")
    assert ok(cli("get", str(long_file), "HKLM")).stdout == "x"
    ok(cli("rm", "--yes", str(long_file)))
    error(cli("get", str(long_file), "HKLM"), "does not exist")
    ok(cli("rm", "--yes", db_name))


def test_path_prefix_option(cli: Any, samba_tree: Path) -> None:
    key = f"/private-{samba_tree.parent.name}/x.tdb"  # the database name, under the prefix
    ok(cli("--path-prefix", str(samba_tree), "store", "--create", f"{samba_tree}{key}", "k", "v"))
    assert ok(cli("get", key, "k")).stdout == "v"
    other = samba_tree.parent / "elsewhere"
    assert ok(cli("--path-prefix", f"{other}/", "get", f"{other}{key}", "k")).stdout == "v"
    error(cli("--path-prefix", "relative", "ls"), "not an absolute path", code=2)
    ok(cli("rm", "--yes", key))


# -- check and repair ------------------------------------------------------------------
def _raw_get(ioctx: Any, obj: str, ek: str) -> bytes:
    with rados.ReadOpCtx() as op:
        it, _ = ioctx.get_omap_vals_by_keys(op, (ek,))
        ioctx.operate_read_op(op, obj)
        return dict(it)[ek]


def _raw_set(ioctx: Any, obj: str, ek: str, value: bytes) -> None:
    with rados.WriteOpCtx() as op:
        ioctx.set_omap(op, (ek,), (value,))
        ioctx.operate_write_op(op, obj)


def test_check_finds_and_repairs(cli: Any, db_name: str, ioctx: Any) -> None:
    n = 4
    recs = {b"rec%03d" % i: b"value %d" % i for i in range(200)}
    make_db(db_name, recs, shards=n)
    ok(cli("check", db_name))

    def shard_obj(key: bytes) -> str:
        return layout.shard_object(db_name, codec.shard_of(key, n))

    # 1. a record corrupted by a raw write: one data byte flipped, crc left alone
    bad = b"rec007"
    ek = codec.encode_key(bad)
    rec = bytearray(_raw_get(ioctx, shard_obj(bad), ek))
    rec[-1] ^= 0xFF
    _raw_set(ioctx, shard_obj(bad), ek, bytes(rec))
    # 2. a valid record in the wrong shard, for a key that exists nowhere else
    stray = b"stray\x00key"
    wrong = layout.shard_object(db_name, (codec.shard_of(stray, n) + 1) % n)
    _raw_set(ioctx, wrong, codec.encode_key(stray), codec.encode_record(stray, b"lost"))
    # 3. a duplicate in the wrong shard of a key that its own shard holds
    dup = b"rec042"
    wrong_dup = layout.shard_object(db_name, (codec.shard_of(dup, n) + 1) % n)
    _raw_set(ioctx, wrong_dup, codec.encode_key(dup), codec.encode_record(dup, b"stale"))
    # 4. an omap key that is not a key encoding at all
    _raw_set(ioctx, layout.shard_object(db_name, 0), "\x7e", b"junk")

    error(cli("dump", db_name), "run 'radostdb check'")
    result = cli("check", db_name)
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert (
        f'corrupt-record: shard {codec.shard_of(bad, n)} ({shard_obj(bad)}) key "rec007": '
        "crc32c does not match" in out
    )
    assert (
        f'misplaced: shard {(codec.shard_of(stray, n) + 1) % n} ({wrong}) key "stray\\00key"'
        f": belongs in shard {codec.shard_of(stray, n)}" in out
    )
    assert "misplaced: " in out and 'key "rec042"' in out
    assert "bad-key: shard 0" in out and "omap key '~'" in out
    assert out.endswith(f"{db_name}: 203 records in {n} shards checked, 4 problem(s)\n")

    result = cli("check", "--repair", db_name)
    assert result.exit_code == 1, "corrupt entries stay without --drop-corrupt"
    out = result.stdout
    assert f"-> moved to shard {codec.shard_of(stray, n)}" in out
    assert f"-> removed: shard {codec.shard_of(dup, n)} already holds a record" in out
    assert out.count("-> not repaired: its data cannot be recovered; --drop-corrupt") == 2
    assert out.endswith("4 problem(s), 2 repaired\n")
    db = radostdb.Tdb(db_name)
    assert db[stray] == b"lost" and db[dup] == recs[dup]
    seq = db.seqnum

    result = ok(cli("check", "--repair", "--drop-corrupt", db_name))
    assert "-> removed the record" in result.stdout and "-> removed the entry" in result.stdout
    assert result.stdout.endswith("2 problem(s), 2 repaired\n")
    assert db.seqnum > seq, "repairs go through the class: the shards' seqnums grow"
    assert ok(cli("check", db_name)).stdout.endswith(
        "200 records in 4 shards checked, no problems\n"
    )
    assert db.get(bad) is None
    expected = {**recs, stray: b"lost"}
    del expected[bad]
    assert dict(db.items()) == expected
    db.close()


def test_check_json(cli: Any, db_name: str, ioctx: Any) -> None:
    make_db(db_name, {b"a\x00": b"1"}, shards=2)
    wrong = layout.shard_object(db_name, 1 - codec.shard_of(b"z\x00", 2))
    _raw_set(ioctx, wrong, codec.encode_key(b"z\x00"), codec.encode_record(b"z\x00", b"2"))
    result = cli("check", "--json", db_name)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["clean"] is False and report["records"] == 2
    (f,) = report["findings"]
    assert f["kind"] == "misplaced" and f["key"] == "z\\00" and f["key_hex"] == "7a00"


def test_check_drop_corrupt_needs_repair(cli: Any, db_name: str) -> None:
    error(cli("check", "--drop-corrupt", db_name), "--drop-corrupt needs --repair", code=2)


def test_unusable_header(cli: Any, db_name: str, ioctx: Any) -> None:
    make_db(db_name, {b"k": b"v"})
    _raw_set(ioctx, layout.header_object(db_name), "nshards", b"many")
    result = cli("check", db_name)
    assert result.exit_code == 1 and "header: radostdb.db." in result.stdout
    assert "nshards 'many' is not a number" in result.stdout
    assert info_fields(ok(cli("info", db_name)).stdout)["problems"] == "1"
    error(cli("dump", db_name), "unusable header", "nshards 'many'")
    assert "unreadable header" in ok(cli("ls")).stdout
    ok(cli("rm", "--yes", db_name))  # finds the shards by listing the pool
    assert not [o for o in ioctx.list_objects() if o.key.endswith("." + db_name)]


# -- wipe and rm -------------------------------------------------------------------
def test_wipe_asks_first(cli: Any, db_name: str) -> None:
    make_db(db_name, {b"k": b"v"})
    result = cli("wipe", db_name, input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.stderr
    assert radostdb.Tdb(db_name)[b"k"] == b"v"
    result = cli("wipe", db_name, input="")
    assert result.exit_code == 1, "no answer is no"
    ok(cli("wipe", db_name, input="y\n"))
    assert list(radostdb.Tdb(db_name).keys()) == []
    assert admin.exists(admin.connect(), db_name)


def test_rm_asks_and_refuses_while_open(cli: Any, db_name: str, ioctx: Any) -> None:
    holder = radostdb.Tdb(db_name, 0, radostdb.CLEAR_IF_FIRST, CREATE, shards=5)
    make_db(db_name, {b"k%d" % i: b"v" for i in range(50)}, shards=5)
    result = cli("rm", db_name, input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.stderr
    error(cli("rm", "--yes", db_name), "is open by 1 CLEAR_IF_FIRST handle(s): client.", "--force")
    holder.close()
    result = ok(cli("rm", db_name, input="y\n"))
    assert f"removed {db_name!r} (6 objects)" in result.stderr
    assert not [o for o in ioctx.list_objects() if o.key.endswith("." + db_name)]
    error(cli("rm", "--yes", db_name), "does not exist")


def test_rm_force(cli: Any, db_name: str) -> None:
    make_db(db_name, {b"k": b"v"})
    holder = radostdb.Tdb(db_name)
    ok(cli("rm", "--yes", "--force", db_name))
    holder.close()
    with pytest.raises(FileNotFoundError):
        radostdb.Tdb(db_name)


# -- unfinished commits and locks left by dead processes ------------------------------
def _child(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120
    )


CRASHING_COMMIT = (
    crashpoints.prelude()
    + """
import sys, radostdb
db = radostdb.Tdb(sys.argv[1])
with db.transaction():
    for i in range(100):
        db.store(b"new%03d" % i, b"committed")
"""
)


def test_check_finishes_a_dead_commit(cli: Any, db_name: str, cluster_env: dict[str, str]) -> None:
    make_db(db_name, {b"old": b"1"}, shards=4)
    env = {**cluster_env, crashpoints.ENV: "apply-partial", "RADOSTDB_LOCK_LEASE": "1"}
    proc = _child(CRASHING_COMMIT, env, db_name)
    assert proc.returncode == -9, proc.stderr
    time.sleep(1.5)  # the dead committer's lease on the transaction lock runs out

    fields = info_fields(ok(cli("info", db_name)).stdout)
    assert fields["transaction"].startswith("unfinished commit: radostdb.s")
    assert "expired" in fields["locks"]
    result = cli("check", db_name)
    assert result.exit_code == 1
    assert "transaction: shard" in result.stdout
    assert "a multi-shard transaction not yet decided" in result.stdout
    assert "expired-lock:" in result.stdout and "transaction lock" in result.stdout

    result = ok(cli("check", "--repair", db_name))
    out = result.stdout
    assert "rolled back (aborted), its writes undone (no journal record and its committer" in out
    assert 'records at risk: "new' in out, "the keys the presumed abort undid are named"
    assert ok(cli("check", db_name)).stdout.endswith("no problems\n")
    fields = info_fields(ok(cli("info", db_name)).stdout)
    assert fields["transaction"] == "none unfinished" and fields["locks"] == "0 held"
    db = radostdb.Tdb(db_name)
    assert list(db.keys()) == [b"old"], "half the round landed: rolled back"
    db.close()


def test_dump_waits_out_a_dead_commit(cli: Any, db_name: str, cluster_env: dict[str, str]) -> None:
    make_db(db_name, {b"old": b"1"}, shards=4)
    env = {**cluster_env, crashpoints.ENV: "round-done", "RADOSTDB_LOCK_LEASE": "1"}
    assert _child(CRASHING_COMMIT, env, db_name).returncode == -9
    dumped = ok(cli("dump", db_name)).stdout_bytes  # pending shards: decided committed
    assert dumped.count(b"{\n") == 101 and b'data(9) = "committed"' in dumped
    assert ok(cli("check", db_name)).exit_code == 0


HOLDER = """
import sys, radostdb
db = radostdb.Tdb(sys.argv[1])
db.chainlock(b"locked\\x00key")
print("locked", flush=True)
sys.stdin.read()
"""


def test_locks_held_and_expired(cli: Any, db_name: str, cluster_env: dict[str, str]) -> None:
    make_db(db_name, {b"locked\x00key": b"v"})
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db_name],
        env={**cluster_env, "RADOSTDB_LOCK_LEASE": "2"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    text = ok(cli("info", db_name)).stdout
    # the record lock, and the USER entry its handle holds on the transaction-lock
    # object while it holds record locks (radostdb/intent.py)
    assert info_fields(text)["locks"] == "2 held"
    assert 'lock: exclusive record lock on key "locked\\00key" in radostdb.s' in text
    wait_obj = layout.wait_object(layout.header_object(db_name))
    assert f"lock: shared lock-user lock in {wait_obj}, owner" in text
    ok(cli("check", db_name))  # a held lock is no problem
    holder.kill()
    holder.wait()
    time.sleep(2.5)
    result = cli("check", "--json", db_name)
    assert result.exit_code == 1
    found = json.loads(result.stdout)["findings"]
    assert sorted((f["kind"], f["object"] == wait_obj, f["key"]) for f in found) == [
        ("expired-lock", False, "locked\\00key"),
        ("expired-lock", True, None),
    ], found
    result = ok(cli("check", "--repair", db_name))
    assert result.stdout.count("-> dropped") == 2
    assert info_fields(ok(cli("info", db_name)).stdout)["locks"] == "0 held"


# -- watch --------------------------------------------------------------------------------
def _armed_watches(cli: Any, name: str) -> int:
    return int(info_fields(ok(cli("info", name)).stdout)["watches"].split()[0])


def _watching(cli: Any, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``radostdb watch ARGS`` in a real process, once its watch is armed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "radostdb.cli", "watch", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while _armed_watches(cli, name) == 0:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the watch was never armed"
        time.sleep(0.05)
    return proc


def test_watch_prints_each_change_by_another_client(
    cli: Any, db_name: str, cluster_env: dict[str, str]
) -> None:
    make_db(db_name, {b"k": b"v0"})
    proc = _watching(cli, db_name, ["--count", "3", "--timeout", "60", db_name, "k"], cluster_env)
    db = radostdb.Tdb(db_name, flags=os.O_RDWR)
    try:
        db.store(b"k", b"two\nlines")
        while _armed_watches(cli, db_name) == 0:  # one change at a time: none coalesced
            time.sleep(0.02)
        db.append(b"k", b"!")
        while _armed_watches(cli, db_name) == 0:
            time.sleep(0.02)
        db.delete(b"k")
    finally:
        db.close()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["stored: two\\0Alines", "stored: two\\0Alines!", "deleted"]
    assert _armed_watches(cli, db_name) == 0  # ended: its watch cancelled


def test_watch_json_and_a_count_not_reached_in_time(
    cli: Any, db_name: str, cluster_env: dict[str, str]
) -> None:
    make_db(db_name, {})
    proc = _watching(
        cli, db_name, ["--json", "--hex", "--count", "1", db_name, "6b00"], cluster_env
    )
    ok(cli("store", "--hex", db_name, "6b00", "ff00"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    change = json.loads(out)
    assert (change["key_hex"], change["value_hex"], change["deleted"]) == ("6b00", "ff00", False)
    assert abs(change["time"] - time.time()) < 60
    started = time.monotonic()
    result = cli("watch", "--count", "1", "--timeout", "0.5", db_name, "quiet")
    assert result.exit_code == 1 and "0 of 1 changes within 0.5 s" in result.output
    assert 0.5 <= time.monotonic() - started < 10
    ok(cli("check", db_name))  # nothing left behind that check minds

"""Names on a real cluster: objects of long names, the spellings of a path
opening one database as in Samba's tdb (on real files), the path prefix, and
headers with no name or another database's. The mapping itself and the
object names are tested without a cluster in tests/unit/test_name_mapping.py."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rados
import tdb

import radostdb
from radostdb import admin, layout, names
from radostdb.testing import ClusterInfo

CREATE = os.O_CREAT | os.O_RDWR


def test_object_name_limit_of_the_cluster(ioctx: Any) -> None:
    """Why long names are hashed: RADOS refuses object names beyond
    osd_max_object_name_len (2048 here), while our longest is 216 bytes."""
    for size, fits in ((216, True), (2048, True), (2049, False), (4095 + 16, False)):
        obj = "n" * size
        try:
            ioctx.write_full(obj, b"")
        except rados.Error as exc:
            assert not fits and exc.errno == errno.ENAMETOOLONG
        else:
            assert fits
            ioctx.remove_object(obj)


@pytest.fixture
def samba_dir(tmp_path: Path, ceph_cluster: ClusterInfo) -> Iterator[Path]:
    """A directory for real .tdb files; the current directory while the test
    runs (restored after), with the databases its paths name removed after.
    The tests open those databases on the cluster under test."""
    old = os.getcwd()
    d = tmp_path.resolve() / "samba"
    d.mkdir()
    os.chdir(d)
    yield d
    os.chdir(old)
    site = admin.connect()
    for name in admin.database_names(site):
        if name.startswith(str(tmp_path.resolve())):
            admin.remove(site, name, force=True)


def test_spellings_of_a_path_open_one_database_as_in_tdb(samba_dir: Path) -> None:
    """tdb and radostdb, on the same spellings: ``//``, ``/./``, ``..``,
    relative names after chdir all open the one database; other paths not."""
    (samba_dir / "sub").mkdir()
    path = str(samba_dir / "gpo.tdb")
    ref = tdb.Tdb(path, 0, tdb.DEFAULT, CREATE)
    ref.store(b"k", b"v")
    ref.close()
    ours = radostdb.Tdb(path, 0, 0, CREATE)
    ours.store(b"k", b"v")
    spellings = [
        str(samba_dir) + "//gpo.tdb",
        str(samba_dir) + "/./gpo.tdb",
        str(samba_dir) + "/sub/../gpo.tdb",
        "/" + path,
        "gpo.tdb",
        "./gpo.tdb",
        "sub/../gpo.tdb",
        "sub//..//./gpo.tdb",
    ]
    for spelling in spellings:
        t = tdb.Tdb(spelling, 0, tdb.DEFAULT, os.O_RDWR)
        assert t.get(b"k") == b"v", spelling
        t.close()
        r = radostdb.Tdb(spelling)
        assert r.get(b"k") == b"v", spelling
        assert r.filename == spelling.encode(), "filename is the name as given, as tdb's"
        r.close()
    os.chdir(samba_dir / "sub")
    for spelling in ("../gpo.tdb", "../sub/../gpo.tdb"):
        t = tdb.Tdb(spelling, 0, tdb.DEFAULT, os.O_RDWR)
        assert t.get(b"k") == b"v"
        t.close()
        assert radostdb.Tdb(spelling).get(b"k") == b"v", spelling
    for other in ("gpo.tdb", str(samba_dir / "sub" / "gpo.tdb")):  # sub/gpo.tdb: another file
        with pytest.raises(FileNotFoundError):
            tdb.Tdb(other, 0, tdb.DEFAULT, os.O_RDWR)
        with pytest.raises(FileNotFoundError):
            radostdb.Tdb(other)
    ours.close()


def _deep_path(base: Path, total: int) -> Path:
    """A path of exactly ``total`` bytes under ``base``, its directories made."""
    room = total - len(str(base)) - len("/x.tdb")  # for "/" + part, for each part
    parts = []
    while room > 201:
        parts.append("d" * 200)
        room -= 201
    if room == 1:
        parts[-1] = "d" * 199
        room += 1
    if room:
        parts.append("e" * (room - 1))
    d = base.joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    path = d / "x.tdb"
    assert len(str(path).encode()) == total
    return path


@pytest.mark.parametrize("size", [300, 4000])
def test_long_paths_work_as_in_tdb(samba_dir: Path, size: int, ioctx: Any) -> None:
    path = str(_deep_path(samba_dir, size))
    ref = tdb.Tdb(path, 0, tdb.DEFAULT, CREATE)
    ref.store(b"k", b"v")
    ref.close()
    db = radostdb.Tdb(path, 0, 0, CREATE)
    db.store(b"k", b"v")
    db.close()
    assert radostdb.Tdb(path).get(b"k") == b"v"
    rel = os.path.relpath(path, samba_dir)
    assert radostdb.Tdb(rel).get(b"k") == b"v"
    header = layout.header_object(path)
    assert header.startswith("radostdb.db#"), "longer than 200 bytes: a hashed object name"
    with rados.ReadOpCtx() as op:
        it, _ = ioctx.get_omap_vals_by_keys(op, (layout.NAME_KEY,))
        ioctx.operate_read_op(op, header)
        assert dict(it)[layout.NAME_KEY] == path.encode(), "the full name is in the header"
    site = admin.connect()
    assert path in admin.database_names(site)
    assert admin.info(site, path).name == path and not admin.info(site, path).findings


def test_too_long_paths_fail_as_in_tdb(samba_dir: Path) -> None:
    name = str(samba_dir) + "/" + "/".join(["d" * 200] * 25) + "/x.tdb"
    assert len(name.encode()) > 5000
    for opener in (
        lambda: tdb.Tdb(name, 0, tdb.DEFAULT, CREATE),
        lambda: radostdb.Tdb(name, 0, 0, CREATE),
    ):
        with pytest.raises(OSError) as err:
            opener()
        assert err.value.errno == errno.ENAMETOOLONG


def test_short_names_keep_their_objects(db_name: str, ioctx: Any) -> None:
    """A database made before long names existed (no name key) still opens,
    and its objects are where they always were."""
    db = radostdb.Tdb(db_name, 2, 0, CREATE)
    db.store(b"k", b"v")
    db.close()
    with rados.WriteOpCtx() as op:
        ioctx.remove_omap_keys(op, (layout.NAME_KEY,))
        ioctx.operate_write_op(op, "radostdb.db." + db_name)
    assert radostdb.Tdb(db_name).get(b"k") == b"v"
    assert db_name in admin.database_names(admin.connect())
    assert ioctx.stat("radostdb.db." + db_name)


def test_header_naming_another_database_is_a_problem(db_name: str, ioctx: Any) -> None:
    radostdb.Tdb(db_name, 0, 0, CREATE).close()
    with rados.WriteOpCtx() as op:
        ioctx.set_omap(op, (layout.NAME_KEY,), (b"someone-else",))
        ioctx.operate_write_op(op, layout.header_object(db_name))
    header = admin.read_header(admin.connect(), db_name)
    assert header.problems == ["the header names database 'someone-else'"]


def test_path_prefix_shares_databases_between_layouts(samba_dir: Path) -> None:
    """Two hosts keep their Samba tree under different roots; with the prefix
    set to each one's root, one path opens one database."""
    private = f"/private-{uuid.uuid4().hex}"  # the database name, under each root
    a = radostdb.Tdb(
        f"{samba_dir}/host-a{private}/secrets.tdb", 0, 0, CREATE, path_prefix=f"{samba_dir}/host-a"
    )
    try:
        a.store(b"k", b"shared")
        b = radostdb.Tdb(
            f"{samba_dir}/host-b{private}/secrets.tdb", path_prefix=f"{samba_dir}/host-b/"
        )
        assert b.get(b"k") == b"shared"
        b.close()
        assert radostdb.Tdb(f"{private}/secrets.tdb", path_prefix="").get(b"k") == b"shared"
        with pytest.raises(FileNotFoundError):
            radostdb.Tdb(f"{samba_dir}/host-b{private}/secrets.tdb", path_prefix="")
        os.environ[names.PREFIX_ENV] = f"{samba_dir}/host-b"
        try:  # the environment gives the prefix when no keyword does
            assert radostdb.Tdb(f"{samba_dir}/host-b{private}/secrets.tdb").get(b"k") == b"shared"
        finally:
            del os.environ[names.PREFIX_ENV]
    finally:
        a.close()
        admin.remove(admin.connect(), f"{private}/secrets.tdb", force=True)


def test_a_missing_database_names_the_local_file_to_import(samba_dir: Path) -> None:
    """An unmigrated host: the path has no database in the pool but is a
    local .tdb file; the error says so and how to move it in."""
    local = samba_dir / f"unmigrated-{uuid.uuid4().hex[:8]}.tdb"
    made = tdb.Tdb(str(local), 0, tdb.DEFAULT, CREATE)
    made.store(b"k", b"v")
    made.close()
    with pytest.raises(FileNotFoundError) as err:
        radostdb.Tdb(local.name, 0, 0, os.O_RDWR)
    message = str(err.value)
    assert f"has the file {local}" in message and f"radostdb import {local}" in message
    with pytest.raises(FileNotFoundError) as err:  # no local file: the plain error
        radostdb.Tdb("nothing-here.tdb", 0, 0, os.O_RDWR)
    assert "radostdb import" not in str(err.value)


def _make_02_database(io: Any, literal: str, records: dict[bytes, bytes]) -> None:
    """A database as radostdb 0.2 stored it: under the path as given, ``//``
    and ``.`` included (written object by object, as no handle can now)."""
    from radostdb import clsops, codec, dbheader

    nshards = 4
    fields = dbheader.new_fields(literal, nshards)
    del fields[dbheader.HASH_SIZE_KEY]  # 0.2 kept no hash size: its shard count was it
    with rados.WriteOpCtx() as op:
        io.set_omap(op, tuple(fields), tuple(v.encode() for v in fields.values()))
        io.operate_write_op(op, layout.header_object(literal))
    owner = b"\x02" * clsops.OWNER_LEN
    for k, v in records.items():
        obj = layout.shard_object(literal, codec.shard_of(k, nshards))
        clsops.apply(io, obj, clsops.apply_request(owner, 0, [(1, k, v)]))


def test_a_name_02_did_not_normalise_is_noted_and_renamed(
    cli: Any, ioctx: Any, db_name: str
) -> None:
    literal = f"/srv//{db_name}/./old.tdb"
    normal = f"/srv/{db_name}/old.tdb"
    records = {b"k%d" % i: b"v%d" % i for i in range(50)}
    _make_02_database(ioctx, literal, records)
    with pytest.raises(FileNotFoundError):  # no name reaches it
        radostdb.Tdb(literal, 0, 0, os.O_RDWR)
    listing = cli("ls")
    assert listing.exit_code == 0, listing.output
    assert f"radostdb rename --literal {literal} {normal}" in listing.stdout
    result = cli("rename", "--literal", "--yes", literal, normal)
    assert result.exit_code == 0, result.output
    assert f"renamed {literal!r} to {normal!r} (50 records)" in result.stderr
    db = radostdb.Tdb(literal, 0, 0, os.O_RDWR)  # the path as given reaches it now
    # a 0.2 database's hash_size is its shard count (it had no other); both are kept
    assert dict(db.items()) == records and db.hash_size == 4
    assert db._storage.nshards == 4, "the rename keeps the shard count"  # type: ignore[union-attr]
    db.close()
    assert not [o.key for o in ioctx.list_objects() if o.key.endswith(layout.stem(literal))]
    assert "rename --literal" not in cli("ls").stdout
    again = cli("rename", "--yes", normal, normal)
    assert again.exit_code == 1 and "already named so" in again.output


def test_rename_keeps_hash_size_and_shard_count(cli: Any, db_name: str) -> None:
    """hash_size (kept to answer Tdb.hash_size) and the shard count are two
    things: a renamed database keeps both."""
    db = radostdb.Tdb(db_name, 5, 0, CREATE, shards=3)
    db.store(b"k", b"v")
    db.close()
    new = f"{db_name}-renamed"
    result = cli("rename", "--yes", db_name, new)
    assert result.exit_code == 0, result.output
    db = radostdb.Tdb(new)
    try:
        assert dict(db.items()) == {b"k": b"v"}
        assert db.hash_size == 5
        assert db._storage.nshards == 3  # type: ignore[union-attr]
    finally:
        db.close()
        cli("rm", "--yes", new)

"""Names: the mapping from a caller's name to a database (names.py), object
names of long names (layout.py), checked against the kernel's own path
resolution, against Samba's tdb on real files, and on a real cluster."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rados
import tdb
from hypothesis import given, settings
from hypothesis import strategies as st

import radostdb
from radostdb import admin, layout, names

CREATE = os.O_CREAT | os.O_RDWR
VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "tests" / "vectors" / "layout.json").read_text()
)


# -- the mapping, without a cluster -----------------------------------------------------
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("secrets", "secrets"),  # plain names are used as they are
        ("my db.x", "my db.x"),
        ("a.tdbx", "a.tdbx"),
        ("x.tdb", "/w/d/x.tdb"),  # .tdb/.ldb: a path, relative to the directory
        ("sam.ldb", "/w/d/sam.ldb"),
        ("/var/lib/samba//private/./secrets.tdb", "/var/lib/samba/private/secrets.tdb"),
        ("/var/lib/samba/sub/../registry.tdb", "/var/lib/samba/registry.tdb"),
        ("//x.tdb", "/x.tdb"),  # Linux: a leading // is /
        ("/../../x", "/x"),  # .. at the root stays there
        ("sub/../gpo.tdb", "/w/d/gpo.tdb"),
        ("../gpo", "/w/gpo"),
        ("./a/b", "/w/d/a/b"),
        ("a/", None),
        ("/", None),
        ("x.tdb/.", None),
        ("/tmp/..", None),
    ],
)
def test_database_name(given: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(IsADirectoryError) as err:
            names.database_name(given, cwd="/w/d", prefix="")
        assert err.value.errno == errno.EISDIR
    else:
        assert names.database_name(given, cwd="/w/d", prefix="") == expected


def test_bad_names_raise_what_tdb_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compared with Samba's tdb on the same strings."""
    cases = [
        "",
        "a\0b",
        "/" + "x/" * 2500 + "y.tdb",
        "/" + "z" * 256 + "/a.tdb",
        "z" * 256 + ".tdb",
        str(tmp_path) + "/",
        str(tmp_path) + "/.",
    ]
    monkeypatch.chdir(tmp_path)
    for name in cases:
        with pytest.raises(Exception) as ours:
            names.database_name(name, prefix="")
        with pytest.raises(Exception) as theirs:
            tdb.Tdb(name, 0, tdb.DEFAULT, CREATE)
        assert type(ours.value) is type(theirs.value), name[:20]
        assert getattr(ours.value, "errno", None) == getattr(theirs.value, "errno", None)


def test_length_limits() -> None:
    at = "/" + "/".join(["d" * 255] * 15) + "/" + "f" * 254  # 16 parts: 15 * 256 + 255
    assert len(at.encode()) == names.MAX_NAME_BYTES == 4095
    assert names.database_name(at, prefix="") == at
    assert names.database_name("p" * 4095) == "p" * 4095  # plain names too
    for name in (at + "f", "p" * 4096, "\u00e9" * 2048):
        with pytest.raises(OSError) as err:
            names.database_name(name, prefix="")
        assert err.value.errno == errno.ENAMETOOLONG and not isinstance(err.value, ValueError)
    # relative: the name fits, its absolute form does not
    with pytest.raises(OSError) as err:
        names.database_name(
            "r" * 200 + "/" + "s" * 100 + ".tdb", cwd="/" + "/".join(["d" * 255] * 15), prefix=""
        )
    assert err.value.errno == errno.ENAMETOOLONG and "absolute form" in str(err.value)


@pytest.mark.parametrize(
    ("prefix", "given", "expected"),
    [
        ("/var/lib/samba", "/var/lib/samba/private/secrets.tdb", "/private/secrets.tdb"),
        ("/var/lib/samba/", "/var/lib/samba/private/secrets.tdb", "/private/secrets.tdb"),
        ("/var/lib//samba/.", "/var/lib/samba/x.tdb", "/x.tdb"),
        ("/usr/local/samba", "/usr/local/samba/private/secrets.tdb", "/private/secrets.tdb"),
        ("/var/lib/samba", "/var/lib/sambax/x.tdb", "/var/lib/sambax/x.tdb"),  # not under it
        ("/var/lib/samba", "/tmp/x.tdb", "/tmp/x.tdb"),
        ("/var/lib/samba", "/private/secrets.tdb", "/private/secrets.tdb"),  # the chroot alias
        ("/var/lib/samba", "secrets", "secrets"),  # plain names are never touched
        ("/", "/a/b.tdb", "/a/b.tdb"),
        ("", "/var/lib/samba/x.tdb", "/var/lib/samba/x.tdb"),
    ],
)
def test_path_prefix(prefix: str, given: str, expected: str) -> None:
    assert names.database_name(given, prefix=prefix) == expected


def test_path_prefix_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(names.PREFIX_ENV, "/srv/samba")
    assert names.database_name("/srv/samba/lock/x.tdb") == "/lock/x.tdb"
    assert names.database_name("/srv/samba/lock/x.tdb", prefix="") == "/srv/samba/lock/x.tdb"
    monkeypatch.setenv(names.PREFIX_ENV, "relative/dir")
    with pytest.raises(ValueError, match="not an absolute path"):
        names.database_name("/a.tdb")


@pytest.mark.parametrize(
    ("url", "pool", "namespace", "name"),
    [
        ("rados://p/secrets", "p", "", "secrets"),
        ("rados://p/ns/secrets", "p", "ns", "secrets"),
        ("rados://p//secrets", "p", "", "secrets"),
        ("rados://p//var/lib/samba/x.tdb", "p", "", "/var/lib/samba/x.tdb"),
        ("rados://p/ns/var/lib/samba/x.tdb", "p", "ns", "/var/lib/samba/x.tdb"),
        ("rados://p/ns//var/lib//samba/../x.tdb", "p", "ns", "/var/lib/x.tdb"),
        ("rados://p/x.tdb", "p", "", "/x.tdb"),  # relative to /, not to the directory
    ],
)
def test_urls(url: str, pool: str, namespace: str, name: str) -> None:
    assert names.parse_url(url, prefix="") == names.Url(pool, namespace, name)


@pytest.mark.parametrize(
    "url", ["rados://", "rados://p", "rados://p/", "rados:///x", "rados://p/ns/"]
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match="bad database URL"):
        names.parse_url(url)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directories a and b, each holding a and b, three deep, and a file
    f.tdb in every one of them (no symlinks anywhere)."""
    root = tmp_path_factory.mktemp("tree").resolve()

    def fill(d: Path, depth: int) -> None:
        (d / "f.tdb").write_bytes(b"")
        if depth:
            for sub in "ab":
                (d / sub).mkdir()
                fill(d / sub, depth - 1)

    fill(root, 3)
    return root


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.sampled_from(["a", "b", ".", "..", ""]), max_size=8),
    start=st.sampled_from(["", "a", "a/b", "b/a/b"]),
    absolute=st.booleans(),
)
def test_same_file_as_the_kernel(tree: Path, parts: list[str], start: str, absolute: bool) -> None:
    """Where the kernel opens a file for a path (no symlinks involved), the
    database name is that file's path."""
    cwd = tree / start if start else tree
    path = "/".join([*parts, "f.tdb"])
    if absolute:
        path = str(cwd) + "/" + path
    fd = os.open(cwd, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st_kernel = os.stat(path, dir_fd=fd)
    except FileNotFoundError:  # the path goes above the tree or below its leaves
        return
    finally:
        os.close(fd)
    mapped = names.database_name(path, cwd=str(cwd), prefix="")
    assert os.path.samestat(os.stat(mapped), st_kernel)
    assert os.path.normpath(mapped) == mapped and mapped.startswith("/")


# -- object names ------------------------------------------------------------------------
@pytest.mark.parametrize("vector", VECTORS["objects"], ids=lambda v: str(v["utf8_bytes"]))
def test_layout_vectors(vector: dict[str, Any]) -> None:
    name = vector["name"]
    assert len(name.encode()) == vector["utf8_bytes"]
    assert layout.header_object(name) == vector["header"]
    assert layout.shard_object(name, 0) == vector["shard_0"]
    assert layout.shard_object(name, 65535) == vector["shard_65535"]
    assert layout.journal_object(name) == vector["journal"]
    assert layout.wait_object(layout.header_object(name)) == vector["wait"]
    # the documented rule, computed independently
    raw = name.encode()
    stem = "." + name if len(raw) <= 200 else "#" + hashlib.sha256(raw).hexdigest()
    assert vector["header"] == "radostdb.db" + stem


@settings(max_examples=300)
@given(
    a=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
        min_size=1,
        max_size=260,
    ),
    b=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
        min_size=1,
        max_size=260,
    ),
)
def test_no_two_names_share_an_object(a: str, b: str) -> None:
    def objects(n: str) -> set[str]:
        h = layout.header_object(n)
        return {h, layout.journal_object(n), layout.wait_object(h), *layout.shard_objects(n, 3)}

    lookalike = "#" + hashlib.sha256(a.encode()).hexdigest()  # a short name spelling a hash
    for name in (a, b, lookalike):
        objs = objects(name)
        assert len(objs) == 6 and max(len(o.encode()) for o in objs) <= 216
    assert not objects(a) & objects(lookalike)
    if a != b:
        assert not objects(a) & objects(b)


# -- on the cluster ------------------------------------------------------------------------
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
def samba_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for real .tdb files; the current directory while the test
    runs (restored after), with the databases its paths name removed after."""
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

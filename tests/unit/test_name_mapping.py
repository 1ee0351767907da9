"""Names without a cluster: the mapping from a caller's name to a database
(names.py), checked against the kernel's own path resolution and Samba's tdb,
and the object names of long names (layout.py), pinned by
tests/vectors/layout.json. What the names do on a cluster is in
tests/cluster/test_names.py."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import tdb
from hypothesis import given, settings
from hypothesis import strategies as st

from radostdb import layout, names

CREATE = os.O_CREAT | os.O_RDWR
REPO = Path(__file__).resolve().parents[2]
VECTORS = json.loads((REPO / "tests" / "vectors" / "layout.json").read_text())


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
    except (FileNotFoundError, NotADirectoryError):  # above the tree or below its leaves
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

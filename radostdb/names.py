"""From the name a caller gives to the name of a database: the one mapping
used by the Tdb API, the ``radostdb`` command line and the benchmark.

names design:
- Samba opens every TDB by its path, so a name that looks like a path is
  treated as one. A name looks like a path when it contains ``/`` or ends in
  ``.tdb`` or ``.ldb``. It is made absolute against the process's current
  directory (``os.getcwd()``, the kernel's view, not ``$PWD``), and ``//``,
  ``.`` and ``..`` are resolved lexically, as ``open(2)`` resolves them when
  no symlink is involved. No local file or directory is looked at: a path
  names a database whether or not anything exists on this host, and
  symlinks are not followed (``/srv/link/../x.tdb`` is ``/srv/x.tdb``, where
  the kernel would go through the link's target). ``dir//gpo.tdb``,
  ``dir/./gpo.tdb``, ``dir/sub/../gpo.tdb`` and ``gpo.tdb`` run in ``dir``
  all name the database ``/…/dir/gpo.tdb``.
- Any other name (``secrets``, ``my-db``) is a plain name, used as it is.
- A path whose last part is empty, ``.`` or ``..`` (``/tmp/``, ``x.tdb/.``)
  names a directory: IsADirectoryError, as tdb gets from ``open(2)`` when it
  creates one.
- Limits are Linux's: a name (as given, and the database name it maps to) is
  at most PATH_MAX - 1 = 4095 bytes of UTF-8, and each part of a path at
  most NAME_MAX = 255 bytes; beyond them OSError(ENAMETOOLONG), as tdb
  raises for a path the kernel refuses. An empty name is FileNotFoundError
  and a NUL character ValueError, as with tdb. How long names are stored in
  RADOS (object names have their own, smaller, limit) is layout.py's
  business.
- Path prefix: with ``RADOSTDB_PATH_PREFIX=/var/lib/samba`` (or
  ``path_prefix=``, ``radostdb --path-prefix``), a path under the prefix is
  named as if the prefix were the root directory:
  ``/var/lib/samba/private/secrets.tdb`` is the database
  ``/private/secrets.tdb``. A host keeping its Samba tree under
  ``/usr/local/samba`` sets that prefix and shares the databases of one
  keeping it under ``/var/lib/samba``. Paths outside the prefix are used as
  they are (so ``/private/secrets.tdb`` itself names the same database as
  the prefixed path: the prefix works like a chroot for names). One prefix
  per process; an empty value means none. Plain names are never touched.
- URLs: ``rados://POOL/NAME``, or ``rados://POOL/NS/NAME`` where NS may be
  empty (no namespace) and NAME is everything after it, slashes included.
  NAME follows the rules above, except that a relative path is taken
  relative to ``/``, not to the current directory: a URL means the same
  thing in every process. ``rados://samba/node1/var/lib/samba/x.tdb`` and
  ``rados://samba/node1//var/lib/samba/x.tdb`` are ``/var/lib/samba/x.tdb``
  in namespace ``node1`` of pool ``samba``. A plain NAME without a namespace
  is ``rados://POOL/NAME``; ``rados://POOL//NAME`` is the same.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

PATH_MAX = 4096  # Linux: bytes of a path, with its terminating NUL
NAME_MAX = 255  # Linux: bytes of one part of a path
MAX_NAME_BYTES = PATH_MAX - 1
PATH_SUFFIXES = (".tdb", ".ldb")
PREFIX_ENV = "RADOSTDB_PATH_PREFIX"
URL_PREFIX = "rados://"


def is_path(name: str) -> bool:
    """Whether ``name`` is taken as a filesystem path (see the module doc)."""
    return "/" in name or name.endswith(PATH_SUFFIXES)


def _too_long(what: str, name: str, size: int, limit: int) -> OSError:
    return OSError(
        errno.ENAMETOOLONG,
        f"{what} is {size} bytes long; the limit is {limit} ({os.strerror(errno.ENAMETOOLONG)})",
        name if size <= 200 else name[:100] + "…",
    )


def _check_given(name: str) -> bytes:
    """Checks on a name as the caller gave it; its UTF-8 bytes."""
    if not isinstance(name, str):
        raise TypeError(f"database name must be str, not {type(name).__name__}")
    if "\0" in name:
        raise ValueError("embedded null character in the database name")
    if not name:
        raise FileNotFoundError(errno.ENOENT, "the database name is empty")
    raw = name.encode()
    if len(raw) > MAX_NAME_BYTES:
        raise _too_long("the database name", name, len(raw), MAX_NAME_BYTES)
    return raw


def normalise_path(path: str, cwd: str) -> str:
    """``path`` made absolute against ``cwd`` with ``//``, ``.`` and ``..``
    resolved lexically (``..`` at the root stays at the root, as in the
    kernel). Raises IsADirectoryError for a path that names a directory and
    OSError(ENAMETOOLONG) for a part longer than NAME_MAX."""
    parts = path.split("/")
    if parts[-1] in ("", ".", ".."):
        raise IsADirectoryError(
            errno.EISDIR, "the path names a directory, not a database file", path
        )
    for part in parts:
        size = len(part.encode())
        if size > NAME_MAX:
            raise _too_long("a part of the path", part, size, NAME_MAX)
    if not path.startswith("/"):
        parts = [*cwd.split("/"), *parts]
    out: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
            continue
        out.append(part)
    return "/" + "/".join(out)


def strip_prefix(path: str, prefix: str | None) -> str:
    """A normalised absolute path with the path prefix taken off (if it is
    under the prefix): ``/var/lib/samba/x.tdb`` -> ``/x.tdb``."""
    if not prefix:
        return path
    root = normalise_path(prefix + "/_", "/")[: -len("/_")]  # "/" gives ""
    if not root:
        return path
    if path == root:
        return "/"
    if path.startswith(root + "/"):
        return path[len(root) :]
    return path


def path_prefix(given: str | None = None) -> str:
    """The path prefix in force: ``given`` if not None, else RADOSTDB_PATH_PREFIX
    ('' for none). A relative prefix is refused: it would change meaning with
    the current directory."""
    prefix = os.environ.get(PREFIX_ENV, "") if given is None else given
    if prefix and not prefix.startswith("/"):
        raise ValueError(f"the path prefix {prefix!r} is not an absolute path")
    return prefix


def unnormalised(stored: str) -> str | None:
    """For a database name as stored: the name the mapping gives it now when
    it differs (radostdb 0.2 stored paths as given, ``//`` and ``.``
    included, before names were normalised), else None. Such a database
    cannot be opened by any name until renamed (``radostdb rename
    --literal``)."""
    if not stored.startswith("/") or not is_path(stored):
        return None
    try:
        mapped = normalise_path(stored, "/")
    except (OSError, ValueError):
        return None
    return None if mapped == stored else mapped


def local_path(name: str) -> str | None:
    """The local file a caller's path-like name means on this host (made
    absolute, ``//``, ``.`` and ``..`` resolved, the path prefix NOT taken
    off: where tdb would open it); None for plain names and URLs."""
    if name.startswith(URL_PREFIX) or not is_path(name):
        return None
    try:
        return normalise_path(name, os.getcwd())
    except (OSError, ValueError):
        return None


def database_name(
    name: str, *, prefix: str | None = None, cwd: str | None = None, as_path: bool = False
) -> str:
    """The database that ``name`` (not a URL) names; see the module doc.

    ``prefix`` overrides RADOSTDB_PATH_PREFIX; ``cwd`` the current directory
    relative paths are resolved against; ``as_path`` takes the name as a path
    even without a slash or suffix (a file name given to ``radostdb import``).
    """
    _check_given(name)
    if not (as_path or is_path(name)):
        return name
    path = normalise_path(name, os.getcwd() if cwd is None else cwd)
    mapped = strip_prefix(path, path_prefix(prefix))
    size = len(mapped.encode())
    if size > MAX_NAME_BYTES:
        raise _too_long(
            f"the database name (the absolute form of {name!r})", mapped, size, MAX_NAME_BYTES
        )
    return mapped


@dataclass(frozen=True)
class Url:
    """A ``rados://`` URL taken apart: pool, namespace ('' for none), database name."""

    pool: str
    namespace: str
    name: str


def parse_url(url: str, *, prefix: str | None = None) -> Url:
    """``rados://POOL/NAME`` or ``rados://POOL/NS/NAME`` (NAME may be a path,
    taken relative to ``/``); ValueError for anything else."""
    rest = url[len(URL_PREFIX) :] if url.startswith(URL_PREFIX) else None
    pool, _, tail = (rest or "").partition("/")
    if "/" in tail:
        namespace, _, name = tail.partition("/")
    else:
        namespace, name = "", tail
    if rest is None or not pool or not name:
        raise ValueError(
            f"bad database URL {url!r}: use rados://POOL/NAME or rados://POOL/NAMESPACE/NAME"
        )
    return Url(pool, namespace, database_name(name, prefix=prefix, cwd="/"))

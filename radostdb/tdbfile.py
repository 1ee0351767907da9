"""Samba ``.tdb`` files in and out: the library behind ``radostdb import`` and
``export`` (nothing here touches RADOS).

tdbfile design:
- Files are read and written with Samba's own tdb Python module
  (python3-tdb), imported when first needed, so that radostdb works
  without it until a file is involved; without it the error says which
  package to install.
- Reading (:class:`TdbReader`): the file is opened read-write to take a
  read lock of the whole TDB (tdb does no locking on a read-only open), so
  a Samba writing it waits while it is read. A file this user may not
  write (or on a read-only filesystem) is read without the lock, as
  ``tdbdump`` reads; ``locked`` says which.
- Writing (:func:`write`): into a temporary file beside the target, under
  one lock of the whole file (instead of one per store), synced, then
  renamed into place: the target is either complete or untouched.
- Errors: :class:`TdbFileError`, one line naming the file.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from .errors import RadostdbError

DEFAULT_HASH_SIZE = 131  # tdb's own default


class TdbFileError(RadostdbError):
    """A .tdb file that cannot be read or written, explained in one line."""


def tdb_module() -> Any:
    """Samba's tdb module; TdbFileError if it is not installed."""
    try:
        import tdb
    except ImportError:
        raise TdbFileError(
            "reading and writing .tdb files needs Samba's tdb Python module "
            "(Debian: apt-get install python3-tdb)"
        ) from None
    return tdb


def hash_size_for(records: int) -> int:
    """A TDB hash size for ``records``: a prime near records/4, at least tdb's 131."""
    n = max(DEFAULT_HASH_SIZE, records // 4) | 1
    while any(n % d == 0 for d in range(3, int(n**0.5) + 1, 2)):
        n += 2
    return n


def _tdb_error(path: str, exc: BaseException) -> TdbFileError:
    if isinstance(exc, OSError):
        return TdbFileError(f"cannot open {path} as a TDB file: {exc.strerror or exc}")
    return TdbFileError(f"reading {path}: {exc.args[-1] if exc.args else exc}")


class TdbReader:
    """A .tdb file open for reading, under a read lock of the whole file
    when this user may write it (``locked``). A context manager; iterating
    gives ``(key, data)``."""

    def __init__(self, path: str) -> None:
        tdbmod = tdb_module()
        self.path = path
        self.locked = False
        src = None
        try:
            src = tdbmod.Tdb(path, 0, tdbmod.DEFAULT, os.O_RDWR)
        except PermissionError:
            pass
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise _tdb_error(path, exc) from None
        if src is not None:
            try:
                src.read_lock_all()
                self.locked = True
            except RuntimeError:
                src.close()
                src = None
        if src is None:
            try:
                src = tdbmod.Tdb(path, 0, tdbmod.DEFAULT, os.O_RDONLY)
            except OSError as exc:
                raise _tdb_error(path, exc) from None
        self._tdb = src

    @property
    def hash_size(self) -> int:
        """The file's hash chain count (tdb's hash_size)."""
        return int(self._tdb.hash_size)

    def __len__(self) -> int:
        """The number of records (a traversal of the file)."""
        try:
            return sum(1 for _ in self._tdb)
        except RuntimeError as exc:
            raise _tdb_error(self.path, exc) from None

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        get = self._tdb.get
        try:
            for key in self._tdb:
                yield key, get(key)
        except RuntimeError as exc:  # the tdb module's errors: (code, message)
            raise _tdb_error(self.path, exc) from None

    def close(self) -> None:
        """Close the file (the lock goes with it); idempotent."""
        src, self._tdb = self._tdb, None
        if src is not None:
            src.close()

    def __enter__(self) -> TdbReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write(path: str, records: Iterable[tuple[bytes, bytes]], *, hash_size: int) -> int:
    """Write ``records`` to a new .tdb file at ``path`` (replacing any),
    atomically; return how many."""
    tdbmod = tdb_module()
    fd, tmp = tempfile.mkstemp(
        dir=os.path.dirname(os.path.abspath(path)),
        prefix=f".{os.path.basename(path)}.",
        suffix=".tmp",
    )
    os.close(fd)
    try:
        out = tdbmod.Tdb(tmp, hash_size, tdbmod.DEFAULT, os.O_RDWR | os.O_CREAT, 0o600)
        n = 0
        try:
            out.lock_all()  # one lock for the whole file instead of one per store
            store = out.store
            for key, data in records:
                store(key, data)
                n += 1
            out.unlock_all()
        finally:
            out.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return n

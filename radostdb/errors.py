"""TDB's error codes and messages, and the exceptions radostdb raises.

TDB errors surface as ``RuntimeError(code, message)`` (``e.args == (code,
message)``) exactly as Samba's ``tdb`` module raises them; one table maps
codes to messages.
"""

from __future__ import annotations

SUCCESS = 0
ERR_CORRUPT = 1
ERR_IO = 2
ERR_LOCK = 3
ERR_OOM = 4
ERR_EXISTS = 5
ERR_NOLOCK = 6
ERR_LOCK_TIMEOUT = 7
ERR_NOEXIST = 8
ERR_EINVAL = 9
ERR_RDONLY = 10
ERR_NESTING = 11

MESSAGES = {
    SUCCESS: "Success",
    ERR_CORRUPT: "Corrupt database",
    ERR_IO: "IO Error",
    ERR_LOCK: "Locking error",
    ERR_OOM: "Out of memory",
    ERR_EXISTS: "Record exists",
    ERR_NOLOCK: "Lock exists on other keys",
    ERR_EINVAL: "Invalid parameter",
    ERR_NOEXIST: "Record does not exist",
    ERR_RDONLY: "write not permitted",
}

CLOSED_MESSAGE = "Database is already closed"


class RadostdbError(Exception):
    """The root of every exception class radostdb defines. (Where Samba's tdb
    module raises a builtin exception, radostdb raises the same builtin:
    ``KeyError`` for a missing key, ``OSError`` when a database cannot be
    opened, ``TypeError``/``ValueError`` for bad arguments.)"""


class TdbError(RadostdbError, RuntimeError):
    """A TDB error: ``args == (code, message)`` as Samba's tdb module raises it.

    A subclass of RuntimeError, so ``except RuntimeError`` code written for
    ``tdb`` keeps working; ``.code`` gives the TDB error code. It is named
    as tdb's: ``type(e).__name__`` is ``RuntimeError`` and a traceback
    prints ``RuntimeError: (8, 'Record does not exist')``, as Samba's code
    logs them, while ``except radostdb.TdbError`` still tells it apart. It
    pickles as itself (multiprocessing carries it between processes).
    """

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(code, message or MESSAGES.get(code, "Invalid error code"))
        self.code = code

    @property
    def message(self) -> str:
        return str(self.args[1])

    def __reduce__(self) -> tuple[object, ...]:
        return (_tdb_error, (self.args, self.__dict__))


# named as the exception tdb raises (see the class comment); the qualified
# name stays findable for pickle through __reduce__
TdbError.__name__ = TdbError.__qualname__ = "RuntimeError"
TdbError.__module__ = "builtins"


def _tdb_error(args: tuple[object, ...], state: dict[str, object]) -> TdbError:
    """Unpickle a TdbError (its args and attributes, errno included)."""
    exc = TdbError.__new__(TdbError)
    exc.args = args
    exc.__dict__.update(state)
    return exc


def closed_error() -> TdbError:
    """The error every call on a closed handle raises (as tdb: code 2)."""
    return TdbError(ERR_IO, CLOSED_MESSAGE)


class KeyMissing(RadostdbError):
    """(Internal) tdb_nextkey of a key the database does not hold: tdb
    answers None with TDB_ERR_NOEXIST."""


REOPEN_REFUSED = "Failed to reopen database"


def forked_error(held: str) -> TdbError:
    """The error every call on a handle inherited through fork() raises when
    its parent held ``held`` on it (TDB's lock error)."""
    return TdbError(
        ERR_LOCK,
        f"Locking error: this handle was inherited through fork() while the parent held "
        f"{held} on it; they stay the parent's. Close it and open a new handle in this "
        "process (reopen() refuses a handle with locks held, as tdb_reopen does)",
    )

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
    ``tdb`` keeps working; ``.code`` gives the TDB error code.
    """

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(code, message or MESSAGES.get(code, "Invalid error code"))
        self.code = code

    @property
    def message(self) -> str:
        return str(self.args[1])


def closed_error() -> TdbError:
    """The error every call on a closed handle raises (as tdb: code 2)."""
    return TdbError(ERR_IO, CLOSED_MESSAGE)


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

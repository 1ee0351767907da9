"""radostdb: Samba's TDB key-value database on Ceph RADOS.

``import radostdb as tdb`` in code written for Samba's ``tdb`` module: the
same class, functions, flag constants and exceptions, with the records in
RADOS omap objects shared by every process that reaches the cluster.
"""

from .database import Tdb, TdbTextWrapper, open
from .errors import RadostdbError, TdbError
from .flags import (
    ALLOW_NESTING,
    BIGENDIAN,
    CLEAR_IF_FIRST,
    CONVERT,
    DEFAULT,
    DISALLOW_NESTING,
    INCOMPATIBLE_HASH,
    INSERT,
    INTERNAL,
    MODIFY,
    NOLOCK,
    NOMMAP,
    NOSYNC,
    REPLACE,
    SEQNUM,
    VOLATILE,
)
from .locked import LockedRecord
from .watch import Watch

__version__ = "0.2.0"

__all__ = [
    "ALLOW_NESTING",
    "BIGENDIAN",
    "CLEAR_IF_FIRST",
    "CONVERT",
    "DEFAULT",
    "DISALLOW_NESTING",
    "INCOMPATIBLE_HASH",
    "INSERT",
    "INTERNAL",
    "MODIFY",
    "NOLOCK",
    "NOMMAP",
    "NOSYNC",
    "REPLACE",
    "SEQNUM",
    "VOLATILE",
    "LockedRecord",
    "RadostdbError",
    "Tdb",
    "TdbError",
    "TdbTextWrapper",
    "Watch",
    "__version__",
    "open",
]

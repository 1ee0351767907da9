"""Loading records into a database, all or nothing: ``radostdb restore``
(a tdbdump text) and ``import`` (a .tdb file).

load design:
- The records are written through radostdb.Tdb inside ONE transaction:
  every record or none. A database that has records is refused unless
  ``replace``, which clears it in the same transaction.
- A database created here (exclusively: one created meanwhile by another is
  not ours) is removed again when the load fails, so a failed load leaves
  nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterable

from .remove import remove
from .site import AdminError, Site, exists


def load(
    site: Site,
    name: str,
    records: Iterable[tuple[bytes, bytes]],
    *,
    hash_size: int = 0,
    shards: int = 0,
    replace: bool = False,
) -> int:
    """Store ``records`` into database ``name`` (created with tdb's
    ``hash_size`` and ``shards`` shards, 0: the defaults, if missing) in one
    transaction; return how many."""
    existed = exists(site, name)
    try:
        db = site.open(name, create=True, exclusive=not existed, hash_size=hash_size, shards=shards)
    except FileExistsError:
        existed = True
        db = site.open(name)
    try:
        if existed and not replace and db.firstkey() is not None:
            raise AdminError(
                f"database {name!r} in {site.where} already has records; load into a new "
                "or empty database, or pass --replace to replace them all"
            )
        db.transaction_start()
        n = 0
        try:
            if replace:
                db.clear()
            store = db.store
            for key, data in records:
                store(key, data)
                n += 1
        except BaseException:
            db.transaction_cancel()
            raise
        db.transaction_commit()
    except BaseException:
        db.close()
        if not existed:
            try:
                remove(site, name)
            except AdminError:
                pass
        raise
    db.close()
    return n

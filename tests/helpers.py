"""Helpers shared by tests/unit and tests/cluster (multi-process workers are
tests/cluster/procs.py's)."""

from __future__ import annotations

import os
from typing import Any

from click.testing import Result

import radostdb

CREATE = os.O_CREAT | os.O_RDWR


def ok(result: Result) -> Result:
    """The result of a ``radostdb`` command, after checking that it succeeded."""
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def error(result: Result, *fragments: str, code: int = 1) -> str:
    """The message of a failed command, checked: exit status, one line, fragments."""
    assert result.exit_code == code, (result.output, result.exception)
    assert result.stdout == ""
    message = result.stderr
    if code == 1:
        assert message.startswith("Error: ") and message.count("\n") == 1, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def make_db(
    name: str,
    records: dict[bytes, bytes],
    hash_size: int = 0,
    transaction: bool = False,
    shards: int | None = None,
    **kwargs: Any,
) -> None:
    """Create database ``name`` holding ``records``, stored one by one or in
    one transaction. ``shards``: its shard count (None: the default);
    ``hash_size`` is only kept for ``Tdb.hash_size`` to answer."""
    db = radostdb.Tdb(name, hash_size, 0, CREATE, shards=shards, **kwargs)
    if transaction:
        db.transaction_start()
    for k, v in records.items():
        db.store(k, v)
    if transaction:
        db.transaction_commit()
    db.close()

"""Fixtures of the cluster tests (the cluster fixtures themselves are radostdb.testing's)."""

from __future__ import annotations

from typing import Any

import procs
import pytest
from click.testing import CliRunner, Result

from radostdb.cli import main
from radostdb.testing import ClusterInfo


@pytest.fixture
def cli(ceph_cluster: ClusterInfo) -> Any:
    """Run ``radostdb ARGS`` in-process against the cluster under test."""
    env = {
        "CEPH_CONF": ceph_cluster.conf,
        "RADOSTDB_POOL": ceph_cluster.pool,
        "RADOSTDB_ID": ceph_cluster.client_id,
    }

    def run(*args: str, input: bytes | str | None = None) -> Result:
        return CliRunner(env=env).invoke(main, list(args), input=input)

    return run


@pytest.fixture(params=procs.METHODS)
def start_method(request: pytest.FixtureRequest) -> str:
    """How workers start (procs.py): a fresh interpreter, or forked from a
    process that uses radostdb; tests that take it run with each."""
    return str(request.param)

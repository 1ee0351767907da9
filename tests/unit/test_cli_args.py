"""The ``radostdb`` command line without a cluster: every ``--help``, usage
errors, and the errors given before any connection. The commands on a
cluster are in tests/cluster/test_cli.py."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner
from helpers import error

from radostdb.cli import main


# -- help ---------------------------------------------------------------------------
def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", [(), *_commands(main)], ids=lambda p: " ".join(p) or "main")
def test_every_help_has_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0 and "Example:" in result.output, result.output


def test_unknown_command_and_option_are_usage_errors() -> None:
    assert CliRunner().invoke(main, ["frobnicate"]).exit_code == 2
    assert CliRunner().invoke(main, ["ls", "--bogus"]).exit_code == 2


# -- finding the cluster ------------------------------------------------------------
def test_conf_from_environment() -> None:
    result = CliRunner(env={"CEPH_CONF": "/nonexistent/env.conf"}).invoke(main, ["ls"])
    error(result, "/nonexistent/env.conf")


# -- radostdb cluster ---------------------------------------------------------------
def test_status_of_unknown_dir(scratch_dir: str) -> None:
    r = CliRunner().invoke(main, ["cluster", "status", "--dir", f"{scratch_dir}/none"])
    assert r.exit_code == 1
    assert "no cluster was started in" in r.output

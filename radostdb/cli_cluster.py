"""``radostdb cluster``: the command line of the throwaway local cluster
(devcluster.py), a group of the ``radostdb`` command (cli.py)."""

from __future__ import annotations

import os
import sys
import time

import click

from .devcluster import ALLOCATORS, STORES, ClusterError, DevCluster


@click.group()
def cluster() -> None:
    """Start, inspect and stop a throwaway local Ceph cluster.

    The cluster (one monitor, N OSDs on 127.0.0.1, cephx on, no manager) lives
    entirely in DIR: configuration, keyrings, data, logs and the PIDs of its
    daemons.

    \b
    Example:
      radostdb cluster up --dir /tmp/c --osds 3 --store bluestore
      ceph -c /tmp/c/ceph.conf -s
      radostdb cluster down --dir /tmp/c
    """


DIR_OPTION = click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory holding the cluster's configuration, data and logs.",
)


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc)) from exc


@cluster.command("up")
@DIR_OPTION
@click.option(
    "--osds", default=1, show_default=True, type=click.IntRange(1, 16), help="Number of OSDs."
)
@click.option(
    "--store",
    default="memstore",
    show_default=True,
    type=click.Choice(STORES),
    help="memstore is fastest; bluestore (sparse file) survives kill -9.",
)
@click.option("--pool", default="radostdb", show_default=True, help="Pool to create.")
@click.option(
    "--allocator",
    default="auto",
    show_default=True,
    type=click.Choice(ALLOCATORS),
    help="malloc of the daemons: tcmalloc (preloaded, as Ceph's own builds link it), libc "
    "(as Debian built them), auto: tcmalloc when installed.",
)
def cluster_up(directory: str, osds: int, store: str, pool: str, allocator: str) -> None:
    """Start a cluster in DIR and print the CEPH_CONF to use.

    \b
    Example:
      eval "$(radostdb cluster up --dir /tmp/c)"
    """
    started = time.monotonic()
    try:
        c = DevCluster(directory, osds=osds, store=store, pool=pool, allocator=allocator)
        c.up()
    except ClusterError as exc:
        _fail(exc)
    click.echo(
        f"cluster up in {time.monotonic() - started:.1f}s: 1 mon, {osds} {store} OSD(s), "
        f"{c.allocator} malloc, pool {pool}; stop it with: radostdb cluster down --dir {directory}",
        err=True,
    )
    click.echo(f"export CEPH_CONF={c.conf}")


@cluster.command("down")
@DIR_OPTION
@click.option(
    "--grace", default=10.0, show_default=True, help="Seconds between SIGTERM and SIGKILL."
)
def cluster_down(directory: str, grace: float) -> None:
    """Stop every daemon started in DIR, by recorded PID. Removes no file.

    Safe to run twice, or after a half-started 'up'.

    \b
    Example:
      radostdb cluster down --dir /tmp/c
    """
    try:
        stopped = DevCluster(directory).down(grace=grace)
    except ClusterError as exc:
        _fail(exc)
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running", err=True)


@cluster.command("status")
@DIR_OPTION
def cluster_status(directory: str) -> None:
    """Say which daemons of the cluster in DIR are up (exit 1 if none is).

    \b
    Example:
      radostdb cluster status --dir /tmp/c
    """
    try:
        c = DevCluster(directory)
        daemons = c.daemons()
    except ClusterError as exc:
        _fail(exc)
    if not daemons:
        raise click.ClickException(f"no cluster was started in {os.path.abspath(directory)}")
    for d in daemons:
        click.echo(f"{d.name:8} {'up' if d.alive() else 'down':5} pid {d.pid:<8} log {d.log}")
    if not any(d.alive() for d in daemons):
        sys.exit(1)

"""``radostdb ctdb-lock``: CTDB's cluster lock helper, a command of the
``radostdb`` group (cli.py adds it).

cli_ctdb design:
- Only the command line lives here; the lock, the protocol bytes and the
  process's life are ctdblock.py's.
- ctdbd splits the ``cluster lock = !…`` line on blanks and execs it: no
  shell, no quoting. The options after ``ctdb-lock`` are the ones a
  ctdb.conf line gives; they fall back on the group's own (``radostdb
  --conf F ctdb-lock …``), which read CEPH_CONF, RADOSTDB_ID and
  RADOSTDB_POOL, and then on admin.connect's defaults: the same resolution
  as every other command, in the same code.
- Every failure answers ``3`` on stdout, usage errors included (ctdbd reads
  the byte, not the exit code); the reason goes to stderr, which ctdbd logs.
"""

from __future__ import annotations

from typing import Any

import click

from . import admin, ctdblock


class HelperCommand(click.Command):
    """A command that answers ``3`` on stdout for a usage error too."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError:
            ctdblock.answer(ctdblock.ERROR)
            raise


def _group_option(ctx: click.Context, name: str) -> Any:
    """The value of the ``radostdb`` group's option ``name`` (env included)."""
    parent = ctx.parent
    return parent.params.get(name) if parent is not None else None


@click.command("ctdb-lock", cls=HelperCommand)
@click.option(
    "--conf",
    metavar="FILE",
    help="Ceph configuration file [default: radostdb's --conf, CEPH_CONF, /etc/ceph/ceph.conf].",
)
@click.option(
    "--id",
    "client_id",
    metavar="ID",
    help="Ceph client id, as in client.ID [default: radostdb's --id, RADOSTDB_ID, admin].",
)
@click.option(
    "--pool",
    metavar="POOL",
    help="Pool of OBJECT [default: radostdb's --pool, RADOSTDB_POOL, radostdb].",
)
@click.option(
    "--namespace", metavar="NS", help="RADOS namespace of OBJECT [default: radostdb's, none]."
)
@click.option(
    "--lease",
    default=ctdblock.DEFAULT_LEASE,
    show_default=True,
    type=click.FloatRange(ctdblock.MIN_LEASE, ctdblock.MAX_LEASE),
    metavar="SECONDS",
    help="How long the lock outlives a holder that stopped renewing it.",
)
@click.argument("object_name", metavar="OBJECT")
@click.pass_context
def ctdb_lock(
    ctx: click.Context,
    conf: str | None,
    client_id: str | None,
    pool: str | None,
    namespace: str | None,
    lease: float,
    object_name: str,
) -> None:
    """CTDB cluster lock helper: hold a lock on RADOS object OBJECT for ctdbd.

    ctdbd runs it from the [cluster] section of ctdb.conf and reads ONE
    byte from its stdout:

    \b
      0  the lock is held; the helper keeps running and keeps stdout open
      1  contended: another helper (this host or another) holds it
      3  error (bad arguments, no cluster, no pool, no caps); reason on stderr

    After 1 or 3 the helper exits at once. While holding, it renews its
    lease on the OSD every SECONDS/3. On SIGTERM or SIGINT, or when its
    parent process dies, it unlocks and exits 0. When the lease can no
    longer be confirmed by the OSD before it ends (a renewal refused, or
    none acknowledged for SECONDS minus a margin: a dead OSD, a partition,
    this process stopped), it exits 1 at once without waiting for the
    cluster, so ctdbd reads EOF before any other node can take the lock.
    The exit code is for humans; ctdbd ignores it.

    The lock is radostdb's own (the radostdb object class): the client
    needs `mon 'allow r'` and `osd 'allow rw pool=POOL class radostdb'`
    (or broader).

    In ctdb.conf ctdbd splits the line on blanks and runs no shell, so
    arguments cannot be quoted.

    \b
    Example:
      [cluster]
          cluster lock = !/usr/bin/radostdb ctdb-lock --id ctdb --pool ctdb --lease 10 ctdb.lock
      radostdb ctdb-lock --pool ctdb ctdb.lock   # by hand: prints 0 (or 1), holds until Ctrl-C
    """
    conf = conf or _group_option(ctx, "conf")
    client_id = client_id or _group_option(ctx, "client_id")
    pool = pool or _group_option(ctx, "pool")
    namespace = namespace if namespace is not None else _group_option(ctx, "namespace")
    timeout = _group_option(ctx, "timeout")

    def connect() -> Any:
        return admin.connect(conf, client_id, pool, namespace, timeout=timeout).io

    ctdblock.run(connect, object_name, lease)

"""The ``radostdb`` command line.

cli design:
- One click group. Global options (--conf, --id, --pool, --namespace,
  --timeout) go into an Env in ``ctx.obj``; the cluster is connected lazily,
  on the first command that needs it (``cluster`` commands never do).
- The commands only parse arguments, show progress and print. Record
  operations go through the public API (radostdb.Tdb); the rest (listing,
  info, ordered dump, loading, check and repair, removal) through
  radostdb.admin; the dump text format through radostdb.tdbdump, .tdb files
  through radostdb.tdbfile. JSON output is the reports' dataclasses
  (admin.to_json).
- Output meant for pipes goes to stdout (``dump`` and ``get`` write bytes);
  progress bars (rich), confirmations and chatter go to stderr. A progress bar
  is shown when stderr is a terminal, unless --no-progress or --quiet.
  cli_io.py holds these terminal helpers and the KEY/VALUE argument forms;
  cli_cluster.py the ``cluster`` subcommands.
- Library errors become one line ``Error: …`` and exit status 1; usage
  errors exit 2 (click's own handling).
- ``restore`` and ``import`` write through one transaction: all records or
  none. A database they created is removed again when they fail.
- NAME arguments go through names.py's mapping (as radostdb.Tdb's names
  do): a path is made absolute against the current directory and
  normalised, --path-prefix applies. ``import FILE`` without NAME stores the
  database under FILE's own path, where Samba opening FILE looks;
  ``export FILE`` without NAME writes that database back to FILE.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar

import click
import rados

from . import admin, cli_io, dbheader, layout, names, tdbdump, tdbfile
from . import cluster as clustermod
from . import reshard as reshard_mod
from .cli_cluster import cluster
from .cli_ctdb import ctdb_lock
from .errors import ERR_EXISTS, ERR_NOEXIST, TdbError

T = TypeVar("T")

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
LS_NAME_WIDTH = 60  # the NAME column of 'ls' grows to this, longer names overflow it


def _one_line(exc: BaseException) -> str:
    """An exception as one line for 'Error: …'."""
    if isinstance(exc, TdbError):
        text = exc.message
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class RadostdbGroup(click.Group):
    """The group: library errors leave as click's one-line 'Error: …', exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (
            admin.AdminError,
            TdbError,
            OSError,
            rados.Error,
            tdbdump.DumpFormatError,
            tdbfile.TdbFileError,
        ) as exc:
            raise click.ClickException(_one_line(exc)) from exc


@dataclass
class Env:
    """The global options, and the connection made from them on first use."""

    conf: str | None
    client_id: str | None
    pool: str | None
    namespace: str
    timeout: float | None
    path_prefix: str = ""
    _site: admin.Site | None = None

    def site(self) -> admin.Site:
        """The connected cluster, pool and namespace."""
        if self._site is None:
            self._site = admin.connect(
                self.conf, self.client_id, self.pool, self.namespace, timeout=self.timeout
            )
        return self._site


pass_env = click.make_pass_decorator(Env)


@click.group(cls=RadostdbGroup, context_settings=CONTEXT)
@click.version_option(package_name="radostdb")
@click.option(
    "--conf",
    envvar="CEPH_CONF",
    metavar="FILE",
    help="Ceph configuration file [env CEPH_CONF; default /etc/ceph/ceph.conf].",
)
@click.option(
    "--id",
    "client_id",
    envvar="RADOSTDB_ID",
    metavar="ID",
    help="Ceph client id, as in client.ID [env RADOSTDB_ID; default admin].",
)
@click.option(
    "--pool",
    envvar="RADOSTDB_POOL",
    metavar="POOL",
    help="Pool holding the databases [env RADOSTDB_POOL; default radostdb].",
)
@click.option(
    "--namespace", default="", metavar="NS", help="RADOS namespace within the pool [default: none]."
)
@click.option(
    "--timeout",
    envvar="RADOSTDB_OP_TIMEOUT",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds before any cluster operation (connecting, a read, a write, a lock "
    "wait) gives up with an error [default: RADOSTDB_OP_TIMEOUT; unset, connecting "
    "gives up after 30 s and other operations wait as long as the cluster takes].",
)
@click.option(
    "--path-prefix",
    envvar=names.PREFIX_ENV,
    default="",
    metavar="DIR",
    help="Name paths under DIR as if DIR were / (one name for Samba trees kept under "
    f"different roots) [env {names.PREFIX_ENV}; default: none].",
)
@click.pass_context
def main(
    ctx: click.Context,
    conf: str | None,
    client_id: str | None,
    pool: str | None,
    namespace: str,
    timeout: float | None,
    path_prefix: str,
) -> None:
    """radostdb: Samba-style TDB databases on Ceph RADOS.

    Inspect, dump and restore (tdbdump's text format), migrate real .tdb
    files, check and repair databases.

    A NAME that contains a / or ends in .tdb or .ldb is a path, made
    absolute against the current directory with //, . and .. resolved
    (nothing is looked up on this host, symlinks are not followed): the
    database Samba's tdb_open(PATH) finds through radostdb. Other names are
    used as they are.

    \b
    Example:
      radostdb cluster up --dir /tmp/c && export CEPH_CONF=/tmp/c/ceph.conf
      radostdb import /var/lib/samba/private/secrets.tdb
      radostdb dump /var/lib/samba/private/secrets.tdb | less
      cd /var/lib/samba/private && radostdb info secrets.tdb
    """
    try:
        names.path_prefix(path_prefix)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--path-prefix") from None
    # the whole command follows --timeout (lock waits too): its Site's session has it
    ctx.obj = Env(conf, client_id, pool, namespace, timeout, path_prefix)


# -- arguments -------------------------------------------------------------------
def _database_name(value: str, ctx: click.Context | None, as_path: bool = False) -> str:
    """names.database_name with the --path-prefix of the command line."""
    env = ctx.find_object(Env) if ctx is not None else None
    return names.database_name(value, prefix=env.path_prefix if env else "", as_path=as_path)


class DbName(click.ParamType):
    """A database name, mapped as radostdb.Tdb maps names (names.py); a
    rados:// URL is refused: pool and namespace are options."""

    name = "NAME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if value.startswith(names.URL_PREFIX):
            self.fail(
                "give the pool and namespace with --pool and --namespace, not as a rados:// URL",
                param,
                ctx,
            )
        try:
            return _database_name(value, ctx)
        except (ValueError, OSError) as exc:
            self.fail(_one_line(exc), param, ctx)


NAME = click.argument("name", type=DbName())


def _literal_or_mapped(value: str, literal: bool, hint: str) -> str:
    """A NAME argument taken as stored (--literal) or mapped as names.py maps."""
    if literal:
        return value
    try:
        return _database_name(value, click.get_current_context())
    except (ValueError, OSError) as exc:
        raise click.BadParameter(_one_line(exc), param_hint=hint) from None


class LiteralOrMapped(click.ParamType):
    """OLD of ``rename``: mapped as a NAME, or taken as stored with --literal
    (resolved in the command, which knows the flag)."""

    name = "OLD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if value.startswith(names.URL_PREFIX):
            self.fail("give the pool and namespace with --pool and --namespace", param, ctx)
        return str(value)


HEX_OPTION = click.option(
    "--hex",
    "hex_",
    is_flag=True,
    help="Keys and values on the command line (and the value printed) are in hex.",
)


# -- listing and description ---------------------------------------------------------
@main.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@pass_env
def ls_cmd(env: Env, as_json: bool) -> None:
    """List the databases here, with shards, records and size.

    Counting reads every record of every database. BYTES is the size of the
    keys and data; with --json, omap_bytes is what RADOS stores (encoded keys,
    record headers).

    \b
    Example:
      radostdb --pool radostdb ls
      radostdb ls --json | jq -r '.[].name'
    """
    dbs = admin.list_databases(env.site())
    if as_json:
        click.echo(json.dumps(admin.to_json(dbs), indent=2))
        return
    if not dbs:
        click.echo(f"no databases in {env.site().where}", err=True)
        return
    width = min(LS_NAME_WIDTH, max(4, *(len(d.name) for d in dbs)))  # longer names overflow
    click.echo(f"{'NAME':<{width}}  {'SHARDS':>6}  {'RECORDS':>10}  {'BYTES':>14}")
    for d in dbs:
        if d.problem:
            click.echo(f"{d.name:<{width}}  {d.nshards or '?':>6}  unreadable header: {d.problem}")
        else:
            click.echo(f"{d.name:<{width}}  {d.nshards:>6}  {d.records:>10}  {d.bytes:>14}")
        if d.note:
            click.echo(f"  note: {d.note}")


@main.command("inboxes")
@click.option("--prune", is_flag=True, help="Remove the inboxes nobody watches.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@pass_env
def inboxes_cmd(env: Env, prune: bool, as_json: bool) -> None:
    """List the process inboxes here, and who watches them.

    Every process that waited for a lock has an inbox object, where the
    lock is handed to it; it removes it when it ends. A process killed
    (kill -9) leaves its inbox behind: an empty object that nobody watches
    once the OSD's watch timeout (30 s) has passed. --prune removes those.

    \b
    Example:
      radostdb inboxes
      radostdb inboxes --prune
    """
    site = env.site()
    found = admin.prune_inboxes(site) if prune else admin.inboxes(site)
    if as_json:
        click.echo(json.dumps(admin.to_json(found), indent=2))
        return
    if not found:
        click.echo(f"no inboxes in {site.where}", err=True)
        return
    click.echo(f"{'INBOX':<31}  {'WATCHERS':>8}")
    for i in found:
        click.echo(f"{i.obj:<31}  {i.watchers:>8}{'  (pruned)' if i.pruned else ''}")
    dead = sum(1 for i in found if i.watchers == 0)
    if dead and not prune:
        click.echo(f"{dead} unwatched (left by processes that died): --prune removes them")


@main.command()
@NAME
@click.option("--shards", is_flag=True, help="Also list every shard's records, size and seq.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@cli_io.progress_options
@pass_env
def info(
    env: Env, name: str, shards: bool, as_json: bool, progress: bool | None, quiet: bool
) -> None:
    """Describe a database: header, seqnum, records, size, handles, locks.

    Also says whether a multi-shard commit is unfinished. Counting reads
    every record. Problems with the header or the shards' metadata are
    listed; 'radostdb check' looks deeper.

    \b
    Example:
      radostdb info secrets
      radostdb info secrets --shards --json
    """
    with cli_io.Progress(cli_io.show_progress(progress, quiet), f"reading {name}") as bar:
        d = admin.info(env.site(), name, progress=bar.advance)
    if as_json:
        click.echo(json.dumps(admin.to_json(d), indent=2))
        return
    rows = [("name", d.name), ("pool", d.pool)]
    if d.namespace:
        rows.append(("namespace", d.namespace))
    rows.append(("object", d.header.object))
    rows += [(k, v) for k, v in sorted(d.header.fields.items()) if k != layout.NAME_KEY]
    if d.shards:
        counts = sorted(s.records for s in d.shards)
        rows.append(
            (
                "per shard",
                f"{counts[0]} to {counts[-1]} records, median {counts[len(counts) // 2]} "
                f"({len(counts)} shards; --shards lists them)",
            )
        )
    if d.split is not None:
        sp = d.split
        rows.append(
            (
                "split",
                f"shard {sp.p} into {sp.q}: "
                + (
                    "done, not yet in the header"
                    if sp.done
                    else f"keys moved up to omap key {sp.moved_upto!r}"
                )
                + " ('radostdb reshard' finishes it)",
            )
        )
    locks = [lk for lk in d.locks if not lk.watch]
    watches = [lk for lk in d.locks if lk.watch]
    rows += [
        ("seqnum", "?" if d.seqnum is None else str(d.seqnum)),
        ("records", str(d.records)),
        ("bytes", f"{d.key_bytes + d.data_bytes} (keys {d.key_bytes}, data {d.data_bytes})"),
        ("omap bytes", str(d.omap_bytes)),
        (
            "open by",
            f"{len(d.openers)} CLEAR_IF_FIRST handle(s)"
            + (": " + ", ".join(map(str, d.openers)) if d.openers else ""),
        ),
        (
            "locks",
            f"{len(locks)} held"
            + (
                f" ({sum(lk.expired for lk in locks)} expired)"
                if any(lk.expired for lk in locks)
                else ""
            ),
        ),
        ("watches", f"{len(watches)} armed (watched records)"),
        (
            "transaction",
            "unfinished commit: " + ", ".join(d.unfinished) if d.unfinished else "none unfinished",
        ),
        ("problems", "none" if not d.findings else str(len(d.findings))),
    ]
    for k, v in rows:
        click.echo(f"{k + ':':<13}{v}")
    for lk in d.locks:
        click.echo(f"  {'watch' if lk.watch else 'lock'}: {lk.describe()}")
    for f in d.findings:
        click.echo(f"  {f.describe()}")
    if shards:
        for s in d.shards:
            click.echo(
                f"shard {s.index:>5}  {s.records:>10} records  "
                f"{s.key_bytes + s.data_bytes:>12} bytes  seq {s.seq}"
            )


# -- reshard -----------------------------------------------------------------------
@main.command("reshard")
@NAME
@click.option(
    "--shards",
    "nshards",
    type=click.IntRange(1, layout.MAX_SHARDS),
    help="Grow to N shards [default: double, every shard of the current level splits].",
)
@click.option(
    "--threshold",
    type=click.IntRange(0, 2**32 - 2),
    help="Keep in the database's header the records per shard past which clients "
    f"split shards by themselves (0: never) [default when unset: "
    f"${reshard_mod.THRESHOLD_ENV}, else {reshard_mod.DEFAULT_THRESHOLD}].",
)
@cli_io.progress_options
@pass_env
def reshard_cmd(
    env: Env,
    name: str,
    nshards: int | None,
    threshold: int | None,
    progress: bool | None,
    quiet: bool,
) -> None:
    """Split a database's shards, online, and finish a split left half done.

    Clients keep reading, writing, locking and running transactions while
    the records move; a client killed meanwhile, or this command, leaves
    the database whole, and running it again goes on where it stopped.
    Shards split one at a time (linear hashing): the shard count grows by
    one per split, and any count can be asked for. Shards never merge.
    With --threshold alone, only the threshold is set.

    \b
    Example:
      radostdb reshard registry                 # double the shards
      radostdb reshard locking --shards 64
      radostdb reshard locking --threshold 50000
    """
    site = env.site()
    header = admin.usable_header(site, name)
    if threshold is not None:
        dbheader.set_field(site.io, name, dbheader.THRESHOLD_KEY, str(threshold))
        cli_io.say(quiet, f"{name!r} splits shards past {threshold} records" if threshold
                   else f"{name!r} no longer splits shards by itself")  # fmt: skip
        if nshards is None:
            return
    lay = header.layout
    assert lay is not None  # usable_header checked it
    goal = nshards if nshards is not None else 2 * lay.level
    if goal < lay.nshards:
        raise click.ClickException(f"{name!r} has {lay.nshards} shards already; shards never merge")
    target = clustermod.Target(site.place, name, site.session)
    started = time.monotonic()
    with cli_io.Progress(cli_io.show_progress(progress, quiet), "splitting") as bar:

        def told(p: reshard_mod.Progress) -> None:
            bar.describe(f"shard {p.shard} ({p.split}/{p.total} split)")
            bar.advance(p.moved - bar.done)

        try:
            if goal == lay.nshards:
                after = reshard_mod.finish(target)
            else:
                after = reshard_mod.reshard(target, goal, told)
        except reshard_mod.ReshardError as exc:
            raise click.ClickException(f"{name!r}: {exc}; the database is whole") from None
        moved = bar.done
    cli_io.say(
        quiet,
        f"{name!r} has {after.nshards} shards (was {lay.nshards}); {moved} records moved in "
        f"{time.monotonic() - started:.1f}s",
    )


# -- dump and restore -------------------------------------------------------------
@main.command()
@NAME
@click.option(
    "-k",
    "--key",
    "key_text",
    metavar="KEY",
    help="Print only KEY's value, escaped, without a newline (tdbdump -k).",
)
@click.option("--hex", "hex_", is_flag=True, help="KEY is given in hex.")
@pass_env
def dump(env: Env, name: str, key_text: str | None, hex_: bool) -> None:
    """Print a database in tdbdump's text format, records in key order.

    The output is what Samba's tdbdump prints for the same records (tdbdump
    itself lists them in hash order), and what 'radostdb restore' and
    tdbrestore read. It streams: memory stays bounded whatever the size.
    KEY for -k is text, hex with --hex, or @FILE.

    \b
    Example:
      radostdb dump secrets > secrets.dump
      radostdb dump secrets | tdbrestore /tmp/secrets.tdb
      radostdb dump secrets -k 'SECRETS/SID/MYDOMAIN'
    """
    if key_text is not None:
        key = cli_io.data_arg(key_text, hex_, "KEY")
        db = env.site().open(name, readonly=True)
        try:
            value = db.get(key)
        finally:
            db.close()
        if value is None:
            raise click.ClickException(
                f"key {admin.display_key(key)} not found in database {name!r}"
            )
        with cli_io.binary_stdout() as out:
            out.write(tdbdump.escape(value))
        return
    records = admin.records(env.site(), name)
    with cli_io.binary_stdout() as out:
        tdbdump.write(records, out)


LOAD_OPTIONS = [
    click.option(
        "--hash-size",
        default=0,
        type=click.IntRange(0, layout.MAX_SHARDS),
        help="tdb's hash size recorded in a database created here (what its hash_size "
        "answers; not its shard count) [default: 0, tdb's 131; import: the file's].",
    ),
    click.option(
        "--shards",
        default=0,
        type=click.IntRange(0, layout.MAX_SHARDS),
        help=f"Shard count of a database created here [default: 0, {layout.DEFAULT_SHARDS}]; "
        "shards split as the database grows.",
    ),
    click.option(
        "--replace",
        is_flag=True,
        help="Replace the records of a database that has some (same transaction).",
    ),
]


def _load_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(LOAD_OPTIONS):
        f = option(f)
    return f


@main.command()
@NAME
@click.option(
    "-i",
    "--input",
    "source",
    type=click.File("rb"),
    default="-",
    help="Read the dump from FILE [default: stdin].",
)
@_load_options
@cli_io.progress_options
@pass_env
def restore(
    env: Env,
    name: str,
    source: BinaryIO,
    hash_size: int,
    shards: int,
    replace: bool,
    progress: bool | None,
    quiet: bool,
) -> None:
    """Load a tdbdump-format dump (stdin) into a new database.

    All or nothing: the whole input is parsed first (an error names the
    line, and nothing is written), then stored in one transaction. A key
    given twice is an error, as in tdbrestore.

    \b
    Example:
      tdbdump /var/lib/samba/private/secrets.tdb | radostdb restore secrets
      tdbdump /srv/old/registry.tdb | radostdb restore /var/lib/samba/registry.tdb
      radostdb dump a | radostdb restore b
    """
    started = time.monotonic()
    where = getattr(source, "name", "<stdin>")
    with cli_io.Progress(cli_io.show_progress(progress, quiet), "parsing") as bar:
        try:
            found = tdbdump.read_records(source, bar.advance, cli_io.PROGRESS_STEP)
        except tdbdump.DumpFormatError as exc:
            raise click.ClickException(f"{where}: {exc}; nothing was written") from None
        bar.describe("storing")
        n = admin.load(
            env.site(),
            name,
            bar.counted(found.items()),
            hash_size=hash_size,
            shards=shards,
            replace=replace,
        )
    cli_io.say(quiet, f"restored {n} records into {name!r} in {time.monotonic() - started:.1f}s")


# -- TDB files ------------------------------------------------------------------------
@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.argument("name", type=DbName(), required=False)
@_load_options
@cli_io.progress_options
@pass_env
def import_cmd(
    env: Env,
    file: str,
    name: str | None,
    hash_size: int,
    shards: int,
    replace: bool,
    progress: bool | None,
    quiet: bool,
) -> None:
    """Copy every record of a .tdb file into a new or empty database.

    NAME defaults to FILE's absolute, normalised path: the database that
    Samba code opening FILE through radostdb finds. All or nothing: the
    records are written in one transaction. The file is read under a read
    lock of the whole TDB, so a Samba writing it waits.

    \b
    Example:
      radostdb import /var/lib/samba/private/secrets.tdb
      cd /var/lib/samba && radostdb --pool samba import --hash-size 64 locking.tdb
      radostdb import /backup/secrets.tdb /var/lib/samba/private/secrets.tdb
      radostdb import old-secrets.tdb scratch
    """
    if name is None:
        name = _name_of_file(file)
    started = time.monotonic()
    show = cli_io.show_progress(progress, quiet)
    with tdbfile.TdbReader(file) as src:
        if not src.locked:
            cli_io.say(
                quiet, f"note: reading {file} without a lock (it is not writable by this user)"
            )
        with cli_io.Progress(show, "importing", len(src) if show else None) as bar:
            try:
                n = admin.load(
                    env.site(),
                    name,
                    _then(bar.counted(src), bar.describe, "committing"),
                    hash_size=hash_size or src.hash_size,
                    shards=shards,
                    replace=replace,
                )
            except tdbfile.TdbFileError as exc:
                raise click.ClickException(f"{exc}; nothing was written") from None
    cli_io.say(
        quiet,
        f"imported {n} records from {file} into {name!r} in {time.monotonic() - started:.1f}s",
    )


def _then(items: Iterable[T], fn: Callable[[str], None], arg: str) -> Iterator[T]:
    """``items``, then ``fn(arg)`` once they are all taken."""
    yield from items
    fn(arg)


def _name_of_file(file: str) -> str:
    """The database a local file's path names (FILE taken as a path even
    without a slash or suffix), as a usage error when it cannot be one."""
    try:
        return _database_name(file, click.get_current_context(), as_path=True)
    except (ValueError, OSError) as exc:
        raise click.BadParameter(_one_line(exc), param_hint="FILE") from None


@main.command()
@click.argument("args", nargs=-1, required=True, metavar="[NAME] FILE")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.option(
    "--hash-size",
    default=0,
    type=click.IntRange(0),
    help="Hash chains of the TDB file [default: from the record count].",
)
@cli_io.progress_options
@pass_env
def export(
    env: Env,
    args: tuple[str, ...],
    force: bool,
    hash_size: int,
    progress: bool | None,
    quiet: bool,
) -> None:
    """Write every record of a database to a new .tdb file.

    With FILE alone, the database is the one FILE's path names (as 'import
    FILE' stores it): the database goes back to where it came from (with
    --force when FILE exists). The file is written under a temporary name,
    synced, and renamed into place: FILE is either complete or untouched.
    tdbdump FILE prints the same records as 'radostdb dump NAME'.

    \b
    Example:
      radostdb export secrets /tmp/secrets.tdb && tdbdump /tmp/secrets.tdb
      radostdb export /var/lib/samba/private/secrets.tdb /backup/secrets.tdb
      radostdb export --force /var/lib/samba/private/secrets.tdb
    """
    ctx = click.get_current_context()
    if len(args) > 2:
        raise click.UsageError(f"got {len(args)} arguments; expected [NAME] FILE")
    file = args[-1]
    name = DbName().convert(args[0], None, ctx) if len(args) == 2 else _name_of_file(file)
    if os.path.isdir(file):
        raise click.BadParameter(f"{file} is a directory", param_hint="FILE")
    tdbfile.tdb_module()  # without it, fail before reading anything
    started = time.monotonic()
    site = env.site()
    admin.usable_header(site, name)  # a missing database fails before any file is made
    if os.path.exists(file) and not force:
        raise click.ClickException(f"{file} exists; pass --force to overwrite it")
    show = cli_io.show_progress(progress, quiet)
    total = admin.count_records(site, name) if show or not hash_size else None
    with cli_io.Progress(show, "exporting", total) as bar:
        n = tdbfile.write(
            file,
            bar.counted(admin.records(site, name, ordered=False)),
            hash_size=hash_size or tdbfile.hash_size_for(total or 0),
        )
    took = time.monotonic() - started
    cli_io.say(quiet, f"exported {n} records of {name!r} to {file} in {took:.1f}s")


# -- single records ------------------------------------------------------------------
def _key_command(f: Callable[..., Any]) -> click.Command:
    """A command taking NAME KEY [--hex] (get, delete)."""
    return main.command()(NAME(click.argument("key")(HEX_OPTION(pass_env(f)))))


@_key_command
def get(env: Env, name: str, key: str, hex_: bool) -> None:
    """Print the value of KEY: its bytes as they are, or hex with --hex.

    KEY is UTF-8 text, hex with --hex, or @FILE for the bytes of a file.
    A missing key is an error (exit 1).

    \b
    Example:
      radostdb get secrets 'SECRETS/MACHINE_PASSWORD/MYDOMAIN' > password.bin
      radostdb get --hex locking 0a0b00
    """
    raw = cli_io.data_arg(key, hex_, "KEY")
    db = env.site().open(name, readonly=True)
    try:
        value = db.get(raw)
    finally:
        db.close()
    if value is None:
        raise click.ClickException(f"key {admin.display_key(raw)} not found in database {name!r}")
    with cli_io.binary_stdout() as out:
        out.write(value.hex().encode() + b"\n" if hex_ else value)


@main.command()
@NAME
@click.argument("key")
@click.argument("value")
@click.option("--insert", "mode", flag_value="insert", help="Fail if KEY exists (TDB_INSERT).")
@click.option(
    "--modify", "mode", flag_value="modify", help="Fail if KEY does not exist (TDB_MODIFY)."
)
@click.option("--create", is_flag=True, help="Create the database if it does not exist.")
@HEX_OPTION
@pass_env
def store(
    env: Env, name: str, key: str, value: str, mode: str | None, create: bool, hex_: bool
) -> None:
    """Store VALUE under KEY (TDB_REPLACE, --insert, --modify).

    \b
    KEY and VALUE: UTF-8 text, hex with --hex, or @FILE for the bytes of a
    file (@- for stdin; @@ starts text with a literal @).

    \b
    Example:
      radostdb store mydb greeting 'hello world'
      radostdb store --hex mydb 6b657900 00ff
      radostdb store --insert mydb blob @/tmp/blob.bin
    """
    from .flags import INSERT, MODIFY, REPLACE

    raw_key, raw_value = cli_io.data_arg(key, hex_, "KEY"), cli_io.data_arg(value, hex_, "VALUE")
    db = env.site().open(name, create=create)
    try:
        db.store(raw_key, raw_value, {"insert": INSERT, "modify": MODIFY}.get(mode or "", REPLACE))
    except TdbError as exc:
        if exc.code == ERR_EXISTS:
            raise click.ClickException(
                f"key {admin.display_key(raw_key)} already exists in database {name!r} "
                "(store without --insert to replace it)"
            ) from None
        if exc.code == ERR_NOEXIST:
            raise click.ClickException(
                f"key {admin.display_key(raw_key)} does not exist in database {name!r} "
                "(store without --modify to create it)"
            ) from None
        raise
    finally:
        db.close()


@main.command()
@NAME
@click.argument("key")
@click.argument("value")
@click.option("--create", is_flag=True, help="Create the database if it does not exist.")
@HEX_OPTION
@pass_env
def append(env: Env, name: str, key: str, value: str, create: bool, hex_: bool) -> None:
    """Add VALUE to the end of KEY's value (a missing KEY starts empty).

    \b
    KEY and VALUE: UTF-8 text, hex with --hex, or @FILE for the bytes of a
    file (@- for stdin; @@ starts text with a literal @).

    \b
    Example:
      radostdb append mydb log 'one more line'
      printf '\\x00\\x01' | radostdb append mydb blob @-
    """
    raw_key, raw_value = cli_io.data_arg(key, hex_, "KEY"), cli_io.data_arg(value, hex_, "VALUE")
    db = env.site().open(name, create=create)
    try:
        db.append(raw_key, raw_value)
    finally:
        db.close()


@_key_command
def delete(env: Env, name: str, key: str, hex_: bool) -> None:
    """Delete KEY; a missing KEY is an error (exit 1).

    KEY is UTF-8 text, hex with --hex, or @FILE for the bytes of a file.

    \b
    Example:
      radostdb delete mydb greeting
      radostdb delete --hex mydb 6b657900
    """
    raw = cli_io.data_arg(key, hex_, "KEY")
    db = env.site().open(name)
    try:
        db.delete(raw)
    except TdbError as exc:
        if exc.code == ERR_NOEXIST:
            raise click.ClickException(
                f"key {admin.display_key(raw)} does not exist in database {name!r}"
            ) from None
        raise
    finally:
        db.close()


@dataclass
class Change:
    """One change of a watched record, as ``radostdb watch --json`` prints it."""

    key: bytes = field(metadata={"json_key": True})
    value: bytes | None = field(metadata={"json_key": True})
    deleted: bool
    time: float  # seconds since the epoch, when it was seen


@main.command("watch")
@NAME
@click.argument("key")
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    metavar="S",
    help="Stop after S seconds (exit 0) [default: watch until interrupted].",
)
@click.option("--count", type=click.IntRange(1), metavar="N", help="Stop after N changes (exit 0).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per change.")
@HEX_OPTION
@pass_env
def watch_cmd(
    env: Env,
    name: str,
    key: str,
    timeout: float | None,
    count: int | None,
    as_json: bool,
    hex_: bool,
) -> None:
    """Print each change of KEY as it happens, by any client anywhere.

    With --count N it exits 1 if fewer than N changes came before --timeout.

    A store or append prints 'stored: VALUE' (tdbdump's escaping; hex with
    --hex), a delete 'deleted'; a transaction's change prints once it
    commits. Changes in quick succession may print once, as the latest
    value. KEY is UTF-8 text, hex with --hex, or @FILE. Watching writes
    nothing to the records (it needs write access to the pool all the same:
    the watch is an entry in the record's shard object).

    \b
    Example:
      radostdb watch locking 'share-mode/0a0b'
      radostdb watch --count 1 --timeout 60 mydb ready && echo changed
      radostdb watch --json mydb greeting | jq -r .value
    """
    raw = cli_io.data_arg(key, hex_, "KEY")
    db = env.site().open(name, readonly=True)
    seen = 0
    try:
        changes = db.watch_iter(raw, timeout=timeout)
        for value in changes:
            seen += 1
            if as_json:
                line = json.dumps(admin.to_json(Change(raw, value, value is None, time.time())))
                shown = line.encode()
            elif value is None:
                shown = b"deleted"
            else:
                shown = b"stored: " + (value.hex().encode() if hex_ else tdbdump.escape(value))
            with cli_io.binary_stdout() as out:  # flushed: a pipe sees each change at once
                out.write(shown + b"\n")
            if seen == count:
                break
        changes.close()
    except KeyboardInterrupt:
        return
    finally:
        db.close()
    if count is not None and seen < count and timeout is not None:
        raise click.ClickException(f"{seen} of {count} changes within {timeout:g} s")


# -- check, wipe, rm ----------------------------------------------------------------
@main.command()
@NAME
@click.option(
    "--repair",
    is_flag=True,
    help="Bring the database back to a usable state, saying what was dropped or rebuilt.",
)
@click.option(
    "--drop-corrupt",
    is_flag=True,
    help="With --repair: also remove records and entries that fail their crc or "
    "format (their data is lost).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@cli_io.progress_options
@pass_env
def check(
    env: Env,
    name: str,
    repair: bool,
    drop_corrupt: bool,
    as_json: bool,
    progress: bool | None,
    quiet: bool,
) -> None:
    """Verify a database; exit 0 if it is sound, 1 if problems remain.

    Checks the header, the metadata of the header, transaction-lock and
    shard objects, the journal, unfinished multi-shard commits and their
    redo logs, expired locks, and every record (also those in redo logs):
    its key encoding, its crc32c and that it sits in its key's shard. Each
    problem names its object.

    --repair rebuilds metadata that does not decode (locks and transaction
    marks dropped; a pending transaction's redo log installed if it
    committed), decides transactions whose journal record is damaged,
    whose redo log cannot be installed (that shard's writes are then
    reported lost) or which name missing shards from the participants'
    state, removes journal keys
    that are not radostdb's, finishes unfinished commits (as the next
    transaction would), drops expired locks, and moves misplaced records to
    their shard (or drops the copy when the shard already holds the key);
    with --drop-corrupt it also removes corrupt records. Each problem is
    printed with what was done, and the records a decision had to presume
    ("records at risk").

    \b
    Example:
      radostdb check secrets
      radostdb check secrets --repair
      radostdb check secrets --repair --drop-corrupt
    """
    if drop_corrupt and not repair:
        raise click.UsageError("--drop-corrupt needs --repair")
    with cli_io.Progress(cli_io.show_progress(progress, quiet), f"checking {name}") as bar:
        report = admin.check(
            env.site(), name, repair=repair, drop_corrupt=drop_corrupt, progress=bar.advance
        )
    if as_json:
        click.echo(json.dumps(admin.to_json(report), indent=2))
    else:
        for f in report.findings:
            click.echo(f.describe())
            if f.repair:
                click.echo(f"  -> {f.repair}")
        fixed = sum(f.repaired for f in report.findings)
        summary = f"{name}: {report.records} records in {report.shards_checked} shards checked"
        if not report.findings:
            summary += ", no problems"
        else:
            summary += f", {len(report.findings)} problem(s)"
            if repair:
                summary += f", {fixed} repaired"
        click.echo(summary)
    if not report.clean:
        sys.exit(1)


@main.command()
@NAME
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_env
def wipe(env: Env, name: str, yes: bool) -> None:
    """Delete every record, keeping the database (tdb_wipe_all).

    \b
    Example:
      radostdb wipe --yes scratch
    """
    db = env.site().open(name)
    try:
        if not yes:
            click.confirm(
                f"Delete every record of database {name!r} in {env.site().where}?",
                abort=True,
                err=True,
            )
        db.clear()
    finally:
        db.close()
    click.echo(f"wiped {name!r}", err=True)


@main.command()
@click.argument("name", type=LiteralOrMapped())
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force", is_flag=True, help="Remove it even while CLEAR_IF_FIRST handles have it open."
)
@click.option(
    "--literal",
    is_flag=True,
    help="Take NAME as it is stored, not mapped (a name radostdb 0.2 did not normalise).",
)
@pass_env
def rm(env: Env, name: str, yes: bool, force: bool, literal: bool) -> None:
    """Remove a database: its records, shards and header.

    Refused while a CLEAR_IF_FIRST handle has the database open, unless
    --force (plain handles keep no watch and are not seen).

    \b
    Example:
      radostdb rm --yes scratch
    """
    name = _literal_or_mapped(name, literal, "NAME")
    site = env.site()
    objs = admin.database_objects(site, name)  # fails for a missing database
    if not yes:
        click.confirm(
            f"Remove database {name!r} ({len(objs)} objects) from {site.where}?",
            abort=True,
            err=True,
        )
    n = admin.remove(site, name, force=force)
    click.echo(f"removed {name!r} ({n} objects)", err=True)


@main.command()
@click.argument("old", type=LiteralOrMapped())
@click.argument("new", type=DbName())
@click.option(
    "--literal",
    is_flag=True,
    help="Take OLD as it is stored, not mapped as a name: for databases radostdb "
    "0.2 stored under a path it did not normalise ('radostdb ls' notes them).",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_env
def rename(env: Env, old: str, new: str, literal: bool, yes: bool) -> None:
    """Rename a database: copy its records to NEW, then remove OLD.

    The copy is one transaction (all or nothing) into NEW, created with
    OLD's shard count; OLD is removed afterwards. Refused while NEW exists
    or CLEAR_IF_FIRST handles have OLD open; stop the services using OLD
    first (plain handles are not seen).

    \b
    Example:
      radostdb rename scratch archive
      radostdb rename --literal /srv//a/./x.tdb /srv/a/x.tdb
    """
    old = _literal_or_mapped(old, literal, "OLD")
    site = env.site()
    if not yes:
        click.confirm(f"Rename database {old!r} to {new!r} in {site.where}?", abort=True, err=True)
    n = admin.rename(site, old, new)
    click.echo(f"renamed {old!r} to {new!r} ({n} records)", err=True)


main.add_command(cluster)
main.add_command(ctdb_lock)

if __name__ == "__main__":
    main()

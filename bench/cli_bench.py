"""End-to-end figures of the ``radostdb`` command line on a real cluster.

    .venv/bin/python bench/cli_bench.py [--records 1000000] [--json out.json]

Makes a .tdb file of Samba-like records with the ``tdb`` module (keys
``UNIX_USER/userNNNNNNN\\0``, 50-150 random bytes of data: most data bytes
need escaping in a dump), then times, each as its own process:

- ``radostdb import FILE NAME`` (one transaction),
- ``radostdb dump NAME > /dev/null`` (ordered, streaming),
- the same dump of a database a tenth the size, to show that its peak
  memory does not grow with the database,
- ``radostdb restore -i DUMP NAME2`` of Samba's tdbdump output of FILE,
- ``radostdb export NAME FILE2``,
- Samba's ``tdbdump FILE > /dev/null``, for reference.

Records per second and the peak RSS of each process (GNU time) are
printed. The cluster is the one of CEPH_CONF/RADOSTDB_POOL when both are
set, else a throwaway local one (DevCluster) started for the run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import tdb

CLI = [sys.executable, "-m", "radostdb.cli"]
TIME = "/usr/bin/time"  # GNU time (Debian package "time")


@dataclass
class Figure:
    """One timed command."""

    what: str
    records: int
    seconds: float
    peak_rss_mib: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def make_tdb(path: Path, records: int, seed: int = 1) -> None:
    """A .tdb file of ``records`` Samba-like records."""
    rng = random.Random(seed)
    t = tdb.Tdb(
        str(path),
        max(131, records // 4) | 1,
        tdb.DEFAULT,
        os.O_RDWR | os.O_CREAT | os.O_TRUNC,
        0o600,
    )
    t.transaction_start()
    for i in range(records):
        t.store(b"UNIX_USER/user%07d\x00" % i, rng.randbytes(rng.randrange(50, 150)))
    t.transaction_commit()
    t.close()


def run(what: str, records: int, argv: list[str], env: dict[str, str]) -> Figure:
    """Run ``argv`` (stdout to /dev/null) to completion; its wall time and peak RSS.

    The peak RSS comes from GNU time: a process forked from this (large)
    Python would inherit its maximum RSS across exec.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss, open(os.devnull, "wb") as out:
        started = time.monotonic()
        proc = subprocess.run(
            [TIME, "-f", "%M", "-o", rss.name, *argv], env=env, stdout=out, stderr=subprocess.PIPE
        )
        elapsed = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()}")
        peak_kib = int(rss.read().split()[-1])
    return Figure(what, records, elapsed, peak_kib / 1024)


def bench(records: int, env: dict[str, str], work: Path) -> list[Figure]:
    """Every figure, for a database of ``records`` records."""
    small = max(1, records // 10)
    src, src_small = work / "src.tdb", work / "small.tdb"
    print(f"making {src} ({records} records) and {src_small} ({small})", file=sys.stderr)
    make_tdb(src, records)
    make_tdb(src_small, small, seed=2)
    tag = f"bench-cli-{os.getpid()}"
    big_db, small_db, restored_db = f"{tag}-big", f"{tag}-small", f"{tag}-restored"
    figures = []
    try:
        figures.append(
            run("radostdb import", records, [*CLI, "import", "--quiet", str(src), big_db], env)
        )
        run("import (small)", small, [*CLI, "import", "--quiet", str(src_small), small_db], env)
        figures.append(run("radostdb dump", records, [*CLI, "dump", big_db], env))
        figures.append(run("radostdb dump (1/10 size)", small, [*CLI, "dump", small_db], env))
        dump_file = work / "src.dump"
        with open(dump_file, "wb") as out:
            subprocess.run(["tdbdump", str(src)], stdout=out, check=True)
        restore = [*CLI, "restore", "--quiet", "-i", str(dump_file), restored_db]
        figures.append(run("radostdb restore (tdbdump text)", records, restore, env))
        figures.append(
            run(
                "radostdb export",
                records,
                [*CLI, "export", "--quiet", big_db, str(work / "out.tdb")],
                env,
            )
        )
        figures.append(run("tdbdump (Samba, local file)", records, ["tdbdump", str(src)], env))
    finally:
        for name in (big_db, small_db, restored_db):
            subprocess.run([*CLI, "rm", "--yes", name], env=env, capture_output=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--json", metavar="FILE", help="Also write the figures as JSON.")
    args = parser.parse_args()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="rtdb-clibench-", dir="/tmp") as tmp:
        work = Path(tmp)
        dev = None
        if not (env.get("CEPH_CONF") and env.get("RADOSTDB_POOL")):
            from radostdb.devcluster import DevCluster

            dev = DevCluster(work / "cluster")
            dev.up(owner=os.getpid())
            env.update(CEPH_CONF=str(dev.conf), RADOSTDB_POOL=dev.pool)
        try:
            figures = bench(args.records, env, work)
        finally:
            if dev is not None:
                dev.down()
    print(f"{'command':<30} {'records':>10} {'seconds':>8} {'records/s':>10} {'peak RSS':>10}")
    for f in figures:
        print(
            f"{f.what:<30} {f.records:>10} {f.seconds:>8.2f} {f.rate:>10.0f} "
            f"{f.peak_rss_mib:>7.0f} MiB"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps([{**asdict(f), "records_per_s": round(f.rate)} for f in figures], indent=2)
        )


if __name__ == "__main__":
    main()

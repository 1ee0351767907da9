"""Running chunks: in this process (one client) or in N worker processes.

- Workers are spawned once per run (``spawn``: no librados or gRPC state is
  inherited) and talk to the parent over pipes: ``open`` a database,
  ``run`` a chunk at an agreed monotonic time, ``close``. In each round the
  clients start together at that time, each on its own slice of the records
  (client c owns records c, c+N, c+2N, ...) and its own delete and append
  keys.
- The parent keeps its own handle on every database: it creates and loads
  them and does the untimed set-up of every chunk. A 1-client run without
  workers runs in the parent.
- Every reply is read before an error is raised, to keep the pipes in step;
  workers that do not close in time are killed (they are our children).
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from typing import Any

from .backends import Backend, open_backend
from .spec import START_DELAY, Place, Spec
from .stats import Chunk
from .workloads import WORKLOADS, Ctx, Workload


def _worker_main(conn: Any, place: Place, spec: Spec, client: int) -> None:
    """A client process: open backends on request, run chunks at a set time."""
    opened: dict[tuple[str, str], Backend] = {}
    try:
        while True:
            msg = conn.recv()
            try:
                if msg[0] == "open":
                    _, backend, db, expected = msg
                    opened[(backend, db)] = open_backend(
                        place, backend, db, False, client, expected
                    )
                    conn.send(("ok", None))
                elif msg[0] == "run":
                    _, backend, db, wname, nclients, rnd, n, records, at = msg
                    b = opened[(backend, db)]
                    ctx = Ctx(spec, client, nclients, rnd, n, records)
                    time.sleep(max(0.0, at - time.monotonic()))
                    conn.send(("ok", WORKLOADS[wname].run(b, ctx)))
                elif msg[0] == "close":
                    for b in opened.values():
                        b.close()
                    opened.clear()
                    conn.send(("ok", None))
                    return
            except Exception:
                conn.send(("error", f"client {client}: {traceback.format_exc()}"))
    except (EOFError, KeyboardInterrupt):
        return


class Runner:
    """Runs chunks of workloads on opened databases, with ``clients`` workers
    when more than one client is asked for."""

    def __init__(self, place: Place, spec: Spec, clients: int) -> None:
        self.place, self.spec, self.clients = place, spec, clients
        self.handles: dict[tuple[str, str], Backend] = {}
        self.shared: set[tuple[str, str]] = set()
        self._workers: list[tuple[Any, Any]] = []
        if clients > 1:
            ctx = multiprocessing.get_context("spawn")
            for c in range(clients):
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_worker_main, args=(child, place, spec, c), daemon=True)
                p.start()
                child.close()
                self._workers.append((p, parent))

    def _ask(self, msgs: list[tuple[Any, ...]], workers: int | None = None) -> list[Any]:
        conns = [c for _, c in self._workers[: workers or len(self._workers)]]
        for c, m in zip(conns, msgs, strict=True):
            c.send(m)
        replies = [c.recv() for c in conns]  # every reply, to keep the pipes in step
        errors = [out for status, out in replies if status != "ok"]
        if errors:
            raise RuntimeError("\n".join(errors))
        return [out for _, out in replies]

    def open(self, backend: str, db: str, expected: int) -> Backend:
        """Create (empty) a database in the parent."""
        b = open_backend(self.place, backend, db, True, 0, expected)
        self.handles[(backend, db)] = b
        return b

    def share(self, backend: str, db: str, expected: int) -> None:
        """Open a loaded database in every worker."""
        if self._workers:
            self._ask([("open", backend, db, expected)] * self.clients)
            self.shared.add((backend, db))

    def run(
        self, backend: str, db: str, w: Workload, rnd: int, n: int, nclients: int, records: int
    ) -> list[Chunk]:
        """One round of ``w`` on ``nclients`` clients, each making n calls."""
        b = self.handles[(backend, db)]
        if w.prepare is not None:
            for c in range(nclients):
                w.prepare(b, Ctx(self.spec, c, nclients, rnd, n, records))
        if (backend, db) not in self.shared:
            assert nclients == 1, f"{db} is not open in the workers"
            return [w.run(b, Ctx(self.spec, 0, 1, rnd, n, records))]
        at = time.monotonic() + START_DELAY
        return self._ask(
            [("run", backend, db, w.name, nclients, rnd, n, records, at) for _ in range(nclients)],
            nclients,
        )

    def close(self) -> None:
        if self._workers:
            try:
                self._ask([("close",)] * self.clients)
            except (RuntimeError, OSError, EOFError):
                pass
            for p, c in self._workers:
                c.close()
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()
            self._workers.clear()
        for b in self.handles.values():
            b.close()
        self.handles.clear()

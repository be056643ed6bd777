"""Model-checked load: clients doing random operations, every answer checked.

Each ``Worker`` is one client name in its own thread, with one persistent
and one ephemeral pool of its own (no two workers share a handle, so each
model is exact) and a ``Model`` per pool.  Until its deadline it puts
(single pages and pipelined batches of ``BATCH_PAGES``, so a fault can
strike mid-batch), gets and flushes random handles of a small range (so
handles are replaced and read back often), and checks every get against
the model.  A connection error (the proxy cut it, the daemon restarted), or
BUSY from a daemon that is draining before it stops (PROTOCOL.md 12.5),
marks the operations in flight as unsure and the worker carries on: the
blocking client reconnects on its next call.  At the end it reads back
every persistent handle.

Every page is unique (worker, sequence number) and compresses (a 16-byte
stamp repeated, then zeros), so a wrong page is caught even when it is
another handle's.
"""

from __future__ import annotations

import random
import struct
import threading
import time
from dataclasses import dataclass

from tmem.client import Client, Pool, ServerBusy, TmemConnectionError

from ._harness import Model

__all__ = ["BATCH_PAGES", "LoadTotals", "Worker", "run_workers"]

PAGE = 4096
#: Handles per pool: small, so pages are replaced and read back often.
HANDLES_PER_POOL = 512
#: Pages per pipelined batch.
BATCH_PAGES = 16
#: Pause after a connection error before the next call reconnects.
RETRY_PAUSE_S = 0.02
#: Client timeout per request: generous for a loaded 2-core box.
CLIENT_TIMEOUT_S = 10.0


def page(worker: int, number: int) -> bytes:
    stamp = struct.pack("<QQ", worker, number)
    return stamp * 64 + bytes(PAGE - 16 * 64)


@dataclass
class LoadTotals:
    ops: int = 0
    wrong_reads: int = 0
    lost_pages: int = 0
    connection_errors: int = 0
    pages_checked: int = 0
    other_errors: int = 0

    def add(self, other: LoadTotals) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Worker:
    """One client's random operations against its models (module docstring)."""

    def __init__(self, address: str, number: int, seed: int, deadline: float) -> None:
        self.client = Client(address, client_name=f"load-{number}", timeout=CLIENT_TIMEOUT_S)
        self.number = number
        self.rng = random.Random(seed)
        self.deadline = deadline
        self.sequence = 0
        self.totals = LoadTotals()
        self.pools: list[tuple[Pool, Model]] = []

    def _fresh(self) -> bytes:
        self.sequence += 1
        return page(self.number, self.sequence)

    def _open_pools(self) -> bool:
        while time.monotonic() < self.deadline:
            try:
                if not self.pools:
                    self.pools.append((self.client.new_pool(persistent=True), Model(True)))
                if len(self.pools) == 1:
                    self.pools.append((self.client.new_pool(persistent=False), Model(False)))
                return True
            except (TmemConnectionError, ServerBusy):
                self.pools.clear()  # an unsure new_pool: start again (ids are never reused)
                self.totals.connection_errors += 1
                time.sleep(RETRY_PAUSE_S)
        return False

    def _note(self, model: Model, handle: tuple[int, int], got: bytes | None) -> None:
        verdict = model.check(handle, got)
        if verdict == "wrong":
            self.totals.wrong_reads += 1
        elif verdict == "lost":
            self.totals.lost_pages += 1

    def _one(self, pool: Pool, model: Model) -> None:
        handle = (self.rng.randrange(4), self.rng.randrange(HANDLES_PER_POOL // 4))
        roll = self.rng.random()
        if roll < 0.15:
            handles = [(handle[0], (handle[1] + k) % 128) for k in range(BATCH_PAGES)]
            pages = [self._fresh() for _ in handles]
            for h, p in zip(handles, pages, strict=True):
                model.unsure(h, p)
            stored = pool.put_many([(h[0], h[1], p) for h, p in zip(handles, pages, strict=True)])
            for h, p, ok in zip(handles, pages, stored, strict=True):
                model.settle(h, p if ok else None)
        elif roll < 0.5:
            data = self._fresh()
            model.unsure(handle, data)
            model.settle(handle, data if pool.put(handle[0], handle[1], data) else None)
        elif roll < 0.9:
            self._note(model, handle, pool.get(*handle))
            return
        else:
            model.unsure(handle, None)
            pool.flush(*handle)
            model.settle(handle, None)

    def run(self) -> None:
        if not self._open_pools():
            return
        while time.monotonic() < self.deadline:
            pool, model = self.pools[self.rng.randrange(2)]
            try:
                self._one(pool, model)
                self.totals.ops += 1
            except (TmemConnectionError, ServerBusy):
                self.totals.connection_errors += 1
                time.sleep(RETRY_PAUSE_S)
        self.verify()

    def verify(self, budget_s: float = 60.0) -> None:
        """Read back every persistent handle (retrying through faults)."""
        if not self.pools:
            return
        pool, model = self.pools[0]
        pending = sorted(model.values)
        give_up = time.monotonic() + budget_s
        while pending and time.monotonic() < give_up:
            try:
                handle = pending[-1]
                self._note(model, handle, pool.get(*handle, exclusive=False))
                self.totals.pages_checked += 1
                pending.pop()
            except (TmemConnectionError, ServerBusy):
                self.totals.connection_errors += 1
                time.sleep(RETRY_PAUSE_S)
        self.totals.other_errors += len(pending)
        self.client.close()


def run_workers(workers: list[Worker]) -> LoadTotals:
    """Run the workers in threads; an unexpected error counts, it does not hide."""
    totals = LoadTotals()

    def guarded(worker: Worker) -> None:
        try:
            worker.run()
        except Exception:
            worker.totals.other_errors += 1

    threads = [threading.Thread(target=guarded, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker in workers:
        totals.add(worker.totals)
    return totals

"""kill -9 of one daemon of three under a client with ``replicas=2``.

A several-server client (docs/multi-server.md) spreads a persistent pool
with two replicas over three daemons, then one daemon is killed with
SIGKILL (no drain, no save): every page must still read back identical
from the surviving replica.  The killed daemon is started again, empty,
on its port; once the client's ``dead_timeout`` has passed it is used
again, and ``client.repair`` writes back the copies it lost.  Then a
*second* daemon is killed: every page must still read back, which shows
that the redundancy really was restored and not only the reads.

Counted: pages the client stored, pages read back wrong (never allowed)
or missing (never allowed for an accepted persistent page), copies
repaired, and errors the client raised.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tmem.client import Client, Pool, TmemError

from ._harness import DaemonProcess

__all__ = ["ReplicaTotals", "kill_with_replicas"]

#: The client's dead-server timeout: short, so the test waits little.
DEAD_TIMEOUT_S = 1.0
#: Pages per object: objects, not pages, are what the servers share out.
PAGES_PER_OBJECT = 16
#: Handles per batch call.
BATCH_PAGES = 256


@dataclass
class ReplicaTotals:
    stored: int = 0
    refused: int = 0
    wrong: int = 0
    missing: int = 0
    repaired: int = 0
    errors: int = 0


def _page(number: int, seed: int) -> bytes:
    stamp = f"{seed:08x}:{number:012x}".encode()
    return (stamp * 8).ljust(4096, b"\0")


def _handles(count: int) -> list[tuple[int, int]]:
    return [(n // PAGES_PER_OBJECT, n % PAGES_PER_OBJECT) for n in range(count)]


def _read_all(pool: Pool, stored: dict[tuple[int, int], bytes], totals: ReplicaTotals) -> None:
    handles = sorted(stored)
    for at in range(0, len(handles), BATCH_PAGES):
        chunk = handles[at : at + BATCH_PAGES]
        try:
            got = pool.get_many(chunk)
        except TmemError:
            totals.errors += 1
            totals.missing += len(chunk)
            continue
        for handle, data in zip(chunk, got, strict=True):
            if data is None:
                totals.missing += 1
            elif data != stored[handle]:
                totals.wrong += 1


def kill_with_replicas(daemons: list[DaemonProcess], pages: int, seed: int) -> ReplicaTotals:
    """The scenario of the module docstring; the daemons are running."""
    totals = ReplicaTotals()
    addresses = [d.address for d in daemons]
    with Client(addresses, client_name="replicated", dead_timeout=DEAD_TIMEOUT_S) as client:
        pool = client.new_pool(persistent=True, replicas=2)
        stored: dict[tuple[int, int], bytes] = {}
        handles = _handles(pages)
        for at in range(0, len(handles), BATCH_PAGES):
            chunk = handles[at : at + BATCH_PAGES]
            items = [(oid, i, _page(oid * PAGES_PER_OBJECT + i, seed)) for oid, i in chunk]
            for (oid, index, data), ok in zip(items, pool.put_many(items), strict=True):
                if ok:
                    stored[(oid, index)] = data
        totals.stored = len(stored)
        totals.refused = len(handles) - len(stored)
        first, second = daemons[seed % 3], daemons[(seed + 1) % 3]
        first.kill()
        _read_all(pool, stored, totals)
        first.start()  # empty, on its old port
        time.sleep(DEAD_TIMEOUT_S + 0.5)
        totals.repaired = client.repair(pool, sorted(stored))
        second.kill()
        _read_all(pool, stored, totals)
        second.start()
    return totals

"""Throughput of one ``Client`` shared by threads, against a real daemon.

Starts a tmemd on a free loopback port, fills one persistent pool with each
thread's own pages, then runs each case for ``--seconds``, ``--repeat``
rounds of all cases, and prints each case's best round: single calls
(``pool.get``/``pool.put``, one request per round trip) and batches
(``get_many``/``put_many`` of ``--batch`` pages), from 1 and from 8 threads.
Layouts:

* ``shared``: every thread uses one ``Client`` built with
  ``max_connections=N`` for each N of ``--max-connections`` (1 means every
  call waits for the one connection: the same as a lock around the client;
  0 means the ``Client`` defaults, to measure a client from before
  ``max_connections`` existed);
* ``per-thread``: a ``Client`` of its own per thread, the only safe way to
  use threads before the client became thread-safe, as a reference.

Each line gives ops/s and the client process's CPU time per op of the best
round.  Every reply is checked against what the thread wrote; wrong pages
and errors of all rounds are counted and printed next to the figure (a
figure with errors is void).
The daemon runs at the same time on the same cores, so figures are for
comparing cases of one run, not absolute.

    .venv/bin/python bench/client_threads.py --repeat 3 --max-connections 1 8
"""

from __future__ import annotations

import argparse
import inspect
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmem.bench._peers import start_server
from tmem.client import Client, Pool

#: The daemon's arena: every thread's pages fit many times over.
MEMORY_BYTES = 256 << 20
#: Distinct pages per thread, cycled through by the load loops.
PAGES_PER_THREAD = 256
#: Most ops one thread runs in one case, so that a case is bounded even on an
#: idle machine where ``--seconds`` would allow more.
MAX_OPS_PER_THREAD = 2_000_000


@dataclass
class Tally:
    """What one thread did in one case."""

    ops: int = 0
    wrong: int = 0
    errors: int = 0
    #: The client process's CPU time per op (all threads): steadier than
    #: ops/s on a loaded machine, and what a pool or a lock adds shows here.
    cpu_us_per_op: float = 0.0


def page_of(thread: int, index: int) -> bytes:
    return (thread * 1_000_003 + index).to_bytes(8, "little") * 512


def _load(pool: Pool, thread: int, op: str, batch: int, until: float, tally: Tally) -> None:
    index = 0
    while time.monotonic() < until and tally.ops < MAX_OPS_PER_THREAD:
        span = [(index + k) % PAGES_PER_THREAD for k in range(batch)]
        try:
            if op == "get" and batch == 1:
                tally.wrong += pool.get(thread, span[0]) != page_of(thread, span[0])
            elif op == "get":
                got = pool.get_many([(thread, i) for i in span])
                tally.wrong += sum(g != page_of(thread, i) for g, i in zip(got, span, strict=True))
            elif batch == 1:
                tally.wrong += not pool.put(thread, span[0], page_of(thread, span[0]))
            else:
                done = pool.put_many([(thread, i, page_of(thread, i)) for i in span])
                tally.wrong += done.count(False)
        except Exception:  # counted and reported: the figure is then void
            tally.errors += 1
        tally.ops += batch
        index += batch


def _client(address: str, max_connections: int | None) -> Client:
    if not max_connections:
        return Client(address, client_name="bench-threads")
    if "max_connections" not in inspect.signature(Client).parameters:
        raise SystemExit("this Client has no max_connections (use --layout per-thread)")
    kwargs: dict[str, Any] = {"max_connections": max_connections}
    return Client(address, client_name="bench-threads", **kwargs)


def run_case(
    address: str,
    pool_id: int,
    max_connections: int | None,
    threads: int,
    op: str,
    batch: int,
    seconds: float,
) -> tuple[float, Tally]:
    """Ops per second of ``threads`` threads, and their summed tally; one
    shared ``Client`` unless ``max_connections`` is None (a Client each)."""
    shared = None if max_connections is None else _client(address, max_connections)
    clients = [shared or _client(address, None) for _ in range(threads)]
    pools = [client.pool(pool_id) for client in clients]
    tallies = [Tally() for _ in range(threads)]
    until = time.monotonic() + seconds
    workers = [
        threading.Thread(target=_load, args=(pools[t], t, op, batch, until, tallies[t]))
        for t in range(threads)
    ]
    started, cpu = time.monotonic(), time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    for client in clients:
        client.close()
    total = Tally(*(sum(getattr(t, f) for t in tallies) for f in ("ops", "wrong", "errors")))
    total.cpu_us_per_op = cpu / max(1, total.ops) * 1e6
    return total.ops / elapsed, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the best is printed")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--layout", choices=["shared", "per-thread"], nargs="+", default=["shared"])
    ap.add_argument("--max-connections", type=int, nargs="+", default=[1, 8])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        server = start_server("tmemd", Path(workdir), MEMORY_BYTES)
        try:
            _run_all(f"127.0.0.1:{server.port}", args)
        finally:
            server.stop()


def _run_all(address: str, args: argparse.Namespace) -> None:
    with Client(address, client_name="bench-threads") as setup:
        pool_id = setup.new_pool(persistent=True, codec="lz4").pool_id
        pool = setup.pool(pool_id)
        for thread in range(max(args.threads)):
            pool.put_many([(thread, i, page_of(thread, i)) for i in range(PAGES_PER_THREAD)])
    layouts: list[tuple[str, int | None]] = []
    for layout in args.layout:
        if layout == "shared":
            layouts += [(f"shared max_connections={n}", n) for n in args.max_connections]
        else:
            layouts.append(("a Client per thread", None))
    cases = [
        (name, max_connections, threads, op, batch)
        for name, max_connections in layouts
        for threads in args.threads
        for op in ("get", "put")
        for batch in (1, args.batch)
    ]
    # Every case once per round, rounds in a row, best round kept: load from
    # elsewhere on the machine then hits all cases alike and mostly spares
    # each case's best round.
    best: dict[tuple[str, int | None, int, str, int], tuple[float, Tally]] = {}
    faults = {case: Tally() for case in cases}  # wrong pages and errors of every round
    for _ in range(args.repeat):
        for case in cases:
            _, max_connections, threads, op, batch = case
            rate, tally = run_case(
                address, pool_id, max_connections, threads, op, batch, args.seconds
            )
            faults[case].wrong += tally.wrong
            faults[case].errors += tally.errors
            if case not in best or rate > best[case][0]:
                best[case] = (rate, tally)
    heads = f"{'layout':32} {'threads':>7} {'op':>4} {'batch':>5} {'ops/s':>10} {'cpu µs/op':>9}"
    print(f"{heads}  wrong errors")
    for case in cases:
        name, _, threads, op, batch = case
        rate, tally = best[case]
        print(
            f"{name:32} {threads:7} {op:>4} {batch:5} {rate:10.0f}"
            f" {tally.cpu_us_per_op:9.1f}  {faults[case].wrong:5} {faults[case].errors:6}"
        )


if __name__ == "__main__":
    main()

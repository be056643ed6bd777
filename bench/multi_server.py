"""Several daemons behind one client: spread, movement and recovery, measured.

Starts ``--daemons`` tmemd daemons on loopback (plus one more for the
movement figure) and prints:

* spread: pages per daemon for ``--objects`` one-page objects, each
  daemon's own count (CONTROL ``list_pools``), and the largest deviation
  from an even share;
* movement: the share of objects a client over one more daemon, and over
  one fewer, finds elsewhere (a shared pool, so both clients agree on
  placement; a moved object is a miss);
* the client's cost: single and batch puts and gets through a client of
  one daemon and of all of them (ops/s and this process's CPU per op);
* recovery after a kill -9 of one daemon with ``replicas=2``: how long the
  first read of every page takes with the daemon dead (the failed connect
  marks it dead), how many pages come back identical, when the restarted
  daemon is used again (``dead_timeout``), and how many copies read repair
  and ``Client.repair`` write back.

Throughput (pages/s for 1 and 2 daemons, the cost of replicas) is
``tmemd-bench --servers``; docs/bench/multi/README.md has both.

    .venv/bin/python bench/multi_server.py --daemons 3 --objects 3000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tmem.client import Client, Pool

#: How long a daemon may take to start listening on a busy machine.
START_TIMEOUT_S = 30.0
#: The kill test's dead timeout: short, so the run stays short.
DEAD_TIMEOUT_S = 2.0


def page(n: int) -> bytes:
    return (n.to_bytes(8, "little") + b"multi-bench-" * 3)[:32] * 128


class Daemon:
    def __init__(self, workdir: Path, listen: str = "127.0.0.1:0") -> None:
        port_file = workdir / f"port.{time.monotonic_ns()}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tmemd.cli", "--listen", listen, "--port-file",
             str(port_file), "--memory", "128MiB"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tmemd did not start on {listen}")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        self.address = f"127.0.0.1:{self.port}"

    def pages(self, client_name: str) -> int:
        with Client(self.address, client_name=client_name) as client:
            return sum(int(p.get("pages", 0)) for p in client.list_pools())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def spread(daemons: list[Daemon], objects: int) -> None:
    with Client([d.address for d in daemons], client_name="spread") as client:
        pool = client.new_pool(persistent=True)
        pool.put_many([(oid, 0, page(oid)) for oid in range(objects)])
    counts = [d.pages("spread") for d in daemons]
    even = objects / len(daemons)
    worst = max(abs(c - even) / even for c in counts)
    print(f"spread: {objects} objects over {len(daemons)} daemons: {counts} "
          f"(largest deviation from even {worst:.1%})")  # fmt: skip


def movement(daemons: list[Daemon], extra: Daemon, objects: int) -> None:
    shared = uuid.uuid4()
    with Client([d.address for d in daemons], client_name="move") as client:
        client.new_pool(shared_uuid=shared).put_many([(o, 0, page(o)) for o in range(objects)])
    handles = [(oid, 0) for oid in range(objects)]
    for label, servers in (
        (f"add a daemon ({len(daemons)} -> {len(daemons) + 1})", [*daemons, extra]),
        (f"remove a daemon ({len(daemons)} -> {len(daemons) - 1})", daemons[1:]),
    ):
        with Client([d.address for d in servers], client_name="move") as client:
            got = client.new_pool(shared_uuid=shared).get_many(handles)
        moved = sum(g is None for g in got)
        print(f"movement: {label}: {moved} of {objects} objects moved ({moved / objects:.1%})")


#: Ops per figure of ``client_cost``: bounded, a few seconds at most.
COST_OPS = 3000
#: Pages per batch in ``client_cost``, as tmemd-bench's depth 64.
COST_BATCH = 64


def _timed(label: str, run: object) -> None:
    assert callable(run)
    wall, cpu = time.perf_counter(), time.process_time()
    ops = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"client cost: {label}: {ops / wall:,.0f} ops/s, {cpu / ops * 1e6:.1f} µs CPU/op")


def _cost_of(pool: Pool, where: str) -> None:
    handles = [(oid, 0) for oid in range(COST_OPS)]
    data = page(1)

    def batches(put: bool) -> int:
        for start in range(0, COST_OPS, COST_BATCH):
            chunk = handles[start : start + COST_BATCH]
            if put:
                pool.put_many([(oid, i, data) for oid, i in chunk])
            else:
                pool.get_many(chunk)
        return COST_OPS

    _timed(f"{where}, put", lambda: sum(pool.put(oid, 0, data) for oid, _ in handles))
    _timed(f"{where}, get", lambda: sum(pool.get(oid, 0) is not None for oid, _ in handles))
    _timed(f"{where}, put_many of {COST_BATCH}", lambda: batches(True))
    _timed(f"{where}, get_many of {COST_BATCH}", lambda: batches(False))


def client_cost(daemons: list[Daemon]) -> None:
    for servers in ([daemons[0]], daemons):
        where = f"{len(servers)} daemon{'s' if len(servers) > 1 else ''}"
        with Client([d.address for d in servers], client_name="cost") as client:
            pool = client.new_pool(persistent=True)
            _cost_of(pool, where)
            pool.destroy()


def recovery(workdir: Path, daemons: list[Daemon], objects: int) -> None:
    victim = daemons[0]
    handles = [(oid, 0) for oid in range(objects)]
    addresses = [d.address for d in daemons]
    with Client(addresses, client_name="kill", dead_timeout=DEAD_TIMEOUT_S) as client:
        pool = client.new_pool(persistent=True, replicas=2)
        pool.put_many([(oid, 0, page(oid)) for oid in range(objects)])
        victim.proc.kill()
        victim.proc.wait()
        start = time.perf_counter()
        got = pool.get_many(handles)
        took = time.perf_counter() - start
        same = sum(g == page(o) for o, g in zip(range(objects), got, strict=True))
        print(f"kill -9: first read of {objects} pages with one daemon dead: {took * 1e3:.0f} ms,"
              f" {same} identical, {objects - same} wrong or missing")  # fmt: skip
        killed_at = time.monotonic()
        revived = Daemon(workdir, f"127.0.0.1:{victim.port}")
        daemons[0] = revived
        while revived.pages("kill") == 0:
            pool.get_many(handles)
            if time.monotonic() - killed_at > 10 * DEAD_TIMEOUT_S:
                break
            time.sleep(0.05)
        back = time.monotonic() - killed_at
        repaired = revived.pages("kill")
        scrubbed = client.repair(pool, handles)
        print(
            f"kill -9: restarted daemon used again {back:.2f} s after the kill "
            f"(dead_timeout {DEAD_TIMEOUT_S} s); read repair wrote {repaired} pages back, "
            f"Client.repair {scrubbed} more; it now holds {revived.pages('kill')}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--daemons", type=int, default=3)
    ap.add_argument("--objects", type=int, default=3000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        daemons = [Daemon(workdir) for _ in range(args.daemons)]
        extra = Daemon(workdir)
        try:
            print(f"load average: {os.getloadavg()[0]:.2f} (2-core machine shared with others)")
            spread(daemons, args.objects)
            movement(daemons, extra, args.objects)
            client_cost(daemons)
            recovery(workdir, daemons, args.objects)
        finally:
            for daemon in [*daemons, extra]:
                daemon.stop()


if __name__ == "__main__":
    main()

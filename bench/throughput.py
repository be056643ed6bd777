"""Pipelined put/get throughput of 4 KiB pages through the client library.

Starts a real tmemd on a free loopback port (unless ``--server`` names one),
puts N pages with ``put_many`` in batches, reads them back with
``get_many``, checks every byte, and prints pages/s and MB/s.  A figure to
compare across commits on one machine, measured in one run; the full
harness against memcached and Redis is ``tmemd-bench``.

    .venv/bin/python bench/throughput.py --pages 50000 --batch 64 --codec lz4
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tmem.client import Client

PAGE_SIZE = 4096


def make_pages(n: int, seed: int = 1) -> list[bytes]:
    """Pages that compress like text (~2-3x), not like zeros."""
    rng = random.Random(seed)
    words = [
        bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(2000)
    ]
    pages = []
    for _ in range(n):
        buf = bytearray()
        while len(buf) < PAGE_SIZE:
            buf += rng.choice(words) + b" "
        pages.append(bytes(buf[:PAGE_SIZE]))
    return pages


def start_daemon(codec: str, memory: str) -> tuple[subprocess.Popen[bytes], str]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tmemd.cli",
            "--listen",
            "127.0.0.1:0",
            "--port-file",
            str(port_file),
            "--memory",
            memory,
            "--codec",
            codec,
            "--log-level",
            "warning",
        ],
    )
    deadline = time.monotonic() + 20
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("tmemd did not start")
        time.sleep(0.02)
    return proc, f"127.0.0.1:{int(port_file.read_text())}"


def run(address: str, pages: list[bytes], batch: int, persistent: bool) -> None:
    n = len(pages)
    with Client(address, client_name=f"bench-{os.getpid()}") as client:
        pool = client.new_pool(persistent=persistent)
        t0 = time.perf_counter()
        stored = 0
        for start in range(0, n, batch):
            items = [(1, i, pages[i]) for i in range(start, min(n, start + batch))]
            stored += sum(pool.put_many(items))
        t1 = time.perf_counter()
        hits = 0
        for start in range(0, n, batch):
            keys = [(1, i) for i in range(start, min(n, start + batch))]
            for i, got in zip(range(start, start + len(keys)), pool.get_many(keys), strict=True):
                if got is not None:
                    if got != pages[i]:
                        raise SystemExit(f"page {i} came back different")
                    hits += 1
        t2 = time.perf_counter()
        pool.destroy()
    put_s, get_s = t1 - t0, t2 - t1
    print(f"pages={n} batch={batch} persistent={persistent} stored={stored} hits={hits}")
    print(f"put: {n / put_s:10.0f} pages/s {n * PAGE_SIZE / put_s / 1e6:8.1f} MB/s")
    print(f"get: {n / get_s:10.0f} pages/s {n * PAGE_SIZE / get_s / 1e6:8.1f} MB/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--codec", default="lz4", choices=("lzo", "lz4", "zstd", "none"))
    ap.add_argument("--memory", default="1GiB")
    ap.add_argument("--ephemeral", action="store_true", help="ephemeral pool (default persistent)")
    ap.add_argument("--server", help="HOST:PORT of a running tmemd instead of starting one")
    args = ap.parse_args()
    pages = make_pages(args.pages)
    proc = None
    address = args.server
    if address is None:
        proc, address = start_daemon(args.codec, args.memory)
    try:
        run(address, pages, args.batch, not args.ephemeral)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()

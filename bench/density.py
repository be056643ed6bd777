"""Whole-daemon density on real pages: bytes put / growth of the daemon's RSS.

What it prints (a script for the docs, not a timed test):

1. The corpus (``bench/_corpus.py``) and, per codec, the *ideal* ratio: what a
   packer that wastes nothing would reach, page by page under the engine's
   rules (same-filled pages cost 0 bytes, a page compressing above 7/8 is
   kept raw).  zstd is given at level 1 (the issue's reference) and at the
   daemon's level.
2. Per PAM x codec, through the real daemon (a fresh ``tmemd`` each, pages
   put into one persistent pool with ``tmem.client`` ``put_many``): the RSS
   growth of the daemon (``/proc/PID/status`` VmRSS, after the puts minus
   before them), the achieved efficiency ``bytes put / RSS growth`` and its
   share of the ideal, puts/s and gets/s (pipelined batches), and the pages
   read back byte-identical (all of them, or the script fails).
   With ``--churn``, then: three rounds of replacing a seeded 30 % of the
   pages by other corpus pages (swap-like churn), a pause for compaction,
   every page checked, and the efficiency again ("churned").
3. With ``--meta-pages N``: metadata bytes per stored page at N pages in one
   engine, in process (tracemalloc: the Python memory the engine allocated,
   arena excluded), for persistent and ephemeral pools and three page
   layouts.

Page layout through the daemon: frontswap's, as Xen's tmem driver numbers
swap pages: object ``offset & 15``, index ``offset >> 4`` (16 big objects).
Before the baseline RSS is read, one batch of zero pages and one real page
are put and flushed, so that the connection's buffers and the codec's
context exist already: they are a fixed cost, not a per-page one.

Usage: ``python bench/density.py [--pages 100000] [--pams zbud,xvmalloc,zsmalloc]
[--codecs lzo,zstd] [--meta-pages 1000000]``.
"""

from __future__ import annotations

import argparse
import gc
import random
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tmem.bench._config import PAGE_BYTES
from tmem.bench._corpus import EQUAL_SHARES, KIND_SHARES, real_corpus
from tmem.client import Client
from tmemd.engine import Engine, EngineConfig, make_codecs

#: Pages per pipelined batch: deep enough to keep the daemon busy.
BATCH_PAGES = 256
#: Seconds to let the daemon's sweeper run ``maintain()`` (dictionary
#: training, compaction) after the puts, before RSS is read.
SETTLE_S = 1.5
#: Metadata runs up to this many pages also walk the engine's invariants
#: (O(pages), slow at 10^6).
CHECKED_PAGES = 200_000
#: Arena of the in-process speed runs: smaller than the pages put, so the
#: ephemeral puts evict.
SPEED_MEMORY_BYTES = 16 << 20
#: Churn: rounds, and the share of pages replaced by other pages each round.
CHURN_ROUNDS = 3
CHURN_SHARE = 0.3
#: Seconds for compaction after churn: the sweeper moves up to 4096 objects
#: per PAM every half second.
CHURN_SETTLE_S = 4.0
#: The daemon's defaults, given explicitly so the table says what it measured.
ZSTD_LEVEL = 3
ZSTD_DICTIONARY = "128KiB"


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def ideal_ratio(pages: list[bytes], compress: Callable[[bytes], bytes]) -> float:
    stored = 0
    for page in pages:
        if page != page[:1] * PAGE_BYTES:
            size = len(compress(page))
            stored += PAGE_BYTES if size > PAGE_BYTES * 7 // 8 else size
    return len(pages) * PAGE_BYTES / stored


def start_daemon(flags: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    argv = [sys.executable, "-m", "tmemd.cli", "--listen", "127.0.0.1:0"]
    argv += ["--port-file", str(port_file), "--log-level", "warning", *flags]
    proc = subprocess.Popen(argv)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("tmemd did not start")
        time.sleep(0.02)
    return proc, f"127.0.0.1:{int(port_file.read_text())}"


def swap_slot(offset: int) -> tuple[int, int]:
    """Xen frontswap's (object, index) of swap offset ``offset``."""
    return offset & 15, offset >> 4


def through_daemon(
    pages: list[bytes], pam: str, codec: str, args: argparse.Namespace
) -> dict[str, Any]:
    """One fresh daemon: put every page, read RSS, get every page back."""
    n = len(pages)
    memory = n * PAGE_BYTES + (256 << 20)
    flags = ["--memory", str(memory), "--codec", codec, "--persistent-pam", pam]
    flags += ["--ephemeral-pam", pam, "--persistent-max", "1.0", "--persistent-accept", "1.0"]
    flags += ["--zstd-level", str(args.zstd_level), "--zstd-dictionary", args.zstd_dictionary]
    proc, address = start_daemon(flags)
    try:
        with Client(address, client_name="density") as client:
            pool = client.new_pool(persistent=True)
            warm = [(1 << 40, i, bytes(PAGE_BYTES)) for i in range(args.batch)]
            pool.put_many([*warm, (1 << 40, args.batch, pages[-1])])
            pool.flush_object(1 << 40)
            time.sleep(0.2)
            before = rss_bytes(proc.pid)
            t0 = time.perf_counter()
            stored = 0
            for start in range(0, n, args.batch):
                chunk = range(start, min(n, start + args.batch))
                stored += sum(pool.put_many([(*swap_slot(i), pages[i]) for i in chunk]))
            put_s = time.perf_counter() - t0
            time.sleep(SETTLE_S)
            after = rss_bytes(proc.pid)
            t0 = time.perf_counter()
            same = verify(pool, pages, list(range(n)), args.batch)
            get_s = time.perf_counter() - t0
            churned = churn(pool, pages, args) if args.churn else None
            churn_rss = rss_bytes(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    if stored != n or same != n:
        raise SystemExit(f"{pam}/{codec}: stored {stored}, read back identical {same} of {n}")
    return {
        "growth": after - before,
        "efficiency": n * PAGE_BYTES / (after - before),
        "puts_s": n / put_s,
        "gets_s": n / get_s,
        "verified": same,
        "churn": None if churned is None else n * PAGE_BYTES / (churn_rss - before),
    }


def verify(pool: Any, pages: list[bytes], holds: list[int], batch: int) -> int:
    """Read every swap offset back; return how many came back as ``pages[holds[i]]``."""
    same = 0
    for start in range(0, len(holds), batch):
        chunk = range(start, min(len(holds), start + batch))
        got = pool.get_many([swap_slot(i) for i in chunk])
        same += sum(g == pages[holds[i]] for i, g in zip(chunk, got, strict=True))
    return same


def churn(pool: Any, pages: list[bytes], args: argparse.Namespace) -> int:
    """Swap-like churn: ``CHURN_ROUNDS`` times, a seeded 30 % of the offsets get
    other pages; then let compaction run and check every page."""
    n = len(pages)
    rng = random.Random(n)
    holds = list(range(n))
    for _ in range(CHURN_ROUNDS):
        offsets = sorted(rng.sample(range(n), int(n * CHURN_SHARE)))
        for start in range(0, len(offsets), args.batch):
            chunk = offsets[start : start + args.batch]
            for offset in chunk:
                holds[offset] = rng.randrange(n)
            stored = pool.put_many([(*swap_slot(i), pages[holds[i]]) for i in chunk])
            if not all(stored):
                raise SystemExit("churn: a replacement was refused")
    time.sleep(CHURN_SETTLE_S)
    same = verify(pool, pages, holds, args.batch)
    if same != n:
        raise SystemExit(f"churn: {n - same} pages came back different")
    return same


def metadata_per_page(pages: list[bytes], count: int, persistent: bool, layout: str) -> float:
    """Python bytes the engine allocates per stored page at ``count`` pages."""
    codec = make_codecs()["lzo"]
    blobs = [codec.compress(page) for page in pages[:4096]]
    blobs = [b if len(b) <= PAGE_BYTES * 7 // 8 else p for b, p in zip(blobs, pages, strict=False)]
    engine = Engine(
        EngineConfig(
            memory_bytes=count * PAGE_BYTES,
            ephemeral_pam="zbud",
            persistent_pam="zsmalloc",
            persistent_max=1.0,
            persistent_accept=1.0,
        ),
        lambda: 0.0,
    )
    engine.connect("m")
    pool = engine.new_pool("m", persistent=persistent, precompressed=True)
    per_object = {"swap": None, "files64": 64, "single": 1}[layout]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for n in range(count):
        # Fresh ints for object id and index, as the wire delivers them.
        if per_object is None:
            oid, index = int(str(n & 15)), int(str(n >> 4))
        else:
            oid, index = int(str(n // per_object)), int(str(n % per_object))
        if engine.put("m", pool, oid, index, blobs[n % len(blobs)]) is not None:
            raise SystemExit("metadata run: a put was refused")
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    if count <= CHECKED_PAGES:
        engine.check_invariants()
    return used / count


def engine_speed(pages: list[bytes], pams: list[str], rounds: int) -> dict[str, dict[str, float]]:
    """In-process µs per engine call, best of ``rounds`` (PAMs interleaved, so
    that a slow spell of the VM hits them alike), LZO on the corpus's pages:

    * put: replacing a persistent page (free the old copy, store the new);
    * get: a persistent page, kept;
    * put (evicts): a new ephemeral page into a full ``SPEED_MEMORY_BYTES``
      arena, shared by two clients (page-by-page eviction);
    * held: ephemeral pages the arena holds at the end (eviction's density).
    """
    best: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for pam in pams:
            timings = _speed_once(pages, pam)
            old = best.get(pam, timings)
            best[pam] = {key: min(old[key], value) for key, value in timings.items()}
            best[pam]["held"] = timings["held"]
    return best


def _speed_once(pages: list[bytes], pam: str) -> dict[str, float]:
    n = len(pages)
    config = EngineConfig(
        memory_bytes=n * PAGE_BYTES,
        ephemeral_pam=pam,
        persistent_pam=pam,
        persistent_max=1.0,
        persistent_accept=1.0,
    )
    engine = Engine(config, lambda: 0.0)
    engine.connect("s")
    per = engine.new_pool("s", persistent=True)
    for i in range(n):
        engine.put("s", per, *swap_slot(i), pages[i])
    put = _timed(lambda i: engine.put("s", per, *swap_slot(i), pages[n - 1 - i]), n)
    get = _timed(lambda i: engine.get("s", per, *swap_slot(i)), n)
    small = Engine(
        EngineConfig(**{**_fields(config), "memory_bytes": SPEED_MEMORY_BYTES}), lambda: 0.0
    )
    for name in ("s", "t"):
        small.connect(name)
    pools = [small.new_pool("s"), small.new_pool("t")]
    for i in range(n):
        small.put("st"[i & 1], pools[i & 1], 1 << 30, i, pages[i])
    full = _timed(lambda i: small.put("st"[i & 1], pools[i & 1], 7, i, pages[i]), n)
    return {"put": put, "get": get, "put_full": full, "held": float(small.statistics().pages)}


def _fields(config: EngineConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def _timed(call: Callable[[int], object], n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        call(i)
    return (time.perf_counter() - t0) / n * 1e6


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=100_000)
    ap.add_argument("--pams", default="zbud,xvmalloc,zsmalloc")
    ap.add_argument("--codecs", default="lzo,zstd,lz4")
    ap.add_argument("--batch", type=int, default=BATCH_PAGES)
    ap.add_argument("--zstd-level", type=int, default=ZSTD_LEVEL)
    ap.add_argument("--zstd-dictionary", default=ZSTD_DICTIONARY)
    ap.add_argument("--meta-pages", type=int, default=0, help="also measure metadata per page")
    ap.add_argument("--churn", action="store_true", help="also measure after swap-like churn")
    ap.add_argument(
        "--equal-shares",
        action="store_true",
        help="the six kinds of files weighted equally (docs/memory.md's mix)",
    )
    ap.add_argument(
        "--speed",
        type=int,
        default=0,
        metavar="PAGES",
        help="also time engine calls per PAM in process, on this many pages",
    )
    return ap.parse_args()


def print_daemon_table(pages: list[bytes], args: argparse.Namespace) -> None:
    codecs = args.codecs.split(",")
    ideal = {}
    for codec in codecs:
        ideal[codec] = ideal_ratio(pages, make_codecs(args.zstd_level)[codec].compress)
    if "zstd" in codecs:
        ideal_z1 = ideal_ratio(pages, make_codecs(1)["zstd"].compress)
        print(f"ideal zstd-1: {ideal_z1:.3f}; at level {args.zstd_level}: {ideal['zstd']:.3f}")
    print(
        f"{'pam':9s} {'codec':5s} {'ideal':>6s} {'RSS+MiB':>8s} {'eff.':>6s} {'of ideal':>8s} "
        f"{'puts/s':>8s} {'gets/s':>8s} {'verified':>8s} {'churned':>7s}"
    )
    for pam in args.pams.split(","):
        for codec in codecs:
            r = through_daemon(pages, pam, codec, args)
            print(
                f"{pam:9s} {codec:5s} {ideal[codec]:6.3f} {r['growth'] / 2**20:8.1f} "
                f"{r['efficiency']:6.3f} {r['efficiency'] / ideal[codec]:8.1%} "
                f"{r['puts_s']:8.0f} {r['gets_s']:8.0f} {r['verified']:8d} "
                f"{'-' if r['churn'] is None else format(r['churn'], '7.3f')}",
                flush=True,
            )


def print_speed(pages: list[bytes], pams: list[str]) -> None:
    print(f"engine µs per call, in process, LZO, {len(pages)} pages, best of 5:")
    print(f"  {'pam':9s} {'put':>6s} {'get':>6s} {'put (evicts)':>12s} {'held':>6s}")
    for pam, t in engine_speed(pages, pams, 5).items():
        print(
            f"  {pam:9s} {t['put']:6.2f} {t['get']:6.2f} {t['put_full']:12.2f} {t['held']:6.0f}",
            flush=True,
        )


def print_metadata(pages: list[bytes], count: int) -> None:
    print(f"metadata bytes per stored page at {count} pages (tracemalloc):")
    for persistent in (True, False):
        for layout in ("swap", "files64", "single"):
            per_page = metadata_per_page(pages, count, persistent, layout)
            kind = "persistent/zsmalloc" if persistent else "ephemeral/zbud"
            print(f"  {kind:20s} {layout:8s} {per_page:6.1f}", flush=True)


def main() -> None:
    args = parse_args()
    t0 = time.perf_counter()
    pages = real_corpus(args.pages, shares=EQUAL_SHARES if args.equal_shares else KIND_SHARES).pages
    zero = sum(page == page[:1] * PAGE_BYTES for page in pages)
    print(
        f"corpus: {len(pages)} pages ({len(pages) * PAGE_BYTES / 2**20:.0f} MiB), "
        f"{zero} same-filled, loaded in {time.perf_counter() - t0:.1f} s"
    )
    print_daemon_table(pages, args)
    if args.speed:
        print_speed(pages[: args.speed], args.pams.split(","))
    if args.meta_pages:
        print_metadata(pages, args.meta_pages)


if __name__ == "__main__":
    main()

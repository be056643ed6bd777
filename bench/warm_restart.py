"""Warm restart speed and size at 1 GiB of pages (a script; prints figures).

An engine like the daemon's (one arena, zsmalloc for persistent pools) is
filled with ``--gib`` GiB of real 4 KiB pages (``bench/_corpus.py``; each
corpus page is put under several handles, so the corpus stays small while
the state is big) in persistent pools, then saved to a state directory
exactly as ``--state-dir`` does (``tmemd/_statedir.py``: temporary file,
fsync, rename, fsync of the directory) and restored into a fresh engine.
Printed: stored bytes, the state file's size against them, save and restore
time and speed in MB/s of stored bytes (10^6 bytes), and, for comparison, a
plain copy of the arena's used frames to a file with fsync: the floor of a
frame dump, which would also need the PAMs' tables and would tie the state
to one arena layout (``tmemd/engine/_snapshot.py`` says why pages were
chosen).  A sample of pages is read back and compared byte for byte.

Usage: ``python bench/warm_restart.py [--gib 1] [--codec lzo] [--dir DIR]``.
The figures in docs/warm-restart.md come from this script.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from tmem.bench._config import PAGE_BYTES
from tmem.bench._corpus import real_corpus
from tmemd._statedir import restore_state, save_state, state_path
from tmemd.engine import Engine, EngineConfig, make_codecs

#: Distinct corpus pages; each is stored under several handles (256 MiB).
CORPUS_PAGES = 65_536
#: Pages per object: a swap area's worth of consecutive indexes.
OBJECT_PAGES = 4096
#: Pages compared after the restore.
CHECK_PAGES = 20_000
MB = 1e6


def make_engine(memory: int, codec: str) -> Engine:
    config = EngineConfig(
        memory_bytes=memory,
        default_codec=codec,
        persistent_max=0.95,
        persistent_accept=0.9,
        ephemeral_pam="zbud",
        persistent_pam="zsmalloc",
    )
    return Engine(config, clock=time.monotonic, codecs=make_codecs())


def fill(engine: Engine, pages: int, corpus: list[bytes]) -> None:
    engine.connect("bench")
    pool = engine.new_pool("bench", persistent=True)
    for n in range(pages):
        refusal = engine.put(
            "bench", pool, n // OBJECT_PAGES, n % OBJECT_PAGES, corpus[n % len(corpus)]
        )
        if refusal is not None:
            raise SystemExit(f"page {n} refused ({refusal.name}): give more --memory")


def frame_copy(engine: Engine, folder: Path) -> tuple[int, float]:
    """Bytes of used frames written raw with fsync, and the seconds it took."""
    arena = engine._memory.arena
    assert arena is not None
    path = folder / "frames.raw"
    t0 = time.perf_counter()
    written = 0
    with open(path, "wb", buffering=1 << 20) as fh:
        for frame in range(arena.frames_total):
            if arena.is_used(frame):
                fh.write(arena.view[frame * PAGE_BYTES : (frame + 1) * PAGE_BYTES])
                written += PAGE_BYTES
        fh.flush()
        os.fsync(fh.fileno())
    seconds = time.perf_counter() - t0
    path.unlink()
    return written, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="GiB of original pages")
    parser.add_argument("--codec", default="lzo", choices=("lzo", "lz4", "zstd", "none"))
    parser.add_argument("--dir", help="state directory (default: a new one under the temp dir)")
    args = parser.parse_args()
    pages = int(args.gib * (1 << 30)) // PAGE_BYTES
    memory = int(args.gib * (1 << 30) * 1.1) + (64 << 20)
    corpus = real_corpus(min(CORPUS_PAGES, pages)).pages
    engine = make_engine(memory, args.codec)
    t0 = time.perf_counter()
    fill(engine, pages, corpus)
    fill_s = time.perf_counter() - t0
    stats = engine.statistics()
    stored = stats.pool_stats[0].stored_bytes
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        saved = save_state(engine, folder, ephemeral=False, server_id="0" * 32)
        save_s = time.perf_counter() - t0
        frames_bytes, frames_s = frame_copy(engine, folder)
        state_bytes = state_path(folder).stat().st_size
        del engine
        fresh = make_engine(memory, args.codec)
        t0 = time.perf_counter()
        restored = restore_state(fresh, folder)
        restore_s = time.perf_counter() - t0
    assert restored is not None and restored.pages == pages
    rnd = random.Random(1)
    wrong = 0
    for n in rnd.sample(range(pages), min(CHECK_PAGES, pages)):
        got = fresh.get("bench", 0, n // OBJECT_PAGES, n % OBJECT_PAGES)
        wrong += got != corpus[n % len(corpus)]
    gib = pages * PAGE_BYTES / (1 << 30)
    row("pages", f"{pages} ({gib:.2f} GiB, codec {args.codec})")
    row("fill", f"{fill_s:.1f} s")
    row("stored bytes", f"{stored / MB:.1f} MB (blobs written {saved.stored_bytes / MB:.1f} MB)")
    row("state file", f"{state_bytes / MB:.1f} MB = {state_bytes / stored:.3f} x stored bytes")
    row("save (with fsync)", f"{save_s:.2f} s = {stored / MB / save_s:.0f} MB/s of stored bytes")
    row("restore", f"{restore_s:.2f} s = {stored / MB / restore_s:.0f} MB/s of stored bytes")
    row(
        "frame copy (floor)",
        f"{frames_bytes / MB:.1f} MB of used frames in {frames_s:.2f} s "
        f"= {frames_bytes / MB / frames_s:.0f} MB/s",
    )
    row("pages checked", f"{min(CHECK_PAGES, pages)}, wrong {wrong}")


def row(label: str, text: str) -> None:
    print(f"{label:<20} {text}")


if __name__ == "__main__":
    main()

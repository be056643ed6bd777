"""A corpus of real 4 KiB pages for density and throughput benchmarks.

What: ``load_corpus(n)`` returns ``n`` pages (``bytes`` of exactly 4096) cut
from real files on this machine, in a fixed mix of kinds, shuffled so that
kinds interleave as they do in a real page cache or swap area.

Why: compression ratios, and so every density figure in docs/design.md §6,
depend on what the pages hold.  Random bytes never compress and repeated
text compresses absurdly well; what a tmem server sees is binaries,
libraries, source, text, databases and zero pages.

How: for each kind we list its files (sorted, symlinks resolved, duplicates
dropped), count each file's pages without reading it, and draw a sample of
page numbers across the whole kind with a fixed seed, so a page comes from
anywhere in any file rather than from the first files in sort order.  A
file's last page is zero-padded past its end, as the page cache pads it.
The database kind reads a SQLite file built here from seeded rows (orders
with customers, addresses, amounts, dates and free-text notes, plus two
indexes), cached under the temp directory and rebuilt when missing.

Why these shares: the kinds are the ones the memory issue lists (shared
libraries, executables, Python sources and bytecode, text and docs, a
database, ~10 % zero pages), weighted equally, because no one host's mix is
more right than another's.  An earlier mix gave libraries 30 % and
executables 15 %; on this machine half the library pages then came from two
LLVM builds and most executable pages from a few statically linked Go
binaries, the least compressible pages here, so one toolchain's files stood
for "what a host caches" (docs/memory.md has both mixes' figures).

The guarantee: the same machine image, ``n`` and seed give the same pages in
the same order.  Granularity: shares are rounded down per kind and the
remainder goes to libraries.  Worked example: ``n = 50_000`` gives 5_000
zero pages (10 %) and 7_500 pages (15 %) of each of the six other kinds:
195 MiB in all.

Run ``python bench/corpus.py --pages N`` for a summary of the mix.
"""

from __future__ import annotations

import argparse
import bisect
import glob
import os
import random
import sqlite3
import sysconfig
import tempfile
import time
from collections.abc import Iterable

__all__ = [
    "CATEGORY_SHARES",
    "CODE_HEAVY_SHARES",
    "DEFAULT_PAGES",
    "PAGE_BYTES",
    "SEED",
    "load_corpus",
    "load_labeled",
]

#: The page size the corpus is cut into (x86-64 base page, tmem's default).
PAGE_BYTES = 4096
#: Default corpus size: 50_000 pages is ~195 MiB, big enough that per-class
#: tails of an allocator do not dominate, small enough to build in seconds.
DEFAULT_PAGES = 50_000
#: Seed of every random choice, so runs compare like with like.
SEED = 20_240_601
#: Share of each kind.  Zero pages are ~10 % of real swap (docs/design.md §5);
#: the six kinds of real files share the rest equally (see the docstring).
CATEGORY_SHARES: dict[str, float] = {
    "zero": 0.10,
    "library": 0.15,
    "executable": 0.15,
    "python_source": 0.15,
    "python_bytecode": 0.15,
    "text": 0.15,
    "database": 0.15,
}
#: The mix before the equal shares, kept so the figures can be compared.
CODE_HEAVY_SHARES: dict[str, float] = {
    "zero": 0.10,
    "library": 0.30,
    "executable": 0.15,
    "python_source": 0.10,
    "python_bytecode": 0.10,
    "text": 0.15,
    "database": 0.10,
}
#: Rows per database page wanted: ~25 rows of ~150 bytes fill a 4 KiB page,
#: and the indexes add about a third again, so 20 rows per sampled page
#: gives a file larger than the sample (each page drawn at most once).
DB_ROWS_PER_PAGE = 20
#: Version of the generated rows: bump when ``_sqlite_file`` changes what it
#: writes, so a stale cached file is never read.
DB_FORMAT = 1
#: Where the generated SQLite files are cached between runs.
CACHE_DIR = os.path.join(tempfile.gettempdir(), "tmemd-corpus")

_ZERO_PAGE = bytes(PAGE_BYTES)


def _regular_files(paths: Iterable[str]) -> list[tuple[str, int]]:
    """Sorted (path, size) of the distinct non-empty regular files among ``paths``."""
    seen: set[str] = set()
    out: list[tuple[str, int]] = []
    for path in sorted(paths):
        real = os.path.realpath(path)
        if real in seen or not os.path.isfile(real):
            continue
        seen.add(real)
        size = os.path.getsize(real)
        if size > 0:
            out.append((real, size))
    return out


def _category_files(kind: str, n_pages: int) -> list[tuple[str, int]]:
    """The files a kind's pages are drawn from."""
    stdlib = sysconfig.get_paths()["stdlib"]
    if kind == "library":
        return _regular_files(glob.glob("/usr/lib/x86_64-linux-gnu/*.so*"))
    if kind == "executable":
        return _regular_files(glob.glob("/usr/bin/*"))
    if kind == "python_source":
        return _regular_files(glob.glob(os.path.join(stdlib, "**", "*.py"), recursive=True))
    if kind == "python_bytecode":
        pattern = os.path.join(stdlib, "**", "__pycache__", "*.pyc")
        return _regular_files(glob.glob(pattern, recursive=True))
    if kind == "text":
        docs = glob.glob("/usr/share/doc/**/*", recursive=True)
        docs = [p for p in docs if not p.endswith(".gz")]
        headers = glob.glob("/usr/include/**/*.h", recursive=True)
        licenses = glob.glob("/usr/share/common-licenses/*")
        return _regular_files(docs + headers + licenses)
    if kind == "database":
        return _regular_files([_sqlite_file(max(1, n_pages) * DB_ROWS_PER_PAGE)])
    raise ValueError(f"unknown corpus kind {kind!r}")


# Word lists read better as one string each.
_FIRST = "Ada Bruno Chen Dana Elif Femi Greta Hiro Ines Jonas Kofi Lena Mateo Nadia Omar".split()  # noqa: SIM905
_LAST = "Abbott Becker Castro Dubois Eriksen Fischer Garcia Haddad Ivanova Jensen".split()  # noqa: SIM905
_CITIES = "Lisbon Osaka Nairobi Toronto Krakow Lyon Austin Pune Leeds Bergen Porto".split()  # noqa: SIM905
_WORDS = (  # noqa: SIM905
    "please deliver before noon leave the parcel with neighbour fragile handle with care "
    "gift wrap invoice attached customer called twice about delayed shipment refund "
    "requested partial return warehouse stock low backorder expected next week priority "
    "express standard economy signature required door code contact by phone"
).split()
_STATUS = ["pending", "paid", "shipped", "delivered", "returned", "cancelled"]


def _sqlite_file(rows: int) -> str:
    """Path of a SQLite database of ``rows`` seeded orders, built once and cached."""
    os.makedirs(CACHE_DIR, exist_ok=True)
    path = os.path.join(CACHE_DIR, f"orders-v{DB_FORMAT}-{rows}-{SEED}.sqlite")
    if os.path.exists(path):
        return path
    rng = random.Random(SEED)
    tmp = path + f".{os.getpid()}.tmp"
    con = sqlite3.connect(tmp)
    con.execute(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, email TEXT,"
        " city TEXT, created TEXT, amount_cents INTEGER, status TEXT, note TEXT)"
    )
    base = 1_700_000_000
    batch = []
    for i in range(rows):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + i * 37 + rng.randrange(30)))
        note = " ".join(rng.choices(_WORDS, k=rng.randrange(0, 14)))
        batch.append(
            (
                f"{first} {last}",
                f"{first}.{last}{rng.randrange(1000)}@example.org".lower(),
                rng.choice(_CITIES),
                ts,
                rng.randrange(100, 500_000),
                rng.choice(_STATUS),
                note,
            )
        )
    con.executemany(
        "INSERT INTO orders (customer, email, city, created, amount_cents, status,"
        " note) VALUES (?, ?, ?, ?, ?, ?, ?)",
        batch,
    )
    con.execute("CREATE INDEX orders_email ON orders (email)")
    con.execute("CREATE INDEX orders_created ON orders (created, status)")
    con.commit()
    con.close()
    os.replace(tmp, path)
    return path


def _sample_pages(files: list[tuple[str, int]], k: int, rng: random.Random) -> list[bytes]:
    """``k`` distinct pages drawn uniformly from all pages of ``files``."""
    starts: list[int] = []
    total = 0
    for _, size in files:
        starts.append(total)
        total += (size + PAGE_BYTES - 1) // PAGE_BYTES
    if total == 0:
        raise RuntimeError("no files found for a corpus kind on this machine")
    picks = sorted(rng.sample(range(total), k) if k <= total else rng.choices(range(total), k=k))
    by_file: dict[int, list[int]] = {}
    for pick in picks:
        i = bisect.bisect_right(starts, pick) - 1
        by_file.setdefault(i, []).append(pick - starts[i])
    pages: list[bytes] = []
    for i, numbers in by_file.items():
        with open(files[i][0], "rb") as fh:
            for number in numbers:
                fh.seek(number * PAGE_BYTES)
                page = fh.read(PAGE_BYTES)
                pages.append(page + bytes(PAGE_BYTES - len(page)))
    return pages


def load_labeled(
    n: int = DEFAULT_PAGES, seed: int = SEED, shares: dict[str, float] | None = None
) -> list[tuple[str, bytes]]:
    """``n`` pages with the kind each came from, in a fixed shuffled order."""
    rng = random.Random(seed)
    mix = CATEGORY_SHARES if shares is None else shares
    counts = {kind: int(n * share) for kind, share in mix.items()}
    counts["library"] += n - sum(counts.values())
    out: list[tuple[str, bytes]] = []
    for kind, k in counts.items():
        if k == 0:
            continue
        if kind == "zero":
            out.extend((kind, _ZERO_PAGE) for _ in range(k))
            continue
        files = _category_files(kind, k)
        out.extend((kind, page) for page in _sample_pages(files, k, rng))
    rng.shuffle(out)
    return out


def load_corpus(
    n: int = DEFAULT_PAGES, seed: int = SEED, shares: dict[str, float] | None = None
) -> list[bytes]:
    """``n`` real 4 KiB pages (see the module docstring for the mix)."""
    return [page for _, page in load_labeled(n, seed, shares)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=DEFAULT_PAGES)
    args = parser.parse_args()
    t0 = time.perf_counter()
    labeled = load_labeled(args.pages)
    elapsed = time.perf_counter() - t0
    by_kind: dict[str, int] = {}
    same_filled = 0
    for kind, page in labeled:
        by_kind[kind] = by_kind.get(kind, 0) + 1
        same_filled += page == page[:1] * PAGE_BYTES
    print(
        f"{len(labeled)} pages, {len(labeled) * PAGE_BYTES / 2**20:.1f} MiB, "
        f"built in {elapsed:.1f} s; same-filled pages: {same_filled}"
    )
    for kind, count in by_kind.items():
        print(f"  {kind:16s} {count:7d}")


if __name__ == "__main__":
    main()

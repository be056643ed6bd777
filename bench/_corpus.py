"""The page corpus of every benchmark: real 4 KiB pages from this machine, or synthetic ones.

Every benchmark of this folder, ``tmemd-bench`` and the scripts alike, cuts
its pages here, with the same default mix and seed, so that their figures
compare.

Why real pages: a compressing put costs what the codec costs on the page,
and density is what the codec makes of the page, so both depend on the
bytes.  Random bytes never compress and repeated text compresses absurdly
well; a tmem server sees code, text, databases and zero pages, so that is
what the corpus holds (the mix of docs/design.md §6).

How ``real_corpus(n, seed)`` builds it: for each kind it lists the kind's
files (sorted, symlinks resolved, duplicates dropped), sizes them without
reading, and draws page numbers across the whole kind with a seeded RNG, so
a page may come from any file; each page is read with ``os.pread`` and a
file's last page is zero-padded, as the page cache pads it.  The database
kind reads a SQLite file built here from seeded rows and cached in the temp
directory.  A kind with no files on this machine falls back to synthetic
pages, and ``Corpus.kinds`` says so (``"text(synthetic)"``).

The mix: ``KIND_SHARES`` by default, the one every figure in docs/bench/ was
measured on.  ``EQUAL_SHARES`` weights the six kinds of real files equally;
docs/memory.md explains why its density figures were taken on that mix
(``--equal-shares`` of the density scripts).

Guarantee: the same machine image, ``n``, seed and mix give the same pages
in the same order.  Granularity: shares round down per kind, the remainder
goes to libraries.  Worked example: ``n = 20_000`` gives 2_000 zero pages,
6_000 library, 3_000 executable, 2_000 Python source, 2_000 bytecode, 3_000
text and 2_000 database pages, shuffled together (78 MiB).

``synthetic_corpus(n, seed)`` makes word-salad pages (about 2.3x with lz4)
plus the same 10 % of zero pages, in milliseconds, for quick runs and tests.
"""

from __future__ import annotations

import bisect
import glob
import os
import random
import sqlite3
import sysconfig
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import lz4.block

from ._config import PAGE_BYTES, SEED

__all__ = [
    "EQUAL_SHARES",
    "KIND_SHARES",
    "SEED",
    "Corpus",
    "precompress",
    "real_corpus",
    "synthetic_corpus",
]

#: Share of each kind: zero pages are ~10 % of real swap (docs/design.md §5); the
#: rest follows what a host's page cache holds, mostly code.
KIND_SHARES: dict[str, float] = {
    "zero": 0.10,
    "library": 0.30,
    "executable": 0.15,
    "python_source": 0.10,
    "python_bytecode": 0.10,
    "text": 0.15,
    "database": 0.10,
}
#: The six kinds of real files weighted equally, 15 % each, beside the same
#: 10 % of zero pages: no one toolchain's libraries stand for "what a host
#: caches" (docs/memory.md, "The corpus").
EQUAL_SHARES: dict[str, float] = {
    "zero": 0.10,
    "library": 0.15,
    "executable": 0.15,
    "python_source": 0.15,
    "python_bytecode": 0.15,
    "text": 0.15,
    "database": 0.15,
}
#: Rows per database page wanted: ~150-byte rows plus two indexes fill a
#: 4 KiB page with about 20 rows, so 24 leaves a margin.
DB_ROWS_PER_PAGE = 24
#: Vocabulary of synthetic pages, and the words one page draws from it: a
#: page of text repeats its own few dozen words, which is what gives lz4
#: its matches (32 words: ~2.3x with lz4, ~3.6x with zstd-1, near the real
#: corpus's ~2.1x with lz4); drawing from the whole vocabulary gives ~1.2x.
SYNTHETIC_WORDS = 2_000
SYNTHETIC_PAGE_WORDS = 32
_ZERO_PAGE = bytes(PAGE_BYTES)


@dataclass(frozen=True)
class Corpus:
    """Pages (each exactly ``PAGE_BYTES``) and how many of each kind."""

    pages: list[bytes]
    kinds: dict[str, int] = field(default_factory=dict)
    synthetic: bool = False

    def __len__(self) -> int:
        return len(self.pages)


def _files(patterns: Iterable[str], accept: Callable[[str], bool] | None = None) -> list[str]:
    """Regular, non-empty files matching ``patterns``: resolved, deduplicated, sorted."""
    seen: set[str] = set()
    for pattern in patterns:
        for path in glob.glob(pattern, recursive=True):
            real = os.path.realpath(path)
            if real in seen or (accept is not None and not accept(real)):
                continue
            if os.path.isfile(real) and os.access(real, os.R_OK) and os.path.getsize(real) > 0:
                seen.add(real)
    return sorted(seen)


def _stdlib() -> str:
    return sysconfig.get_paths()["stdlib"]


def _is_plain_text(path: str) -> bool:
    return not path.endswith((".gz", ".bz2", ".xz", ".zst", ".png", ".jpg", ".pdf"))


def _kind_files(kind: str, db_path: Callable[[], str]) -> list[str]:
    if kind == "library":
        return _files(["/usr/lib/x86_64-linux-gnu/*.so*", "/usr/lib/*/*.so*"])
    if kind == "executable":
        return _files(["/usr/bin/*", "/usr/sbin/*"], lambda p: not p.endswith((".py", ".sh")))
    if kind == "python_source":
        return _files([f"{_stdlib()}/*.py", f"{_stdlib()}/*/*.py"])
    if kind == "python_bytecode":
        return _files([f"{_stdlib()}/__pycache__/*.pyc", f"{_stdlib()}/*/__pycache__/*.pyc"])
    if kind == "text":
        return _files(["/usr/share/doc/**/*"], _is_plain_text)
    if kind == "database":
        return [db_path()]
    raise ValueError(f"unknown kind {kind!r}")


def _read_pages(files: list[str], count: int, rng: random.Random) -> list[bytes]:
    """``count`` pages drawn across all of ``files``, as if they were one long file."""
    ends: list[int] = []
    total = 0
    for path in files:
        total += -(-os.path.getsize(path) // PAGE_BYTES)
        ends.append(total)
    numbers = (
        rng.sample(range(total), count) if count <= total else rng.choices(range(total), k=count)
    )
    pages = []
    for number in numbers:
        slot = bisect.bisect_right(ends, number)
        first = ends[slot - 1] if slot else 0
        fd = os.open(files[slot], os.O_RDONLY)
        try:
            data = os.pread(fd, PAGE_BYTES, (number - first) * PAGE_BYTES)
        finally:
            os.close(fd)
        pages.append(data.ljust(PAGE_BYTES, b"\0"))
    return pages


def _database(rows: int, seed: int) -> str:
    """A SQLite file of ``rows`` seeded orders and two indexes, built once and cached."""
    path = Path(tempfile.gettempdir()) / f"tmemd-bench-{seed}-{rows}.sqlite"
    if path.exists():
        return str(path)
    rng = random.Random(seed)
    names = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(4, 10))) for _ in range(500)
    ]
    streets = ["Main St", "High St", "Station Rd", "Church Ln", "Park Ave", "Mill Rd"]
    tmp = path.with_suffix(f".tmp.{os.getpid()}")
    db = sqlite3.connect(tmp)
    try:
        db.execute("PRAGMA page_size = 4096")
        db.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, address TEXT,"
            " amount REAL, placed TEXT, note TEXT)"
        )
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    i,
                    f"{rng.choice(names)} {rng.choice(names)}",
                    f"{rng.randint(1, 999)} {rng.choice(streets)}, {rng.choice(names).title()}",
                    round(rng.uniform(1, 5000), 2),
                    f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    " ".join(rng.choices(names, k=rng.randint(0, 12))),
                )
                for i in range(rows)
            ),
        )
        db.execute("CREATE INDEX by_customer ON orders (customer)")
        db.execute("CREATE INDEX by_placed ON orders (placed, amount)")
        db.commit()
    finally:
        db.close()
    tmp.replace(path)
    return str(path)


def _counts(n: int, shares: Mapping[str, float]) -> dict[str, int]:
    counts = {kind: int(n * share) for kind, share in shares.items()}
    counts["library"] += n - sum(counts.values())
    return counts


def real_corpus(n: int, seed: int = SEED, shares: Mapping[str, float] = KIND_SHARES) -> Corpus:
    """``n`` real pages in the ``shares`` mix, shuffled (see the module doc)."""
    counts = _counts(n, shares)
    rows = max(1_000, counts["database"] * DB_ROWS_PER_PAGE)
    pages: list[bytes] = []
    kinds: dict[str, int] = {}
    for kind, count in counts.items():
        rng = random.Random(f"{seed}:{kind}")
        if kind == "zero":
            got = [_ZERO_PAGE] * count
            files: list[str] = ["-"]
        else:
            files = _kind_files(kind, lambda: _database(rows, seed))
            got = _read_pages(files, count, rng) if files and count else []
        if count and not got:
            got = synthetic_corpus(count, seed, zero_share=0.0).pages
            kind = f"{kind}(synthetic)"
        pages.extend(got)
        kinds[kind] = count
    random.Random(seed).shuffle(pages)
    return Corpus(pages, kinds)


def synthetic_corpus(n: int, seed: int, zero_share: float = KIND_SHARES["zero"]) -> Corpus:
    """``n`` generated pages: word salad plus ``zero_share`` zero pages."""
    rng = random.Random(seed)
    letters = b"abcdefghijklmnopqrstuvwxyz"
    words = [bytes(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(SYNTHETIC_WORDS)]
    zeros = int(n * zero_share)
    pages = [_ZERO_PAGE] * zeros
    for _ in range(n - zeros):
        local = rng.sample(words, SYNTHETIC_PAGE_WORDS)
        text = b" ".join(rng.choices(local, k=PAGE_BYTES // 4))
        pages.append(text[:PAGE_BYTES].ljust(PAGE_BYTES, b" "))
    rng.shuffle(pages)
    return Corpus(pages, {"zero": zeros, "synthetic_text": n - zeros}, synthetic=True)


def precompress(pages: Iterable[bytes]) -> list[bytes]:
    """What a client of a precompressed pool sends: each page as an lz4 block,
    or the page itself when lz4 cannot make it shorter."""
    out = []
    for page in pages:
        packed = lz4.block.compress(page, store_size=False)
        out.append(packed if len(packed) < len(page) else page)
    return out

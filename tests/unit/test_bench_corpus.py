"""tmemd-bench's page corpus: sizes, mix, determinism; and /proc readers."""

from __future__ import annotations

import os

import lz4.block

from tmem.bench import real_corpus, synthetic_corpus
from tmem.bench._corpus import EQUAL_SHARES, KIND_SHARES, precompress
from tmem.bench._proc import cpu_seconds, free_port, rss_bytes, split_cpus

ZERO = bytes(4096)


def test_synthetic_pages_are_pages_and_deterministic() -> None:
    a = synthetic_corpus(500, seed=7)
    assert len(a) == 500 and all(len(p) == 4096 for p in a.pages)
    assert a.pages.count(ZERO) == 50
    assert a.synthetic
    assert a.pages == synthetic_corpus(500, seed=7).pages
    assert a.pages != synthetic_corpus(500, seed=8).pages


def test_synthetic_pages_compress_like_text() -> None:
    text = [p for p in synthetic_corpus(200, seed=1).pages if p != ZERO]
    ratio = len(text) * 4096 / sum(len(lz4.block.compress(p, store_size=False)) for p in text)
    assert 1.5 < ratio < 4.0


def test_real_corpus_mix_and_determinism() -> None:
    n = 300
    corpus = real_corpus(n, seed=3)
    assert len(corpus) == n and all(len(p) == 4096 for p in corpus.pages)
    assert sum(corpus.kinds.values()) == n
    assert corpus.pages.count(ZERO) >= int(n * KIND_SHARES["zero"])
    assert corpus.kinds["zero"] == int(n * KIND_SHARES["zero"])
    assert corpus.pages == real_corpus(n, seed=3).pages
    # real files: many distinct pages, not one page repeated
    assert len(set(corpus.pages)) > n // 2


def test_real_corpus_takes_another_mix() -> None:
    equal = real_corpus(200, seed=3, shares=EQUAL_SHARES)
    assert sorted(equal.kinds.values()) == [20, 30, 30, 30, 30, 30, 30]
    default = real_corpus(200, seed=3)
    assert max(default.kinds.values()) == default.kinds["library"] == 60


def test_precompress_is_lz4_or_the_page() -> None:
    pages = [*synthetic_corpus(20, seed=2).pages, os.urandom(4096)]
    packed = precompress(pages)
    for page, blob in zip(pages, packed, strict=True):
        assert len(blob) <= len(page)
        if blob is not page:
            assert lz4.block.decompress(blob, uncompressed_size=4096) == page
    assert packed[-1] == pages[-1]  # random bytes do not shrink


def test_proc_readers_on_this_process() -> None:
    sum(range(200_000))
    assert cpu_seconds(os.getpid()) > 0
    assert rss_bytes(os.getpid()) > 1 << 20
    assert 0 < free_port() < 65536


def test_split_cpus_gives_server_and_clients_their_own() -> None:
    cpus = os.sched_getaffinity(0)
    split = split_cpus()
    if len(cpus) < 2:
        assert split is None
        return
    assert split is not None
    server, clients = split
    assert server and clients and not server & clients
    assert server | clients == cpus
    assert max(server) < min(clients)

"""Codecs: every codec round-trips every kind of page, and the table is as documented."""

from __future__ import annotations

import random

import lz4.block
import lzo
import pytest

from tmemd.engine import CODECS, Codec
from tmemd.engine.codecs import (
    Lz4Codec,
    LzoCodec,
    NoneCodec,
    ZstdCodec,
    raw_threshold_bytes,
)

PAGE = 4096


def _pages() -> dict[str, bytes]:
    rng = random.Random(7)
    text = b"".join(
        b"line %d: the quick brown fox jumps over the lazy dog\n" % i for i in range(200)
    )
    words = [rng.randbytes(rng.randint(1, 8)) for _ in range(64)]
    return {
        "text": text[:PAGE],
        "zeros": bytes(PAGE),
        "ones": b"\xff" * PAGE,
        "random": rng.randbytes(PAGE),
        "structured": b"".join(rng.choice(words) for _ in range(2000))[:PAGE],
        "half_random": rng.randbytes(PAGE // 2) + bytes(PAGE // 2),
        "big_page": (text * 20)[: 16 * PAGE],
    }


PAGES = _pages()


def test_codec_table_names() -> None:
    assert set(CODECS) == {"lzo", "lz4", "zstd", "none"}
    for name, codec in CODECS.items():
        assert codec.name == name


def test_codec_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        CODECS["evil"] = NoneCodec()  # type: ignore[index]


@pytest.mark.parametrize("codec_name", sorted(CODECS))
@pytest.mark.parametrize("kind", sorted(PAGES))
def test_round_trip(codec_name: str, kind: str) -> None:
    codec = CODECS[codec_name]
    page = PAGES[kind]
    compressed = codec.compress(page)
    assert isinstance(compressed, bytes)
    assert codec.decompress(compressed, len(page)) == page


@pytest.mark.parametrize("codec_name", ["lzo", "lz4", "zstd"])
def test_compressible_pages_shrink(codec_name: str) -> None:
    codec = CODECS[codec_name]
    assert len(codec.compress(PAGES["text"])) < PAGE // 4
    assert len(codec.compress(PAGES["zeros"])) < 64


@pytest.mark.parametrize("codec_name", ["lzo", "lz4", "zstd"])
def test_random_pages_pass_the_raw_threshold(codec_name: str) -> None:
    # The engine's raw rule relies on random data not compressing under 7/8.
    assert len(CODECS[codec_name].compress(PAGES["random"])) > raw_threshold_bytes(PAGE)


def test_no_length_headers() -> None:
    # Headerless blocks: the stored size would waste bytes (the page size is known).
    page = PAGES["text"]
    assert len(lzo.compress(page, 1, True)) == len(CODECS["lzo"].compress(page)) + 5
    assert len(lz4.block.compress(page)) == len(CODECS["lz4"].compress(page)) + 4


def test_accepts_bytes_like_input() -> None:
    page = PAGES["text"]
    for codec in CODECS.values():
        expected = codec.compress(page)
        assert codec.compress(bytes(bytearray(page))) == expected


@pytest.mark.parametrize("codec_name", ["lzo", "lz4", "zstd"])
def test_wrong_size_or_garbage_is_detected(codec_name: str) -> None:
    codec = CODECS[codec_name]
    blob = codec.compress(PAGES["text"])
    with pytest.raises(Exception):  # noqa: B017 - each library raises its own error type
        result = codec.decompress(blob, PAGE // 2)
        assert len(result) == PAGE // 2  # zstd may truncate instead of raising
        raise ValueError("short output accepted")
    with pytest.raises(Exception):  # noqa: B017 - as above
        codec.decompress(b"\xff" * 32, PAGE)


def test_zstd_reuses_its_context_objects() -> None:
    codec = ZstdCodec()
    compressor = codec._compressor
    decompressor = codec._decompressor
    for kind in ("text", "structured", "random"):
        page = PAGES[kind]
        assert codec.decompress(codec.compress(page), len(page)) == page
    assert codec._compressor is compressor
    assert codec._decompressor is decompressor


def test_zstd_frames_carry_no_content_size_or_checksum() -> None:
    blob = ZstdCodec().compress(PAGES["text"])
    # Frame header descriptor byte follows the 4-byte magic: bits 6-7 content
    # size flag and bit 2 checksum flag must be clear; bit 5 (single segment)
    # is clear too when no content size is written.
    descriptor = blob[4]
    assert descriptor & 0b1100_0000 == 0
    assert descriptor & 0b0000_0100 == 0


def test_raw_threshold() -> None:
    assert raw_threshold_bytes(4096) == 3584
    assert raw_threshold_bytes(65536) == 57344


def test_classes_satisfy_the_protocol() -> None:
    codecs: list[Codec] = [LzoCodec(), Lz4Codec(), ZstdCodec(), NoneCodec()]
    for codec in codecs:
        page = PAGES["structured"]
        assert codec.decompress(codec.compress(page), PAGE) == page

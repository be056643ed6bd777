"""Page codecs: how a page becomes the bytes a PAM stores.

A codec is any object with a ``name``, ``compress(data) -> bytes`` and
``decompress(data, size) -> bytes`` where ``size`` is the original length
(every codec here stores raw blocks without a length header, as zcache and
zswap do: the pool's page size is known, so a header would waste bytes).
The engine is handed a ``Mapping[str, Codec]`` (``CODECS`` by default) and
never imports a compressor itself, so tests can pass fakes.

Outside the codec, the engine applies two rules (see ``_engine.py``):

* a **same-filled** page (every byte equal; ~10% of swap pages are zero) is
  stored as its fill byte, never compressed, and takes no PAM space;
* a page whose compressed form is longer than 7/8 of the page is stored
  **raw** (``raw_threshold_bytes``): decompressing it would cost time and
  save almost nothing, and the packers waste less on a raw page than on a
  nearly-full compressed one.

Codecs:

``lzo``
    LZO1X-1 without python-lzo's 5-byte header, the codec zcache used.
``lz4``
    LZ4 block format, default acceleration, no stored size.
``zstd``
    Zstandard frames without content size or checksum: the size is known,
    and a checksum guards storage media and wires, not our own memory.  One
    compressor and one decompressor object per codec: creating them costs
    more than compressing a page.  The level is the daemon's choice
    (``--zstd-level``; ``ZSTD_LEVEL`` here).  A pool's zstd codec may be
    *trained* (``ZstdCodec.train``): a dictionary built from the pool's own
    pages primes every later page, which a page of 4 KiB gains from because
    it is too short to find its own repeats.  Pages stored before training
    keep decoding: a trained codec writes its dictionary id (1 byte) in the
    frame header and reads frames without one with the plain decompressor.
``none``
    Identity; every page ends up raw.

Measured costs per 4 KiB page are printed by ``bench/codecs.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, Protocol

import lz4.block
import lzo
import zstandard

__all__ = [
    "CODECS",
    "DICT_ID",
    "RAW_THRESHOLD_DENOMINATOR",
    "RAW_THRESHOLD_NUMERATOR",
    "ZSTD_LEVEL",
    "Codec",
    "Lz4Codec",
    "LzoCodec",
    "NoneCodec",
    "TrainedZstdCodec",
    "ZstdCodec",
    "make_codecs",
    "raw_threshold_bytes",
]

#: A compressed page longer than NUMERATOR/DENOMINATOR of the page size is
#: stored raw.  7/8 (3584 bytes of a 4 KiB page) saves under 1/8 of a page,
#: which the packers' per-object waste eats anyway.
RAW_THRESHOLD_NUMERATOR: Final = 7
RAW_THRESHOLD_DENOMINATOR: Final = 8

#: zstd level by default: 1 is the fastest standard level and the one
#: docs/design.md §6 states; the daemon picks its own (``--zstd-level``, docs/memory.md).
ZSTD_LEVEL: Final = 1
#: Id written into the frames of a trained codec: any id < 256 costs one
#: header byte, and a frame without one was compressed before training.
DICT_ID: Final = 1
#: The dictionary-id bits of a zstd frame header descriptor (byte 4, after
#: the magic): 0 means the frame names no dictionary.
_DICT_ID_FLAG: Final = 0b11
#: Training parameters: fastcover with k=200, d=8 trains on 2_000 pages in
#: ~0.1 s and gave the same ratio as the slow default search (docs/memory.md).
_TRAIN_K: Final = 200
_TRAIN_D: Final = 8
#: LZO1X-1 is python-lzo's compression level 1.
LZO_LEVEL: Final = 1


def raw_threshold_bytes(page_size: int) -> int:
    """Longest compressed form kept compressed; e.g. 4096 -> 3584."""
    return page_size * RAW_THRESHOLD_NUMERATOR // RAW_THRESHOLD_DENOMINATOR


class Codec(Protocol):
    """What the engine needs from a compressor."""

    @property
    def name(self) -> str:
        """The key under which the codec is configured."""
        ...

    def compress(self, data: bytes) -> bytes:
        """The compressed form of ``data`` (no length header)."""
        ...

    def decompress(self, data: bytes, size: int) -> bytes:
        """The ``size`` original bytes that ``compress`` turned into ``data``."""
        ...


class LzoCodec:
    """LZO1X-1, headerless (python-lzo needs ``bytes``, not a memoryview)."""

    name = "lzo"

    def compress(self, data: bytes) -> bytes:
        return lzo.compress(bytes(data), LZO_LEVEL, False)  # type: ignore[no-any-return]

    def decompress(self, data: bytes, size: int) -> bytes:
        return lzo.decompress(bytes(data), False, size)  # type: ignore[no-any-return]


class Lz4Codec:
    """LZ4 block format without the stored size."""

    name = "lz4"

    # The C functions themselves, not Python methods around them: in the
    # interpreted build a wrapper's frame is a measurable share of a get
    # (docs/bench/micro.md; decompress takes the size positionally as
    # ``uncompressed_size``).
    compress: Callable[[bytes], bytes] = staticmethod(
        functools.partial(lz4.block.compress, store_size=False)
    )
    decompress: Callable[[bytes, int], bytes] = staticmethod(lz4.block.decompress)


class ZstdCodec:
    """Zstandard frames without content size, checksum or dict id."""

    name = "zstd"

    def __init__(self, level: int = ZSTD_LEVEL) -> None:
        self.level = level
        self._compressor = zstandard.ZstdCompressor(
            level=level, write_content_size=False, write_checksum=False, write_dict_id=False
        )
        self._decompressor = zstandard.ZstdDecompressor()

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)

    def decompress(self, data: bytes, size: int) -> bytes:
        return self._decompressor.decompress(data, max_output_size=size)

    def train(self, samples: list[bytes], dict_bytes: int) -> TrainedZstdCodec | None:
        """A codec primed with a dictionary trained on ``samples`` (None if
        zstd cannot train on them, e.g. too few or too alike)."""
        pages: list[bytes | bytearray | memoryview] = list(samples)
        try:
            trained = zstandard.train_dictionary(
                dict_bytes, pages, k=_TRAIN_K, d=_TRAIN_D, dict_id=DICT_ID, level=self.level
            )
        except zstandard.ZstdError:
            return None
        return TrainedZstdCodec(self, trained)

    def with_dictionary(self, data: bytes) -> TrainedZstdCodec:
        """The trained codec of a saved dictionary (``TrainedZstdCodec.dictionary``)."""
        return TrainedZstdCodec(self, zstandard.ZstdCompressionDict(data))


class TrainedZstdCodec:
    """A ``ZstdCodec`` with a dictionary; still decodes its plain frames."""

    name = "zstd"

    def __init__(self, plain: ZstdCodec, dictionary: zstandard.ZstdCompressionDict) -> None:
        self.plain = plain
        #: The dictionary as bytes: a saved state keeps it, since the pool's
        #: pages cannot be read back without it.
        self.dictionary = dictionary.as_bytes()
        self.dictionary_bytes = len(self.dictionary)
        self._compressor = zstandard.ZstdCompressor(
            level=plain.level,
            dict_data=dictionary,
            write_content_size=False,
            write_checksum=False,
            write_dict_id=True,
        )
        self._decompressor = zstandard.ZstdDecompressor(dict_data=dictionary)

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)

    def decompress(self, data: bytes, size: int) -> bytes:
        if len(data) > 4 and data[4] & _DICT_ID_FLAG:
            return self._decompressor.decompress(data, max_output_size=size)
        return self.plain.decompress(data, size)


class NoneCodec:
    """Identity: the engine stores every page of such a pool raw."""

    name = "none"

    def compress(self, data: bytes) -> bytes:
        return bytes(data)

    def decompress(self, data: bytes, size: int) -> bytes:
        return bytes(data)


def make_codecs(zstd_level: int = ZSTD_LEVEL) -> Mapping[str, Codec]:
    """The codec table, with zstd at ``zstd_level``."""
    codecs: tuple[Codec, ...] = (LzoCodec(), Lz4Codec(), ZstdCodec(zstd_level), NoneCodec())
    return MappingProxyType({codec.name: codec for codec in codecs})


CODECS: Mapping[str, Codec] = make_codecs()

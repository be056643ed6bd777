"""Pool flags (the ``arg`` of NEW_POOL) as a typed value.

The wire keeps Xen's packed u32 so that traces read like Xen's; code deals
in ``PoolSpec``.  ``decode_pool_flags`` is the single place where a peer's
flags are validated, and it names the status to answer with, because "which
error" is part of the protocol (reserved bits are BAD_FLAGS, a page shift
past the limit is BAD_PAGE_SIZE, a foreign ABI version BAD_SPEC_VERSION).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._constants import (
    CODEC_MASK,
    CODEC_OFFSET,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SHIFT,
    PAGE_SHIFT_MASK,
    PAGE_SHIFT_OFFSET,
    PAM_MASK,
    PAM_OFFSET,
    POOL_FLAGS_DEFINED,
    SPEC_VERSION,
    VERSION_MASK,
    VERSION_OFFSET,
    CodecId,
    PamId,
    PoolFlags,
    Status,
)
from ._errors import LocalProtocolError

__all__ = ["PoolFlagsError", "PoolSpec", "decode_pool_flags", "encode_pool_flags"]


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """What a NEW_POOL asks for."""

    persistent: bool = False
    shared: bool = False
    precompressed: bool = False
    page_size: int = DEFAULT_PAGE_SIZE
    codec: CodecId = CodecId.DEFAULT
    pam: PamId = PamId.DEFAULT


class PoolFlagsError(ValueError):
    """Pool flags a peer sent that we must refuse, with the status to send."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status


def encode_pool_flags(spec: PoolSpec) -> int:
    """The u32 pool-flags word for ``spec``."""
    shift = (spec.page_size // DEFAULT_PAGE_SIZE).bit_length() - 1
    if (
        spec.page_size < DEFAULT_PAGE_SIZE
        or DEFAULT_PAGE_SIZE << shift != spec.page_size
        or shift > MAX_PAGE_SHIFT
    ):
        raise LocalProtocolError(
            f"page size {spec.page_size} is not 4096 times a power of two up to 16"
        )
    word = SPEC_VERSION << VERSION_OFFSET
    word |= shift << PAGE_SHIFT_OFFSET
    word |= int(spec.codec) << CODEC_OFFSET
    word |= int(spec.pam) << PAM_OFFSET
    if spec.persistent:
        word |= PoolFlags.PERSIST
    if spec.shared:
        word |= PoolFlags.SHARED
    if spec.precompressed:
        word |= PoolFlags.PRECOMPRESSED
    return word


def decode_pool_flags(word: int) -> PoolSpec:
    """Validate and unpack a peer's pool flags; raise ``PoolFlagsError``."""
    if word & ~POOL_FLAGS_DEFINED & 0xFFFFFFFF:
        raise PoolFlagsError(
            Status.BAD_FLAGS, f"reserved pool flag bits set: {word & ~POOL_FLAGS_DEFINED:#x}"
        )
    version = (word & VERSION_MASK) >> VERSION_OFFSET
    if version != SPEC_VERSION:
        raise PoolFlagsError(
            Status.BAD_SPEC_VERSION, f"pool spec version {version}, expected {SPEC_VERSION}"
        )
    shift = (word & PAGE_SHIFT_MASK) >> PAGE_SHIFT_OFFSET
    if shift > MAX_PAGE_SHIFT:
        raise PoolFlagsError(Status.BAD_PAGE_SIZE, f"page shift {shift} over {MAX_PAGE_SHIFT}")
    codec_value = (word & CODEC_MASK) >> CODEC_OFFSET
    try:
        codec = CodecId(codec_value)
    except ValueError:
        raise PoolFlagsError(Status.BAD_FLAGS, f"unknown codec id {codec_value}") from None
    pam_value = (word & PAM_MASK) >> PAM_OFFSET
    try:
        pam = PamId(pam_value)
    except ValueError:
        raise PoolFlagsError(Status.BAD_FLAGS, f"unknown PAM id {pam_value}") from None
    persistent = bool(word & PoolFlags.PERSIST)
    shared = bool(word & PoolFlags.SHARED)
    if persistent and shared:
        raise PoolFlagsError(Status.BAD_FLAGS, "shared pools are ephemeral only")
    return PoolSpec(
        persistent=persistent,
        shared=shared,
        precompressed=bool(word & PoolFlags.PRECOMPRESSED),
        page_size=DEFAULT_PAGE_SIZE << shift,
        codec=codec,
        pam=pam,
    )

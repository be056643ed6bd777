"""tmem wire protocol: constants, frames, encoder and incremental decoder.

Standard library only, no I/O (sans-IO, after h11): bytes go in, frames come
out, and the caller owns the socket.  ``PROTOCOL.md`` beside this file is the
normative specification; ``python -m tmem.proto dump FILE`` decodes captured
traffic.
"""

from __future__ import annotations

# First, before any compiled module: with TMEMD_PURE_PYTHON=1 importing
# ``_build`` makes the compiled modules load from their sources.
from . import _build as _build
from ._codec import (
    NEED_DATA,
    NeedData,
    RequestDecoder,
    ResponseDecoder,
    encode,
    join_object_id,
    pack_request_header,
    request_header,
    response_header,
    split_object_id,
)
from ._constants import (
    CODEC_MASK,
    CODEC_OFFSET,
    DEFAULT_PAGE_SIZE,
    FRAMING_ERRORS,
    INDEX_LIMIT,
    MAX_PAGE_SHIFT,
    MAX_REQUEST_PAYLOAD_BYTES,
    MAX_RESPONSE_PAYLOAD_BYTES,
    NO_OPCODE,
    NO_POOL,
    OBJECT_ID_LIMIT,
    PAGE_SHIFT_MASK,
    PAGE_SHIFT_OFFSET,
    PAM_MASK,
    PAM_OFFSET,
    POOL_FLAGS_DEFINED,
    PROTOCOL_VERSION,
    REQUEST_HEADER,
    REQUEST_HEADER_BYTES,
    REQUEST_MAGIC,
    RESPONSE_HEADER,
    RESPONSE_HEADER_BYTES,
    RESPONSE_MAGIC,
    SPEC_VERSION,
    VERSION_MASK,
    VERSION_OFFSET,
    CodecId,
    GetFlags,
    Opcode,
    PamId,
    PoolFlags,
    RefuseReason,
    Status,
    page_size_from_flags,
)
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._frames import Request, Response
from ._names import CLIENT_NAME_CHARS, MAX_CLIENT_NAME_CHARS, is_client_name
from ._pool_flags import PoolFlagsError, PoolSpec, decode_pool_flags, encode_pool_flags

__all__ = [
    "CLIENT_NAME_CHARS",
    "CODEC_MASK",
    "CODEC_OFFSET",
    "DEFAULT_PAGE_SIZE",
    "FRAMING_ERRORS",
    "INDEX_LIMIT",
    "MAX_CLIENT_NAME_CHARS",
    "MAX_PAGE_SHIFT",
    "MAX_REQUEST_PAYLOAD_BYTES",
    "MAX_RESPONSE_PAYLOAD_BYTES",
    "NEED_DATA",
    "NO_OPCODE",
    "NO_POOL",
    "OBJECT_ID_LIMIT",
    "PAGE_SHIFT_MASK",
    "PAGE_SHIFT_OFFSET",
    "PAM_MASK",
    "PAM_OFFSET",
    "POOL_FLAGS_DEFINED",
    "PROTOCOL_VERSION",
    "REQUEST_HEADER",
    "REQUEST_HEADER_BYTES",
    "REQUEST_MAGIC",
    "RESPONSE_HEADER",
    "RESPONSE_HEADER_BYTES",
    "RESPONSE_MAGIC",
    "SPEC_VERSION",
    "VERSION_MASK",
    "VERSION_OFFSET",
    "CodecId",
    "GetFlags",
    "LocalProtocolError",
    "NeedData",
    "Opcode",
    "PamId",
    "PoolFlags",
    "PoolFlagsError",
    "PoolSpec",
    "ProtocolError",
    "RefuseReason",
    "RemoteProtocolError",
    "Request",
    "RequestDecoder",
    "Response",
    "ResponseDecoder",
    "Status",
    "decode_pool_flags",
    "encode",
    "encode_pool_flags",
    "is_client_name",
    "join_object_id",
    "pack_request_header",
    "page_size_from_flags",
    "request_header",
    "response_header",
    "split_object_id",
]

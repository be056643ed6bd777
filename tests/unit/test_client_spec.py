"""Client-side argument checks and pool descriptions (tmem.client._spec)."""

from __future__ import annotations

import uuid

import pytest

from tmem.client import BadPool
from tmem.client._spec import (
    PoolInfo,
    codec_id,
    default_client_name,
    find_pool,
    info_from_listing,
    parse_address,
    pool_spec,
    uuid_int,
)
from tmem.proto import CodecId, PoolSpec, encode_pool_flags, is_client_name


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:7470", ("127.0.0.1", 7470)),
        ("[::1]:1", ("::1", 1)),
        ("tmem.example:65535", ("tmem.example", 65535)),
        (("h", 9), ("h", 9)),
    ],
)
def test_parse_address(address: str | tuple[str, int], expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["h", "h:x", "h:0", "h:65536", ":1", ("", 5), ("h", 0)])
def test_parse_address_rejects(address: str | tuple[str, int]) -> None:
    with pytest.raises(ValueError):
        parse_address(address)


def test_parse_address_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        parse_address(7470)  # type: ignore[arg-type]


def test_codec_names() -> None:
    assert codec_id(None) is CodecId.DEFAULT
    assert codec_id("zstd") is CodecId.ZSTD and codec_id(CodecId.LZO) is CodecId.LZO
    for bad in ("gzip", "LZO", 3):
        with pytest.raises(ValueError):
            codec_id(bad)  # type: ignore[arg-type]


def test_uuids_in_every_form_and_never_zero() -> None:
    value = uuid.uuid4()
    assert uuid_int(value) == uuid_int(str(value)) == uuid_int(value.int) == value.int
    for bad in (0, 1 << 128, -1):
        with pytest.raises(ValueError):
            uuid_int(bad)
    with pytest.raises(ValueError):
        uuid_int("not-a-uuid")


def test_pool_spec_checks_what_the_server_would_refuse() -> None:
    spec, shared = pool_spec(shared_uuid=5, codec="lz4", page_size=16384, precompressed=True)
    assert shared == 5
    assert spec == PoolSpec(False, True, True, 16384, CodecId.LZ4)
    assert pool_spec() == (PoolSpec(), None)
    for kwargs in (
        {"persistent": True, "shared_uuid": 5},
        {"page_size": 2048},
        {"page_size": 4096 * 3},
        {"page_size": 4096 << 5},
        {"codec": "brotli"},
    ):
        with pytest.raises(ValueError):
            pool_spec(**kwargs)  # type: ignore[arg-type]


def test_default_client_name_is_acceptable() -> None:
    name = default_client_name()
    assert is_client_name(name)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (  # the daemon's engine statistics shape
            {
                "pool_id": 2,
                "kind": "persistent",
                "shared": False,
                "precompressed": False,
                "codec": "lzo",
                "page_size": 8192,
                "pages": 10,
            },
            PoolInfo(2, 8192, True, False, False, "lzo"),
        ),
        (  # the protocol contract's shape, codec given as a number
            {"pool_id": 1, "persistent": False, "shared": True, "page_size": 4096, "codec": 4},
            PoolInfo(1, 4096, False, True, False, "zstd"),
        ),
        (  # a raw flags word wins over named fields
            {
                "pool_id": 0,
                "flags": encode_pool_flags(PoolSpec(True, False, True, 65536, CodecId.LZ4)),
            },
            PoolInfo(0, 65536, True, False, True, "lz4"),
        ),
        ({"pool_id": 3}, PoolInfo(3)),
        ({"pool_id": 3, "codec": "default"}, PoolInfo(3)),
    ],
)
def test_info_from_listing(entry: dict[str, object], expected: PoolInfo) -> None:
    assert info_from_listing(entry) == expected


def test_find_pool_by_owner_or_membership() -> None:
    listing = {
        "pools": [
            {"client": "other", "pool_id": 0, "page_size": 16384},
            {"client": "me", "pool_id": 0, "page_size": 8192},
            {"client": "owner", "pool_id": 4, "shared": True, "members": [["owner", 4], ["me", 1]]},
            "garbage",
        ]
    }
    assert find_pool(listing, 0, "me").page_size == 8192
    joined = find_pool(listing, 1, "me")
    assert joined.pool_id == 1 and joined.shared
    with pytest.raises(BadPool):
        find_pool(listing, 4, "me")
    with pytest.raises(BadPool):
        find_pool({}, 0, "me")

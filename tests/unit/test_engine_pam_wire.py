"""A pool's PAM from the wire to the engine: pool flags bits 12-15, the client's
``new_pool(pam=...)``, the handler, and the daemon's PAM and zstd flags."""

from __future__ import annotations

import pytest

from tmem.client import PAM_NAMES, PoolInfo
from tmem.client._spec import pool_spec
from tmem.client.testing import FakeClient
from tmem.proto import (
    NO_POOL,
    POOL_FLAGS_DEFINED,
    Opcode,
    PamId,
    PoolFlagsError,
    PoolSpec,
    Request,
    Status,
    decode_pool_flags,
    encode_pool_flags,
)
from tmemd._handlers import handle
from tmemd._session import HandlerContext, Session
from tmemd.cli import build_parser, make_config, make_engine
from tmemd.config import ConfigError, DaemonConfig

from .frames import fields_of


@pytest.mark.parametrize("pam", list(PamId))
def test_pam_field_round_trips(pam: PamId) -> None:
    spec = PoolSpec(persistent=True, pam=pam)
    word = encode_pool_flags(spec)
    assert (word >> 12) & 0xF == pam and decode_pool_flags(word) == spec
    assert word & ~POOL_FLAGS_DEFINED == 0


@pytest.mark.parametrize("value", [4, 9, 15])
def test_unknown_pam_ids_are_bad_flags(value: int) -> None:
    with pytest.raises(PoolFlagsError) as info:
        decode_pool_flags(0x01000001 | value << 12)
    assert info.value.status == Status.BAD_FLAGS


def test_client_spec_names_pams() -> None:
    assert set(PAM_NAMES) == {"zbud", "xvmalloc", "zsmalloc"}
    spec, _ = pool_spec(persistent=True, pam="xvmalloc")
    assert spec.pam is PamId.XVMALLOC
    assert pool_spec()[0].pam is PamId.DEFAULT
    with pytest.raises(ValueError, match="pam"):
        pool_spec(pam="slab")


def test_the_fake_client_accepts_a_pam() -> None:
    with FakeClient() as client:
        pool = client.new_pool(persistent=True, pam="zsmalloc")
        assert isinstance(pool.info, PoolInfo) and pool.info.pam == "zsmalloc"
        pool.put(1, 2, bytes(4096))
        assert pool.get(1, 2) == bytes(4096)


def test_handler_passes_the_pam_to_the_engine() -> None:
    engine = make_engine(DaemonConfig(memory=1 << 20))
    engine.connect("w")
    ctx = HandlerContext(engine=engine, lease_s=60.0, max_request_payload=1 << 20)
    session = Session("peer", "w")
    ids = {}
    for pam in PamId:
        flags = encode_pool_flags(PoolSpec(persistent=True, pam=pam))
        request = Request(Opcode.NEW_POOL, 1, NO_POOL, 0, 0, 0, flags)
        status, ids[pam], _ = handle(ctx, session, fields_of(request))
        assert status == Status.OK
    pams = {p.pool_id: p.pam for p in engine.statistics().pool_stats}
    assert [pams[ids[pam]] for pam in PamId] == ["zsmalloc", "zbud", "xvmalloc", "zsmalloc"]


def test_daemon_flags_choose_pams_and_zstd() -> None:
    args = build_parser().parse_args(
        [
            "--ephemeral-pam", "zsmalloc", "--persistent-pam", "xvmalloc",
            "--zstd-level", "5", "--zstd-dictionary", "64KiB", "--memory", "8MiB",
        ]
    )  # fmt: skip
    config = make_config(args)
    assert (config.ephemeral_pam, config.persistent_pam) == ("zsmalloc", "xvmalloc")
    assert (config.zstd_level, config.zstd_dictionary) == (5, 64 << 10)
    engine = make_engine(config)
    engine.connect("c")
    engine.new_pool("c")
    engine.new_pool("c", persistent=True)
    assert [p.name for p in engine.statistics().pam_stats] == ["zsmalloc", "xvmalloc"]
    defaults = DaemonConfig()
    assert (defaults.ephemeral_pam, defaults.persistent_pam) == ("zbud", "zsmalloc")
    assert (defaults.zstd_level, defaults.zstd_dictionary) == (3, 128 << 10)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"ephemeral_pam": "slab"}, "ephemeral-pam"),
        ({"persistent_pam": "bytes"}, "persistent-pam"),
        ({"zstd_level": 0}, "zstd-level"),
        ({"zstd_level": 23}, "zstd-level"),
        ({"zstd_dictionary": 2 << 20}, "zstd-dictionary"),
    ],
)
def test_bad_pam_and_zstd_settings_name_the_key(changes: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        DaemonConfig(**changes)  # type: ignore[arg-type]

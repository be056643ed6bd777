"""The auth file's limits reach the engine, and ``deploy/auth.example.toml``
is a working file whose hashes are those of the placeholder tokens its
comment names."""

from __future__ import annotations

from pathlib import Path

from tmemd._auth import hash_token, load_auth_file
from tmemd.cli import apply_auth_limits
from tmemd.engine import ClientLimits, Engine, EngineConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "auth.example.toml"


def test_the_example_loads_and_its_placeholders_authenticate() -> None:
    table = load_auth_file(EXAMPLE)
    assert set(table.entries) == {"web-01", "web-02", "batch", "ops"}
    for name in table.entries:
        assert table.check(name, f"{name}-example-token-change-me") == (True, name == "ops")
        assert table.check(name, "wrong") == (False, False)
    web = table.entries["web-01"]
    assert (web.weight, web.persistent_cap, web.total_cap) == (200, 1 << 30, 2 << 30)


def test_auth_limits_are_applied_before_clients_connect() -> None:
    engine = Engine(EngineConfig(), lambda: 0.0)
    apply_auth_limits(engine, load_auth_file(EXAMPLE))
    assert engine.client_limits("web-01") == ClientLimits(200, 1 << 30, 2 << 30)
    assert engine.client_limits("ops") == ClientLimits()
    engine.connect("batch")
    (batch,) = engine.statistics().client_stats
    assert (batch.weight, batch.total_cap, batch.persistent_cap) == (100, 4 << 30, None)


def test_hash_matches_the_documented_shell_recipe() -> None:
    # printf %s "$TOKEN" | sha256sum, for TOKEN=abc
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

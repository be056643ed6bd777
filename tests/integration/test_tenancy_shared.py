"""Shared pools, freeze, caps and leases against the real daemon (docs/multi-tenancy.md,
items 4-6), driven through ``tmem.client`` with an administrator ("ops")
doing the authorizing, freezing and cap setting over CONTROL.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tmem.client import BadArgument, BadPool, Client, Forbidden, RefuseReason
from tmemd._auth import hash_token

from ..conftest import Daemon

PAGE = 4096
#: The daemon runs with a 2-second lease; polls of 0.1 s wait up to 10 s for it.
LEASE_POLLS = 100
SHARED = uuid.UUID("5f0c2a6e-8d1b-4c3a-9e7f-1a2b3c4d5e6f")
TOKENS = {"alice": "a-token", "bob": "b-token", "carol": "c-token", "ops": "o-token"}
#: Auth-file extras per client: carol's persistent cap fits four raw pages.
EXTRAS = {"carol": ['persistent_cap = "16KiB"', "weight = 50"], "ops": ["admin = true"]}


def write_auth(tmp_path: Path) -> Path:
    path = tmp_path / "auth.toml"
    lines = []
    for name, token in TOKENS.items():
        lines += [f"[clients.{name}]", f'token_sha256 = "{hash_token(token)}"']
        lines += [*EXTRAS.get(name, []), ""]
    path.write_text("\n".join(lines))
    return path


def raw_page(seed: int) -> bytes:
    """Incompressible: stored raw, 4096 stored bytes."""
    return random.Random(seed).randbytes(PAGE)


@pytest.fixture
def daemon(daemon_factory: Callable[..., Daemon], tmp_path: Path) -> Daemon:
    return daemon_factory(
        "--memory", "16MiB", "--lease", "2", "--auth-file", str(write_auth(tmp_path))
    )


@contextmanager
def connect(daemon: Daemon, name: str) -> Iterator[Client]:
    with Client(daemon.address, client_name=name, token=TOKENS[name], timeout=10) as client:
        yield client


def client_row(ops: Client, name: str) -> dict[str, object]:
    (row,) = [c for c in ops.control("list_clients")["clients"] if c["name"] == name]
    return dict(row)


def grant(daemon: Daemon, name: str, shared: uuid.UUID = SHARED) -> None:
    with connect(daemon, "ops") as ops:
        ops.control("authorize_shared", client=name, uuid=shared.hex)


def test_shared_pool_needs_authorization(daemon: Daemon) -> None:
    grant(daemon, "alice")
    with connect(daemon, "alice") as alice, connect(daemon, "bob") as bob:
        created = alice.new_pool(shared_uuid=SHARED)
        assert created.put(1, 0, raw_page(1))
        with pytest.raises(Forbidden):
            bob.new_pool(shared_uuid=SHARED)
        assert bob.list_pools() == []
        with connect(daemon, "ops") as ops:
            reply = ops.control("authorize_shared", client="bob", uuid=SHARED.hex)
            assert reply == {"client": "bob", "uuid": SHARED.hex, "authorized": True}
        joined = bob.new_pool(shared_uuid=SHARED)
        # Shared gets keep the page: Bob reads it twice, Alice still has it.
        assert joined.get(1, 0) == raw_page(1) and joined.get(1, 0) == raw_page(1)
        assert created.get(1, 0) == raw_page(1)
        assert joined.put(1, 1, raw_page(2))
        assert created.get(1, 1) == raw_page(2)


def test_shared_pages_count_against_the_creator_and_live_while_a_member_does(
    daemon: Daemon,
) -> None:
    with connect(daemon, "ops") as ops:
        ops.control("authorize_shared", client="alice", uuid=str(SHARED))
        ops.control("authorize_shared", client="bob", uuid=str(SHARED))
        with connect(daemon, "alice") as alice, connect(daemon, "bob") as bob:
            created = alice.new_pool(shared_uuid=SHARED)
            joined = bob.new_pool(shared_uuid=SHARED)
            assert joined.put_many([(2, i, raw_page(i)) for i in range(3)]) == [True] * 3
            assert client_row(ops, "alice")["pages"] == 3
            assert client_row(ops, "bob")["pages"] == 0
            created.destroy()  # the creator leaves; Bob keeps the pool and its pages
            with pytest.raises(BadPool):
                created.get(2, 0)
            assert joined.get(2, 0) == raw_page(0)
            assert client_row(ops, "bob")["pages"] == 3  # now charged to the member left
            rejoined = alice.new_pool(shared_uuid=SHARED)  # alice's grant still stands
            assert rejoined.get(2, 1) == raw_page(1)
            rejoined.destroy()
            joined.destroy()  # the last member leaves: the pages go
            assert ops.stats()["pages"] == 0
            fresh = alice.new_pool(shared_uuid=SHARED)
            assert fresh.get(2, 0) is None


def test_revoke_removes_a_member(daemon: Daemon) -> None:
    grant(daemon, "alice")
    with connect(daemon, "ops") as ops, connect(daemon, "alice") as alice:
        created = alice.new_pool(shared_uuid=SHARED)
        created.put(3, 0, raw_page(3))
        ops.control("authorize_shared", client="bob", uuid=SHARED.hex)
        with connect(daemon, "bob") as bob:
            joined = bob.new_pool(shared_uuid=SHARED)
            assert joined.get(3, 0) == raw_page(3)
            reply = ops.control("revoke_shared", client="bob", uuid=SHARED.hex)
            assert reply["authorized"] is False
            with pytest.raises(BadPool):
                joined.get(3, 0)
            with pytest.raises(Forbidden):
                bob.new_pool(shared_uuid=SHARED)
        assert created.get(3, 0) == raw_page(3)


def forbidden_answer(client: Client, shared: uuid.UUID, **flags: object) -> tuple[int, str]:
    with pytest.raises(Forbidden) as info:
        client.new_pool(shared_uuid=shared, **flags)  # type: ignore[arg-type]
    return int(info.value.status), str(info.value)


def test_a_uuid_can_be_neither_squatted_nor_probed(daemon: Daemon) -> None:
    """Bob, unauthorized, tries to take Alice's UUID before her, then probes
    which UUIDs are in use: both fail alike, and he never reads her pages."""
    other = uuid.UUID("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
    with connect(daemon, "bob") as bob:
        squat = forbidden_answer(bob, SHARED)  # free: creating it needs a grant now
        assert bob.list_pools() == []
        grant(daemon, "alice")
        grant(daemon, "alice", other)
        with connect(daemon, "alice") as alice:
            mine = alice.new_pool(shared_uuid=SHARED)
            assert mine.put(1, 0, raw_page(1))
            in_use = forbidden_answer(bob, SHARED)
            in_use_other_flags = forbidden_answer(bob, SHARED, page_size=8192)
            free = forbidden_answer(bob, other)
        assert squat == in_use == in_use_other_flags
        assert squat[0] == free[0] and free[1] == squat[1].replace(SHARED.hex, other.hex)
        assert bob.list_pools() == []


def test_frozen_client(daemon: Daemon) -> None:
    with connect(daemon, "ops") as ops, connect(daemon, "bob") as bob:
        pool = bob.new_pool(persistent=True)
        assert pool.put(1, 0, raw_page(0)) and pool.put(1, 1, raw_page(1))
        assert ops.control("freeze", client="bob")["frozen"] is True
        assert not pool.put(1, 2, raw_page(2))
        assert pool.last_refusal is RefuseReason.FROZEN
        assert pool.put_many([(1, 3, raw_page(3)), (1, 4, raw_page(4))]) == [False, False]
        assert pool.get(1, 0) == raw_page(0)  # gets still served
        assert not pool.put(1, 1, raw_page(9))  # a refused replacement drops the old copy
        assert pool.get(1, 1) is None
        assert client_row(ops, "bob")["frozen"] is True
        row = client_row(ops, "bob")
        assert row["puts_refused_by_reason"]["frozen"] == 4  # type: ignore[index]
        assert ops.control("thaw", client="bob")["frozen"] is False
        assert pool.put(1, 2, raw_page(2)) and pool.get(1, 2) == raw_page(2)


def wait_until_forgotten(ops: Client, name: str) -> None:
    """Poll (bounded) until the daemon forgot ``name``: its lease ended."""
    for _ in range(LEASE_POLLS):
        if name not in [c["name"] for c in ops.control("list_clients")["clients"]]:
            return
        time.sleep(0.1)
    raise AssertionError(f"the lease of {name} never ended")


def test_freeze_outlives_the_lease(daemon: Daemon) -> None:
    with connect(daemon, "ops") as ops:
        with connect(daemon, "bob") as bob:
            bob.new_pool(persistent=True).put(0, 0, raw_page(0))
        ops.control("freeze", client="bob")
        wait_until_forgotten(ops, "bob")
        with pytest.raises(BadArgument):
            ops.control("thaw", client="nobody")
        with connect(daemon, "bob") as bob:
            assert bob.list_pools() == []  # a new client, with the old settings
            assert not bob.new_pool().put(0, 0, raw_page(0))
        ops.control("thaw", client="bob")


def test_persistent_cap_from_the_auth_file(daemon: Daemon) -> None:
    with connect(daemon, "carol") as carol, connect(daemon, "bob") as bob:
        pool = carol.new_pool(persistent=True)
        results = pool.put_many([(0, i, raw_page(i)) for i in range(6)])
        assert results == [True] * 4 + [False] * 2
        assert pool.last_refusal is RefuseReason.CLIENT_PERSISTENT_CAP
        assert pool.put(0, 9, bytes(PAGE))  # a zero page stores no bytes
        other = bob.new_pool(persistent=True)  # Bob has no cap
        assert other.put_many([(0, i, raw_page(i)) for i in range(6)]) == [True] * 6
        (me,) = carol.stats()["clients"]
        assert me["persistent_cap"] == 16 << 10 and me["weight"] == 50
        assert me["puts_refused_by_reason"]["client_persistent_cap"] == 2


def test_total_cap_evicts_the_clients_own_ephemeral_pages(daemon: Daemon) -> None:
    with connect(daemon, "ops") as ops, connect(daemon, "bob") as bob:
        reply = ops.control("set_cap", client="bob", total_cap=4 * PAGE)
        assert (reply["total_cap"], reply["persistent_cap"]) == (4 * PAGE, None)
        cache = bob.new_pool()
        assert cache.put_many([(0, i, raw_page(i)) for i in range(8)]) == [True] * 8
        kept = cache.get_many([(0, i) for i in range(8)], exclusive=False)
        assert kept == [None] * 4 + [raw_page(i) for i in range(4, 8)]
        swap = bob.new_pool(persistent=True)
        assert swap.put_many([(1, i, raw_page(10 + i)) for i in range(5)]) == [True] * 4 + [False]
        assert swap.last_refusal is RefuseReason.CLIENT_TOTAL_CAP
        row = client_row(ops, "bob")
        assert row["pages_evicted_by_reason"]["client_total_cap"] == 8  # type: ignore[index]
        ops.control("set_cap", client="bob", total_cap=None)
        assert swap.put(1, 4, raw_page(14))


def test_second_connection_under_the_same_name_and_lease_end(daemon: Daemon) -> None:
    """Item 6: two connections of one client work at once; the pools go with the lease."""
    with connect(daemon, "alice") as first, connect(daemon, "alice") as second:
        pool = first.new_pool(persistent=True)
        errors: list[BaseException] = []

        def writer(client: Client, base: int) -> None:
            try:
                same = client.pool(pool.pool_id)
                for i in range(50):
                    assert same.put(base, i, raw_page(base + i))
                    assert same.get(base, i) == raw_page(base + i)
            except BaseException as exc:  # re-raised in the test thread
                errors.append(exc)

        threads = [
            threading.Thread(target=writer, args=(c, b)) for c, b in ((first, 0), (second, 1000))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not errors and not any(t.is_alive() for t in threads)
        assert second.list_pools()[0]["pages"] == 100
    with connect(daemon, "ops") as ops:
        # Both connections closed: the 2-second lease runs out, the pools are freed.
        wait_until_forgotten(ops, "alice")
        assert ops.stats()["pages"] == 0
    with connect(daemon, "alice") as alice:
        assert alice.list_pools() == []


def test_a_client_that_filled_the_persistent_share_cannot_starve_the_next(
    daemon_factory: Callable[..., Daemon], tmp_path: Path
) -> None:
    """Alice (no cap) fills the persistent share; Bob's persistent puts are
    still accepted, and Alice's are refused until she is back at her share."""
    daemon = daemon_factory(
        "--memory", "4MiB", "--persistent-max", "0.5", "--persistent-accept", "0.4",
        "--auth-file", str(write_auth(tmp_path)),
    )  # fmt: skip
    with connect(daemon, "alice") as alice, connect(daemon, "bob") as bob:
        mine = alice.new_pool(persistent=True)
        results = mine.put_many([(0, i, raw_page(i)) for i in range(600)])
        held = results.count(True)
        assert 0 < held < 600 and mine.last_refusal is RefuseReason.PERSISTENT_FULL
        theirs = bob.new_pool(persistent=True)
        assert theirs.put_many([(1, i, raw_page(1000 + i)) for i in range(8)]) == [True] * 8
        assert not mine.put(0, 999, raw_page(999))
        assert mine.last_refusal is RefuseReason.PERSISTENT_FAIR_SHARE
        (me,) = alice.stats()["clients"]
        assert me["puts_refused_by_reason"]["persistent_fair_share"] == 1

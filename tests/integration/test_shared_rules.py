"""Shared pools and administration on a daemon without an auth file, and the
shared-pool rules of PROTOCOL.md section 6.3, through the real daemon.

Without ``--auth-file`` (loopback only) every client is trusted: any client
creates and joins any shared pool and runs tmemctl's administrator
commands.  The daemon runs with ``--codec lz4`` so that "the daemon's
default codec" is told apart from the built-in default (lzo).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable

import pytest

from tmem.client import BadArgument, Client

from ..conftest import Daemon

PAGE = 4096
SHARED = uuid.UUID("7d3c9e1a-2b4f-4c6d-8e0a-1f2b3c4d5e6f")
#: Bound on one tmemctl run (a cold interpreter imports the client in well under this).
CTL_TIMEOUT_S = 30.0


@pytest.fixture
def daemon(daemon_factory: Callable[..., Daemon]) -> Daemon:
    return daemon_factory("--memory", "16MiB", "--codec", "lz4")


def page(seed: int) -> bytes:
    return (b"shared %06d " % seed * 300)[:PAGE]


def connect(daemon: Daemon, name: str) -> Client:
    return Client(daemon.address, client_name=name, timeout=10)


def test_tmemctl_admin_commands_work_on_a_daemon_without_an_auth_file(daemon: Daemon) -> None:
    with connect(daemon, "web-01") as web:
        web.new_pool(persistent=True).put(1, 0, page(1))
        argv = [sys.executable, "-m", "tmemd.ctl", "--server", daemon.address, "--name", "anyone"]
        done = subprocess.run(
            [*argv, "clients"], capture_output=True, text=True, timeout=CTL_TIMEOUT_S, check=False
        )
    assert done.returncode == 0, done.stderr
    assert "web-01" in done.stdout


def test_any_client_joins_and_the_rules_for_members(daemon: Daemon) -> None:
    with connect(daemon, "alice") as alice, connect(daemon, "bob") as bob:
        mine = alice.new_pool(shared_uuid=SHARED)
        assert mine.put(1, 0, page(0)) and mine.put(1, 1, page(1))
        theirs = bob.new_pool(shared_uuid=SHARED)
        assert theirs.get(1, 0) == page(0)  # a shared get keeps the page by default
        # A re-join by a member gets the id it already has; nothing new opens.
        assert bob.new_pool(shared_uuid=SHARED).pool_id == theirs.pool_id
        assert len(bob.list_pools()) == 1
        # An exclusive get is allowed and removes the page for every member.
        assert theirs.get(1, 0, exclusive=True) == page(0)
        assert mine.get(1, 0) is None
        # One member's DESTROY_POOL only takes that member out.
        theirs.destroy()
        assert bob.list_pools() == []
        assert mine.get(1, 1) == page(1)


@pytest.mark.parametrize(
    "flags",
    [
        {"page_size": 8192},
        {"precompressed": True},
        {"codec": "zstd"},
        {"codec": "lzo"},  # the built-in default, not this daemon's lz4
        {"pam": "xvmalloc"},
    ],
    ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()),
)
def test_naming_a_shared_pool_with_other_flags_is_bad_argument(
    daemon: Daemon, flags: dict[str, object]
) -> None:
    with connect(daemon, "alice") as alice, connect(daemon, "bob") as bob:
        mine = alice.new_pool(shared_uuid=SHARED)
        for client in (bob, alice):  # another client, and a re-join by the creator
            with pytest.raises(BadArgument):
                client.new_pool(shared_uuid=SHARED, **flags)  # type: ignore[arg-type]
        assert bob.list_pools() == [] and len(alice.list_pools()) == 1
        # Naming what the pool has, or leaving codec and PAM to the default, joins.
        same = bob.new_pool(shared_uuid=SHARED, codec="lz4", pam="zbud")
        assert same.put(2, 0, page(2)) and mine.get(2, 0) == page(2)


def test_precompressed_with_the_default_codec_claims_the_daemons_codec(daemon: Daemon) -> None:
    with connect(daemon, "alice") as alice:
        pool = alice.new_pool(precompressed=True)
        assert pool.put(1, 0, b"already compressed")
        assert pool.get(1, 0, exclusive=False) == b"already compressed"
        (listed,) = alice.list_pools()
        assert (listed["codec"], listed["precompressed"]) == ("lz4", True)

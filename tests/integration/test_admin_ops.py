"""Administration against the real daemon (docs/multi-tenancy.md): every admin
CONTROL command through ``tmem.client``, the FORBIDDEN wall for everyone
else, argument checking, and ``tmemctl`` as a subprocess in both its human
and its ``--json`` output.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tmem.client import BadArgument, BadPool, Client, Forbidden, Unsupported

from ..conftest import Daemon, start_daemon
from . import authfile

PAGE = 4096
TOKENS = {"web": "web-token", "db": "db-token", "ops": "ops-token"}
UUID_HEX = "00112233445566778899aabbccddeeff"
#: Bound on one tmemctl run (a cold interpreter imports the client in well under this).
CTL_TIMEOUT_S = 30.0
#: Every admin command with arguments that would be valid for an administrator.
ADMIN_BODIES: list[dict[str, Any]] = [
    {"cmd": "list_clients"},
    {"cmd": "freeze", "client": "db"},
    {"cmd": "thaw", "client": "db"},
    {"cmd": "destroy_client", "client": "db"},
    {"cmd": "set_weight", "client": "db", "weight": 200},
    {"cmd": "set_cap", "client": "db", "total_cap": 1 << 20},
    {"cmd": "set_codec", "client": "db", "codec": "zstd"},
    {"cmd": "flush_ephemeral", "bytes": 1 << 20},
    {"cmd": "freeable"},
    {"cmd": "authorize_shared", "client": "web", "uuid": UUID_HEX},
    {"cmd": "revoke_shared", "client": "web", "uuid": UUID_HEX},
    {"cmd": "save"},
    {"cmd": "set_memory", "bytes": 16 << 20},
]


def write_auth(tmp_path: Path) -> Path:
    return authfile.write_auth(tmp_path, TOKENS, others=['total_cap = "8MiB"'])


def raw_page(seed: int) -> bytes:
    return random.Random(seed).randbytes(PAGE)


DAEMON_FLAGS = ("--memory", "16MiB")


@pytest.fixture
def daemon(daemon_factory: Callable[..., Daemon], tmp_path: Path) -> Daemon:
    auth = str(write_auth(tmp_path))
    return daemon_factory(
        *DAEMON_FLAGS, "--auth-file", auth, "--state-dir", str(tmp_path / "state")
    )


@pytest.fixture(scope="module")
def module_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the tests that change nothing (refusals), checked as the
    function-scoped fixture checks its daemons: no traceback, a clean exit."""
    tmp_path = tmp_path_factory.mktemp("admin")
    daemon = start_daemon(tmp_path, *DAEMON_FLAGS, "--auth-file", str(write_auth(tmp_path)))
    yield daemon
    rc = daemon.stop()
    assert "Traceback" not in daemon.log() and rc == 0, daemon.log()


def client(daemon: Daemon, name: str) -> Client:
    return Client(daemon.address, client_name=name, token=TOKENS[name], timeout=10)


def tmemctl(daemon: Daemon, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tmemd.ctl", "--server", daemon.address, "--name", name]
    return subprocess.run(
        [*argv, "--token", TOKENS[name], *args],
        capture_output=True,
        text=True,
        timeout=CTL_TIMEOUT_S,
        check=False,
    )


def ctl_json(daemon: Daemon, *args: str) -> Any:
    done = tmemctl(daemon, "ops", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# --- the wall ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ADMIN_BODIES, ids=lambda b: str(b["cmd"]))
def test_non_admins_are_forbidden(module_daemon: Daemon, body: dict[str, Any]) -> None:
    with client(module_daemon, "web") as web, client(module_daemon, "db") as db:
        db.ping()
        pool = web.new_pool(persistent=True)
        pool.put(0, 0, raw_page(0))
        args = {k: v for k, v in body.items() if k != "cmd"}
        with pytest.raises(Forbidden):
            web.control(body["cmd"], **args)
        with pytest.raises(Forbidden):  # before the arguments are even read
            web.control(body["cmd"], client=["not", "a", "name"])
        web.ping()  # a command error leaves the connection usable
        assert pool.get(0, 0) == raw_page(0)
        pool.destroy()


def test_admins_may(daemon: Daemon) -> None:
    with client(daemon, "db") as db, client(daemon, "ops") as ops:
        db.ping()
        for body in ADMIN_BODIES:
            args = {k: v for k, v in body.items() if k != "cmd"}
            assert isinstance(ops.control(body["cmd"], **args), dict), body


@pytest.mark.parametrize(
    "body",
    [
        {"cmd": "freeze"},
        {"cmd": "freeze", "client": 7},
        {"cmd": "freeze", "client": "bad name!"},
        {"cmd": "freeze", "client": "ghost"},
        {"cmd": "set_weight", "client": "db", "weight": 0},
        {"cmd": "set_weight", "client": "db", "weight": 10_001},
        {"cmd": "set_weight", "client": "db", "weight": "heavy"},
        {"cmd": "set_weight", "client": "db", "weight": True},
        {"cmd": "set_cap", "client": "db"},
        {"cmd": "set_cap", "client": "db", "total_cap": -1},
        {"cmd": "set_cap", "client": "db", "persistent_cap": "1GiB"},
        {"cmd": "set_codec", "client": "db", "codec": "brotli"},
        {"cmd": "set_codec", "client": "db", "codec": 3},
        {"cmd": "flush_ephemeral"},
        {"cmd": "flush_ephemeral", "bytes": -5},
        {"cmd": "authorize_shared", "client": "web", "uuid": "xyz"},
        {"cmd": "authorize_shared", "client": "web", "uuid": "0" * 32},
        {"cmd": "authorize_shared", "client": "web", "uuid": 12345},
        {"cmd": "revoke_shared", "client": "web"},
        {"cmd": "destroy_client", "client": "ghost"},
    ],
    ids=lambda b: "-".join(str(v)[:12] for v in b.values()),
)
def test_bad_arguments(module_daemon: Daemon, body: dict[str, Any]) -> None:
    with client(module_daemon, "db") as db, client(module_daemon, "ops") as ops:
        db.ping()
        args = {k: v for k, v in body.items() if k != "cmd"}
        with pytest.raises(BadArgument) as info:
            ops.control(body["cmd"], **args)
        if args.get("client") == "ghost":
            assert "no client named 'ghost'" in str(info.value)
        ops.ping()


def test_unknown_command(module_daemon: Daemon) -> None:
    with client(module_daemon, "ops") as ops, pytest.raises(Unsupported):
        ops.control("format_disk")


# --- what the commands do ------------------------------------------------------------------


def test_settings_of_configured_clients_before_they_connect(daemon: Daemon) -> None:
    with client(daemon, "ops") as ops:
        reply = ops.control("set_weight", client="db", weight=300)
        assert reply == {
            "client": "db",
            "weight": 300,
            "persistent_cap": None,
            "total_cap": 8 << 20,
            "codec": None,
            "frozen": False,
        }
        ops.control("set_codec", client="db", codec="lz4")
        with client(daemon, "db") as db:
            db.new_pool()
            assert db.list_pools()[0]["codec"] == "lz4"
            (me,) = db.stats()["clients"]
            assert me["weight"] == 300 and me["codec"] == "lz4"


def test_flush_freeable_and_destroy(daemon: Daemon) -> None:
    with client(daemon, "ops") as ops, client(daemon, "web") as web:
        cache, swap = web.new_pool(), web.new_pool(persistent=True)
        assert all(cache.put_many([(0, i, raw_page(i)) for i in range(10)]))
        assert swap.put(0, 0, raw_page(99))
        assert ops.control("freeable") == {"freeable_bytes": 10 * PAGE}
        assert ops.control("flush_ephemeral", bytes=3 * PAGE - 1) == {"freed_bytes": 3 * PAGE}
        assert cache.get_many([(0, i) for i in range(4)], exclusive=False)[:3] == [None] * 3
        assert ops.control("flush_ephemeral", bytes=1 << 40) == {"freed_bytes": 7 * PAGE}
        assert ops.control("freeable") == {"freeable_bytes": 0}
        assert swap.get(0, 0) == raw_page(99)  # persistent pages are not flushed
        stats = ops.stats()
        assert stats["evictions_by_reason"]["admin_flush"] == 10
        assert ops.control("destroy_client", client="web") == {"client": "web", "pages_freed": 1}
        with pytest.raises(BadPool):
            swap.get(0, 0)
        assert web.list_pools() == []


def test_list_clients(daemon: Daemon) -> None:
    with client(daemon, "ops") as ops, client(daemon, "web") as web, client(daemon, "db") as db:
        web.new_pool().put(0, 0, raw_page(0))
        db.ping()
        rows = ops.control("list_clients")["clients"]
        assert [r["name"] for r in rows] == ["db", "ops", "web"]
        web_row = rows[2]
        assert web_row["pages"] == 1 and web_row["connections"] == 1
        assert web_row["total_cap"] == 8 << 20 and web_row["weight"] == 100


# --- tmemctl -------------------------------------------------------------------------------


def test_tmemctl_json(daemon: Daemon) -> None:
    with client(daemon, "web") as web:
        pool = web.new_pool()
        pool.put(0, 0, raw_page(0))
        names = [row["name"] for row in ctl_json(daemon, "clients")["clients"]]
        assert names == ["ops", "web"] or names == ["web"]  # ops is connected only while it runs
        assert ctl_json(daemon, "freeze", "web")["frozen"] is True
        assert not pool.put(0, 1, raw_page(1))
        assert ctl_json(daemon, "thaw", "web")["frozen"] is False
        assert ctl_json(daemon, "set-weight", "web", "250")["weight"] == 250
        reply = ctl_json(daemon, "set-cap", "web", "--persistent", "1MiB", "--total", "none")
        assert (reply["persistent_cap"], reply["total_cap"]) == (1 << 20, None)
        assert ctl_json(daemon, "set-codec", "web", "zstd")["codec"] == "zstd"
        assert ctl_json(daemon, "freeable") == {"freeable_bytes": PAGE}
        assert ctl_json(daemon, "flush-ephemeral", "1MiB") == {"freed_bytes": PAGE}
        dashed = "00112233-4455-6677-8899-aabbccddeeff"
        assert ctl_json(daemon, "authorize", "web", dashed)["uuid"] == UUID_HEX
        assert ctl_json(daemon, "authorize", "--revoke", "web", UUID_HEX)["authorized"] is False
        assert ctl_json(daemon, "destroy-client", "web")["client"] == "web"
        assert web.list_pools() == []


def test_tmemctl_human_output(daemon: Daemon) -> None:
    with client(daemon, "web") as web:
        web.new_pool().put(0, 0, raw_page(0))
        done = tmemctl(daemon, "ops", "clients")
        assert done.returncode == 0, done.stderr
        header = done.stdout.splitlines()[1].split()
        assert header[0] == "client" and "weight" in header and "frozen" in header
        assert any(line.split()[0] == "web" for line in done.stdout.splitlines()[2:])
        done = tmemctl(daemon, "ops", "freeze", "web")
        assert done.stdout.strip() == (
            "client web: weight 100, persistent cap -, total cap 8.0MiB, codec default, FROZEN"
        )
        assert tmemctl(daemon, "ops", "freeable").stdout.strip() == (
            "freeable: 4.0KiB of ephemeral memory"
        )
        done = tmemctl(daemon, "ops", "authorize", "web", UUID_HEX)
        assert done.stdout.strip() == f"client web may now join shared pool {UUID_HEX}"


def test_tmemctl_refusals(daemon: Daemon) -> None:
    done = tmemctl(daemon, "web", "freeze", "db")
    assert done.returncode == 1 and "FORBIDDEN" in done.stderr
    done = tmemctl(daemon, "ops", "thaw", "ghost")
    assert done.returncode == 1 and "no client named 'ghost'" in done.stderr
    done = tmemctl(daemon, "ops", "authorize", "web", "not-a-uuid")
    assert done.returncode == 2 and "not a 128-bit UUID" in done.stderr

"""The CONTROL command table without sockets: ``run_control`` over a real
engine and hand-made sessions.  The daemon-level tests are in
``tests/integration/test_admin_ops.py``; these pin the table itself: every
command tmemctl sends exists, non-admins are refused first, errors map to
the statuses the protocol promises.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from tmem.proto import Status
from tmemd import ctl
from tmemd._control import _ADMIN, _SELF, run_control
from tmemd._session import HandlerContext, RequestError, Session
from tmemd._statedir import StateDirError
from tmemd.engine import ClientLimits, Engine, EngineConfig

PAGE = 4096


def make(auth_file: bool = True) -> tuple[HandlerContext, Session, Session]:
    """A context with an auth file (``ops`` is its administrator) or without one."""
    config = EngineConfig(
        memory_bytes=1 << 20,
        default_codec="none",
        ephemeral_pam="zbud",
        persistent_pam="zsmalloc",
        memory_reserve_bytes=4 << 20,
    )
    engine = Engine(config, lambda: 0.0)
    engine.connect("web")
    engine.connect("ops")
    ctx = HandlerContext(
        engine=engine,
        lease_s=60.0,
        max_request_payload=1 << 20,
        authenticate=(lambda name, token: (True, name == "ops")) if auth_file else None,
        save_state=lambda: {"pages": 0},
    )
    return ctx, Session("p", "web", admin=False), Session("p", "ops", admin=True)


def run(ctx: HandlerContext, s: Session, **body: Any) -> dict[str, Any]:
    return run_control(ctx, s, body)


def status_of(ctx: HandlerContext, s: Session, **body: Any) -> Status:
    with pytest.raises(RequestError) as info:
        run_control(ctx, s, body)
    return info.value.status


def ctl_bodies() -> list[dict[str, Any]]:
    """The bodies tmemctl builds for each administrator subcommand."""
    parser = ctl.build_parser()
    argvs = [
        ["clients"],
        ["freeze", "web"],
        ["thaw", "web"],
        ["destroy-client", "web"],
        ["set-weight", "web", "5"],
        ["set-cap", "web", "--total", "1MiB"],
        ["set-codec", "web", "lz4"],
        ["flush-ephemeral", "4KiB"],
        ["freeable"],
        ["authorize", "web", "0" * 31 + "1"],
        ["authorize", "--revoke", "web", "0" * 31 + "1"],
        ["save"],
        ["set-memory", "2MiB"],
    ]
    return [ctl._control_body(parser.parse_args(argv)) for argv in argvs]


def test_every_tmemctl_command_is_an_admin_command() -> None:
    assert {body["cmd"] for body in ctl_bodies()} == set(_ADMIN)
    assert not set(_SELF) & set(_ADMIN)


@pytest.mark.parametrize("cmd", sorted(_ADMIN))
def test_non_admins_are_refused_before_arguments_are_read(cmd: str) -> None:
    ctx, web, _ = make()
    assert status_of(ctx, web, cmd=cmd, client=None, bytes="x") == Status.FORBIDDEN


@pytest.mark.parametrize("cmd", sorted(_ADMIN))
def test_without_an_auth_file_every_client_is_an_administrator(cmd: str) -> None:
    ctx, web, _ = make(auth_file=False)
    try:
        run(ctx, web, cmd=cmd, client=None, bytes="x")
    except RequestError as exc:
        assert exc.status == Status.BAD_ARGUMENT
    assert run(ctx, web, cmd="list_clients")["clients"]


@pytest.mark.parametrize("body", ctl_bodies(), ids=lambda b: str(b["cmd"]))
def test_admins_run_what_tmemctl_sends(body: dict[str, Any]) -> None:
    ctx, _, ops = make()
    assert isinstance(run_control(ctx, ops, body), dict)


def test_replies() -> None:
    ctx, _, ops = make()
    pool = ctx.engine.new_pool("web")
    ctx.engine.put("web", pool, 0, 0, bytes(range(256)) * 16)
    assert run(ctx, ops, cmd="freeable") == {"freeable_bytes": PAGE}
    assert run(ctx, ops, cmd="set_weight", client="web", weight=7) == {
        "client": "web",
        "weight": 7,
        "persistent_cap": None,
        "total_cap": None,
        "codec": None,
        "frozen": False,
    }
    reply = run(ctx, ops, cmd="set_cap", client="web", persistent_cap=PAGE)
    assert (reply["persistent_cap"], reply["total_cap"], reply["weight"]) == (PAGE, None, 7)
    reply = run(ctx, ops, cmd="set_cap", client="web", total_cap=2 * PAGE, persistent_cap=None)
    assert (reply["persistent_cap"], reply["total_cap"]) == (None, 2 * PAGE)
    assert run(ctx, ops, cmd="set_codec", client="web", codec=None)["codec"] is None
    assert run(ctx, ops, cmd="freeze", client="web")["frozen"] is True
    assert ctx.engine.client_limits("web") == ClientLimits(7, None, 2 * PAGE)
    uuid = "AA" * 16
    reply = run(ctx, ops, cmd="authorize_shared", client="later", uuid=uuid)
    assert reply == {"client": "later", "uuid": "aa" * 16, "authorized": True}
    assert run(ctx, ops, cmd="flush_ephemeral", bytes=1) == {"freed_bytes": PAGE}
    assert run(ctx, ops, cmd="destroy_client", client="web") == {"client": "web", "pages_freed": 0}
    names = [c["name"] for c in run(ctx, ops, cmd="list_clients")["clients"]]
    assert names == ["ops", "web"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"cmd": "thaw", "client": "ghost"}, Status.BAD_ARGUMENT),
        ({"cmd": "set_weight", "client": "web", "weight": 1 << 70}, Status.BAD_ARGUMENT),
        ({"cmd": "set_cap", "client": "web", "total_cap": 1.5}, Status.BAD_ARGUMENT),
        ({"cmd": "set_codec", "client": "web", "codec": "brotli"}, Status.BAD_ARGUMENT),
        ({"cmd": "flush_ephemeral", "bytes": None}, Status.BAD_ARGUMENT),
        ({"cmd": "authorize_shared", "client": "web", "uuid": "g" * 32}, Status.BAD_ARGUMENT),
        ({"cmd": "nope"}, Status.UNSUPPORTED),
        ({"cmd": 3}, Status.BAD_ARGUMENT),
    ],
)
def test_errors(body: dict[str, Any], status: Status) -> None:
    ctx, _, ops = make()
    with pytest.raises(RequestError) as info:
        run_control(ctx, ops, body)
    assert info.value.status == status


def test_a_client_sees_its_own_settings_in_stats() -> None:
    ctx, web, ops = make()
    run(ctx, ops, cmd="set_weight", client="web", weight=42)
    (me,) = run(ctx, web, cmd="stats")["clients"]
    assert me["name"] == "web" and me["weight"] == 42 and me["frozen"] is False
    assert "evictions_by_reason" in run(ctx, ops, cmd="stats")


def test_ctl_parser_round_trip() -> None:
    args = ctl.build_parser().parse_args(["set-cap", "web", "--persistent", "none"])
    assert isinstance(args, argparse.Namespace)
    assert ctl._control_body(args) == {"cmd": "set_cap", "client": "web", "persistent_cap": None}


def test_save_without_a_state_dir_is_unsupported_and_a_failed_save_internal() -> None:
    ctx, _, ops = make()
    assert run(ctx, ops, cmd="save") == {"pages": 0}
    ctx.save_state = None
    assert status_of(ctx, ops, cmd="save") == Status.UNSUPPORTED

    def failing() -> dict[str, Any]:
        raise StateDirError("cannot save to /nowhere: No space left on device")

    ctx.save_state = failing
    assert status_of(ctx, ops, cmd="save") == Status.INTERNAL_ERROR


def test_set_memory_grows_and_refuses_to_go_below_persistent_pages() -> None:
    ctx, _, ops = make()
    pool = ctx.engine.new_pool("web", persistent=True)
    for i in range(100):
        ctx.engine.put("web", pool, 0, i, bytes([i, 1]) * (PAGE // 2))
    reply = run(ctx, ops, cmd="set_memory", bytes=4 << 20)
    assert reply == {"memory_bytes": 4 << 20, "previous_bytes": 1 << 20, "evicted_bytes": 0}
    assert run(ctx, ops, cmd="stats")["memory_limit_bytes"] == 4 << 20
    assert status_of(ctx, ops, cmd="set_memory", bytes=256 << 10) == Status.BAD_ARGUMENT
    assert status_of(ctx, ops, cmd="set_memory", bytes=5 << 20) == Status.BAD_ARGUMENT
    assert status_of(ctx, ops, cmd="set_memory", bytes=-1) == Status.BAD_ARGUMENT
    assert ctx.engine.config.memory_bytes == 4 << 20

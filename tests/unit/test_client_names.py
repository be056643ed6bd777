"""The client-name rule (PROTOCOL.md section 5) is one function, and every
place that checks a name uses it: HELLO, CONTROL's ``client`` argument, the
auth file, the client library and tmemctl.  A name must match as a whole: a
trailing newline, a carriage return, a NUL, a space or a non-ASCII letter
makes it no name anywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

from tmem.client import Client
from tmem.client._spec import check_client_name
from tmem.proto import MAX_CLIENT_NAME_CHARS, Opcode, Request, Status, is_client_name
from tmemd import ctl
from tmemd._auth import hash_token, load_auth_file
from tmemd._control import run_control
from tmemd._handlers import handle
from tmemd._session import HandlerContext, RequestError, Session
from tmemd.config import ConfigError
from tmemd.engine import Engine, EngineConfig

from .frames import fields_of

GOOD = ["a", "web-01", "host.example_1", "A" * MAX_CLIENT_NAME_CHARS, "-", "."]
BAD = [
    "",
    "web-01\n",
    "web-01\r",
    "web-01\r\n",
    "\nweb-01",
    "web\x0001",
    "web 01",
    " web",
    "wéb",
    "web\u0661",  # an Arabic-Indic digit: \d would take it, the rule does not
    "A" * (MAX_CLIENT_NAME_CHARS + 1),
]


@pytest.mark.parametrize("name", GOOD)
def test_good_names(name: str) -> None:
    assert is_client_name(name)
    assert check_client_name(name) == name


@pytest.mark.parametrize("name", BAD)
def test_bad_names(name: str) -> None:
    assert not is_client_name(name)
    with pytest.raises(ValueError):
        check_client_name(name)
    with pytest.raises(ValueError):
        Client("127.0.0.1:1", client_name=name)


@pytest.mark.parametrize("value", [None, 1, b"web", ["web"]])
def test_non_strings_are_no_names(value: Any) -> None:
    assert not is_client_name(value)


def _ctx(auth: bool) -> HandlerContext:
    engine = Engine(EngineConfig(memory_bytes=1 << 20, default_codec="none"), lambda: 0.0)

    def authenticate(name: str, token: str | None) -> tuple[bool, bool]:
        return False, False

    return HandlerContext(
        engine=engine,
        lease_s=60.0,
        max_request_payload=1 << 20,
        authenticate=authenticate if auth else None,
    )


@pytest.mark.parametrize("auth", [False, True])
@pytest.mark.parametrize("name", BAD)
def test_hello_answers_bad_argument(name: str, auth: bool) -> None:
    """Checked before the token: with an auth file too, BAD_ARGUMENT, never AUTH_FAILED."""
    body = msgpack.packb({"client": name, "token": "t"})
    session = Session("p")
    status, _, _ = handle(_ctx(auth), session, fields_of(Request(Opcode.HELLO, payload=body)))
    assert status == Status.BAD_ARGUMENT
    assert session.client is None


@pytest.mark.parametrize("name", BAD)
def test_control_client_argument(name: str) -> None:
    ctx = _ctx(False)
    ctx.engine.connect("ops")
    with pytest.raises(RequestError) as info:
        run_control(ctx, Session("p", "ops", admin=True), {"cmd": "freeze", "client": name})
    assert info.value.status == Status.BAD_ARGUMENT


@pytest.mark.parametrize("name", BAD)
def test_auth_file_names(name: str, tmp_path: Path) -> None:
    path = tmp_path / "auth.toml"
    # json.dumps escapes as TOML's basic strings do (\n, \r, \u0000, \u00e9).
    path.write_text(f'[clients.{json.dumps(name)}]\ntoken_sha256 = "{hash_token("t")}"\n')
    with pytest.raises(ConfigError):
        load_auth_file(path)


@pytest.mark.parametrize("name", BAD)
def test_tmemctl_refuses_bad_names(name: str) -> None:
    with pytest.raises(SystemExit):
        ctl.build_parser().parse_args(["--name", name, "ping"])
    with pytest.raises(SystemExit):
        ctl.build_parser().parse_args(["freeze", name])


def test_tmemctl_takes_good_names() -> None:
    args = ctl.build_parser().parse_args(["--name", "web-01", "freeze", "db.2"])
    assert (args.name, args.client) == ("web-01", "db.2")

"""Client names through the real daemon: a name that is not whole (a trailing
newline, a carriage return, a NUL, a space, a non-ASCII letter) is
BAD_ARGUMENT, with and without an auth file, and the connection lives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from tmem.proto import Opcode, Status

from ..conftest import Daemon
from .authfile import write_auth
from .rawwire import RawConn

BAD = ["web-01\n", "web-01\r", "web\x0001", "web 01", "wéb"]


@pytest.mark.parametrize("with_auth", [False, True], ids=["no-auth", "auth-file"])
def test_bad_names_are_bad_argument(
    daemon_factory: Callable[..., Daemon], tmp_path: Path, with_auth: bool
) -> None:
    args = ["--auth-file", str(write_auth(tmp_path, {"web-01": "s", "ops": "o"}))] * with_auth
    daemon = daemon_factory(*args)
    with RawConn((daemon.host, daemon.port)) as conn:
        for name in BAD:
            body = msgpack.packb({"client": name, "token": "s"})
            resp = conn.call(Opcode.HELLO, payload=body)
            assert resp.status == Status.BAD_ARGUMENT, (name, resp)
        # The connection lives and a good name still works on it.
        assert conn.hello("web-01", token="s").status == Status.OK

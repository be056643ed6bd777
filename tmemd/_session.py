"""What the request handlers and the CONTROL commands share, in one module.

Both layers answer a request for one connection (``Session``: who speaks)
with what every connection shares (``HandlerContext``: the engine, the
limits HELLO announces, authentication), and both refuse a request the same
way: by raising ``RequestError`` with the wire status to answer.  Keeping
the three here, below ``_handlers`` and ``_control``, lets the handlers
import the control commands and the control commands type their arguments
without an import cycle.

``Session`` is read on every frame of the hot path, so it is a plain class
with typed attributes (a C struct once compiled), not a dataclass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tmem.proto import Status

from ._throttle import AuthThrottle
from .engine import Engine

__all__ = ["HandlerContext", "RequestError", "Session"]


class Session:
    """Per-connection state: who is speaking, once HELLO said so."""

    def __init__(self, peer: str, client: str | None = None, admin: bool = False) -> None:
        #: The peer's address, for logs and the failed-HELLO throttle.
        self.peer: str = peer
        #: The client name HELLO gave; None until then.
        self.client: str | None = client
        #: The auth file made this client an administrator.
        self.admin: bool = admin

    def __repr__(self) -> str:
        return f"Session(peer={self.peer!r}, client={self.client!r}, admin={self.admin!r})"


@dataclass
class HandlerContext:
    """What handlers share across connections."""

    engine: Engine
    lease_s: float
    max_request_payload: int
    #: This daemon instance's identity, 32 hex digits (PROTOCOL.md §11.2).
    server_id: str = ""
    #: The limits HELLO announces (PROTOCOL.md §11.2), built once.
    limits: dict[str, Any] = field(default_factory=dict)
    #: Returns (ok, admin) for a client name and token; None = no auth file.
    authenticate: Callable[[str, str | None], tuple[bool, bool]] | None = None
    #: Budgets of failed HELLOs per address and name (with an auth file).
    auth_throttle: AuthThrottle | None = None
    #: Saves the engine to the state directory now and returns what was
    #: written (``tmemctl save``); None: the daemon has no ``--state-dir``.
    save_state: Callable[[], dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class RequestError(Exception):
    """A request refused by a handler or a CONTROL command: the connection
    lives on and the request is answered with ``status`` and the message
    (PROTOCOL.md section 11.4)."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status

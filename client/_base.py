"""What the blocking and the asyncio client share before any connection."""

from __future__ import annotations

import ssl as _ssl
from typing import Any

from ._retry import NO_RETRY, Retry
from ._spec import check_client_name, default_client_name, parse_address

__all__ = ["ClientBase"]


class ClientBase:
    """The daemon's address and this client's identity and settings.

    Both clients check these the same way, in the constructor, so a bad
    address, name or token raises before anything touches the network,
    whichever client a program uses.
    """

    def __init__(
        self,
        address: str | tuple[str, int],
        client_name: str | None,
        token: str | None,
        timeout: float | None,
        ssl: _ssl.SSLContext | None,
        retry: Retry | None,
    ) -> None:
        self._host, self._port = parse_address(address)
        self.client_name = check_client_name(
            default_client_name() if client_name is None else client_name
        )
        if token is not None and not isinstance(token, str):
            raise TypeError("token must be a str or None")
        self._token = token
        self.timeout = timeout
        self._ssl = ssl
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError("retry must be a tmem.client.Retry or None")
        #: Which failed calls are tried again (``tmem.client.Retry``).
        self.retry = NO_RETRY if retry is None else retry
        #: HELLO's reply on the current (or last) connection.
        self.server_info: dict[str, Any] = {}

    @property
    def server_id(self) -> str | None:
        """HELLO's ``server_id``: the daemon instance last said HELLO to (32
        hex digits, new for each daemon start without saved state), or None
        before the first connection or from a daemon that sends none."""
        value = self.server_info.get("server_id")
        return value if isinstance(value, str) else None

    @property
    def address(self) -> tuple[str, int]:
        """The daemon's ``(host, port)``."""
        return self._host, self._port

    @property
    def connected(self) -> bool:
        """True while a connection is open (it may still fail on next use)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<{type(self).__name__} {self.client_name!r} {self._host}:{self._port} {state}>"

"""What the blocking and the asyncio client share before any connection.

The address decides the client's shape: one ``"host:port"`` (or a list of
one) is the single-server client, unchanged; several addresses or a
``"dns:NAME:PORT"`` make a ``ServerSet`` (``_cluster``), which the blocking
and the asyncio client hand to their several-server half.
"""

from __future__ import annotations

import ssl as _ssl
from collections.abc import Sequence
from typing import Any

from ._cluster import (
    DEFAULT_DEAD_TIMEOUT_S,
    DEFAULT_DNS_REFRESH_S,
    Resolver,
    ServerSet,
    is_cluster_address,
)
from ._retry import NO_RETRY, Retry
from ._spec import check_client_name, default_client_name, parse_address

__all__ = ["Address", "ClientBase"]

#: What a client's ``address`` may be: one server, several, or a DNS name.
Address = str | tuple[str, int] | Sequence[str | tuple[str, int]]


class ClientBase:
    """The daemon's address and this client's identity and settings.

    Both clients check these the same way, in the constructor, so a bad
    address, name or token raises before anything touches the network,
    whichever client a program uses.
    """

    def __init__(
        self,
        address: Address,
        client_name: str | None,
        token: str | None,
        timeout: float | None,
        ssl: _ssl.SSLContext | None,
        retry: Retry | None,
        dead_timeout: float = DEFAULT_DEAD_TIMEOUT_S,
        resolver: Resolver | None = None,
        dns_refresh: float = DEFAULT_DNS_REFRESH_S,
    ) -> None:
        #: The servers of a several-server client; None for one server.
        self._server_set: ServerSet | None = None
        if is_cluster_address(address):
            servers = ServerSet(address, dead_timeout, resolver, dns_refresh)  # type: ignore[arg-type]
            if servers.dns is None and len(servers.servers) == 1:
                address = servers.servers[0]
            else:
                self._server_set = servers
                address = servers.servers[0] if servers.dns is None else servers.dns
        self._host, self._port = parse_address(address)  # type: ignore[arg-type]
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

    @property
    def servers(self) -> list[str]:
        """The servers' ``"host:port"`` addresses (one for a single server;
        for a ``dns:`` address, as last resolved)."""
        if self._server_set is None:
            return [f"{self._host}:{self._port}"]
        return self._server_set.servers

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        where = f"{self._host}:{self._port}"
        if self._server_set is not None:
            dns = self._server_set.dns
            where = f"dns:{dns[0]}:{dns[1]}" if dns else f"{len(self.servers)} servers"
        return f"<{type(self).__name__} {self.client_name!r} {where} {state}>"

"""Several daemons behind one client: which server holds what, and which are dead.

Placement.  Every object of a pool lives on the server that ranks highest
for it under rendezvous (highest random weight) hashing: each server's
weight for ``(pool, object id)`` is a keyed BLAKE2b of that pair under the
server's *address* (``"host:port"``, as given or as resolved), and the
ranking is the servers by weight.  All pages of an object, and its
``flush_object``, therefore go to one server, and adding or removing one of
N servers moves only the objects whose top server changes: about 1/N of
them, and on a removal only the removed server's.  The address, not HELLO's
``server_id``, is the identity: a restarted daemon has a new ``server_id``
but must get its own objects back (docs/multi-server.md).  A pool's hash key
is its name for a named pool (so every process of the client name agrees),
its UUID for a shared pool, and the client-side pool id otherwise.

Dead servers.  A server that fails a connect or a call is dead for
``dead_timeout_s``; nothing is sent to it meanwhile, and its objects are not
moved (a dead server's pages are misses, not re-homed).  Each death bumps
the server's *generation*; a per-server pool made in an older generation is
dropped and made afresh when the server is used again (``ClusterPool``),
because puts and flushes that missed it meanwhile could otherwise let it
serve an old copy of a page.  Persistent pools with one replica are the
exception: their pages live nowhere else, so the pool is kept and calls on
the dead server raise ``ServerDead`` instead.

This module is pure (no sockets, no threads started); the clients drive it.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tmem.proto import PoolSpec, Status, decode_pool_flags

from ._errors import BadPool
from ._spec import PoolInfo, info_from_spec, new_pool_arguments, parse_address

__all__ = [
    "DEFAULT_DEAD_TIMEOUT_S",
    "DEFAULT_DNS_REFRESH_S",
    "DEFAULT_LIST_COUNT",
    "DNS_PREFIX",
    "MAX_REPLICAS",
    "MAX_SERVERS",
    "ClusterPool",
    "PoolTable",
    "Resolver",
    "ServerSet",
    "check_replicas",
    "decode_cursor",
    "encode_cursor",
    "is_cluster_address",
    "new_pool_args",
    "next_cursor",
    "rank",
    "resolve_dns",
    "server_key",
]

#: How long a failed server is left alone before it is tried again: long
#: enough that a dead host costs one connect timeout per period rather than
#: one per call, short enough that a restarted daemon is back in use soon.
DEFAULT_DEAD_TIMEOUT_S = 10.0
#: How often a ``dns:`` address is resolved again: a Kubernetes headless
#: Service changes as pods come and go; 30 s follows its endpoint updates
#: without a lookup per call.
DEFAULT_DNS_REFRESH_S = 30.0
#: The prefix of an address resolved through DNS: ``"dns:NAME:PORT"``.
DNS_PREFIX = "dns:"
#: Most copies of a persistent page: a put waits for every replica, so each
#: one costs a put's round trip on another server; three survive two deaths.
MAX_REPLICAS = 3
#: Bits of a merged listing cursor that say which server is being listed.
_CURSOR_SERVER_BITS = 8
_CURSOR_SERVER_MASK = (1 << _CURSOR_SERVER_BITS) - 1
#: Most servers behind one client: what a merged listing cursor can name
#: (far above one client's useful fan-out anyway).
MAX_SERVERS = _CURSOR_SERVER_MASK
#: ``list_objects``'s ``count`` when the caller gives none (the daemon's
#: default, PROTOCOL.md section 11.3.2).
DEFAULT_LIST_COUNT = 256
#: BLAKE2b keys are at most 64 bytes; longer addresses are hashed down first.
_BLAKE2B_KEY_BYTES = 64
#: Bytes of an object id on the wire (192 bits).
_OBJECT_ID_BYTES = 24

#: A resolver: ``(name, port)`` to the host addresses it names now.
Resolver = Callable[[str, int], Sequence[str]]


def server_key(host: str, port: int) -> str:
    """The identity of a server: ``"host:port"`` (``"[v6]:port"`` for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_cluster_address(address: object) -> bool:
    """True for a ``dns:`` address or a list of several addresses."""
    if isinstance(address, str):
        return address.startswith(DNS_PREFIX)
    return isinstance(address, list | tuple) and not _is_host_port_tuple(address)


def _is_host_port_tuple(address: object) -> bool:
    return (
        isinstance(address, tuple)
        and len(address) == 2
        and isinstance(address[0], str)
        and isinstance(address[1], int)
    )


def resolve_dns(name: str, port: int) -> list[str]:
    """The addresses ``name`` resolves to now (the default ``Resolver``)."""
    infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _hasher(server: str) -> Any:
    key = server.encode()
    if len(key) > _BLAKE2B_KEY_BYTES:
        key = hashlib.blake2b(key).digest()
    return hashlib.blake2b(key=key, digest_size=8)


def rank(hashers: Sequence[tuple[str, Any]], pool_key: bytes, object_id: int) -> list[str]:
    """Servers by rendezvous weight for ``(pool_key, object_id)``, highest first."""
    data = pool_key + object_id.to_bytes(_OBJECT_ID_BYTES, "big")
    weighted = []
    for server, base in hashers:
        h = base.copy()
        h.update(data)
        weighted.append((h.digest(), server))
    weighted.sort(reverse=True)
    return [server for _, server in weighted]


def encode_cursor(server_index: int, server_cursor: int) -> int:
    """A merged ``list_objects`` cursor: which server, and that server's cursor."""
    return (server_cursor << _CURSOR_SERVER_BITS) | (server_index + 1)


def decode_cursor(cursor: int) -> tuple[int, int]:
    """``(server_index, server_cursor)`` of a merged cursor (0 starts at server 0)."""
    if cursor == 0:
        return 0, 0
    return (cursor & _CURSOR_SERVER_MASK) - 1, cursor >> _CURSOR_SERVER_BITS


class ServerSet:
    """The servers behind one client, their liveness and their rankings.

    ``addresses`` is a list of ``"host:port"``/``(host, port)`` or one
    ``"dns:NAME:PORT"``, resolved by ``resolver`` every ``dns_refresh_s``.
    Thread-safe: every change happens under one lock, and readers take a
    consistent snapshot (``hashers``) without it.
    """

    def __init__(
        self,
        addresses: str | Sequence[str | tuple[str, int]],
        dead_timeout_s: float = DEFAULT_DEAD_TIMEOUT_S,
        resolver: Resolver | None = None,
        dns_refresh_s: float = DEFAULT_DNS_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not dead_timeout_s >= 0:
            raise ValueError(f"dead_timeout must be >= 0 seconds, not {dead_timeout_s!r}")
        self.dead_timeout_s = float(dead_timeout_s)
        self.resolver: Resolver = resolve_dns if resolver is None else resolver
        self.dns_refresh_s = float(dns_refresh_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._dead_until: dict[str, float] = {}
        self._generation: dict[str, int] = {}
        self._resolved_at = -float("inf")
        self.dns: tuple[str, int] | None = None
        self.hashers: tuple[tuple[str, Any], ...] = ()
        if isinstance(addresses, str):
            host, port = parse_address(addresses.removeprefix(DNS_PREFIX))
            self.dns = (host, port)
        else:
            keys = [server_key(*parse_address(a)) for a in addresses]
            if not keys:
                raise ValueError("a client needs at least one server address")
            self.set_servers(keys)

    @property
    def servers(self) -> list[str]:
        """The current servers' addresses, sorted."""
        return [server for server, _ in self.hashers]

    def set_servers(self, servers: Iterable[str]) -> None:
        """Replace the server list (a DNS answer); rankings follow at once."""
        keys = sorted(set(servers))
        if len(keys) > MAX_SERVERS:
            raise ValueError(f"{len(keys)} servers: one client spreads over at most {MAX_SERVERS}")
        if keys:
            self.hashers = tuple((key, _hasher(key)) for key in keys)

    def resolve_due(self) -> bool:
        """True when a ``dns:`` address should be resolved now."""
        return self.dns is not None and self._clock() - self._resolved_at >= self.dns_refresh_s

    def resolved(self, hosts: Sequence[str] | None) -> None:
        """Take a resolver's answer (None or empty: keep the last list)."""
        self._resolved_at = self._clock()
        if hosts and self.dns is not None:
            self.set_servers(server_key(host, self.dns[1]) for host in hosts)

    def resolve_now(self) -> None:
        """Resolve a ``dns:`` address with the resolver, in this thread."""
        if self.dns is None:
            return
        try:
            hosts: Sequence[str] | None = self.resolver(*self.dns)
        except OSError:
            hosts = None
        self.resolved(hosts)
        if not self.hashers:
            raise OSError(f"dns:{self.dns[0]}:{self.dns[1]} resolves to no address")

    def live(self, server: str) -> bool:
        """False while ``server`` is marked dead."""
        until = self._dead_until.get(server)
        return until is None or self._clock() >= until

    def mark_dead(self, server: str) -> None:
        """``server`` failed: leave it alone for ``dead_timeout_s``."""
        with self._lock:
            self._dead_until[server] = self._clock() + self.dead_timeout_s
            self._generation[server] = self._generation.get(server, 0) + 1

    def generation(self, server: str) -> int:
        """How many times ``server`` was marked dead."""
        return self._generation.get(server, 0)

    def rank(self, pool_key: bytes, object_id: int) -> list[str]:
        """Every server, the one that holds ``object_id`` of the pool first."""
        return rank(self.hashers, pool_key, object_id)


@dataclass(eq=False)
class ClusterPool:
    """A pool that spans the servers: one per-server pool each, made lazily.

    ``info`` is what the caller's ``Pool`` object sees (``pool_id`` is a
    client-side id); ``per_server`` maps a server to the ``PoolInfo`` of its
    pool there and the server's generation when it was made.
    """

    info: PoolInfo
    spec: PoolSpec
    shared_uuid: int | None
    replicas: int
    key: bytes
    #: The named pool's name (CONTROL ``open_pool``) or None.
    name: str | None = None
    #: The raw pool flags an ``open_pool`` sent, for re-opening elsewhere.
    flags: int | None = None
    per_server: dict[str, tuple[PoolInfo, int]] = field(default_factory=dict)
    #: Set once a replicated put skipped a dead server: a copy may then sit
    #: on a server outside a page's replicas, so puts and flushes also flush
    #: the handle on the other live servers (docs/multi-server.md).
    degraded: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def droppable(self) -> bool:
        """Whether a per-server pool may be dropped and made afresh: a cache,
        or a persistent pool whose pages have other replicas."""
        return not self.info.persistent or self.replicas > 1

    def current(self, server: str, generation: int) -> PoolInfo | None:
        """The per-server pool on ``server`` if it may still be used."""
        entry = self.per_server.get(server)
        if entry is None:
            return None
        info, made_in = entry
        if made_in != generation and self.droppable:
            return None
        return info


def check_replicas(replicas: int, persistent: bool) -> int:
    """``replicas`` if ``new_pool`` may take it, else ``ValueError``."""
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise TypeError(f"replicas must be an int, not {replicas!r}")
    if not 1 <= replicas <= MAX_REPLICAS:
        raise ValueError(f"replicas must be 1 to {MAX_REPLICAS}, not {replicas}")
    if replicas > 1 and not persistent:
        raise ValueError(
            "replicas > 1 is for persistent pools (an ephemeral page may vanish anyway)"
        )
    return replicas


class PoolTable:
    """A several-server client's pools, by client-side id and by name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[int, ClusterPool] = {}
        self._named: dict[str, int] = {}
        self._next_id = 0

    def add(
        self,
        spec: PoolSpec,
        shared_uuid: int | None,
        replicas: int,
        name: str | None = None,
        flags: int | None = None,
    ) -> ClusterPool:
        """A new pool entry (for a name already open: that pool's entry)."""
        with self._lock:
            if name is not None and name in self._named:
                return self._pools[self._named[name]]
            pool_id, self._next_id = self._next_id, self._next_id + 1
            if name is not None:
                key = b"name:" + name.encode()
                self._named[name] = pool_id
            elif shared_uuid is not None:
                key = b"uuid:" + shared_uuid.to_bytes(16, "big")
            else:
                key = b"id:%d" % pool_id
            info = info_from_spec(pool_id, spec)
            pool = ClusterPool(info, spec, shared_uuid, replicas, key, name, flags)
            self._pools[pool_id] = pool
            return pool

    def open(self, args: dict[str, Any]) -> ClusterPool:
        """The entry of CONTROL ``open_pool``'s arguments (``name``,
        ``flags``, and the client-side ``replicas``, default 1)."""
        flags = int(args["flags"])
        spec = decode_pool_flags(flags)
        replicas = check_replicas(int(args.get("replicas", 1)), spec.persistent)
        return self.add(spec, None, replicas, str(args["name"]), flags)

    def get(self, pool_id: int) -> ClusterPool:
        """The pool of a client-side id, else ``BadPool``."""
        pool = self._pools.get(pool_id)
        if pool is None:
            raise BadPool(Status.BAD_POOL, f"this client has no pool {pool_id}")
        return pool

    def remove(self, pool: ClusterPool) -> None:
        """Forget a destroyed pool (its name may be opened afresh)."""
        with self._lock:
            self._pools.pop(pool.info.pool_id, None)
            if pool.name is not None and self._named.get(pool.name) == pool.info.pool_id:
                del self._named[pool.name]


def new_pool_args(pool: ClusterPool) -> dict[str, Any]:
    """The ``new_pool`` arguments that make ``pool``'s part on one server."""
    info = pool.info
    return new_pool_arguments(
        info.persistent, pool.shared_uuid, info.codec, info.page_size, info.precompressed, info.pam
    )


def next_cursor(servers: Sequence[str], index: int, server_cursor: int) -> int:
    """The merged cursor after server ``index`` answered ``server_cursor``."""
    if server_cursor:
        return encode_cursor(index, server_cursor)
    return encode_cursor(index + 1, 0) if index + 1 < len(servers) else 0

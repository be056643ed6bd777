"""Per-client settings, and the administrator's operations (Xen's ``xl tmem-*``).

What a client's settings are
    ``ClientLimits``: a ``weight`` (its share of contended ephemeral memory,
    see ``_policy``), ``persistent_cap`` (stored bytes of its persistent
    pages) and ``total_cap`` (stored bytes of all pages charged to it),
    each cap None for none.  Besides: ``codec``, the codec of its new pools
    that name none, and ``frozen``.  Caps count *stored* bytes, what the
    PAM holds (compressed size; 0 for a same-filled page), the same measure
    as the statistics' ``stored_bytes``.

Who sets them, and how long they last
    The auth file at start-up (``configure``) and administrators at run
    time.  Settings belong to the client *name*: they live in a table and
    are copied into each new ``Client`` (first connect, or a reconnect after
    the lease ended), so a client that comes back keeps its weight, caps and
    frozen mark.  The table holds only configured names and names an
    administrator changed, so it is bounded by the auth file plus admin
    actions, never by the names that merely connected.  A name is *known*
    when it is in the table or is a live client (connected or within its
    lease); other names raise ``NoSuchClient``.

How caps are enforced (in ``Engine.put``)
    * A put while frozen is refused (FROZEN).  As for every refused put,
      the old copy at that handle is flushed (docs/design.md §3.2): the client
      asked to replace it, so the old bytes are stale either way.
    * A persistent put that would pass ``persistent_cap`` is refused
      (CLIENT_PERSISTENT_CAP).
    * A put of either kind that would pass ``total_cap`` first evicts the
      client's *own* ephemeral pages, oldest first (they are a cache by
      contract); if that is not enough it is refused (CLIENT_TOTAL_CAP).
      A persistent page is never evicted to make room.
    * Lowering a cap below what a client holds evicts nothing at once; its
      next puts are judged against the new cap.

Administration
    ``flush_ephemeral(nbytes)`` evicts fairly (most-above-share client
    first) until ``nbytes`` stored bytes are freed, the memory is empty of
    ephemeral pages, or ``max_flush_pages`` pages went (the config's
    ``max_flush_pages_per_call``, ``MAX_FLUSH_PAGES_PER_CALL``); it returns
    the bytes freed, and the caller repeats for more.  ``freeable()`` is the
    stored bytes of every evictable page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from mypy_extensions import mypyc_attr

from ._config import DEFAULT_WEIGHT, MAX_FLUSH_PAGES_PER_CALL, MAX_WEIGHT
from ._errors import BadArgument, NoSuchClient, Unsupported
from ._policy import Evictor
from ._state import Client, Eviction
from .codecs import Codec

__all__ = [
    "FLUSH_BATCH_PAGES",
    "MAX_FLUSH_PAGES_PER_CALL",
    "ClientLimits",
    "ClientSettings",
    "Tenancy",
]

#: Pages evicted from one victim before the fairest victim is chosen again:
#: choosing costs O(clients), so a flush of N pages costs O(N + N/16 clients).
FLUSH_BATCH_PAGES: Final = 16


# Built from values not known to be ints yet (the auth file, the state
# file): a plain class, so that compiled code does not check the fields'
# types in ``__init__`` (a TypeError) before ``__post_init__`` can refuse
# them with BadArgument, as the interpreted build does.
@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class ClientLimits:
    """A client's weight and byte caps (None: no cap)."""

    weight: int = DEFAULT_WEIGHT
    persistent_cap: int | None = None
    total_cap: int | None = None

    def __post_init__(self) -> None:
        # Read as objects (getattr): compiled, reading ``self.weight`` as an
        # ``int`` would convert a bool to a plain int before the check.
        weight: object = getattr(self, "weight")  # noqa: B009
        if not isinstance(weight, int) or isinstance(weight, bool):
            raise BadArgument(f"weight must be an integer, not {weight!r}")
        if not 1 <= weight <= MAX_WEIGHT:
            raise BadArgument(f"weight {weight} is not in [1, {MAX_WEIGHT}]")
        for name in ("persistent_cap", "total_cap"):
            cap: object = getattr(self, name)
            if cap is None:
                continue
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
                raise BadArgument(f"{name} must be a byte count >= 0 or None, not {cap!r}")


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Everything an administrator set for one client name."""

    limits: ClientLimits
    #: Codec of new pools that name none; None: the daemon's default.
    codec: str | None
    frozen: bool


@dataclass(slots=True)
class _Settings:
    limits: ClientLimits
    codec: str | None = None
    frozen: bool = False


class Tenancy:
    """The settings table, kept in step with the live ``Client`` objects."""

    def __init__(
        self,
        clients: Mapping[str, Client],
        codecs: Mapping[str, Codec],
        evictor: Evictor,
        max_flush_pages: int = MAX_FLUSH_PAGES_PER_CALL,
    ) -> None:
        self._clients = clients
        self._max_flush_pages = max_flush_pages
        self._codecs = codecs
        self._evictor = evictor
        self._table: dict[str, _Settings] = {}

    def apply(self, client: Client) -> None:
        """Copy the table's settings for ``client.name`` (if any) into ``client``."""
        settings = self._table.get(client.name)
        if settings is None:
            return
        limits = settings.limits
        client.weight = limits.weight
        client.persistent_cap = limits.persistent_cap
        client.total_cap = limits.total_cap
        client.codec = settings.codec
        client.frozen = settings.frozen

    def _known(self, name: str) -> _Settings:
        """The name's settings, made from its live client if not in the table yet."""
        settings = self._table.get(name)
        if settings is None:
            client = self._clients.get(name)
            if client is None:
                raise NoSuchClient(name)
            settings = _Settings(
                ClientLimits(client.weight, client.persistent_cap, client.total_cap),
                client.codec,
                client.frozen,
            )
            self._table[name] = settings
        return settings

    def _push(self, name: str) -> None:
        client = self._clients.get(name)
        if client is not None:
            self.apply(client)

    def configure(self, name: str, limits: ClientLimits) -> None:
        """Make ``name`` known with ``limits`` (start-up: one call per auth-file entry)."""
        settings = self._table.setdefault(name, _Settings(limits))
        settings.limits = limits
        self._push(name)

    def settings(self, name: str) -> ClientSettings:
        client = self._clients.get(name)
        if client is not None:
            limits = ClientLimits(client.weight, client.persistent_cap, client.total_cap)
            return ClientSettings(limits, client.codec, client.frozen)
        settings = self._known(name)
        return ClientSettings(settings.limits, settings.codec, settings.frozen)

    def set_limits(self, name: str, limits: ClientLimits) -> None:
        self._known(name).limits = limits
        self._push(name)

    def set_codec(self, name: str, codec: str | None) -> None:
        if codec is not None and codec not in self._codecs:
            raise Unsupported(f"no codec {codec!r}; have {sorted(self._codecs)}")
        self._known(name).codec = codec
        self._push(name)

    def set_frozen(self, name: str, frozen: bool) -> None:
        self._known(name).frozen = frozen
        self._push(name)

    def table(self) -> dict[str, ClientSettings]:
        """Every name's settings in the table (what a saved state keeps)."""
        return {
            name: ClientSettings(entry.limits, entry.codec, entry.frozen)
            for name, entry in self._table.items()
        }

    def restore(self, name: str, settings: ClientSettings) -> None:
        """Put saved settings back in the table and in the live client."""
        if settings.codec is not None and settings.codec not in self._codecs:
            raise Unsupported(f"no codec {settings.codec!r}; have {sorted(self._codecs)}")
        self._table[name] = _Settings(settings.limits, settings.codec, settings.frozen)
        self._push(name)

    def flush_ephemeral(self, nbytes: int) -> int:
        """Evict fairly until ``nbytes`` stored bytes are freed; return the bytes freed."""
        if nbytes < 0:
            raise BadArgument(f"cannot flush {nbytes} bytes")
        freed = pages = 0
        limit = self._max_flush_pages
        while freed < nbytes and pages < limit:
            victim = self._evictor.victim(None, 0, bytes_only=True)
            if victim is None:
                break
            for _ in range(min(FLUSH_BATCH_PAGES, limit - pages)):
                got = self._evictor.evict_oldest(victim, Eviction.ADMIN_FLUSH)
                if got is None:
                    break
                freed += got
                pages += 1
                if freed >= nbytes:
                    break
        return freed

    def freeable(self) -> int:
        """Stored bytes of every evictable (ephemeral) page."""
        return sum(client.ephemeral_bytes for client in self._clients.values())

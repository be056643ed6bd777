"""The engine's calls about clients and pools (not pages), and administration.

A mixin of ``Engine``, kept apart so that ``_engine`` reads as the page
paths: every method here is a documented delegation to the ``Registry``
(clients, pool-id namespaces, shared pools, leases) or to ``Tenancy``
(settings, freeze, flush_ephemeral; the rules are in ``_tenancy``).
Signatures are the engine's public API, which the server edge calls.
"""

from __future__ import annotations

from ._registry import Registry
from ._tenancy import ClientLimits, ClientSettings, Tenancy

__all__ = ["ClientCalls"]


class ClientCalls:
    """Client, pool and administration calls of ``Engine``."""

    _registry: Registry
    _tenancy: Tenancy

    # --- clients and pools (bookkeeping lives in the registry) -----------

    def connect(self, client: str) -> None:
        """Create ``client`` if new, count a connection and cancel its lease."""
        self._registry.connect(client)

    def disconnect(self, client: str) -> None:
        """Count a closed connection; at zero connections the lease starts."""
        self._registry.disconnect(client)

    def expire_leases(self) -> list[str]:
        """Free every client whose lease ended by now; return their names."""
        return self._registry.expire_leases()

    def destroy_client(self, client: str) -> None:
        """Free all of ``client``'s pools now; forget it unless it is connected."""
        self._registry.destroy_client(client)

    def pool_ids(self, client: str) -> list[int]:
        """The pool ids open in ``client``'s id space, ascending."""
        return self._registry.pool_ids(client)

    def new_pool(
        self,
        client: str,
        *,
        persistent: bool = False,
        shared_uuid: int | None = None,
        precompressed: bool = False,
        page_size: int = 4096,
        codec: str | None = None,
        pam: str | None = None,
        name: str | None = None,
    ) -> int:
        """Create a pool (or join the shared pool ``shared_uuid``); return its id.

        ``pam`` names the PAM of its pages ("zbud", "xvmalloc", "zsmalloc");
        None: the daemon's default for the pool's kind.  ``name`` names a
        private pool: the client's pool of that name, if there is one, is
        returned instead of a new one (``BadArgument`` if its flags differ),
        and a named pool keeps a listing of its objects (``list_objects``).
        """
        return self._registry.new_pool(
            client,
            persistent=persistent,
            shared_uuid=shared_uuid,
            precompressed=precompressed,
            page_size=page_size,
            codec=codec,
            pam=pam,
            name=name,
        )

    def list_objects(
        self, client: str, pool_id: int, cursor: int, count: int, max_buckets: int
    ) -> tuple[list[int], int]:
        """A page of a named pool's object ids from ``cursor`` on, and the next
        cursor (0: done); ``_listing`` states the bounds and the guarantee."""
        return self._registry.list_objects(client, pool_id, cursor, count, max_buckets)

    def destroy_pool(self, client: str, pool_id: int) -> None:
        """Free a pool's pages (a shared pool: leave it; the last member frees it)."""
        self._registry.destroy_pool(client, pool_id)

    def authorize_shared(self, uuid: int, client: str) -> None:
        """Let ``client`` (known yet or not) create or join the shared pool ``uuid``."""
        self._registry.authorize_shared(uuid, client)

    def revoke_shared(self, uuid: int, client: str) -> None:
        """Withdraw ``authorize_shared``; a member (the creator too) leaves the pool."""
        self._registry.revoke_shared(uuid, client)

    # --- tenancy and administration (rules in ``_tenancy``) ---------------

    def configure_client(self, client: str, limits: ClientLimits) -> None:
        """Make ``client`` known with ``limits`` before it connects (the auth file)."""
        self._tenancy.configure(client, limits)

    def client_limits(self, client: str) -> ClientLimits:
        """A known client's weight and caps."""
        return self._tenancy.settings(client).limits

    def client_settings(self, client: str) -> ClientSettings:
        """A known client's limits, codec and frozen mark."""
        return self._tenancy.settings(client)

    def set_client_limits(self, client: str, limits: ClientLimits) -> None:
        """Change a known client's weight and caps; nothing is evicted at once."""
        self._tenancy.set_limits(client, limits)

    def set_client_codec(self, client: str, codec: str | None) -> None:
        """The codec of ``client``'s new pools that name none (None: the default)."""
        self._tenancy.set_codec(client, codec)

    def freeze(self, client: str) -> None:
        """Refuse ``client``'s puts (FROZEN) until ``thaw``; gets are still served."""
        self._tenancy.set_frozen(client, True)

    def thaw(self, client: str) -> None:
        """Accept ``client``'s puts again."""
        self._tenancy.set_frozen(client, False)

    def flush_ephemeral(self, nbytes: int) -> int:
        """Evict ephemeral pages fairly until ``nbytes`` stored bytes are freed
        (at most ``MAX_FLUSH_PAGES_PER_CALL`` pages); return the bytes freed."""
        return self._tenancy.flush_ephemeral(nbytes)

    def freeable(self) -> int:
        """Stored bytes that ``flush_ephemeral`` could free now."""
        return self._tenancy.freeable()

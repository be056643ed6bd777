"""Freeing pages that left their index, and the accounting of stored bytes.

What: ``PageFreer`` undoes what the page store did for a page: it frees the
page's storage in its space (``_space``: pieces and descriptor for a big
page), unlinks an ephemeral page from its client's LRU, and uncounts its
stored bytes everywhere they are counted (the pool's gauges, the client's
bytes by kind, the persistent share, the space's pinned count).  ``count``
is that accounting both ways, so that the store (``_pages``) and the freer
count a page the same way.

Why a collaborator of its own: three parts of the engine must remove pages
and none of them should reach into the others.  The page store releases
the old copy of a replaced page and the pages of a flush; the evictor
(``_policy``) has chosen a victim by its handle and hands it to ``drop``
(the freer is its ``Dropper``); the registry (``_registry``) has seen a
pool's last member leave and hands the pool to ``free_pool`` (the freer is
its ``PoolFreer``).  The freer needs neither of them, so the engine builds
it first and gives it to both: no part of the engine holds a callback into
another, and there is no construction cycle.
"""

from __future__ import annotations

from ._index import IndexObject
from ._memory import Memory
from ._policy import PersistentShare, page_pool
from ._space import Space
from ._state import ENC_BIG, ENC_MASK, ENC_SAME, VALUE_SHIFT, Client, Pool, Totals

__all__ = ["PageFreer", "free_blob"]


def free_blob(space: Space, handle: int, encoding: int) -> int:
    """Free a page's storage in ``space``; return the bytes it held."""
    if encoding & ENC_BIG:
        return space.free_big(handle)
    return space.pam.free(handle)


class PageFreer:
    """Frees and uncounts pages already removed from their index (see the
    module docstring); the evictor's ``Dropper`` and the registry's
    ``PoolFreer``."""

    __slots__ = ("_memory", "_same", "_share", "_totals")

    def __init__(self, memory: Memory, share: PersistentShare, totals: Totals) -> None:
        self._memory = memory
        self._same = memory.spaces[0]
        self._share = share
        self._totals = totals

    def count(self, pool: Pool, token: int, stored: int, sign: int) -> None:
        """Count (``sign`` 1) or uncount (-1) a stored (not same-filled) page."""
        pool.account(token, stored, sign)
        tenant = pool.tenant
        if pool.persistent:
            self._share.bytes += sign * stored
            tenant.persistent_bytes += sign * stored
            pool.space.pinned += sign
        else:
            tenant.ephemeral_bytes += sign * stored
            if token & ENC_BIG:
                pool.space.pinned += sign

    def release(self, pool: Pool, token: int, freed: tuple[int, ...] = ()) -> int:
        """Free and uncount a page already removed from ``pool``'s index (PAM
        handles in ``freed`` are free already: a reclaim took them); return
        its stored bytes."""
        handle = token >> VALUE_SHIFT
        if token & ENC_MASK == ENC_SAME:
            self._same.pam.free(handle)
            if not pool.persistent:
                self._same.unlink(pool.tenant, handle)
            pool.account(token, 0, -1)
            return 0
        space = pool.space
        # A reclaimed handle is free already; its length is kept in the space.
        stored = space.lens[handle] if handle in freed else free_blob(space, handle, token)
        if not pool.persistent:
            space.unlink(pool.tenant, handle)
        self.count(pool, token, stored, -1)
        return stored

    def drop(
        self, holder: Client, space: Space, handle: int, reason: int, freed: tuple[int, ...]
    ) -> int:
        """Unindex and release the ephemeral page under ``handle``, one of
        ``holder``'s, counted as evicted for ``reason`` (``Dropper``)."""
        obj = space.objs[handle]
        assert obj is not None, f"handle {handle} of space {space.id} holds no ephemeral page"
        pool = page_pool(holder, space, handle)
        object_id = obj.oid if type(obj) is IndexObject else obj
        assert object_id is not None, f"handle {handle}: an object without its id"
        stored = self.release(pool, pool.index.delete(object_id, space.idx[handle]), freed)
        client = pool.tenant
        totals = self._totals
        pool.counters.pages_evicted += 1
        client.counters.pages_evicted += 1
        totals.ops.pages_evicted += 1
        client.evicted_by_reason[reason] += 1
        totals.evicted_by_reason[reason] += 1
        return stored

    def free_pool(self, pool: Pool) -> None:
        """Free every page of a pool whose last member left (``PoolFreer``)."""
        tokens = pool.index.pop_all()
        for token in tokens:
            self.release(pool, token)
        self._totals.freed_by_destroy += len(tokens)
        self._memory.forget(pool)

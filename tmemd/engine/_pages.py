"""Storing and freeing page blobs: admission, PAM space, and their accounting.

A mixin of ``Engine``, kept apart so that ``_engine`` reads as the calls.
``_store`` runs a put's policy in order (``_engine`` has the theory): the
persistent admission checks or the ephemeral total cap, room in the ledger
for the page's metadata, then the blob into its space through the
``Evictor`` (pieces and a descriptor for a big page, ``_space``).  On
success it counts the page's stored bytes everywhere they are counted (the
pool's gauges, the client's bytes by kind, the persistent share, the
space's pinned count) and returns the token.  ``_release`` undoes exactly
that for a page already removed from its index, and ``_drop_evicted`` is
the evictor's way in: a page named by its handle is unindexed and released.
``_relink`` keeps the reverse map right when an ephemeral pool's index
promotes a one-page object (``_index``).
"""

from __future__ import annotations

from functools import partial

from ._errors import Refusal
from ._index import OBJECT_BYTES, PAGE_BYTES, IndexObject
from ._ledger import Ledger
from ._policy import Evictor, PersistentShare, page_pool
from ._space import Space
from ._state import (
    ENC_BIG,
    ENC_MASK,
    ENC_SAME,
    MAX_HANDLE,
    VALUE_SHIFT,
    Client,
    Counters,
    Pool,
    make_token,
)

__all__ = ["PageStorage"]

#: Metadata room a put needs before it stores: an index entry, and a new
#: object's record in case the page starts one.
PUT_ROOM_BYTES = PAGE_BYTES + OBJECT_BYTES


class PageStorage:
    """Blob storage and accounting of ``Engine`` (see the module docstring)."""

    _ledger: Ledger
    _same: Space
    _evictor: Evictor
    _share: PersistentShare
    _counters: Counters
    _evicted_by_reason: list[int]

    def _store(self, pool: Pool, blob: bytes, encoding: int) -> int | Refusal:
        """Admit, store and count a blob; return its token or the refusal."""
        tenant = pool.tenant
        same = encoding == ENC_SAME
        size = 0 if same else len(blob)
        if pool.persistent:
            refusal = self._admit_persistent(tenant, size) if size else self._admit_same(tenant)
            if refusal is not None:
                return refusal
            incoming = 0
        else:
            cap = tenant.total_cap
            if cap is not None and size and not self._evictor.fit_cap(tenant, size, cap):
                return Refusal.CLIENT_TOTAL_CAP
            incoming = size
        ledger = self._ledger
        if (
            ledger.frames_used << 12
        ) + ledger.meta_bytes + PUT_ROOM_BYTES > ledger.size_bytes and not self._evictor.make_room(
            PUT_ROOM_BYTES, tenant, incoming
        ):
            return Refusal.NO_MEMORY
        if same:
            token = make_token(self._same.pam.store(blob), ENC_SAME)
            pool.account(token, 0, 1)
            return token
        space = pool.space
        if size <= space.max_object:
            handle = self._evictor.store(space, blob, tenant, incoming)
            stored = size
        else:
            handle, stored = self._store_big(space, blob, tenant, incoming)
            encoding |= ENC_BIG
        if not handle or handle > MAX_HANDLE:
            if handle:
                self._free_blob(space, handle, encoding)
            return Refusal.NO_MEMORY
        token = make_token(handle, encoding)
        self._count(pool, token, stored, 1)
        return token

    def _count(self, pool: Pool, token: int, stored: int, sign: int) -> None:
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

    def _store_big(
        self, space: Space, blob: bytes, tenant: Client, incoming: int
    ) -> tuple[int, int]:
        """Store a blob longer than one PAM object as pieces plus a descriptor
        (``_space``); return (descriptor handle, stored bytes), or (0, 0)."""
        step = space.max_object
        pieces: list[int] = []
        for offset in range(0, len(blob), step):
            piece = blob[offset : offset + step]
            handle = self._evictor.store(space, piece, tenant, incoming, reclaim=False)
            if not handle:
                break
            pieces.append(handle)
        else:
            descriptor = space.descriptor(pieces)
            handle = self._evictor.store(space, descriptor, tenant, incoming, reclaim=False)
            if handle:
                return handle, len(blob) + len(descriptor)
        for handle in pieces:
            space.pam.free(handle)
        return 0, 0

    def _admit_same(self, tenant: Client) -> Refusal | None:
        """A persistent same-filled page holds no bytes: only a full share refuses it."""
        return self._share.admit(tenant, 0)

    def _admit_persistent(self, tenant: Client, size: int) -> Refusal | None:
        """The client's persistent cap, the global share, then the total cap
        (last: making room for it evicts the client's own ephemeral pages)."""
        cap = tenant.persistent_cap
        if cap is not None and tenant.persistent_bytes + size > cap:
            return Refusal.CLIENT_PERSISTENT_CAP
        refusal = self._share.admit(tenant, size)
        if refusal is not None:
            return refusal
        cap = tenant.total_cap
        if cap is not None and not self._evictor.fit_cap(tenant, size, cap):
            return Refusal.CLIENT_TOTAL_CAP
        return None

    # --- freeing --------------------------------------------------------------

    @staticmethod
    def _free_blob(space: Space, handle: int, encoding: int) -> int:
        """Free a page's storage in ``space``; return the bytes it held."""
        if encoding & ENC_BIG:
            return space.free_big(handle)
        return space.pam.free(handle)

    def _release(self, pool: Pool, token: int, freed: tuple[int, ...] = ()) -> int:
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
        stored = space.lens[handle] if handle in freed else self._free_blob(space, handle, token)
        if not pool.persistent:
            space.unlink(pool.tenant, handle)
        self._count(pool, token, stored, -1)
        return stored

    def _init_pool(self, pool: Pool) -> None:
        """Registry callback: an ephemeral pool's index tells the reverse map
        of its promoted objects (``_relink``)."""
        if not pool.persistent:
            pool.index.relink = partial(self._relink, pool)

    def _relink(self, pool: Pool, token: int, obj: IndexObject) -> int:
        """A one-page object of ``pool`` got a second page: the reverse-map
        slot of its first page (under ``token``), which held the object's
        id, now refers to ``obj``; return that id (the index's key ``int``)."""
        space = self._same if token & ENC_MASK == ENC_SAME else pool.space
        handle = token >> VALUE_SHIFT
        object_id = space.objs[handle]
        assert type(object_id) is int, f"handle {handle}: no one-page object's id"
        space.objs[handle] = obj
        return object_id

    def _drop_evicted(
        self, holder: Client, space: Space, handle: int, reason: int, freed: tuple[int, ...]
    ) -> int:
        """Evictor callback: unindex and release the ephemeral page under
        ``handle``, one of ``holder``'s."""
        obj = space.objs[handle]
        assert obj is not None, f"handle {handle} of space {space.id} holds no ephemeral page"
        pool = page_pool(holder, space, handle)
        object_id = obj.oid if type(obj) is IndexObject else obj
        assert object_id is not None, f"handle {handle}: an object without its id"
        stored = self._release(pool, pool.index.delete(object_id, space.idx[handle]), freed)
        client = pool.tenant
        pool.counters.pages_evicted += 1
        client.counters.pages_evicted += 1
        self._counters.pages_evicted += 1
        client.evicted_by_reason[reason] += 1
        self._evicted_by_reason[reason] += 1
        return stored

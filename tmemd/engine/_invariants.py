"""A full consistency walk of the engine's state, for tests.

``check_engine`` recomputes every gauge from the page tokens and compares:
pool gauges (pages, same-filled, raw, original and stored bytes), the
persistent share's byte count, each client's stored bytes by kind, each
space's pinned count, and each client's LRU lists, which must hold exactly
the ephemeral pages charged to it, each under its handle in its space, with
the reverse map pointing back at its index entry.  Every client with an
evictable page must be among the evictor's holders, every pool must be
charged to a live member, and the ledger's metadata must equal what the
indexes, the spaces, the PAMs and the dictionaries charge.  It also runs
each PAM's and each index's own ``check_invariants``.  It is O(pages):
tests call it, the daemon never does.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._index import IndexObject
from ._memory import DICTIONARY_CONTEXT_BYTES, Memory
from ._policy import PersistentShare
from ._space import Space
from ._state import (
    DICT_TRAINED,
    ENC_BIG,
    ENC_MASK,
    ENC_RAW,
    ENC_SAME,
    VALUE_SHIFT,
    Client,
    Pool,
)
from .pam import SAME_HANDLE_BYTES

__all__ = ["check_engine"]

#: (space id, client name) -> {handle: (pool, object id, index)}
_Expected = dict[tuple[int, str], dict[int, tuple[Pool, int, int]]]


def check_engine(
    pools: list[Pool],
    clients: Mapping[str, Client],
    holders: Mapping[str, Client],
    memory: Memory,
    share: PersistentShare,
) -> None:
    """Raise ``AssertionError`` on the first inconsistency found."""
    for space in memory.spaces:
        space.pam.check_invariants()
    expected: _Expected = {}
    ephemeral = dict.fromkeys(clients, 0)
    persistent = dict.fromkeys(clients, 0)
    pinned = [0] * len(memory.spaces)
    for pool in pools:
        _check_membership(pool, clients)
        pool.index.check_invariants()
        sizes = _check_pool_gauges(pool, memory.spaces[0])
        for (object_id, index, token), stored in zip(pool.index.items(), sizes, strict=True):
            space = memory.spaces[0] if token & ENC_MASK == ENC_SAME else pool.space
            handle = token >> VALUE_SHIFT
            if pool.persistent:
                persistent[pool.owner] += stored
                pinned[space.id] += token & ENC_MASK != ENC_SAME
                continue
            ephemeral[pool.owner] += stored
            pinned[space.id] += bool(token & ENC_BIG)
            pages = expected.setdefault((space.id, pool.owner), {})
            assert handle not in pages, f"handle {handle} indexed twice"
            pages[handle] = (pool, object_id, index)
            assert stored == space.lens[handle], f"handle {handle}: length {space.lens[handle]}"
    assert sum(persistent.values()) == share.bytes, f"persistent bytes {share.bytes}"
    for space in memory.spaces:
        assert space.pinned == pinned[space.id], f"space {space.id}: pinned {space.pinned}"
    for name, client in clients.items():
        assert client.persistent_bytes == persistent[name], f"{name}: persistent bytes"
        assert client.ephemeral_bytes == ephemeral[name], f"{name}: ephemeral bytes"
        _check_lru(client, memory.spaces, expected)
        if client.lru_pages:
            assert holders.get(name) is client, f"{name} holds pages but is not a holder"
    linked = sum(obj is not None for space in memory.spaces for obj in space.objs)
    assert linked == sum(c.lru_pages for c in clients.values()), "stray reverse-map entries"
    _check_ledger(pools, memory)


def _stored(space: Space, token: int) -> int:
    """The stored length of the page a token names, from its PAM (raises
    ``KeyError`` if the handle is not live)."""
    handle = token >> VALUE_SHIFT
    if token & ENC_MASK == ENC_SAME:
        space.pam.load(handle)
        return 0
    if token & ENC_BIG:
        pieces = space.pieces(handle)
        assert all(space.pam.stored_size(h) == space.max_object for h in pieces[:-1])
        return sum(space.pam.stored_size(h) for h in pieces) + space.pam.stored_size(handle)
    return space.pam.stored_size(handle)


def _check_lru(client: Client, spaces: list[Space], expected: _Expected) -> None:
    """Each of ``client``'s lists: links, ends, counts, and the reverse map."""
    total = 0
    for space in spaces:
        sid = space.id
        want = expected.get((sid, client.name), {})
        seen: list[int] = []
        prev = 0
        for handle in space.handles(client):
            assert space.prv[handle] == prev, f"{client.name}: back link of {handle}"
            assert len(seen) <= len(want), f"{client.name}: LRU of space {sid} has a cycle"
            seen.append(handle)
            prev = handle
        assert client.lru_tail[sid] == prev, f"{client.name}: tail of space {sid}"
        assert set(seen) == set(want), f"{client.name}: LRU of space {sid} != its pages"
        assert client.lru_count[sid] == len(seen), f"{client.name}: count of space {sid}"
        for handle in seen:
            pool, object_id, index = want[handle]
            obj = space.objs[handle]
            if type(obj) is IndexObject:
                assert obj.index is pool.index, f"reverse map of {handle}"
                obj = obj.oid
            else:  # an id: of a one-page object (a promoted one's slot is relinked)
                assert pool.index.inline(object_id), f"reverse map of {handle}: not inline"
            assert (obj, space.idx[handle]) == (object_id, index), f"location of {handle}"
        total += len(seen)
    assert client.lru_pages == total, f"{client.name}: {client.lru_pages} LRU pages, {total}"


def _check_ledger(pools: list[Pool], memory: Memory) -> None:
    """The ledger's metadata is the sum of what every part charges."""
    charged = sum(pool.index.meta_bytes() for pool in pools)
    charged += sum(space.meta_bytes() for space in memory.spaces)
    charged += (len(memory.same_pam.fills) - 1) * SAME_HANDLE_BYTES
    charged += sum(getattr(pam, "meta_charged", 0) for pam in memory.pams())
    trained = sum(pool.dictionary == DICT_TRAINED for pool in pools)
    charged += trained * (memory.dictionary_bytes + DICTIONARY_CONTEXT_BYTES)
    assert memory.ledger.meta_bytes == charged, f"ledger {memory.ledger.meta_bytes} != {charged}"


def _check_membership(pool: Pool, clients: Mapping[str, Client]) -> None:
    where = f"pool {pool.owner}/{pool.pool_id}"
    assert clients.get(pool.owner) is pool.tenant, f"{where}: tenant is not the owner"
    assert pool.members.get(pool.owner) == pool.pool_id, f"{where}: owner is not a member"
    for member, pool_id in pool.members.items():
        assert clients[member].pools.get(pool_id) is pool, f"{where}: {member}'s table"


def _check_pool_gauges(pool: Pool, same_space: Space) -> list[int]:
    """Check the pool's gauges; return each page's stored length, in ``items()`` order."""
    pages = same = raw = original = stored_total = 0
    sizes: list[int] = []
    for _, _, token in pool.index.items():
        pages += 1
        stored = _stored(same_space if token & ENC_MASK == ENC_SAME else pool.space, token)
        sizes.append(stored)
        stored_total += stored
        encoding = token & ENC_MASK
        same += encoding == ENC_SAME
        raw += encoding == ENC_RAW
        original += stored if pool.precompressed else pool.page_size
    where = f"pool {pool.owner}/{pool.pool_id}"
    assert pages == len(pool.index), f"{where}: {len(pool.index)} pages, {pages} indexed"
    assert same == pool.same_filled_pages, f"{where}: same-filled {pool.same_filled_pages}"
    assert raw == pool.raw_pages, f"{where}: raw {pool.raw_pages} != {raw}"
    assert original == pool.original_bytes, f"{where}: original {pool.original_bytes}"
    assert stored_total == pool.stored_bytes, f"{where}: stored {pool.stored_bytes}"
    return sizes

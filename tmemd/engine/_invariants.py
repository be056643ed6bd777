"""A full consistency walk of the engine's state, for tests.

``check_engine`` recomputes every gauge from the page tokens and compares:
pool gauges (pages, same-filled, raw, original and stored bytes), the
persistent share's byte count, each client's stored bytes by kind, and each
client's LRU, which must hold exactly the ephemeral pages in a PAM that are
charged to it, each under its handle with its packed location.  Every client
with an evictable page must be among the evictor's holders, and every pool
must be charged to a live member.  It also runs each PAM's and each index's
own ``check_invariants``.  It is O(pages): tests call it, the daemon never does.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._pam import Pam
from ._policy import PersistentShare, pack_location
from ._state import (
    ENC_MASK,
    ENC_RAW,
    ENC_SAME,
    LENGTH_MASK,
    LENGTH_SHIFT,
    VALUE_SHIFT,
    Client,
    Pool,
)

__all__ = ["check_engine"]


def check_engine(
    pools: list[Pool],
    clients: Mapping[str, Client],
    holders: Mapping[str, Client],
    pams: tuple[Pam, ...],
    share: PersistentShare,
) -> None:
    """Raise ``AssertionError`` on the first inconsistency found."""
    for pam in pams:
        pam.check_invariants()
    lrus: dict[str, dict[int, int]] = {name: {} for name in clients}
    ephemeral = dict.fromkeys(clients, 0)
    persistent = dict.fromkeys(clients, 0)
    for pool in pools:
        _check_membership(pool, clients)
        pool.index.check_invariants()
        _check_pool_gauges(pool)
        for object_id, index, token in pool.index.items():
            if token & ENC_MASK == ENC_SAME:
                continue
            handle = token >> VALUE_SHIFT
            stored = token >> LENGTH_SHIFT & LENGTH_MASK
            size = pool.pam.stored_size(handle)
            assert size == stored, f"handle {handle}: token says {stored} bytes, PAM {size}"
            if pool.persistent:
                persistent[pool.owner] += stored
                continue
            ephemeral[pool.owner] += stored
            expected = lrus[pool.owner]
            assert handle not in expected, f"handle {handle} indexed twice"
            expected[handle] = pack_location(pool.pool_id, object_id, index)
    assert sum(persistent.values()) == share.bytes, f"persistent bytes {share.bytes}"
    for name, client in clients.items():
        assert client.persistent_bytes == persistent[name], f"{name}: persistent bytes"
        assert client.ephemeral_bytes == ephemeral[name], f"{name}: ephemeral bytes"
        assert dict(client.lru) == lrus[name], f"{name}: LRU != its evictable pages"
        if client.lru:
            assert holders.get(name) is client, f"{name} holds pages but is not a holder"


def _check_membership(pool: Pool, clients: Mapping[str, Client]) -> None:
    where = f"pool {pool.owner}/{pool.pool_id}"
    assert clients.get(pool.owner) is pool.tenant, f"{where}: tenant is not the owner"
    assert pool.members.get(pool.owner) == pool.pool_id, f"{where}: owner is not a member"
    for member, pool_id in pool.members.items():
        assert clients[member].pools.get(pool_id) is pool, f"{where}: {member}'s table"


def _check_pool_gauges(pool: Pool) -> None:
    pages = same = raw = original = stored_total = 0
    for _, _, token in pool.index.items():
        pages += 1
        stored = token >> LENGTH_SHIFT & LENGTH_MASK
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

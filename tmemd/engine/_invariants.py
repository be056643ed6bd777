"""A full consistency walk of the engine's state, for tests.

``check_engine`` recomputes every gauge from the page tokens and compares:
pool gauges (pages, same-filled, raw, original and stored bytes), the
persistent share's byte count, and the LRU, which must hold exactly the
ephemeral pages that live in a PAM, each pointing back at the index entry
that owns its handle.  It also runs each PAM's and each index's own
``check_invariants``.  It is O(pages): tests call it, the daemon never does.
"""

from __future__ import annotations

from ._pam import Pam
from ._policy import EvictionLru, PersistentShare
from ._state import ENC_MASK, ENC_RAW, ENC_SAME, LENGTH_MASK, LENGTH_SHIFT, VALUE_SHIFT, Pool

__all__ = ["check_engine"]


def check_engine(
    pools: list[Pool], pams: tuple[Pam, ...], lru: EvictionLru, share: PersistentShare
) -> None:
    """Raise ``AssertionError`` on the first inconsistency found."""
    for pam in pams:
        pam.check_invariants()
    evictable: dict[int, tuple[int, int, int]] = {}
    persistent_bytes = 0
    for pool in pools:
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
                persistent_bytes += stored
            else:
                assert handle not in evictable, f"handle {handle} indexed twice"
                evictable[handle] = (id(pool), object_id, index)
    assert persistent_bytes == share.bytes, f"persistent {share.bytes} != {persistent_bytes}"
    in_lru: dict[int, tuple[int, int, int]] = {}
    for handle in lru.handles():
        pool, object_id, index = lru.location(handle)
        in_lru[handle] = (id(pool), object_id, index)
    assert in_lru == evictable, "the LRU does not hold exactly the evictable pages"


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

"""The mapping's operations, written once as sans-IO plans.

A plan is a generator that yields the pool I/O it needs (``GetPages``,
``PutPages``, ``FlushObject``, ``ListObjects``), is sent each result, and
returns the operation's result.  ``Mapping`` runs plans over a blocking
``Pool``, ``AsyncMapping`` over an ``AsyncPool``: one implementation of the
format's rules (``_mapping_format``) for both, as the client core is one
protocol implementation under two transports.

Every plan batches: a read of n keys is one pipelined ``get_many`` of the
2n heads, then one of all their data pages; a write of n values is one
``get_many`` of the heads, one ``put_many`` of all data pages, one of the
heads that commit them, then a ``flush_object`` per replaced value (the
old slot) and per refused value (its half-written slot): sent one after the
other by ``Mapping`` (the pool API has no batch flush), all at once by
``AsyncMapping``, which pipelines concurrent calls on its connection.

Concurrency: a reader never returns part of a value or a mix of two writes
(write ids and the checksum).  A reader that races a writer of the same key
may miss once (it chose the old slot just as the writer flushed it).  Two
writers of one key at once: one value wins, or the key may be lost; never a
mix.
"""

from __future__ import annotations

import secrets
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from tmem.proto import RefuseReason

from ._mapping_format import (
    Head,
    Key,
    base_of,
    join_value,
    key_of,
    page_count,
    parse_head,
    split_value,
)

__all__ = [
    "FlushObjects",
    "GetPages",
    "Io",
    "Layout",
    "ListObjects",
    "Plan",
    "PutPages",
    "WriteFailure",
    "delete_keys",
    "list_keys",
    "read_values",
    "write_values",
]

#: Slots per key (``_mapping_format``): the current generation's and the next's.
SLOTS = (0, 1)


@dataclass(frozen=True, slots=True)
class GetPages:
    """Read pages (non-exclusive); the result is a page or None per handle."""

    handles: list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class PutPages:
    """Store pages; the result is ``(stored flags, last refusal reason)``."""

    items: list[tuple[int, int, bytes]]


@dataclass(frozen=True, slots=True)
class FlushObjects:
    """Flush objects (in any order, concurrently if the driver can); the
    result is the pages flushed per object."""

    object_ids: list[int]


@dataclass(frozen=True, slots=True)
class ListObjects:
    """One ``list_objects`` call; the result is ``(object ids, next cursor)``."""

    cursor: int


Io = GetPages | PutPages | FlushObjects | ListObjects
Plan = Generator[Io, Any, Any]


@dataclass(frozen=True, slots=True)
class Layout:
    """What every plan of one mapping needs: its name as a hash key, its page size."""

    name_key: bytes
    page_size: int

    def base(self, tagged: bytes) -> int:
        return base_of(self.name_key, tagged)


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """The keys a write did not store, and the daemon's last reason (None: collision)."""

    keys: tuple[Key, ...]
    reason: RefuseReason | None
    collision: bool


def _heads_of(layout: Layout, tagged: Sequence[bytes]) -> Plan:
    """Both slots' heads of each key: ``[(base, [head or None, head or None])]``."""
    bases = [layout.base(t) for t in tagged]
    pages = yield GetPages([(base | slot, 0) for base in bases for slot in SLOTS])
    return [(base, [parse_head(pages[2 * i + s]) for s in SLOTS]) for i, base in enumerate(bases)]


def _data_handles(layout: Layout, oid: int, head: Head) -> list[tuple[int, int]]:
    count = page_count(layout.page_size, len(head.tagged_key), head.length)
    return [(oid, index) for index in range(1, count)]


def read_values(layout: Layout, tagged: Sequence[bytes]) -> Plan:
    """The whole values of the keys found: ``{tagged key: value}``."""
    found = yield from _heads_of(layout, tagged)
    # Per key, its own heads, newest first: the candidates to try in turn.
    pending: dict[bytes, list[tuple[int, Head]]] = {}
    for t, (base, heads) in zip(tagged, found, strict=True):
        mine = [(base | s, h) for s, h in zip(SLOTS, heads, strict=True) if h and h.tagged_key == t]
        if mine:
            pending[t] = sorted(mine, key=lambda c: c[1].generation, reverse=True)
    values: dict[bytes, bytes] = {}
    for _ in SLOTS:
        tries = [(t, *cands[0]) for t, cands in pending.items() if cands]
        if not tries:
            break
        wanted = [_data_handles(layout, oid, head) for _, oid, head in tries]
        flat = [handle for handles in wanted for handle in handles]
        pages = (yield GetPages(flat)) if flat else []
        at = 0
        for (t, _, head), handles in zip(tries, wanted, strict=True):
            value = join_value(head, pages[at : at + len(handles)])
            at += len(handles)
            if value is None:
                pending[t].pop(0)
            else:
                values[t] = value
                del pending[t]
    return values


@dataclass(slots=True)
class _Write:
    """One value being written: its key, slots and pages."""

    tagged: bytes
    target: int
    old: int | None
    pages: list[bytes]


def _plan_writes(
    layout: Layout, items: Sequence[tuple[bytes, memoryview]], found: list[Any]
) -> tuple[list[_Write], list[bytes], list[int]]:
    """The writes to make, the keys refused for a collision, and stale
    target slots to flush first."""
    writes: list[_Write] = []
    collided: list[bytes] = []
    stale: list[int] = []
    for (t, value), (base, heads) in zip(items, found, strict=True):
        if any(h is not None and h.tagged_key != t for h in heads):
            collided.append(t)
            continue
        gens = [(h.generation, s) for s, h in zip(SLOTS, heads, strict=True) if h is not None]
        newest, old_slot = max(gens) if gens else (0, None)
        generation = newest + 1
        target = base | (generation & 1)
        if heads[generation & 1] is not None:
            stale.append(target)
        pages = split_value(layout.page_size, t, generation, secrets.randbits(64), value)
        old = None if old_slot is None else base | old_slot
        writes.append(_Write(t, target, old, pages))
    return writes, collided, stale


def write_values(layout: Layout, items: Sequence[tuple[bytes, memoryview]]) -> Plan:
    """Store each value whole or not at all; return a ``WriteFailure`` or None."""
    found = yield from _heads_of(layout, [t for t, _ in items])
    writes, collided, stale = _plan_writes(layout, items, found)
    if stale:
        yield FlushObjects(stale)
    data = [(w.target, i, page) for w in writes for i, page in enumerate(w.pages) if i]
    stored, reason = (yield PutPages(data)) if data else ([], None)
    failed = {data[i][0] for i, ok in enumerate(stored) if not ok}
    heads = [w for w in writes if w.target not in failed]
    commits = [(w.target, 0, w.pages[0]) for w in heads]
    stored, head_reason = (yield PutPages(commits)) if commits else ([], None)
    failed.update(w.target for w, ok in zip(heads, stored, strict=True) if not ok)
    done = [w.target if w.target in failed else w.old for w in writes]
    if any(oid is not None for oid in done):
        yield FlushObjects([oid for oid in done if oid is not None])
    lost = [w.tagged for w in writes if w.target in failed] + collided
    if not lost:
        return None
    return WriteFailure(
        tuple(key_of(t) for t in lost), head_reason or reason, collision=bool(collided)
    )


def delete_keys(layout: Layout, tagged: Sequence[bytes]) -> Plan:
    """Flush every slot holding one of these keys; return the keys that were there."""
    found = yield from _heads_of(layout, tagged)
    deleted: list[bytes] = []
    flush: list[int] = []
    for t, (base, heads) in zip(tagged, found, strict=True):
        if any(h and h.tagged_key == t for h in heads):
            deleted.append(t)
            # Both slots, also one with no head (the pages of an interrupted
            # write), but never one holding another key's head.
            flush += [
                base | s for s, h in zip(SLOTS, heads, strict=True) if not h or h.tagged_key == t
            ]
    if flush:
        yield FlushObjects(flush)
    return deleted


def list_keys(layout: Layout) -> Plan:
    """Every key with a head in the pool, each once, sorted by tagged key."""
    oids: set[int] = set()
    cursor = 0
    while True:
        ids, cursor = yield ListObjects(cursor)
        oids.update(ids)
        if cursor == 0:
            break
    ordered = sorted(oids)
    pages = (yield GetPages([(oid, 0) for oid in ordered])) if ordered else []
    keys: set[bytes] = set()
    for oid, page in zip(ordered, pages, strict=True):
        head = parse_head(page)
        if head is not None and layout.base(head.tagged_key) == oid & ~1:
            keys.add(head.tagged_key)
    return [key_of(t) for t in sorted(keys)]

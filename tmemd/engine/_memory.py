"""The engine's memory: the arena, its spaces, and bounded maintenance.

What: ``Memory`` owns where pages go.  With arena PAMs named in the config
it maps one ``Arena`` of ``memory_bytes`` (the daemon's whole memory limit)
and makes one PAM instance per kind in use, each a ``Space`` shared by every
pool that uses that kind; the same-filled store is space 0.  Without names
it wraps the PAMs handed to the engine (or one ``BytesPam``), which bound
their own bytes.

The limit covers metadata too: the index and the spaces' arrays charge the
ledger (the arena), so ``frames in use * 4 KiB + metadata <= memory_bytes``
always holds (up to one array growth in flight), and a flood of tiny or
same-filled pages is bounded like any other.  What a page costs outside
its frame, measured with tracemalloc (``tests/unit/test_engine_pam_index.py``,
run with ``-s``): ``PAGE_CHARGE_BYTES``; the fairness score counts it.

Maintenance (``maintain``, called by the daemon every half second) does a
bounded amount of work per call:

* compaction: each PAM moves at most ``MAINTAIN_MAX_MOVES`` objects out of
  sparse spans (zsmalloc; the others move nothing), giving frames back;
* dictionaries: at most one zstd pool holding ``dictionary_min_pages``
  compressed pages gets a dictionary trained from ``dictionary_sample_pages``
  of its own pages (``codecs.ZstdCodec.train``); its later pages use it.
  The dictionary and its compression contexts are charged
  ``dictionary_bytes + DICTIONARY_CONTEXT_BYTES`` until the pool goes;
* heap trim: ``malloc_trim`` gives freed heap memory back to the kernel,
  so RSS follows the metadata charge down and holds no holes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Iterable
from typing import Final

from ._config import MAX_PAGE_BYTES, EngineConfig
from ._errors import Unsupported
from ._index import PAGE_BYTES
from ._ledger import Ledger, MetaLedger
from ._space import HANDLE_BYTES, Space
from ._state import DICT_NONE, DICT_PENDING, DICT_TRAINED, ENC_COMPRESSED, VALUE_SHIFT, Pool
from .pam import ARENA_PAM_NAMES, FRAME_BYTES, Arena, Pam, SamePam, choose_pams, make_arena_pam

__all__ = [
    "DICTIONARY_CONTEXT_BYTES",
    "MAINTAIN_MAX_MOVES",
    "PAGE_CHARGE_BYTES",
    "Memory",
]

#: Metadata one stored page costs beyond its frame bytes, for the fairness
#: score: its index entry (9), its space's per-handle arrays (24) and the
#: PAM's per-handle table (zsmalloc: 12).  Objects and chunks come on top.
PAGE_CHARGE_BYTES: Final = PAGE_BYTES + HANDLE_BYTES + 12
#: Objects one ``maintain()`` call may move per PAM: at the cost of a move
#: (docs/bench/micro.md) a few milliseconds of event-loop time per PAM every
#: half second.
MAINTAIN_MAX_MOVES: Final = 4096
#: Memory of a trained codec's zstd contexts beyond the dictionary itself
#: (measured by RSS: ~400 KiB at level 3; charged with margin).
DICTIONARY_CONTEXT_BYTES: Final = 1 << 20


def _heap_trimmer() -> Callable[[], None]:
    """``malloc_trim(0)`` where the C library has it, else nothing.

    glibc keeps freed heap memory for reuse, and RSS with it: the transient
    page copies and blobs of each request leave holes between long-lived
    arrays (measured through the daemon: 1.5 MiB at 100_000 stored pages),
    training a dictionary takes ~10 MiB for a moment (+9.7 MiB after it,
    +0.2 MiB trimmed), and a flush of a million pages frees their index
    arrays.  One call costs 0.01-0.15 ms with 100 MiB of Python heap.
    """
    name = ctypes.util.find_library("c")
    malloc_trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None

    def trim() -> None:
        if malloc_trim is not None:
            malloc_trim(0)

    return trim


#: A PAM's role by (ephemeral default, persistent default); neither: "named".
_ROLES: Final = {(True, True): "any", (True, False): "ephemeral", (False, True): "persistent"}
#: All three encoding bits: a plain compressed page has exactly ENC_COMPRESSED.
_ENCODING: Final = 0b111


class Memory:
    """The arena (if any), the spaces, and the defaults for each pool kind."""

    def __init__(self, config: EngineConfig, ephemeral: Pam | None, persistent: Pam | None):
        self.dictionary_bytes = config.dictionary_bytes
        self._min_pages = config.dictionary_min_pages
        self._sample_pages = config.dictionary_sample_pages
        self._trim = _heap_trimmer()
        named = config.ephemeral_pam or config.persistent_pam
        self.arena: Arena | None = None
        self.ledger: Ledger
        if named is not None:
            if ephemeral is not None or persistent is not None:
                raise ValueError("name arena PAMs in the config or pass PAM instances, not both")
            self.arena = self.ledger = Arena(
                config.memory_bytes, reserve_bytes=config.memory_reserve_bytes
            )
        else:
            self.ledger = MetaLedger()
        self.same_pam = SamePam(self.ledger)
        #: The same-filled store's space: every pool's same-filled pages.
        self.same_space = Space(0, self.same_pam, self.ledger, 1)
        self.spaces = [self.same_space]
        self._by_name: dict[str, Space] = {}
        if named is not None:
            eph = self._arena_space(config.ephemeral_pam or named)
            per = self._arena_space(config.persistent_pam or named)
            #: Metadata per page, counted in the fairness score.
            self.page_charge = PAGE_CHARGE_BYTES
        else:
            pams = choose_pams(config.memory_bytes, ephemeral, persistent)
            eph = self._add(pams[0], MAX_PAGE_BYTES)
            per = eph if pams[1] is pams[0] else self._add(pams[1], MAX_PAGE_BYTES)
            self.page_charge = 0
        self.defaults = (eph, per)

    def _add(self, pam: Pam, max_object: int) -> Space:
        space = Space(len(self.spaces), pam, self.ledger, max_object)
        self.spaces.append(space)
        self._by_name.setdefault(pam.name, space)
        return space

    def _arena_space(self, name: str) -> Space:
        space = self._by_name.get(name)
        if space is None:
            assert self.arena is not None
            space = self._add(make_arena_pam(name, self.arena, charge_metadata=True), FRAME_BYTES)
        return space

    def space_for(self, persistent: bool, pam: str | None) -> Space:
        """The space of a new pool: its kind's default, or the PAM it names."""
        if pam is None:
            return self.defaults[persistent]
        space = self._by_name.get(pam)
        if space is not None:
            return space
        if self.arena is None or pam not in ARENA_PAM_NAMES:
            raise Unsupported(f"no PAM {pam!r}; have {', '.join(sorted(self.pam_names()))}")
        return self._arena_space(pam)

    def pam_names(self) -> list[str]:
        """Names a pool may ask for."""
        return list(ARENA_PAM_NAMES) if self.arena is not None else list(self._by_name)

    def pams(self) -> tuple[Pam, ...]:
        """Each PAM instance once (not the same-filled store)."""
        return tuple(space.pam for space in self.spaces[1:])

    def pam_roles(self) -> tuple[tuple[Pam, str], ...]:
        """Each PAM once with its role (``PamStats.role``).  Pools may name
        any arena PAM, so there may be more PAMs than pool kinds."""
        eph, per = self.defaults
        return tuple(
            (space.pam, _ROLES.get((space is eph, space is per), "named"))
            for space in self.spaces[1:]
        )

    def bytes_used(self) -> int:
        """Memory charged against the limit: PAM bytes, plus metadata with an arena."""
        used = sum(space.pam.bytes_used() for space in self.spaces[1:])
        return used + (self.ledger.meta_bytes if self.arena is not None else 0)

    def metadata_bytes(self) -> int:
        """Metadata charged against the limit (0 without an arena)."""
        return self.ledger.meta_bytes if self.arena is not None else 0

    # --- maintenance ----------------------------------------------------

    def maintain(self, pools: Iterable[Pool]) -> int:
        """Bounded background work (see the module docstring); return frames freed."""
        freed = 0
        for space in self.spaces[1:]:
            freed += space.pam.compact(MAINTAIN_MAX_MOVES)
        if self.dictionary_bytes:
            for pool in pools:
                if pool.dictionary == DICT_PENDING and self._train(pool):
                    break
        self._trim()
        return freed

    def _train(self, pool: Pool) -> bool:
        """Train ``pool``'s dictionary if it is due; True if training was tried."""
        train = getattr(pool.codec, "train", None)
        if train is None or pool.precompressed:
            pool.dictionary = DICT_NONE
            return False
        compressed = len(pool.index) - pool.same_filled_pages - pool.raw_pages
        charge = self.dictionary_bytes + DICTIONARY_CONTEXT_BYTES
        if compressed < self._min_pages or not self.ledger.room_for(charge):
            return False
        trained = train(self._samples(pool, compressed), self.dictionary_bytes)
        if trained is None:
            pool.dictionary = DICT_NONE
            return True
        pool.codec = trained
        pool.dictionary = DICT_TRAINED
        self.ledger.meta_bytes += charge
        return True

    def _samples(self, pool: Pool, compressed: int) -> list[bytes]:
        """Up to ``dictionary_sample_pages`` of the pool's pages, spread over it."""
        step = max(1, compressed // self._sample_pages)
        space, codec, size = pool.space, pool.codec, pool.page_size
        samples: list[bytes] = []
        seen = 0
        for _, _, token in pool.index.items():
            if token & _ENCODING != ENC_COMPRESSED:  # same-filled, raw, or big
                continue
            seen += 1
            if seen % step == 0:
                samples.append(codec.decompress(space.pam.load(token >> VALUE_SHIFT), size))
                if len(samples) == self._sample_pages:
                    break
        return samples

    def adopt_dictionary(self, pool: Pool, data: bytes) -> None:
        """Give a restored zstd pool its saved dictionary, charged as ``_train`` does."""
        with_dictionary = getattr(pool.codec, "with_dictionary", None)
        if with_dictionary is None:
            raise ValueError(f"pool {pool.pool_id}: codec {pool.codec_name!r} takes no dictionary")
        pool.codec = with_dictionary(data)
        pool.dictionary = DICT_TRAINED
        self.ledger.meta_bytes += self.dictionary_bytes + DICTIONARY_CONTEXT_BYTES

    def forget(self, pool: Pool) -> None:
        """Uncharge what a destroyed pool held beyond its pages."""
        if pool.dictionary == DICT_TRAINED:
            self.ledger.meta_bytes -= self.dictionary_bytes + DICTIONARY_CONTEXT_BYTES
            pool.dictionary = DICT_NONE

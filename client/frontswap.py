"""The frontswap role: a spill store that never loses a value.

Linux's frontswap offered each page on its way to the swap device to tmem
first; when tmem refused it (or was not there), the page simply went to the
swap device as before.  Nothing was ever lost, and the far memory only made
swapping cheaper.  ``SpillStore`` is that rule for data applications:

* a ``MutableMapping[str, bytes]`` over a persistent ``client.mapping()``
  (values of any size, all-or-nothing writes, docs/mapping.md);
* a write that tmemd refuses (``Refused``: its memory or this client's cap
  is full) or that cannot reach tmemd (connection errors, timeouts, a
  restarted daemon whose pools are gone) goes to a local ``fallback``
  directory instead, stored as ``zict.File`` stores it (one file a key);
* reads and deletes look where the key is; ``len()`` and iteration cover
  both places.

Where each key lives is kept in a local index (``key -> in tmemd?``), so
``in``, ``len()`` and iteration cost no round trip and a read goes to one
place.  A store opened on a name that already holds values (another process
of the same client, within the lease) starts its index from both places;
a key found in both is read from the fallback, the place a write goes when
tmemd failed it, so the newer copy.

When a key moves from tmemd to the fallback (tmemd refused its new value),
the old copy in tmemd is stale: it is deleted at once, or, if tmemd cannot
be reached, remembered and deleted at the next write that reaches tmemd.
The index never points at it meanwhile, so it is never read.

Composing with zict and dask: ``zict.Buffer(fast=dict, slow=zict.Func(dumps,
loads, SpillStore(...)), n=...)`` is the classic spill buffer; for dask
distributed workers, ``tmem.client.dask_spill`` builds one that a worker
takes through its ``data=`` argument (docs/frontswap.md).

The counters (``stats()``) say how many bytes went where, so an operator
sees how much spilling far memory absorbed; tmemd's own metrics count the
same writes on the daemon's side.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import zict

from ._errors import BadPool, Refused, TmemError

__all__ = ["SpillCounters", "SpillStore"]

log = logging.getLogger("tmem.client.frontswap")


class MappingSource(Protocol):
    """What ``SpillStore`` needs of a client: a named persistent mapping."""

    def mapping(self, name: str, *, persistent: bool = True) -> MutableMapping[Any, bytes]: ...


@dataclass
class SpillCounters:
    """Where the writes went, and why some did not go to tmemd."""

    #: Values written to tmemd, and their bytes.
    far_writes: int = 0
    far_bytes: int = 0
    #: Values written to the fallback directory, and their bytes.
    fallback_writes: int = 0
    fallback_bytes: int = 0
    #: Why a write went to the fallback: tmemd said no, or could not be reached.
    refused: int = 0
    unreachable: int = 0
    #: Reads served from each place.
    far_reads: int = 0
    fallback_reads: int = 0
    #: Stale tmemd copies still to delete (tmemd was unreachable when they went stale).
    stale_pending: int = 0


class SpillStore(MutableMapping[str, bytes]):
    """Spill values to tmemd; what tmemd cannot take goes to ``fallback``.

    ``client`` is a ``tmem.client.Client`` (or anything with its
    ``mapping()``); ``name`` names the persistent mapping in tmemd (a
    second process of the same client name reattaches to it by name);
    ``fallback`` is a local directory, created if missing.  Safe to share
    between threads: one lock serialises the store's bookkeeping.
    """

    def __init__(self, client: MappingSource, name: str, fallback: str | Path) -> None:
        self.name = name
        self.fallback_path = Path(fallback)
        self.fallback_path.mkdir(parents=True, exist_ok=True)
        self._client = client
        self._far: MutableMapping[Any, bytes] | None = None
        self._file = zict.File(str(self.fallback_path))
        self._counters = SpillCounters()
        self._lock = threading.RLock()
        #: key -> True when its value is in tmemd, False when in the fallback.
        self._where: dict[str, bool] = {}
        #: Keys whose tmemd copy is stale and must go when tmemd answers again.
        self._stale: set[str] = set()
        self._index_existing()

    def _open_far(self) -> MutableMapping[Any, bytes]:
        """The tmemd mapping, opened on first use and again after its pool went.

        Raises ``TmemError`` when tmemd cannot be reached, so a store made
        while tmemd is down works (on its fallback) and uses tmemd once it
        is back.
        """
        if self._far is None:
            self._far = self._client.mapping(self.name, persistent=True)
        return self._far

    def _index_existing(self) -> None:
        try:
            far_keys = list(self._open_far().keys())
        except TmemError as exc:
            log.debug("spill store %s: cannot list tmemd's keys: %s", self.name, exc)
            far_keys = []
        for key in far_keys:
            if isinstance(key, str):
                self._where[key] = True
        for key in self._file:
            self._where[key] = False

    # --- the mapping ----------------------------------------------------------

    def __setitem__(self, key: str, value: bytes) -> None:
        if not isinstance(key, str):
            raise TypeError(f"SpillStore keys are str, not {type(key).__name__}")
        with self._lock:
            self._sweep_stale()
            if self._write_far(key, value):
                if self._where.get(key) is False:
                    del self._file[key]
                self._where[key] = True
                return
            self._file[key] = value
            self._counters.fallback_writes += 1
            self._counters.fallback_bytes += len(value)
            if self._where.get(key) is True:
                self._forget_far(key)
            self._where[key] = False

    def _write_far(self, key: str, value: bytes) -> bool:
        try:
            self._open_far()[key] = value
        except Refused as exc:
            self._counters.refused += 1
            log.debug("spill store %s: tmemd refused %r: %s", self.name, key, exc)
            return False
        except BadPool as exc:
            # The pool is gone (a restarted daemon, an ended lease): its values
            # went with it; open the mapping afresh for the next write.
            self._far = None
            self._counters.unreachable += 1
            log.debug("spill store %s: tmemd's pool is gone: %s", self.name, exc)
            return False
        except TmemError as exc:
            self._counters.unreachable += 1
            log.debug("spill store %s: tmemd unreachable for %r: %s", self.name, key, exc)
            return False
        self._counters.far_writes += 1
        self._counters.far_bytes += len(value)
        return True

    def __getitem__(self, key: str) -> bytes:
        with self._lock:
            where = self._where.get(key)
            if where is None:
                raise KeyError(key)
            if where:
                self._counters.far_reads += 1
                return self._open_far()[key]
            self._counters.fallback_reads += 1
            return bytes(self._file[key])

    def __delitem__(self, key: str) -> None:
        with self._lock:
            where = self._where.pop(key)
            if where:
                self._forget_far(key)
            else:
                del self._file[key]

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._where))

    def __len__(self) -> int:
        return len(self._where)

    # --- stale copies ---------------------------------------------------------

    def _drop_far(self, key: str) -> None:
        # ``del``, not ``pop``: MutableMapping.pop would read the value first.
        try:
            del self._open_far()[key]
        except KeyError:
            pass
        except BadPool:
            self._far = None  # the pool, and the copy with it, is gone already

    def _forget_far(self, key: str) -> None:
        """Delete ``key``'s tmemd copy now, or as soon as tmemd answers."""
        try:
            self._drop_far(key)
        except TmemError as exc:
            log.debug("spill store %s: stale %r kept for later: %s", self.name, key, exc)
            self._stale.add(key)

    def _sweep_stale(self) -> None:
        for key in list(self._stale):
            if self._where.get(key) is True:
                self._stale.discard(key)  # rewritten to tmemd since: not stale
                continue
            try:
                self._drop_far(key)
            except TmemError:
                return  # still unreachable: try again on the next write
            self._stale.discard(key)

    # --- reporting and life cycle ---------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters, plus how many keys each place holds now."""
        with self._lock:
            out = asdict(self._counters)
            out["stale_pending"] = len(self._stale)
            out["far_keys"] = sum(self._where.values())
            out["fallback_keys"] = len(self._where) - out["far_keys"]
            return out

    def clear(self) -> None:
        """Drop every value, in both places (without reading any back)."""
        with self._lock:
            for key in list(self._where):
                del self[key]

    def close(self) -> None:
        """Nothing to release: values stay where they are (``clear()`` drops them)."""

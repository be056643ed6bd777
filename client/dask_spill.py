"""A dask worker whose spill goes to tmemd: ``Worker(data=...)``.

A dask worker keeps task results in ``worker.data``, a ``MutableMapping``
that is by default ``distributed.spill.SpillBuffer``: a ``zict.Buffer``
whose fast side is a dict and whose slow side pickles values into files.
The worker takes any other mapping through its ``data=`` argument, given as
``(factory, kwargs)`` so that it travels to worker processes (a Nanny pickles
it).  ``worker_data`` is such a factory:

    LocalCluster(memory_limit="2GiB", data=(worker_data,
                 {"server": "127.0.0.1:7470", "target": "1GiB"}))

It builds a ``TmemSpillBuffer``: the same ``zict.Buffer`` composition, with a
``SpillStore`` (tmemd, falling back to the worker's local directory) as the
slow side, values serialised as dask serialises its spill files.  Two
spilling paths of the worker reach it, as they reach dask's own buffer:

* ``target``: the buffer moves its least recently used values to the slow
  side once the values it holds pass ``target`` bytes (dask's ``sizeof``),
  as dask's ``distributed.worker.memory.target`` fraction does;
* the memory monitor: when the worker process passes the ``spill`` fraction
  of its memory limit, the worker calls ``evict()`` until it is back below.

Each worker gets a fresh mapping of its own (a worker's data must start
empty); closing the worker drops the mapping's values, in tmemd and on disk.
``spilled_total`` reports (sizeof, bytes) of what is spilled, which the
worker shows in its metrics as it does for its own spill files.

This module imports ``distributed`` when a buffer is built, not before, so
that ``tmem.client`` does not depend on dask.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Hashable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import zict

from ._sync import Client
from .frontswap import SpillStore

__all__ = ["TmemSpillBuffer", "worker_data"]

log = logging.getLogger("tmem.client.dask_spill")


class _TaggedKeys(MutableMapping[Hashable, bytes]):
    """Any dask key over a ``SpillStore``'s str keys.

    dask keys are str or tuples of str and ints; the store takes str.
    ``"s:" + key`` and ``"r:" + repr(key)`` keep the two kinds apart (a
    str key may well look like a tuple's repr), and the original key is
    kept for iteration.  Sizes are kept per key for ``spilled_total``.
    """

    def __init__(self, store: SpillStore) -> None:
        self.store = store
        self._keys: dict[str, Hashable] = {}
        self.sizes: dict[Hashable, int] = {}

    @staticmethod
    def _tag(key: Hashable) -> str:
        return "s:" + key if isinstance(key, str) else "r:" + repr(key)

    def __setitem__(self, key: Hashable, value: bytes) -> None:
        tagged = self._tag(key)
        self.store[tagged] = value
        self._keys[tagged] = key
        self.sizes[key] = len(value)

    def __getitem__(self, key: Hashable) -> bytes:
        return self.store[self._tag(key)]

    def __delitem__(self, key: Hashable) -> None:
        tagged = self._tag(key)
        del self.store[tagged]
        del self._keys[tagged]
        self.sizes.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, Hashable) and self._tag(key) in self._keys

    def __iter__(self) -> Iterator[Hashable]:
        return iter(list(self._keys.values()))

    def __len__(self) -> int:
        return len(self._keys)

    def close(self) -> None:
        self.store.clear()
        self._keys.clear()
        self.sizes.clear()


class TmemSpillBuffer(zict.Buffer[Hashable, Any]):
    """A worker's data: a dict in memory, spilling to a ``SpillStore``.

    ``evict()`` is the hook dask's memory monitor calls (it returns the
    evicted value's weight, or -1 when nothing could be evicted), as on
    dask's own ``SpillBuffer``.
    """

    def __init__(
        self,
        store: SpillStore,
        target: int,
        dumps: Callable[[Any], bytes],
        loads: Callable[[bytes], Any],
        weight: Callable[[Hashable, Any], float],
    ) -> None:
        self.store = store
        self._tagged = _TaggedKeys(store)
        self._spilled_weight: dict[Hashable, float] = {}
        super().__init__(
            fast={},
            slow=zict.Func(dumps, loads, self._tagged),
            n=target,
            weight=weight,
            fast_to_slow_callbacks=[self._on_spill],
            slow_to_fast_callbacks=[self._on_unspill],
        )

    def _on_spill(self, key: Hashable, value: Any) -> None:
        self._spilled_weight[key] = self.weight(key, value)

    def _on_unspill(self, key: Hashable, value: Any) -> None:
        self._spilled_weight.pop(key, None)

    def __delitem__(self, key: Hashable) -> None:
        super().__delitem__(key)
        self._spilled_weight.pop(key, None)

    def evict(self) -> int:
        """Spill the least recently used value; its weight, or -1 if none was."""
        try:
            _, _, weight = self.fast.evict()
        except KeyError:
            return -1  # nothing in memory to evict
        except Exception:
            log.exception("spilling a value to tmemd failed; it stays in memory")
            return -1
        return int(weight)

    @property
    def spilled_total(self) -> tuple[int, int]:
        """(sizeof, serialised bytes) of the spilled values, as dask reports it."""
        return int(sum(self._spilled_weight.values())), sum(self._tagged.sizes.values())


def worker_data(
    *,
    server: str | list[str],
    target: int | str,
    client_name: str | None = None,
    token: str | None = None,
    name: str | None = None,
    fallback: str | None = None,
    timeout: float = 5.0,
    worker_local_directory: str | None = None,
) -> TmemSpillBuffer:
    """A dask worker's ``data`` mapping spilling to tmemd at ``server``
    (``"host:port"``, a list of them or ``"dns:NAME:PORT"``: several servers,
    docs/multi-server.md).

    ``target`` (bytes, or a size such as ``"1GiB"``) is how much the worker
    keeps in memory before it spills; ``fallback`` defaults to a folder in
    the worker's local directory; ``name`` (the tmemd mapping) defaults to
    a fresh one per worker.
    """
    from dask.sizeof import sizeof
    from dask.utils import parse_bytes
    from distributed.protocol.serialize import deserialize_bytes, serialize_bytelist

    def dumps(value: Any) -> bytes:
        return b"".join(serialize_bytelist(value, on_error="raise"))

    def weight(key: Hashable, value: Any) -> float:
        return float(sizeof(value))

    target_bytes = parse_bytes(target) if isinstance(target, str) else int(target)
    name = name or f"dask-spill-{uuid.uuid4().hex[:16]}"
    if fallback is None:
        base = Path(worker_local_directory) if worker_local_directory else Path.cwd()
        fallback = str(base / "tmem-fallback" / name)
    client = Client(server, client_name=client_name, token=token, timeout=timeout)
    store = SpillStore(client, name, fallback)
    log.info("worker data spills to tmemd %s (mapping %s), fallback %s", server, name, fallback)
    return TmemSpillBuffer(store, target_bytes, dumps, deserialize_bytes, weight)

"""A page cache that never fails: the tmem side of the ``tmem::`` layer.

``PageCache`` gets and puts whole blocks in one ephemeral pool through the
public ``Client``/``Pool`` API, and turns every way that can go wrong into
a counted, logged non-event, because a cache must never fail or change a
read (the caller then reads the source):

* a miss is ``None``; a put the daemon refuses is counted in ``refusals``;
* any ``TmemError`` or ``OSError`` (daemon down, stopped, restarted, a pool
  gone, too many pools) is counted in ``errors``, logged at debug, and sets
  the cache aside for ``RETRY_AFTER_S``: while aside, gets miss at once
  (counted in ``bypassed``) and puts are dropped, so a dead daemon costs
  one short timeout per ``RETRY_AFTER_S``, not one per read;
* a page of the wrong length (a pool that is not what we asked for) is a
  miss and an error, never data.

Puts are stored behind the reader: ``put`` hands the batch to one worker
thread and returns, so that a first read costs the source's time, not the
source's plus the daemon's (the batch is stored while the reader parses
or fetches its next range).  At most ``PUTS_BEHIND_BATCHES`` batches wait;
past that a reader waits for room, which bounds the memory they hold.
``drain()`` waits until every batch handed over is stored (``stats()`` of
the filesystem does, so that its counts are complete); a reader that comes
back to a block before its batch is stored misses and reads the source,
which is slower and as correct.

The pool is made lazily by the first call (so building a filesystem never
waits for a daemon), private or shared by UUID.  After ``BadPool`` (the
daemon restarted, or our lease ended) it is made again on the next try;
after a connection error the same pool is used again, since pools outlive
a connection for the client's lease.

A ``Client`` is not thread-safe, and fsspec filesystems are used from many
threads (pyarrow reads column chunks in parallel), so every use of the
client holds ``_lock``; reads of the source happen outside it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Protocol, TypeVar

from ._errors import BadPool, TmemError
from ._pool import Pool

__all__ = ["PUTS_BEHIND_BATCHES", "RETRY_AFTER_S", "CacheStats", "PageCache", "PoolMaker"]

T = TypeVar("T")

log = logging.getLogger("tmem.client.cleancache")

#: After an error the cache is set aside this long: a dead or stopped
#: daemon then costs one timeout per 5 s of reading, not one per read.
RETRY_AFTER_S = 5.0
#: Put batches that may wait for the worker: enough to overlap storing one
#: read's blocks with the next reads of pyarrow's parallel column chunks;
#: each holds one read's blocks, so few.
PUTS_BEHIND_BATCHES = 4


class PoolMaker(Protocol):
    """What the cache needs of a client: ``Client``, or ``testing.FakeClient``."""

    def new_pool(self, *, shared_uuid: uuid.UUID | None, page_size: int) -> Pool: ...


@dataclass
class CacheStats:
    """Counts of blocks (pages), except ``errors`` which counts failed calls.

    ``bypassed`` blocks were not looked up: the cache was set aside after
    an error, or the call that would have looked them up failed.
    """

    hits: int = 0
    misses: int = 0
    stored: int = 0
    refusals: int = 0
    errors: int = 0
    bypassed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class PageCache:
    """Whole pages of one ephemeral pool, keyed by (object id, block index)."""

    def __init__(
        self,
        client: PoolMaker,
        page_size: int,
        shared_uuid: uuid.UUID | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.page_size = page_size
        self.shared_uuid = shared_uuid
        self.stats = CacheStats()
        self._clock = clock
        self._pool: Pool | None = None
        self._aside_until = 0.0
        self._lock = threading.Lock()
        self._putter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tmem-put")
        self._room = threading.BoundedSemaphore(PUTS_BEHIND_BATCHES)
        self._pending: set[Future[None]] = set()

    def get(self, object_id: int, indexes: Sequence[int]) -> list[bytes | None]:
        """The cached pages at ``indexes`` (None where missing); never raises."""
        with self._lock:
            pages = self._call(
                lambda pool: pool.get_many([(object_id, i) for i in indexes], exclusive=False)
            )
            if pages is None:
                self.stats.bypassed += len(indexes)
                return [None] * len(indexes)
            out: list[bytes | None] = []
            for page in pages:
                if page is not None and len(page) != self.page_size:
                    self.stats.errors += 1
                    log.debug("tmem:: %d-byte page in a %d-byte pool", len(page), self.page_size)
                    page = None
                out.append(page)
            hits = sum(page is not None for page in out)
            self.stats.hits += hits
            self.stats.misses += len(out) - hits
        return out

    def put(self, object_id: int, pages: Sequence[tuple[int, bytes | memoryview]]) -> None:
        """Hand (index, page) pairs to the worker, to be stored in one batch."""
        if not pages:
            return
        self._room.acquire()
        future = self._putter.submit(self._store, object_id, list(pages))
        self._pending.add(future)
        future.add_done_callback(self._stored)

    def drain(self) -> None:
        """Wait until every batch handed to ``put`` is stored (or refused)."""
        wait(list(self._pending))

    def _stored(self, future: Future[None]) -> None:
        self._pending.discard(future)
        self._room.release()

    def _store(self, object_id: int, pages: list[tuple[int, bytes | memoryview]]) -> None:
        with self._lock:
            stored = self._call(
                lambda pool: pool.put_many([(object_id, i, page) for i, page in pages])
            )
            if stored is not None:
                kept = sum(stored)
                self.stats.stored += kept
                self.stats.refusals += len(stored) - kept

    def _call(self, operation: Callable[[Pool], T]) -> T | None:
        """``operation`` on the pool, or None (counted) when it cannot be done."""
        if self._clock() < self._aside_until:
            return None
        try:
            if self._pool is None:
                self._pool = self._new_pool()
            return operation(self._pool)
        except (TmemError, OSError) as exc:
            if isinstance(exc, BadPool):
                self._pool = None
            self.stats.errors += 1
            self._aside_until = self._clock() + RETRY_AFTER_S
            log.debug("tmem:: cache set aside for %.0f s: %r", RETRY_AFTER_S, exc)
            return None

    def _new_pool(self) -> Pool:
        return self.client.new_pool(shared_uuid=self.shared_uuid, page_size=self.page_size)

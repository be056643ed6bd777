"""One driver interface over the three systems, so one load loop measures all.

A driver is one connection used by one load thread.  Keys are integers in
the thread's own key space; each driver maps them to its system's keys:

* **tmemd** (``tmem.client``): key ``k`` of thread ``t`` is object
  ``(t << 40) + (k >> 10) + 1``, index ``k & 1023``, so objects hold 1024
  pages, as a file or a swap area would, and object ``j`` of the
  flush_object workload is keys ``j << 10 ...``.  Gets ask for a
  non-exclusive get (``exclusive=False``): a private ephemeral pool would
  otherwise hand the page over and forget it, so "get hits" would measure
  get-and-free and the store would empty under the load.  The peers' gets
  keep the value too, so all three do the same work.
* **memcached** (pymemcache): key ``b"t:k"``; depth 1 is ``set``/``get``
  with ``noreply=False`` (a put waits for STORED, as a tmem put waits for
  its reply); a batch is ``set_many``/``get_many``; a flush is
  ``delete_many`` of the object's keys (one round trip).
* **redis** (redis-py with hiredis): key ``b"t:k"``; depth 1 is
  ``SET``/``GET``; a batch is a non-transactional pipeline; a flush is one
  ``DEL`` of the object's keys.

Every method returns what the load loop counts: puts how many pages were
stored, gets the values (None for a miss), in key order.

The client libraries are imported by the harness before it forks the load
processes (the peers' by ``_runner.available_systems``), so every case of a
run uses the same client code and no fork pays for an import.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import cast

from tmem.client import Client as TmemClient

from ._config import PAGES_PER_OBJECT, Case

__all__ = ["CALL_TIMEOUT_S", "OBJECT_SHIFT", "Driver", "make_driver", "object_keys"]

#: Keys per object in the key space: 2**10, so an object is ``k >> 10``.
OBJECT_SHIFT = 10
#: Keys per object in a several-server case: 2**3 (PAGES_PER_OBJECT), so a
#: batch of 64 pages spans 8 objects and spreads over the servers, as a
#: cache of many small files would.
CLUSTER_OBJECT_SHIFT = 3
#: Socket timeout of every driver: far above any sane reply time, so only
#: a hung server trips it (and the case then reports the error).
CALL_TIMEOUT_S = 30.0


def object_keys(obj: int) -> list[int]:
    """The keys of object ``obj`` in the flush_object workload."""
    base = obj << OBJECT_SHIFT
    return [base + i for i in range(PAGES_PER_OBJECT)]


class Driver(ABC):
    """One connection to one system, used by one thread."""

    def __init__(
        self, host: str, port: int, thread: int, case: Case, addresses: Sequence[str] = ()
    ) -> None:
        self.host, self.port, self.thread, self.case = host, port, thread, case
        #: Every daemon of a several-server case (``Case.servers``).
        self.addresses = list(addresses)

    @abstractmethod
    def connect(self) -> None:
        """Open the connection (and, for tmemd, create the pool)."""

    @abstractmethod
    def put(self, key: int, page: bytes) -> bool: ...

    @abstractmethod
    def get(self, key: int) -> bytes | None: ...

    @abstractmethod
    def put_many(self, keys: Sequence[int], pages: Sequence[bytes]) -> int:
        """Pipelined puts; returns how many were stored."""

    @abstractmethod
    def get_many(self, keys: Sequence[int]) -> list[bytes | None]: ...

    @abstractmethod
    def flush_object(self, obj: int) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class TmemDriver(Driver):
    def connect(self) -> None:
        address = self.addresses if self.case.servers else (self.host, self.port)
        self._client = TmemClient(
            address, client_name=f"bench-{self.thread}", timeout=CALL_TIMEOUT_S
        )
        pre = self.case.pool == "precompressed"
        self._pool = self._client.new_pool(
            persistent=self.case.pool == "persistent",
            codec=None if pre else self.case.codec,
            precompressed=pre,
            replicas=self.case.replicas,
        )
        self._base = (self.thread << 40) + 1
        self._shift = CLUSTER_OBJECT_SHIFT if self.case.servers else OBJECT_SHIFT

    def _handle(self, key: int) -> tuple[int, int]:
        return self._base + (key >> self._shift), key & ((1 << self._shift) - 1)

    def put(self, key: int, page: bytes) -> bool:
        oid, idx = self._handle(key)
        return self._pool.put(oid, idx, page)

    def get(self, key: int) -> bytes | None:
        oid, idx = self._handle(key)
        return self._pool.get(oid, idx, exclusive=False)

    def put_many(self, keys: Sequence[int], pages: Sequence[bytes]) -> int:
        handle = self._handle
        items = [(*handle(key), page) for key, page in zip(keys, pages, strict=True)]
        return sum(self._pool.put_many(items))

    def get_many(self, keys: Sequence[int]) -> list[bytes | None]:
        return self._pool.get_many([self._handle(key) for key in keys], exclusive=False)

    def flush_object(self, obj: int) -> None:
        self._pool.flush_object(self._handle(obj << OBJECT_SHIFT)[0])

    def close(self) -> None:
        self._client.close()


class MemcachedDriver(Driver):
    def connect(self) -> None:
        from pymemcache.client.base import Client  # type: ignore[import-untyped]

        self._client = Client(
            (self.host, self.port),
            connect_timeout=CALL_TIMEOUT_S,
            timeout=CALL_TIMEOUT_S,
            no_delay=True,
        )
        self._prefix = b"%d:" % self.thread

    def put(self, key: int, page: bytes) -> bool:
        return bool(self._client.set(self._prefix + b"%d" % key, page, noreply=False))

    def get(self, key: int) -> bytes | None:
        value: bytes | None = self._client.get(self._prefix + b"%d" % key)
        return value

    def put_many(self, keys: Sequence[int], pages: Sequence[bytes]) -> int:
        prefix = self._prefix
        values = {prefix + b"%d" % key: page for key, page in zip(keys, pages, strict=True)}
        failed = self._client.set_many(values, noreply=False)
        return len(values) - len(failed)

    def get_many(self, keys: Sequence[int]) -> list[bytes | None]:
        names = [self._prefix + b"%d" % key for key in keys]
        found = self._client.get_many(names)
        return [found.get(name) for name in names]

    def flush_object(self, obj: int) -> None:
        names = [self._prefix + b"%d" % key for key in object_keys(obj)]
        self._client.delete_many(names, noreply=False)

    def close(self) -> None:
        self._client.close()


class RedisDriver(Driver):
    def connect(self) -> None:
        import redis

        self._client = redis.Redis(
            host=self.host,
            port=self.port,
            socket_timeout=CALL_TIMEOUT_S,
            socket_connect_timeout=CALL_TIMEOUT_S,
        )
        self._client.ping()
        self._prefix = b"%d:" % self.thread

    def put(self, key: int, page: bytes) -> bool:
        return bool(self._client.set(self._prefix + b"%d" % key, page))

    def get(self, key: int) -> bytes | None:
        # decode_responses is off, so a value is bytes (redis-py types it wider).
        return cast("bytes | None", self._client.get(self._prefix + b"%d" % key))

    def put_many(self, keys: Sequence[int], pages: Sequence[bytes]) -> int:
        pipe = self._client.pipeline(transaction=False)
        prefix = self._prefix
        for key, page in zip(keys, pages, strict=True):
            pipe.set(prefix + b"%d" % key, page)
        return sum(1 for ok in pipe.execute(raise_on_error=False) if ok is True)

    def get_many(self, keys: Sequence[int]) -> list[bytes | None]:
        pipe = self._client.pipeline(transaction=False)
        prefix = self._prefix
        for key in keys:
            pipe.get(prefix + b"%d" % key)
        return list(pipe.execute())

    def flush_object(self, obj: int) -> None:
        self._client.delete(*[self._prefix + b"%d" % key for key in object_keys(obj)])

    def close(self) -> None:
        self._client.close()


_DRIVERS: dict[str, type[Driver]] = {
    "tmemd": TmemDriver,
    "memcached": MemcachedDriver,
    "redis": RedisDriver,
}


def make_driver(
    host: str, port: int, thread: int, case: Case, addresses: Sequence[str] = ()
) -> Driver:
    """The driver for ``case.system`` (not yet connected); ``addresses``:
    every daemon of a several-server case."""
    return _DRIVERS[case.system](host, port, thread, case, addresses)

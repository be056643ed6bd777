"""The asyncio client's several-server half: the same plans over one ``AsyncClient`` per server.

As ``_cluster_sync`` (read that first): one single-server ``AsyncClient``
per server, the ``ServerSet`` and ``PoolTable`` of ``_cluster``, and the
plans of ``_cluster_plans``.  A round's per-server steps run concurrently
with ``asyncio.gather``; a ``dns:`` address is resolved in a worker thread
(``asyncio.to_thread``), since a resolver may block.  A per-server pool is
made under an ``asyncio.Lock`` of its cluster pool, so two tasks that need
it at once make it once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from tmem.proto import RefuseReason

from ._cluster import (
    DEFAULT_LIST_COUNT,
    ClusterPool,
    PoolTable,
    ServerSet,
    check_replicas,
    new_pool_args,
)
from ._cluster_batches import BatchPlanner
from ._cluster_plans import (
    Failed,
    Plan,
    Step,
    by_server,
    call_step,
    check_answered,
    scatter,
)
from ._errors import BadPool, PoolGone, TmemConnectionError, TmemError
from ._pool import AsyncPool, Handle, PutItem
from ._spec import Page, PoolInfo, pool_spec

if TYPE_CHECKING:
    from ._async import AsyncClient

__all__ = ["AsyncCluster"]

T = TypeVar("T")

#: One step for the asyncio driver: a coroutine call on one server's client.
AsyncServerCall = Callable[["AsyncClient", PoolInfo], Awaitable[Any]]


class AsyncCluster:
    """The several-server state and calls of one ``AsyncClient``."""

    def __init__(
        self, servers: ServerSet, make_client: Callable[[str], AsyncClient], raise_on_dead: bool
    ) -> None:
        self.servers = servers
        self.raise_on_dead = raise_on_dead
        self.pools = PoolTable()
        self._make_client = make_client
        self._clients: dict[str, AsyncClient] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._planners: dict[int, BatchPlanner] = {}

    # --- servers ----------------------------------------------------------------

    async def live_servers(self) -> list[str]:
        """The current servers not marked dead (resolving DNS first when due)."""
        if self.servers.resolve_due():
            await asyncio.to_thread(self.servers.resolve_now)
        return [s for s in self.servers.servers if self.servers.live(s)]

    def client(self, server: str) -> AsyncClient:
        """The single-server client of ``server``."""
        client = self._clients.get(server)
        if client is None:
            client = self._clients[server] = self._make_client(server)
        return client

    def clients(self) -> dict[str, AsyncClient]:
        """Every single-server client made so far."""
        return dict(self._clients)

    async def close(self) -> None:
        """Close every server's connection (the client may be used again)."""
        await asyncio.gather(*(c.close() for c in self.clients().values()))

    async def fan_out(
        self, servers: Sequence[str], call: Callable[[str], Awaitable[T]]
    ) -> list[T | Failed]:
        """``call`` on each server, concurrently; a failed server is marked
        dead and its result is ``Failed``."""

        async def guarded(server: str) -> T | Failed:
            try:
                return await call(server)
            except (TmemConnectionError, OSError) as exc:
                self.servers.mark_dead(server)
                return Failed(server, exc)

        if len(servers) == 1:
            return [await guarded(servers[0])]
        return list(await asyncio.gather(*(guarded(s) for s in servers)))

    # --- per-server pools ---------------------------------------------------------

    async def _create(self, pool: ClusterPool, client: AsyncClient) -> PoolInfo:
        if pool.name is None:
            return (await client.new_pool(**new_pool_args(pool))).info
        reply = await client.control("open_pool", name=pool.name, flags=pool.flags)
        return (await client.pool(int(reply["pool_id"]))).info

    async def server_pool(self, pool: ClusterPool, server: str) -> PoolInfo:
        """``pool``'s part on ``server``, made now if it has none usable."""
        generation = self.servers.generation(server)
        info = pool.current(server, generation)
        if info is not None:
            return info
        client = self.client(server)
        lock = self._locks.setdefault(pool.info.pool_id, asyncio.Lock())
        async with lock:
            info = pool.current(server, generation)
            if info is not None:
                return info
            old = pool.per_server.pop(server, None)
            if old is not None:  # made before the server's death: drop it
                with contextlib.suppress(TmemError):
                    await client._pool_destroy(old[0])
            info = await self._create(pool, client)
            pool.per_server[server] = (info, generation)
            return info

    async def on_server(self, pool: ClusterPool, server: str, call: AsyncServerCall) -> Any:
        """``call`` with ``pool``'s part on ``server``; a pool the server lost
        (restart, lease) is made afresh once when ``pool.droppable``."""
        client = self.client(server)
        for attempt in range(2):
            info = await self.server_pool(pool, server)
            try:
                return await call(client, info)
            except BadPool as exc:
                if pool.per_server.get(server, (None,))[0] is info:
                    del pool.per_server[server]
                if attempt or not pool.droppable:
                    raise PoolGone(exc.status, f"on {server}: {exc.message}") from exc
        raise AssertionError("unreachable")

    async def _round(self, pool: ClusterPool, steps: list[Step]) -> list[Any]:
        groups = by_server(steps)

        async def run(server: str) -> list[Any]:
            calls = [partial(call_step, step=steps[i]) for i in groups[server]]
            return [await self.on_server(pool, server, call) for call in calls]

        return scatter(len(steps), groups, await self.fan_out(list(groups), run))

    async def drive(self, pool: ClusterPool, plan: Plan[T]) -> T:
        """Run ``plan`` round by round."""
        try:
            steps = next(plan)
            while True:
                steps = plan.send(await self._round(pool, steps))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def planner(self, info: PoolInfo) -> tuple[ClusterPool, BatchPlanner]:
        """The pool of ``info`` and its planner (kept, as ``SyncCluster.planner``)."""
        if self.servers.resolve_due():
            await self.live_servers()
        pool = self.pools.get(info.pool_id)
        planner = self._planners.get(info.pool_id)
        if planner is None or planner.pool is not pool:
            planner = self._planners[info.pool_id] = BatchPlanner(
                self.servers, pool, self.raise_on_dead
            )
        return pool, planner

    # --- pools --------------------------------------------------------------------

    async def make_pool(self, pool: ClusterPool) -> AsyncPool:
        """Make ``pool``'s part on every live server now; its ``AsyncPool``."""
        live = await self.live_servers()
        results = await self.fan_out(live, lambda s: self.server_pool(pool, s))
        if all(isinstance(r, Failed) for r in results):
            self.pools.remove(pool)
            check_answered(results, "to make the pool")
        return AsyncPool(self, pool.info)

    async def new_pool(self, replicas: int, **kwargs: Any) -> AsyncPool:
        """``AsyncClient.new_pool`` over every server."""
        spec, uuid_value = pool_spec(**kwargs)
        check_replicas(replicas, spec.persistent)
        return await self.make_pool(self.pools.add(spec, uuid_value, replicas))

    async def control(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        """CONTROL over every server, as ``SyncCluster.control``."""
        if cmd == "open_pool":
            pool = self.pools.open(args)
            return {"pool_id": (await self.make_pool(pool)).pool_id}
        if cmd == "list_objects":
            return await self._list_objects(args)
        live = await self.live_servers()
        results = await self.fan_out(live, lambda s: self.client(s).control(cmd, **args))
        check_answered(results, repr(cmd))
        replies = zip(live, results, strict=True)
        return {"servers": {s: r for s, r in replies if not isinstance(r, Failed)}}

    async def control_each(self, call: Callable[[AsyncClient], Awaitable[object]]) -> None:
        """``call`` on every live server's client (``ServerDead`` if all fail)."""
        live = await self.live_servers()
        check_answered(await self.fan_out(live, lambda s: call(self.client(s))), "")

    async def _list_objects(self, args: dict[str, Any]) -> dict[str, Any]:
        pool = self.pools.get(int(args["pool_id"]))
        planner = BatchPlanner(self.servers, pool, self.raise_on_dead)
        cursor, count = int(args.get("cursor", 0)), int(args.get("count", DEFAULT_LIST_COUNT))
        return await self.drive(pool, planner.list_objects(cursor, count))

    # --- AsyncPoolBackend hooks (used by the cluster's AsyncPool objects) ---------

    async def _pool_put(
        self, info: PoolInfo, object_id: int, index: int, page: Page
    ) -> RefuseReason | None:
        pool, planner = await self.planner(info)
        return await self.drive(pool, planner.put(object_id, index, page))

    async def _pool_get(
        self, info: PoolInfo, object_id: int, index: int, exclusive: bool | None
    ) -> bytes | None:
        pool, planner = await self.planner(info)
        return await self.drive(pool, planner.get(object_id, index, exclusive))

    async def _pool_put_many(
        self, info: PoolInfo, items: Sequence[PutItem]
    ) -> list[RefuseReason | None]:
        pool, planner = await self.planner(info)
        return await self.drive(pool, planner.put_many(items)) if items else []

    async def _pool_get_many(
        self, info: PoolInfo, items: Sequence[Handle], exclusive: bool | None
    ) -> list[bytes | None]:
        pool, planner = await self.planner(info)
        return await self.drive(pool, planner.get_many(items, exclusive)) if items else []

    async def _pool_flush(self, info: PoolInfo, object_id: int, index: int) -> bool:
        pool, planner = await self.planner(info)
        return await self.drive(pool, planner.flush(object_id, index))

    async def _pool_flush_object(self, info: PoolInfo, object_id: int) -> int:
        pool, planner = await self.planner(info)
        return await self.drive(pool, planner.flush_object(object_id))

    async def _pool_destroy(self, info: PoolInfo) -> None:
        pool = self.pools.get(info.pool_id)
        servers = [s for s in pool.per_server if self.servers.live(s)]

        async def destroy(server: str) -> None:
            # BadPool: gone there already (a restart, the lease), nothing to free.
            with contextlib.suppress(BadPool):
                await self.client(server)._pool_destroy(pool.per_server[server][0])

        await self.fan_out(servers, destroy)
        self.pools.remove(pool)

    async def repair(self, info: PoolInfo, items: Sequence[Handle]) -> int:
        """Copies written back by a scrub of ``items`` (``BatchPlanner.repair``)."""
        pool, planner = await self.planner(info)
        return await self.drive(pool, planner.repair(items)) if items else 0

    def locate(self, info: PoolInfo, object_id: int) -> list[str]:
        """The servers that hold ``object_id`` of the pool now, first first."""
        pool = self.pools.get(info.pool_id)
        return BatchPlanner(self.servers, pool, self.raise_on_dead).holders(object_id)

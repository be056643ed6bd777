"""The blocking client's several-server half: plans run over one ``Client`` per server.

A ``Client`` given several addresses (or a ``dns:`` one) keeps a
``SyncCluster``: one single-server ``Client`` per server (each with its own
connection pool, retry policy and ``server_id`` checks, so a handle never
reaches a pool of another daemon instance), the ``ServerSet`` that ranks
and times out servers (``_cluster``), and the pools (``PoolTable``).  A
cluster pool's ``Pool`` object talks to this class through the usual
``_pool_*`` hooks; each hook runs a plan of ``_cluster_plans``.

Concurrency.  One round of a plan holds at most one step list per server;
when it touches several servers, the calling thread runs the first server's
steps and a thread of a small executor (at most ``MAX_FANOUT_THREADS``) each
other server's, so a batch split over three servers costs about one
server's time, not three.  A round on one server
runs in the calling thread, so a single put or get pays no thread hop.

Per-server pools are made eagerly on every live server when the pool is
made (so a missing permission or a full daemon shows at once), and lazily
on a server that was dead then, was added by DNS later, or came back after
being dead (then afresh, see ``_cluster``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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
from ._pool import Handle, Pool, PutItem
from ._spec import Page, PoolInfo, pool_spec

if TYPE_CHECKING:
    from ._sync import Client

__all__ = ["MAX_FANOUT_THREADS", "SyncCluster"]

T = TypeVar("T")

#: Threads that carry one round's per-server batches: one per server up to
#: 8; beyond that, rounds still finish, eight servers at a time.
MAX_FANOUT_THREADS = 8

#: What the blocking driver does for one step: a call on one server's client.
ServerCall = Callable[["Client", PoolInfo], Any]


class SyncCluster:
    """The several-server state and calls of one blocking ``Client``."""

    def __init__(
        self, servers: ServerSet, make_client: Callable[[str], Client], raise_on_dead: bool
    ) -> None:
        self.servers = servers
        self.raise_on_dead = raise_on_dead
        self.pools = PoolTable()
        self._make_client = make_client
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._planners: dict[int, BatchPlanner] = {}

    # --- servers ----------------------------------------------------------------

    def live_servers(self) -> list[str]:
        """The current servers not marked dead (resolving DNS first when due)."""
        if self.servers.resolve_due():
            with self._lock:
                if self.servers.resolve_due():
                    self.servers.resolve_now()
        return [s for s in self.servers.servers if self.servers.live(s)]

    def client(self, server: str) -> Client:
        """The single-server client of ``server``."""
        client = self._clients.get(server)
        if client is None:
            with self._lock:
                client = self._clients.get(server)
                if client is None:
                    client = self._clients[server] = self._make_client(server)
        return client

    def clients(self) -> dict[str, Client]:
        """Every single-server client made so far."""
        return dict(self._clients)

    def close(self) -> None:
        """Close every server's connections (the client may be used again)."""
        for client in self.clients().values():
            client.close()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def fan_out(self, servers: Sequence[str], call: Callable[[str], T]) -> list[T | Failed]:
        """``call`` on each server, concurrently; a failed server is marked
        dead and its result is ``Failed``."""

        def guarded(server: str) -> T | Failed:
            try:
                return call(server)
            except (TmemConnectionError, OSError) as exc:
                self.servers.mark_dead(server)
                return Failed(server, exc)

        if len(servers) <= 1:
            return [guarded(s) for s in servers]
        executor = self._executor
        if executor is None:
            with self._lock:
                executor = self._executor
                if executor is None:
                    executor = self._executor = ThreadPoolExecutor(
                        MAX_FANOUT_THREADS, thread_name_prefix="tmem-cluster"
                    )
        # The calling thread takes the first server itself: one thread
        # hand-off fewer per round (two servers: one instead of two).
        futures = [executor.submit(guarded, s) for s in servers[1:]]
        first = guarded(servers[0])
        return [first, *(future.result() for future in futures)]

    # --- per-server pools ---------------------------------------------------------

    def _create(self, pool: ClusterPool, client: Client) -> PoolInfo:
        if pool.name is None:
            return client.new_pool(**new_pool_args(pool)).info
        reply = client.control("open_pool", name=pool.name, flags=pool.flags)
        return client.pool(int(reply["pool_id"])).info

    def server_pool(self, pool: ClusterPool, server: str) -> PoolInfo:
        """``pool``'s part on ``server``, made now if it has none usable."""
        generation = self.servers.generation(server)
        info = pool.current(server, generation)
        if info is not None:
            return info
        client = self.client(server)
        with pool.lock:
            info = pool.current(server, generation)
            if info is not None:
                return info
            old = pool.per_server.pop(server, None)
            if old is not None:  # made before the server's death: drop it
                with contextlib.suppress(TmemError):
                    client._pool_destroy(old[0])
            info = self._create(pool, client)
            pool.per_server[server] = (info, generation)
            return info

    def on_server(self, pool: ClusterPool, server: str, call: ServerCall) -> Any:
        """``call`` with ``pool``'s part on ``server``; a pool the server lost
        (restart, lease) is made afresh once when ``pool.droppable``."""
        client = self.client(server)
        for attempt in range(2):
            info = self.server_pool(pool, server)
            try:
                return call(client, info)
            except BadPool as exc:
                with pool.lock:
                    if pool.per_server.get(server, (None,))[0] is info:
                        del pool.per_server[server]
                if attempt or not pool.droppable:
                    raise PoolGone(exc.status, f"on {server}: {exc.message}") from exc
        raise AssertionError("unreachable")

    def _round(self, pool: ClusterPool, steps: list[Step]) -> list[Any]:
        groups = by_server(steps)

        def run(server: str) -> list[Any]:
            calls = [partial(call_step, step=steps[i]) for i in groups[server]]
            return [self.on_server(pool, server, call) for call in calls]

        return scatter(len(steps), groups, self.fan_out(list(groups), run))

    def drive(self, pool: ClusterPool, plan: Plan[T]) -> T:
        """Run ``plan`` round by round."""
        try:
            steps = next(plan)
            while True:
                steps = plan.send(self._round(pool, steps))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def planner(self, info: PoolInfo) -> tuple[ClusterPool, BatchPlanner]:
        """The pool of ``info`` and its planner (kept: a planner holds no
        state of its own, and making one per call is a measurable cost)."""
        if self.servers.resolve_due():
            self.live_servers()
        pool = self.pools.get(info.pool_id)
        planner = self._planners.get(info.pool_id)
        if planner is None or planner.pool is not pool:
            planner = self._planners[info.pool_id] = BatchPlanner(
                self.servers, pool, self.raise_on_dead
            )
        return pool, planner

    # --- pools --------------------------------------------------------------------

    def make_pool(self, pool: ClusterPool) -> Pool:
        """Make ``pool``'s part on every live server now; its ``Pool`` object."""
        live = self.live_servers()
        results = self.fan_out(live, lambda s: self.server_pool(pool, s))
        if all(isinstance(r, Failed) for r in results):
            self.pools.remove(pool)
            check_answered(results, "to make the pool")
        return Pool(self, pool.info)

    def new_pool(self, replicas: int, **kwargs: Any) -> Pool:
        """``Client.new_pool`` over every server."""
        spec, uuid_value = pool_spec(**kwargs)
        check_replicas(replicas, spec.persistent)
        return self.make_pool(self.pools.add(spec, uuid_value, replicas))

    def control(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        """CONTROL over every server: ``open_pool`` opens the name on each and
        answers the client-side id; ``list_objects`` merges the servers'
        listings; any other command answers ``{"servers": {address: reply}}``."""
        if cmd == "open_pool":
            pool = self.pools.open(args)
            return {"pool_id": self.make_pool(pool).pool_id}
        if cmd == "list_objects":
            return self._list_objects(args)
        live = self.live_servers()
        results = self.fan_out(live, lambda s: self.client(s).control(cmd, **args))
        check_answered(results, repr(cmd))
        replies = zip(live, results, strict=True)
        return {"servers": {s: r for s, r in replies if not isinstance(r, Failed)}}

    def control_each(self, call: Callable[[Client], object]) -> None:
        """``call`` on every live server's client (``ServerDead`` if all fail)."""
        check_answered(self.fan_out(self.live_servers(), lambda s: call(self.client(s))), "")

    def _list_objects(self, args: dict[str, Any]) -> dict[str, Any]:
        pool = self.pools.get(int(args["pool_id"]))
        planner = BatchPlanner(self.servers, pool, self.raise_on_dead)
        cursor, count = int(args.get("cursor", 0)), int(args.get("count", DEFAULT_LIST_COUNT))
        return self.drive(pool, planner.list_objects(cursor, count))

    # --- PoolBackend hooks (used by the cluster's Pool objects) -------------------

    def _pool_put(
        self, info: PoolInfo, object_id: int, index: int, page: Page
    ) -> RefuseReason | None:
        pool, planner = self.planner(info)
        return self.drive(pool, planner.put(object_id, index, page))

    def _pool_get(
        self, info: PoolInfo, object_id: int, index: int, exclusive: bool | None
    ) -> bytes | None:
        pool, planner = self.planner(info)
        return self.drive(pool, planner.get(object_id, index, exclusive))

    def _pool_put_many(self, info: PoolInfo, items: Sequence[PutItem]) -> list[RefuseReason | None]:
        pool, planner = self.planner(info)
        return self.drive(pool, planner.put_many(items)) if items else []

    def _pool_get_many(
        self, info: PoolInfo, items: Sequence[Handle], exclusive: bool | None
    ) -> list[bytes | None]:
        pool, planner = self.planner(info)
        return self.drive(pool, planner.get_many(items, exclusive)) if items else []

    def _pool_flush(self, info: PoolInfo, object_id: int, index: int) -> bool:
        pool, planner = self.planner(info)
        return self.drive(pool, planner.flush(object_id, index))

    def _pool_flush_object(self, info: PoolInfo, object_id: int) -> int:
        pool, planner = self.planner(info)
        return self.drive(pool, planner.flush_object(object_id))

    def _pool_destroy(self, info: PoolInfo) -> None:
        pool = self.pools.get(info.pool_id)
        servers = [s for s in pool.per_server if self.servers.live(s)]

        def destroy(server: str) -> None:
            # BadPool: gone there already (a restart, the lease), nothing to free.
            with contextlib.suppress(BadPool):
                self.client(server)._pool_destroy(pool.per_server[server][0])

        self.fan_out(servers, destroy)
        self.pools.remove(pool)

    def repair(self, info: PoolInfo, items: Sequence[Handle]) -> int:
        """Copies written back by a scrub of ``items`` (``BatchPlanner.repair``)."""
        pool, planner = self.planner(info)
        return self.drive(pool, planner.repair(items)) if items else 0

    def locate(self, info: PoolInfo, object_id: int) -> list[str]:
        """The servers that hold ``object_id`` of the pool now, first first."""
        return self.planner(info)[1].holders(object_id)

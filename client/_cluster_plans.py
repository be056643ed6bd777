"""The pool operations of a several-server client, written once as plans.

A plan is a generator: it yields a round of ``Step`` s (one request or batch
for one server each), receives their outcomes in the same order (a value,
or ``Failed`` when the server failed and has been marked dead), and returns
the operation's result.  The blocking client runs a round's servers on a
small thread pool, the asyncio client with ``asyncio.gather``; neither
knows what the steps mean, and the rules below are stated once, here (the
sans-IO split the protocol core uses too).

One replica (every ephemeral pool, and persistent pools by default): an
object's pages go to its top-ranked server, dead or not.  On a dead server
an ephemeral pool behaves as a cache: gets miss, puts are refused
(``RefuseReason.UNSPECIFIED``) and flushes succeed, unless the client asked
for ``raise_on_dead``; a persistent pool raises ``ServerDead``, since its
page exists but cannot be reached (a miss would be a lie, and a refused put
could not flush the old copy).

Several replicas (persistent pools, ``new_pool(replicas=2)``): a page's
replicas are the top ``replicas`` *live* servers of its ranking.
- put: to every replica at once; accepted only if all accept.  Otherwise the
  copies that were accepted are flushed and the put is refused, so no page
  is left that only one server would return.  With fewer live servers than
  replicas the put is refused (its old copies flushed).
- get: the replicas in rank order until one has the page; a replica that
  answered a miss before it gets the page written back (read repair).  An
  exclusive get flushes the other replicas instead.  When every replica
  failed, ``ServerDead``.
- flush/flush_object: every replica.  Once a put had to skip a dead server
  (``ClusterPool.degraded``), a copy may sit on a server outside a page's
  replicas: puts and flushes then also flush the other live servers, so
  that copy is never an old value, and a get that misses on every replica
  also looks there (and read repair copies it back to the replicas), so
  that a later loss of one replica does not lose it.  The property test
  ``tests/property/test_cluster_model.py`` checks both against a dict.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tmem.proto import RefuseReason

from ._cluster import ClusterPool, ServerSet, decode_cursor, next_cursor
from ._errors import ServerDead
from ._spec import Page

__all__ = [
    "LIST_OBJECTS",
    "Failed",
    "Plan",
    "Planner",
    "Step",
    "by_server",
    "call_step",
    "check_answered",
    "group",
    "scatter",
]

T = TypeVar("T")

#: The step that lists one server's part of a named pool (CONTROL
#: ``list_objects``); every other step names a per-server pool hook.
LIST_OBJECTS = "list_objects"
#: Why a put on a dead server or short of live replicas was refused: no
#: daemon refused it, so no daemon reason applies.
NO_SERVER = RefuseReason.UNSPECIFIED


@dataclass(frozen=True, slots=True)
class Step:
    """One call for one server: a pool hook of the per-server client
    (``"_pool_put"``, ...) and its arguments after the pool."""

    server: str
    op: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Failed:
    """The outcome of a step whose server failed (now marked dead)."""

    server: str
    error: Exception


Plan = Generator[list[Step], list[Any], T]


def by_server(steps: Sequence[Step]) -> dict[str, list[int]]:
    """The positions of a round's steps, per server (each server's run in order)."""
    groups: dict[str, list[int]] = {}
    for i, step in enumerate(steps):
        groups.setdefault(step.server, []).append(i)
    return groups


def scatter(count: int, groups: dict[str, list[int]], results: Sequence[Any]) -> list[Any]:
    """The outcomes of a round in step order, from each server's list of
    results (or its ``Failed``, which stands for each of its steps)."""
    outcomes: list[Any] = [None] * count
    for positions, result in zip(groups.values(), results, strict=True):
        for n, i in enumerate(positions):
            outcomes[i] = result if isinstance(result, Failed) else result[n]
    return outcomes


def check_answered(results: Sequence[Any], what: str) -> None:
    """``ServerDead`` unless some server answered (none asked: all are dead)."""
    failures = [r for r in results if isinstance(r, Failed)]
    if len(failures) == len(results):
        error = failures[0].error if failures else None
        raise ServerDead(f"no live server answered {what}") from error


def call_step(client: Any, info: Any, step: Step) -> Any:
    """Start ``step`` on a per-server client (blocking: its result; asyncio:
    a coroutine): a pool hook, or ``list_objects`` through CONTROL."""
    if step.op == LIST_OBJECTS:
        cursor, count = step.args
        return client.control(LIST_OBJECTS, pool_id=info.pool_id, cursor=cursor, count=count)
    return getattr(client, step.op)(info, *step.args)


def group(positions: Sequence[tuple[int, str]]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for pos, server in positions:
        groups.setdefault(server, []).append(pos)
    return groups


class Planner:
    """The plans of one pool under the current server set."""

    def __init__(self, servers: ServerSet, pool: ClusterPool, raise_on_dead: bool) -> None:
        self.servers = servers
        self.pool = pool
        self.replicas = pool.replicas
        self.strict = raise_on_dead
        self.raise_on_dead = raise_on_dead or pool.info.persistent

    # --- placement ------------------------------------------------------------

    def _ranker(self) -> Callable[[int], list[str]]:
        """``rank`` memoized per object id for one call (a batch's pages
        share objects)."""
        cache: dict[int, list[str]] = {}
        servers, key = self.servers, self.pool.key

        def ranked(object_id: int) -> list[str]:
            found = cache.get(object_id)
            if found is None:
                found = cache[object_id] = servers.rank(key, object_id)
            return found

        return ranked

    def _replicas(self, ranking: list[str], putting: bool) -> tuple[list[str], list[str]]:
        """The live replicas of a ranking, and the other live servers that a
        write must also flush (only once the pool is degraded)."""
        live = [s for s in ranking if self.servers.live(s)]
        targets = live[: self.replicas]
        if putting and targets != ranking[: self.replicas]:
            self.pool.degraded = True
        return targets, (live[self.replicas :] if self.pool.degraded else [])

    def holders(self, object_id: int) -> list[str]:
        """The servers that hold (or would hold) ``object_id`` now."""
        ranking = self.servers.rank(self.pool.key, object_id)
        if self.replicas == 1:
            return ranking[:1]
        return self._replicas(ranking, putting=False)[0]

    def _readers(self, ranking: list[str]) -> tuple[list[str], set[str]]:
        """Where a replicated read looks, in order (the live replicas, then,
        once degraded, the other live servers, where a put that skipped a
        dead server left a copy), and the replica set among them."""
        targets, others = self._replicas(ranking, putting=False)
        return targets + others, set(targets)

    def _dead(self, server: str, error: Exception | None = None) -> None:
        if self.raise_on_dead:
            raise ServerDead(f"server {server} is marked dead") from error

    def _failed(self, outcome: Any) -> bool:
        """True (after raising if asked to) when ``outcome`` is a failure."""
        if isinstance(outcome, Failed):
            self._dead(outcome.server, outcome.error)
            return True
        return False

    def _owner(self, server: str) -> str | None:
        """``server`` if live; else None (or ``ServerDead``)."""
        if self.servers.live(server):
            return server
        self._dead(server)
        return None

    # --- single pages -----------------------------------------------------------

    def put(self, object_id: int, index: int, page: Page) -> Plan[RefuseReason | None]:
        ranking = self.servers.rank(self.pool.key, object_id)
        if self.replicas == 1:
            owner = self._owner(ranking[0])
            if owner is None:
                return NO_SERVER
            (outcome,) = yield [Step(owner, "_pool_put", (object_id, index, page))]
            return NO_SERVER if self._failed(outcome) else outcome
        targets, others = self._replicas(ranking, putting=True)
        flush = (object_id, index)
        if len(targets) < self.replicas:
            if targets or others:
                yield [Step(s, "_pool_flush", flush) for s in targets + others]
            return NO_SERVER
        steps = [Step(s, "_pool_put", (object_id, index, page)) for s in targets]
        outcomes = yield steps + [Step(s, "_pool_flush", flush) for s in others]
        outcomes = outcomes[: len(targets)]
        if all(o is None for o in outcomes):
            return None
        accepted = [s for s, o in zip(targets, outcomes, strict=True) if o is None]
        if accepted:
            yield [Step(s, "_pool_flush", flush) for s in accepted]
        return next((o for o in outcomes if isinstance(o, RefuseReason)), NO_SERVER)

    def get(self, object_id: int, index: int, exclusive: bool | None) -> Plan[bytes | None]:
        ranking = self.servers.rank(self.pool.key, object_id)
        args = (object_id, index, exclusive)
        if self.replicas == 1:
            owner = self._owner(ranking[0])
            if owner is None:
                return None
            (outcome,) = yield [Step(owner, "_pool_get", args)]
            return None if self._failed(outcome) else outcome
        readers, replicas = self._readers(ranking)
        missed: list[str] = []
        answered = False
        for server in readers:
            (outcome,) = yield [Step(server, "_pool_get", args)]
            if isinstance(outcome, Failed):
                continue
            answered = True
            if outcome is None:
                missed += [server] if server in replicas else []
                continue
            if exclusive:
                fix = [Step(s, "_pool_flush", (object_id, index)) for s in readers if s != server]
            else:
                fix = [Step(s, "_pool_put", (object_id, index, outcome)) for s in missed]
            if fix:
                yield fix
            return outcome  # type: ignore[no-any-return]
        if not answered:
            raise ServerDead(f"no replica of object {object_id:#x} answered")
        return None

    def flush(self, object_id: int, index: int) -> Plan[bool]:
        outcomes = yield from self._everywhere(object_id, "_pool_flush", (object_id, index))
        return any(o is True for o in outcomes)

    def flush_object(self, object_id: int) -> Plan[int]:
        outcomes = yield from self._everywhere(object_id, "_pool_flush_object", (object_id,))
        return max((o for o in outcomes if isinstance(o, int)), default=0)

    def _everywhere(self, object_id: int, op: str, args: tuple[Any, ...]) -> Plan[list[Any]]:
        """``op`` on the object's server, or on every replica (and, once
        degraded, every other live server)."""
        ranking = self.servers.rank(self.pool.key, object_id)
        if self.replicas == 1:
            owner = self._owner(ranking[0])
            servers = [] if owner is None else [owner]
        else:
            targets, others = self._replicas(ranking, putting=False)
            servers = targets + others
        if not servers:
            return []
        outcomes = yield [Step(s, op, args) for s in servers]
        for outcome in outcomes:
            if self.replicas == 1:
                self._failed(outcome)
        return outcomes

    def list_objects(self, cursor: int, count: int) -> Plan[dict[str, Any]]:
        """One page of the merged listing: the servers in address order, each
        listed to its end; the merged cursor says which server and where.
        A dead server is skipped (its objects are then missing from this
        listing; with replicas, another replica lists them)."""
        servers = self.servers.servers
        index, server_cursor = decode_cursor(cursor)
        while index < len(servers):
            server = servers[index]
            if self.servers.live(server):
                (outcome,) = yield [Step(server, LIST_OBJECTS, (server_cursor, count))]
                if not isinstance(outcome, Failed):
                    reply_cursor = int(outcome["cursor"])
                    return {"objects": list(outcome["objects"]),
                            "cursor": next_cursor(servers, index, reply_cursor)}  # fmt: skip
            if self.strict or (self.raise_on_dead and self.replicas == 1):
                raise ServerDead(f"server {server} is marked dead: its objects are not listed")
            index, server_cursor = index + 1, 0
        return {"objects": [], "cursor": 0}

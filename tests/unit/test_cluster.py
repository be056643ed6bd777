"""Several servers without sockets: rendezvous placement, dead servers, and
the plans of ``_cluster_plans`` run against in-memory servers.

The in-memory servers answer the per-server pool hooks the way a daemon
does (a refused put also drops the old copy); a server can be made to fail
or refuse, so the replica rules are checked step by step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tmem.client import RefuseReason, ServerDead
from tmem.client._cluster import (
    ClusterPool,
    PoolTable,
    ServerSet,
    check_replicas,
    decode_cursor,
    encode_cursor,
    is_cluster_address,
    next_cursor,
)
from tmem.client._cluster_batches import BatchPlanner
from tmem.client._cluster_plans import LIST_OBJECTS, Failed, Plan, Step
from tmem.proto import PoolSpec

SERVERS = [f"10.0.0.{n}:7470" for n in range(1, 4)]
OBJECTS = 30_000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def owners(servers: ServerSet, key: bytes = b"id:0") -> list[str]:
    return [servers.rank(key, oid)[0] for oid in range(OBJECTS)]


def test_spread_and_movement_on_add_and_remove() -> None:
    three = owners(ServerSet(SERVERS))
    for server in SERVERS:
        assert abs(three.count(server) - OBJECTS / 3) < 0.03 * OBJECTS / 3
    four = owners(ServerSet([*SERVERS, "10.0.0.4:7470"]))
    moved = [oid for oid in range(OBJECTS) if three[oid] != four[oid]]
    assert abs(len(moved) - OBJECTS / 4) < 0.03 * OBJECTS / 4
    assert all(four[oid] == "10.0.0.4:7470" for oid in moved)
    two = owners(ServerSet(SERVERS[:2]))
    changed = {oid for oid in range(OBJECTS) if three[oid] != two[oid]}
    assert changed == {oid for oid in range(OBJECTS) if three[oid] == SERVERS[2]}


def test_rank_depends_on_address_pool_and_object_only() -> None:
    a, b = ServerSet(SERVERS), ServerSet(list(reversed(SERVERS)))
    assert all(a.rank(b"k", oid) == b.rank(b"k", oid) for oid in range(100))
    assert [a.rank(b"k", o)[0] for o in range(200)] != [a.rank(b"j", o)[0] for o in range(200)]
    big = (1 << 192) - 1
    assert sorted(a.rank(b"k", big)) == sorted(SERVERS)


def test_addresses_and_cursors() -> None:
    assert is_cluster_address(["a:1", "b:2"]) and is_cluster_address("dns:svc:7470")
    assert not is_cluster_address("a:1") and not is_cluster_address(("a", 1))
    assert ServerSet(["b:2", ("a", 1), "[::1]:3"]).servers == ["[::1]:3", "a:1", "b:2"]
    with pytest.raises(ValueError):
        ServerSet([])
    assert decode_cursor(0) == (0, 0)
    for index, cursor in [(0, 5), (2, 1 << 64), (254, 1)]:
        assert decode_cursor(encode_cursor(index, cursor)) == (index, cursor)
    assert next_cursor(SERVERS, 0, 0) == encode_cursor(1, 0)
    assert next_cursor(SERVERS, 2, 0) == 0
    assert next_cursor(SERVERS, 2, 9) == encode_cursor(2, 9)
    with pytest.raises(ValueError):
        check_replicas(2, persistent=False)
    with pytest.raises(ValueError):
        check_replicas(0, persistent=True)


def test_dead_for_dead_timeout_then_a_new_generation() -> None:
    clock = Clock()
    servers = ServerSet(SERVERS, dead_timeout_s=5.0, clock=clock)
    assert servers.live(SERVERS[0]) and servers.generation(SERVERS[0]) == 0
    servers.mark_dead(SERVERS[0])
    assert not servers.live(SERVERS[0]) and servers.generation(SERVERS[0]) == 1
    clock.now += 4.9
    assert not servers.live(SERVERS[0])
    clock.now += 0.2
    assert servers.live(SERVERS[0])


def test_dns_resolution_is_periodic_and_keeps_the_last_answer() -> None:
    clock = Clock()
    answers: list[list[str]] = [["127.0.0.2", "127.0.0.1"], [], ["127.0.0.3"]]

    def resolver(name: str, port: int) -> list[str]:
        assert (name, port) == ("svc.example", 7470)
        return answers.pop(0)

    servers = ServerSet("dns:svc.example:7470", resolver=resolver, dns_refresh_s=30, clock=clock)
    assert servers.resolve_due()
    servers.resolve_now()
    assert servers.servers == ["127.0.0.1:7470", "127.0.0.2:7470"]
    assert not servers.resolve_due()
    clock.now += 30
    servers.resolve_now()  # an empty answer keeps the last list
    assert servers.servers == ["127.0.0.1:7470", "127.0.0.2:7470"]
    clock.now += 30
    servers.resolve_now()
    assert servers.servers == ["127.0.0.3:7470"]


class Memory:
    """One in-memory server: pages per handle, and ways to misbehave."""

    def __init__(self) -> None:
        self.pages: dict[tuple[int, int], bytes] = {}
        self.down = False
        self.refuse = False

    def call(self, op: str, args: tuple[Any, ...]) -> Any:
        if self.down:
            return Failed("?", ConnectionError("down"))
        if op == "_pool_put":
            oid, idx, page = args
            if self.refuse:
                self.pages.pop((oid, idx), None)
                return RefuseReason.NO_MEMORY
            self.pages[oid, idx] = bytes(page)
            return None
        if op == "_pool_get":
            return self.pages.get((args[0], args[1]))
        if op == "_pool_flush":
            return self.pages.pop((args[0], args[1]), None) is not None
        if op == "_pool_put_many":
            return [self.call("_pool_put", item) for item in args[0]]
        if op == "_pool_get_many":
            return [self.pages.get(h) for h in args[0]]
        if op == LIST_OBJECTS:
            return {"objects": sorted({f"{o:048x}" for o, _ in self.pages}), "cursor": 0}
        raise AssertionError(op)


class Harness:
    def __init__(self, replicas: int = 2, persistent: bool = True) -> None:
        self.clock = Clock()
        self.servers = ServerSet(SERVERS, dead_timeout_s=10, clock=self.clock)
        self.memory = {s: Memory() for s in SERVERS}
        spec = PoolSpec(persistent=persistent)
        self.pool: ClusterPool = PoolTable().add(spec, None, replicas)
        self.planner = BatchPlanner(self.servers, self.pool, raise_on_dead=False)
        self.rounds: list[list[Step]] = []

    def run(self, plan: Plan[Any]) -> Any:
        try:
            steps = next(plan)
            while True:
                self.rounds.append(steps)
                outcomes = []
                for step in steps:
                    outcome = self.memory[step.server].call(step.op, step.args)
                    if isinstance(outcome, Failed):
                        self.servers.mark_dead(step.server)
                        outcome = Failed(step.server, outcome.error)
                    outcomes.append(outcome)
                steps = plan.send(outcomes)
        except StopIteration as stop:
            return stop.value

    def holders(self, oid: int, idx: int = 0) -> list[str]:
        return [s for s in SERVERS if (oid, idx) in self.memory[s].pages]


PAGE = b"p" * 4096


def test_replicated_put_needs_every_replica() -> None:
    h = Harness()
    assert h.run(h.planner.put(1, 0, PAGE)) is None
    first, second = h.planner.holders(1)
    assert sorted(h.holders(1)) == sorted([first, second])
    # The second replica refuses a new value: the first copy is flushed
    # and the put is refused, so no server keeps a page the other lacks.
    h.memory[second].refuse = True
    assert h.run(h.planner.put(1, 0, b"q" * 4096)) is RefuseReason.NO_MEMORY
    assert h.holders(1) == []
    assert h.run(h.planner.get(1, 0, None)) is None


def test_replicated_get_falls_through_and_repairs() -> None:
    h = Harness()
    items = [(oid, 0, bytes([oid]) * 4096) for oid in range(60)]
    assert h.run(h.planner.put_many(items)) == [None] * 60
    first = h.planner.holders(7)[0]
    h.memory[first].pages.clear()  # came back empty
    assert h.run(h.planner.get(7, 0, None)) == bytes([7]) * 4096
    assert (7, 0) in h.memory[first].pages  # read repair
    got = h.run(h.planner.get_many([(oid, 0) for oid, _, _ in items], None))
    assert got == [page for _, _, page in items]
    # Reads repair where the emptied server is the first replica; where it
    # is the second, the first answers and only a repair pass copies back.
    leads = [oid for oid in range(60) if h.planner.holders(oid)[0] == first]
    seconds = [oid for oid in range(60) if h.planner.holders(oid)[1] == first]
    assert all(len(h.holders(oid)) == 2 for oid in leads)
    assert seconds and all(first not in h.holders(oid) for oid in seconds)
    assert h.run(h.planner.repair([(oid, 0) for oid in range(60)])) == len(seconds)
    assert all(len(h.holders(oid)) == 2 for oid in range(60))


def test_replicated_reads_survive_a_dead_server() -> None:
    h = Harness()
    items = [(oid, 0, bytes([oid]) * 4096) for oid in range(60)]
    h.run(h.planner.put_many(items))
    h.memory[SERVERS[0]].down = True
    got = h.run(h.planner.get_many([(oid, 0) for oid, _, _ in items], None))
    assert got == [page for _, _, page in items]
    assert not h.servers.live(SERVERS[0])
    # A put that skips the dead server marks the pool degraded: later
    # writes flush the handle on the live servers outside its replicas.
    moved = next(oid for oid in range(60) if SERVERS[0] in h.servers.rank(h.pool.key, oid)[:2])
    assert h.run(h.planner.put(moved, 0, PAGE)) is None
    assert h.pool.degraded
    live = [s for s in h.holders(moved) if s != SERVERS[0]]
    assert sorted(live) == SERVERS[1:]
    assert all(h.memory[s].pages[moved, 0] == PAGE for s in live)


def test_one_replica_on_a_dead_server() -> None:
    h = Harness(replicas=1, persistent=False)
    h.run(h.planner.put_many([(oid, 0, PAGE) for oid in range(30)]))
    dead = SERVERS[1]
    h.memory[dead].down = True
    on_dead = [oid for oid in range(30) if h.planner.holders(oid) == [dead]]
    got = h.run(h.planner.get_many([(oid, 0) for oid in range(30)], None))
    assert [oid for oid in range(30) if got[oid] is None] == on_dead
    assert h.run(h.planner.put(on_dead[0], 0, PAGE)) is RefuseReason.UNSPECIFIED
    assert h.run(h.planner.flush(on_dead[0], 0)) is False
    strict = BatchPlanner(h.servers, h.pool, raise_on_dead=True)
    with pytest.raises(ServerDead):
        h.run(strict.get(on_dead[0], 0, None))


def test_listing_walks_every_server_once() -> None:
    h = Harness(replicas=1)
    h.run(h.planner.put_many([(oid, 0, PAGE) for oid in range(40)]))
    seen: list[int] = []
    cursor, pages = 0, 0
    while True:
        reply = h.run(h.planner.list_objects(cursor, 256))
        seen += [int(o, 16) for o in reply["objects"]]
        cursor, pages = reply["cursor"], pages + 1
        if cursor == 0:
            break
    assert sorted(seen) == list(range(40)) and pages == 3


def _servers_of(rounds: Sequence[Sequence[Step]]) -> list[set[str]]:
    return [{step.server for step in steps} for steps in rounds]


def test_batches_are_one_request_per_server_per_round() -> None:
    h = Harness(replicas=1)
    h.run(h.planner.put_many([(oid, i, PAGE) for oid in range(50) for i in range(4)]))
    assert len(h.rounds) == 1 and len(h.rounds[0]) == 3
    assert _servers_of(h.rounds) == [set(SERVERS)]

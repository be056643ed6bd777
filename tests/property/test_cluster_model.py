"""The several-server plans with replicas=2 against a dict, through failures.

Three in-memory servers (``tests/unit/test_cluster.py``'s harness) run the
plans of ``_cluster_plans``; hypothesis mixes puts, batch puts, gets, batch
gets, flushes, kills (one server down at a time), restarts (the server
comes back empty, after its dead timeout) and repair passes.  The model is
a dict of what the last accepted put stored.  Two properties:

* a get never returns bytes other than the model's (no stale copy, no other
  page), whatever happened;
* a get returns exactly the model's page while at most one server has lost
  its pages since the last repair pass: one failure loses nothing.  (When
  a second server loses its pages before a repair, a page may have lost
  both copies; the pages stored then are exact again once rewritten.)
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from ..unit.test_cluster import SERVERS, Harness

OBJECTS = st.integers(min_value=0, max_value=11)
VALUES = st.integers(min_value=1, max_value=255)


def page(value: int) -> bytes:
    return bytes([value]) * 64


class ReplicatedCluster(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.h = Harness(replicas=2)
        self.model: dict[int, bytes] = {}
        #: Servers that lost their pages since the last full repair pass.
        self.lost: set[str] = set()
        #: Objects that may have lost both copies (a second loss before a repair).
        self.uncertain: set[int] = set()

    def _check(self, oid: int, got: bytes | None) -> None:
        want = self.model.get(oid)
        assert got is None or got == want, (oid, got, want)
        if len(self.lost) <= 1 and oid not in self.uncertain:
            assert got == want, (oid, got, want, self.lost)

    @rule(oid=OBJECTS, value=VALUES)
    def put(self, oid: int, value: int) -> None:
        reason = self.h.run(self.h.planner.put(oid, 0, page(value)))
        self._stored(oid, page(value) if reason is None else None)

    def _stored(self, oid: int, data: bytes | None) -> None:
        """A put was accepted (``data``) or refused (None: it leaves no old
        copy either), or the page was flushed (None)."""
        if data is None:
            self.model.pop(oid, None)
        else:
            self.model[oid] = data
        self.uncertain.discard(oid)

    @rule(oids=st.lists(OBJECTS, min_size=1, max_size=6, unique=True), value=VALUES)
    def put_many(self, oids: list[int], value: int) -> None:
        items = [(oid, 0, page((value + oid) % 255 + 1)) for oid in oids]
        for (oid, _, data), reason in zip(
            items, self.h.run(self.h.planner.put_many(items)), strict=True
        ):
            self._stored(oid, data if reason is None else None)

    @rule(oid=OBJECTS)
    def get(self, oid: int) -> None:
        self._check(oid, self.h.run(self.h.planner.get(oid, 0, None)))

    @rule()
    def get_many(self) -> None:
        oids = sorted(set(range(12)))
        got = self.h.run(self.h.planner.get_many([(oid, 0) for oid in oids], None))
        for oid, page_got in zip(oids, got, strict=True):
            self._check(oid, page_got)

    @rule(oid=OBJECTS)
    def flush(self, oid: int) -> None:
        self.h.run(self.h.planner.flush(oid, 0))
        self._stored(oid, None)

    @rule(server=st.sampled_from(SERVERS))
    def kill(self, server: str) -> None:
        if not any(m.down for m in self.h.memory.values()):
            self.h.memory[server].down = True
            self.lost.add(server)
            if len(self.lost) > 1:
                self.uncertain |= set(self.model)

    @rule()
    def restart(self) -> None:
        for memory in self.h.memory.values():
            if memory.down:
                memory.down = False
                memory.pages.clear()
        self.h.clock.now += self.h.servers.dead_timeout_s + 1

    @rule()
    def repair(self) -> None:
        if any(m.down for m in self.h.memory.values()):
            return
        self.h.run(self.h.planner.repair([(oid, 0) for oid in range(12)]))
        self.lost.clear()


ReplicatedCluster.TestCase.settings = settings(
    max_examples=500, stateful_step_count=50, deadline=None
)
TestReplicatedCluster = ReplicatedCluster.TestCase

"""The batch operations of a several-server client, as plans (see ``_cluster_plans``).

``put_many``/``get_many`` follow the rules of single puts and gets, page by
page, but send one batch per server per round: round 1 is every page's
first attempt (one ``put_many``/``get_many`` per server, concurrently),
later rounds the fall-through to the next replica for the pages still
missing, then the undo flushes of refused replicated puts or the read
repair of pages found on a later replica.  So a batch over N servers costs
about one batch round trip per round, whatever N.  ``repair`` is the scrub
that reads every replica and copies pages back where missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tmem.proto import RefuseReason

from ._cluster_plans import NO_SERVER, Failed, Plan, Planner, Step, group
from ._errors import ServerDead
from ._pool import Handle, PutItem

__all__ = ["BatchPlanner"]


class BatchPlanner(Planner):
    """A ``Planner`` with the batch plans."""

    def put_many(self, items: Sequence[PutItem]) -> Plan[list[RefuseReason | None]]:
        ranked = self._ranker()
        results: list[RefuseReason | None] = [NO_SERVER] * len(items)
        placed: list[tuple[int, str]] = []
        flushes: list[Step] = []
        plan: list[list[str]] = []
        for pos, (oid, idx, _) in enumerate(items):
            ranking = ranked(oid)
            if self.replicas == 1:
                owner = self._owner(ranking[0])
                targets = [] if owner is None else [owner]
            else:
                targets, others = self._replicas(ranking, putting=True)
                if len(targets) < self.replicas:
                    targets, others = [], targets + others
                flushes += [Step(s, "_pool_flush", (oid, idx)) for s in others]
            plan.append(targets)
            placed += [(pos, s) for s in targets]
        groups = group(placed)
        steps = [Step(s, "_pool_put_many", ([items[p] for p in ps],)) for s, ps in groups.items()]
        outcomes = yield steps + flushes
        answers: dict[tuple[int, str], Any] = {}
        for (server, positions), outcome in zip(groups.items(), outcomes, strict=False):
            failed = self._failed(outcome) if self.replicas == 1 else isinstance(outcome, Failed)
            for i, pos in enumerate(positions):
                answers[pos, server] = NO_SERVER if failed else outcome[i]
        undo: list[Step] = []
        for pos, targets in enumerate(plan):
            got = [answers[pos, s] for s in targets]
            if targets and all(a is None for a in got):
                results[pos] = None
                continue
            results[pos] = next((a for a in got if a is not None), NO_SERVER)
            oid, idx, _ = items[pos]
            undo += [
                Step(s, "_pool_flush", (oid, idx))
                for s, a in zip(targets, got, strict=True)
                if a is None
            ]
        if undo and self.replicas > 1:
            yield undo
        return results

    def get_many(self, items: Sequence[Handle], exclusive: bool | None) -> Plan[list[bytes | None]]:
        ranked = self._ranker()
        results: list[bytes | None] = [None] * len(items)
        if self.replicas == 1:
            owners = [(pos, self._owner(ranked(oid)[0])) for pos, (oid, _) in enumerate(items)]
            groups = group([(pos, s) for pos, s in owners if s is not None])
            yield from self._get_round(items, groups, exclusive, results)
            return results
        readers = [self._readers(ranked(oid)) for oid, _ in items]
        missed: dict[int, list[str]] = {}
        answered: set[int] = set()
        pending = list(range(len(items)))
        for rank_index in range(max(len(servers) for servers, _ in readers)):
            todo = [(pos, readers[pos][0][rank_index]) for pos in pending
                    if rank_index < len(readers[pos][0])]  # fmt: skip
            if not todo:
                break
            found = yield from self._get_round(items, group(todo), exclusive, results)
            for pos, server, page in found:
                answered.add(pos)
                if page is None and server in readers[pos][1]:
                    missed.setdefault(pos, []).append(server)
            pending = [pos for pos in pending if results[pos] is None]
        if any(pos not in answered for pos in pending):
            raise ServerDead("no replica of some pages answered")
        yield from self._repair(items, [r for r, _ in readers], missed, exclusive, results)
        return results

    def repair(self, items: Sequence[Handle]) -> Plan[int]:
        """Read every replica of each page and write it back where missing;
        returns how many copies were written (a scrub, for pages whose
        first replica still answers, so reads never repair them)."""
        if self.replicas == 1:
            return 0
        ranked = self._ranker()
        readers = [self._readers(ranked(oid)) for oid, _ in items]
        groups = group([(pos, s) for pos, (servers, _) in enumerate(readers) for s in servers])
        steps = [Step(s, "_pool_get_many", ([items[p] for p in ps], False))
                 for s, ps in groups.items()]  # fmt: skip
        outcomes = yield steps
        found: dict[int, bytes] = {}
        missing: list[tuple[int, str]] = []
        for (server, positions), outcome in zip(groups.items(), outcomes, strict=True):
            if isinstance(outcome, Failed):
                continue
            for pos, got in zip(positions, outcome, strict=True):
                if got is None:
                    missing += [(pos, server)] if server in readers[pos][1] else []
                else:
                    found.setdefault(pos, got)
        puts = group([(pos, s) for pos, s in missing if pos in found])
        steps = [Step(s, "_pool_put_many", ([(*items[p], found[p]) for p in ps],))
                 for s, ps in puts.items()]  # fmt: skip
        if not steps:
            return 0
        outcomes = yield steps
        return sum(o.count(None) for o in outcomes if not isinstance(o, Failed))

    def _get_round(
        self,
        items: Sequence[Handle],
        groups: dict[str, list[int]],
        exclusive: bool | None,
        results: list[bytes | None],
    ) -> Plan[list[tuple[int, str, bytes | None]]]:
        """One batch of gets per server; fills ``results``; returns what
        each answering server said for each position."""
        if not groups:
            return []
        steps = [Step(s, "_pool_get_many", ([items[p] for p in ps], exclusive))
                 for s, ps in groups.items()]  # fmt: skip
        outcomes = yield steps
        found: list[tuple[int, str, bytes | None]] = []
        for (server, positions), outcome in zip(groups.items(), outcomes, strict=True):
            failed = self._failed(outcome) if self.replicas == 1 else isinstance(outcome, Failed)
            if failed:
                continue
            for pos, page in zip(positions, outcome, strict=True):
                results[pos] = page
                found.append((pos, server, page))
        return found

    def _repair(
        self,
        items: Sequence[Handle],
        readers: list[list[str]],
        missed: dict[int, list[str]],
        exclusive: bool | None,
        results: list[bytes | None],
    ) -> Plan[None]:
        """Read repair (or, for exclusive gets, flushing every other copy)."""
        puts: list[tuple[int, str]] = []
        flushes: list[Step] = []
        for pos, page in enumerate(results):
            if page is None:
                continue
            oid, idx = items[pos]
            if exclusive:
                flushes += [Step(s, "_pool_flush", (oid, idx)) for s in readers[pos]]
            else:
                puts += [(pos, s) for s in missed.get(pos, ())]
        steps = [
            Step(s, "_pool_put_many", ([(*items[p], results[p]) for p in ps],))
            for s, ps in group(puts).items()
        ]
        if steps or flushes:
            yield steps + flushes

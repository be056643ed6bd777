"""The engine over a small arena, beside a dict model (hypothesis).

Like ``test_engine_model`` but in arena mode: one ``Arena`` of 14 frames
shared by zbud, xvmalloc and zsmalloc pools of both kinds, with 4 KiB and
16 KiB pages (the big ones stored in pieces), so that evictions, refusals,
zbud reclaims, compaction (``maintain``) and metadata charging all happen in
most runs.  Rules checked: a persistent page reads back exactly until it is
flushed; an ephemeral page reads back exactly or misses for good; a refused
put leaves no old copy behind.  After every step: the engine's full
invariant walk (which includes each PAM's ``check_invariants`` and the
metadata ledger) and the memory bound.
"""

from __future__ import annotations

import random

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tmemd.engine import Engine, EngineConfig, Refusal

FRAMES = 14
MEMORY_BYTES = FRAMES * 4096
#: name -> (client, persistent, pam, page size)
POOLS = {
    "eph_zbud": ("a", False, "zbud", 4096),
    "eph_zs": ("a", False, "zsmalloc", 4096),
    "eph_b": ("b", False, None, 4096),
    "per_zs": ("a", True, None, 4096),
    "per_xv": ("a", True, "xvmalloc", 4096),
    "big_eph": ("b", False, "zsmalloc", 16384),
    "big_per": ("a", True, "xvmalloc", 16384),
}


def make_page(kind: int, seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    if kind == 0:
        return bytes([seed % 256]) * size
    if kind == 1:
        line = b"arena page %d; " % seed
        return (line * (size // len(line) + 1))[:size]
    if kind == 2:
        return rng.randbytes(size // 3) + bytes(size - size // 3)
    return rng.randbytes(size)


class ArenaEngineModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, int] = {}
        self.model: dict[str, dict[tuple[int, int], bytes]] = {}

    @initialize(codec=st.sampled_from(["lzo", "zstd", "none"]))
    def open_pools(self, codec: str) -> None:
        self.engine = Engine(
            EngineConfig(
                memory_bytes=MEMORY_BYTES,
                default_codec=codec,
                ephemeral_pam="zbud",
                persistent_pam="zsmalloc",
                persistent_max=0.6,
                persistent_accept=0.5,
            ),
            lambda: 0.0,
        )
        for client in ("a", "b"):
            self.engine.connect(client)
        for name in POOLS:
            self.open(name)

    def open(self, name: str) -> None:
        client, persistent, pam, size = POOLS[name]
        self.ids[name] = self.engine.new_pool(
            client, persistent=persistent, pam=pam, page_size=size
        )
        self.model[name] = {}

    @rule(
        name=st.sampled_from(sorted(POOLS)),
        object_id=st.integers(0, 2),
        index=st.sampled_from([0, 1, 2, 1023, 1024, 5000]),
        kind=st.integers(0, 3),
        seed=st.integers(0, 1000),
    )
    def put(self, name: str, object_id: int, index: int, kind: int, seed: int) -> None:
        client, persistent, _, size = POOLS[name]
        data = make_page(kind, seed, size)
        evicted = self.engine.statistics().evictions_by_reason
        result = self.engine.put(client, self.ids[name], object_id, index, data)
        for reason, count in self.engine.statistics().evictions_by_reason.items():
            if count > evicted[reason]:
                event(f"put evicted ({reason})")
        if result is None:
            self.model[name][object_id, index] = data
            return
        self.model[name].pop((object_id, index), None)
        event(f"put refused: {result.name}")
        allowed = (
            {Refusal.NO_MEMORY, Refusal.PERSISTENT_FULL} if persistent else {Refusal.NO_MEMORY}
        )
        assert result in allowed, result

    @rule(
        name=st.sampled_from(sorted(POOLS)),
        object_id=st.integers(0, 2),
        index=st.sampled_from([0, 1, 2, 1023, 1024, 5000]),
        keep=st.booleans(),
    )
    def get(self, name: str, object_id: int, index: int, keep: bool) -> None:
        client, persistent, _, _ = POOLS[name]
        got = self.engine.get(client, self.ids[name], object_id, index, exclusive=not keep)
        expected = self.model[name].get((object_id, index))
        if persistent:
            assert got == expected, "a persistent page was lost, changed or invented"
        elif expected is None:
            assert got is None, "an ephemeral page came back that the model does not hold"
        else:
            assert got is None or got == expected, "an ephemeral get returned other bytes"
        if got is None or not keep:
            self.model[name].pop((object_id, index), None)

    @rule(name=st.sampled_from(sorted(POOLS)), object_id=st.integers(0, 2))
    def flush_object(self, name: str, object_id: int) -> None:
        client, persistent, _, _ = POOLS[name]
        count = self.engine.flush_object(client, self.ids[name], object_id)
        held = [key for key in self.model[name] if key[0] == object_id]
        for key in held:
            del self.model[name][key]
        assert count == len(held) if persistent else count <= len(held)

    @rule(name=st.sampled_from(sorted(POOLS)))
    def recreate(self, name: str) -> None:
        self.engine.destroy_pool(POOLS[name][0], self.ids[name])
        self.open(name)

    @rule()
    def maintain(self) -> None:
        if self.engine.maintain():
            event("maintain gave frames back")

    @invariant()
    def consistent(self) -> None:
        if not self.ids:
            return
        self.engine.check_invariants()
        stats = self.engine.statistics()
        # An array that grew during the last store may overdraw the ledger by
        # one growth step until evictions pay it back (pam/_arena.py).
        slack = stats.metadata_bytes // 4 + 4096
        assert stats.memory_used_bytes <= stats.memory_limit_bytes + slack
        persistent = sum(len(self.model[n]) for n, spec in POOLS.items() if spec[1])
        assert stats.persistent_pages == persistent


ArenaEngineModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=80, deadline=None
)
TestArenaEngineModel = ArenaEngineModel.TestCase

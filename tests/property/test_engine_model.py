"""The engine beside a plain dict model, under memory pressure (hypothesis).

The model holds, per pool, the bytes of the last successful put to each
handle.  Rules checked on every get:

* a handle the model does not hold must miss (never put, flushed, taken by
  an exclusive get, or its replacement was refused: docs/design.md §3.2 and §3.5);
* a persistent pool returns exactly the model's bytes (never evicted);
* an ephemeral pool returns the model's bytes or misses (evicted), and a
  miss means the page is gone for good, so the model forgets it.

Memory is small (a few pages) so that refusals and evictions happen in most
runs.  Pools: a private ephemeral, a persistent and a precompressed pool of
client "a", and a shared pool that "a" created and "b" joined.  Tenancy
rules interleave: freezing and thawing either client (a frozen client's put
is refused with FROZEN and its old copy is gone), caps on "a" (a refused put
names a cap, or NO_MEMORY), weights, and administrative flushes (which may
only remove ephemeral pages).  After every step the engine's full invariant
walk runs.
"""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tmemd.engine import BYTES_PAM_OVERHEAD, ClientLimits, Engine, EngineConfig, Refusal

PAGE = 4096
SHARED_UUID = 42
LEASE_S = 10.0
#: Room for two and a half raw pages: small enough that refusals and evictions happen.
MEMORY_BYTES = 2 * (PAGE + BYTES_PAM_OVERHEAD) + 2048

#: (client, pool name, persistent, precompressed)
POOLS = {
    "eph": ("a", False, False),
    "per": ("a", True, False),
    "pre": ("a", True, True),
    "shared_a": ("a", False, False),
    "shared_b": ("b", False, False),
}
#: The shared pool seen by its two members is one model entry.
MODEL_KEY = {"shared_a": "shared", "shared_b": "shared"}


def make_page(kind: int, seed: int) -> bytes:
    """Pages of several compressibilities: same-filled, text, half random, random."""
    rng = random.Random(seed)
    if kind == 0:
        return bytes([seed % 256]) * PAGE
    if kind == 1:
        line = b"model page %d; " % seed
        return (line * (PAGE // len(line) + 1))[:PAGE]
    if kind == 2:
        return rng.randbytes(PAGE // 2) + bytes(PAGE // 2)
    return rng.randbytes(PAGE)


pool_names = st.sampled_from(sorted(POOLS))
object_ids = st.integers(0, 2)
indexes = st.integers(0, 3)
#: Caps around a few pages' stored bytes, so that they bite in most runs.
caps = st.none() | st.sampled_from([0, 1500, PAGE, 3 * PAGE])
EPHEMERAL_REFUSALS = {Refusal.NO_MEMORY, Refusal.CLIENT_TOTAL_CAP}


class EngineModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock_now = 0.0
        self.engine = Engine(
            EngineConfig(
                memory_bytes=MEMORY_BYTES,
                lease_s=LEASE_S,
                persistent_max=0.9,
                persistent_accept=0.7,
            ),
            lambda: self.clock_now,
        )
        self.ids: dict[str, int] = {}
        self.model: dict[str, dict[tuple[int, int], bytes]] = {}
        self.frozen: set[str] = set()

    @initialize(codec=st.sampled_from(["lzo", "lz4", "zstd", "none"]))
    def open_pools(self, codec: str) -> None:
        self.codec = codec
        self.engine.connect("a")
        self.engine.connect("b")
        self.engine.authorize_shared(SHARED_UUID, "a")
        self.engine.authorize_shared(SHARED_UUID, "b")
        self._open_pools_of("a")
        self._open_pools_of("b")

    def _open_pools_of(self, client: str) -> None:
        for name, (owner, persistent, precompressed) in POOLS.items():
            if owner != client:
                continue
            shared = name.startswith("shared")
            # Private pools are named, so that their object listings are
            # kept (and checked by check_invariants) under every rule.
            self.ids[name] = self.engine.new_pool(
                client,
                persistent=persistent,
                precompressed=precompressed,
                shared_uuid=SHARED_UUID if shared else None,
                codec=self.codec,
                name=None if shared else name,
            )
            self.model.setdefault(MODEL_KEY.get(name, name), {})

    def pages(self, name: str) -> dict[tuple[int, int], bytes]:
        return self.model[MODEL_KEY.get(name, name)]

    @rule(
        name=pool_names,
        object_id=object_ids,
        index=indexes,
        kind=st.integers(0, 3),
        seed=st.integers(0, 1000),
        length=st.integers(1, PAGE),
    )
    def put(self, name: str, object_id: int, index: int, kind: int, seed: int, length: int) -> None:
        client, persistent, precompressed = POOLS[name]
        data = make_page(kind, seed)
        if precompressed:
            data = data[:length]
        result = self.engine.put(client, self.ids[name], object_id, index, memoryview(data))
        pages = self.pages(name)
        if result is None:
            assert client not in self.frozen, "a frozen client's put was stored"
            pages[object_id, index] = data
            return
        assert isinstance(result, Refusal)
        pages.pop((object_id, index), None)
        if client in self.frozen:
            assert result is Refusal.FROZEN
        elif not persistent:
            assert result in EPHEMERAL_REFUSALS

    @rule(
        name=pool_names,
        object_id=object_ids,
        index=indexes,
        exclusive=st.sampled_from([None, True, False]),
    )
    def get(self, name: str, object_id: int, index: int, exclusive: bool | None) -> None:
        client, persistent, _ = POOLS[name]
        got = self.engine.get(client, self.ids[name], object_id, index, exclusive=exclusive)
        pages = self.pages(name)
        expected = pages.get((object_id, index))
        if expected is None:
            assert got is None, "a page came back that the model does not hold"
            return
        if persistent:
            assert got == expected, "a persistent page was lost or changed"
        else:
            assert got is None or got == expected, "an ephemeral get returned other bytes"
        if got is None:
            del pages[object_id, index]  # evicted: gone for good
            return
        private_ephemeral = not persistent and not name.startswith("shared")
        if exclusive or (exclusive is None and private_ephemeral):
            del pages[object_id, index]

    @rule(name=pool_names, object_id=object_ids, index=indexes)
    def flush_page(self, name: str, object_id: int, index: int) -> None:
        client, persistent, _ = POOLS[name]
        flushed = self.engine.flush_page(client, self.ids[name], object_id, index)
        had = self.pages(name).pop((object_id, index), None) is not None
        assert flushed == had or (not persistent and had and not flushed)

    @rule(name=pool_names, object_id=object_ids)
    def flush_object(self, name: str, object_id: int) -> None:
        client, persistent, _ = POOLS[name]
        count = self.engine.flush_object(client, self.ids[name], object_id)
        pages = self.pages(name)
        held = [key for key in pages if key[0] == object_id]
        for key in held:
            del pages[key]
        assert count == len(held) if persistent else count <= len(held)

    @rule(name=st.sampled_from(["eph", "per", "pre"]))
    def recreate_pool(self, name: str) -> None:
        client, persistent, precompressed = POOLS[name]
        self.engine.destroy_pool(client, self.ids[name])
        self.ids[name] = self.engine.new_pool(
            client, persistent=persistent, precompressed=precompressed, codec=self.codec, name=name
        )
        self.pages(name).clear()

    @rule(within_lease=st.booleans())
    def reconnect_b(self, within_lease: bool) -> None:
        """b drops its connection; it either comes back in time or its lease ends."""
        self.engine.disconnect("b")
        self.clock_now += LEASE_S / 2 if within_lease else LEASE_S
        expired = self.engine.expire_leases()
        self.engine.connect("b")
        if within_lease:
            assert expired == []
            return
        assert expired == ["b"]
        # b left the shared pool; a still has it, so its pages stay.
        self._open_pools_of("b")

    @rule(client=st.sampled_from(["a", "b"]), frozen=st.booleans())
    def freeze(self, client: str, frozen: bool) -> None:
        if frozen:
            self.engine.freeze(client)
            self.frozen.add(client)
        else:
            self.engine.thaw(client)
            self.frozen.discard(client)

    @rule(weight=st.sampled_from([1, 100, 10_000]), persistent_cap=caps, total_cap=caps)
    def set_limits_of_a(
        self, weight: int, persistent_cap: int | None, total_cap: int | None
    ) -> None:
        self.engine.set_client_limits("a", ClientLimits(weight, persistent_cap, total_cap))

    @rule(nbytes=st.sampled_from([0, 1, PAGE, 10 * PAGE]))
    def flush_ephemeral(self, nbytes: int) -> None:
        before = self.engine.freeable()
        freed = self.engine.flush_ephemeral(nbytes)
        assert freed == before - self.engine.freeable()
        assert freed >= min(nbytes, before)
        # Evicted ephemeral pages miss from now on; the get rule forgets them.

    @invariant()
    def persistent_listings(self) -> None:
        """A full list_objects pass names exactly the persistent pools' objects."""
        for name in ("per", "pre"):
            listed: set[int] = set()
            cursor = 0
            for _ in range(1000):
                ids, cursor = self.engine.list_objects(POOLS[name][0], self.ids[name], cursor, 2, 2)
                listed.update(ids)
                if cursor == 0:
                    break
            assert listed == {object_id for object_id, _ in self.pages(name)}

    @invariant()
    def consistent(self) -> None:
        self.engine.check_invariants()
        stats = self.engine.statistics()
        assert stats.memory_used_bytes <= stats.memory_limit_bytes
        assert stats.persistent_bytes <= stats.persistent_max_bytes
        held = sum(len(pages) for pages in self.model.values())
        assert stats.persistent_pages == len(self.pages("per")) + len(self.pages("pre"))
        assert stats.pages <= held
        frozen = {c.name for c in stats.client_stats if c.frozen}
        assert frozen == self.frozen


EngineModel.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
TestEngineModel = EngineModel.TestCase

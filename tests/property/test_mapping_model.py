"""``client.mapping()`` against a dict, on a real daemon small enough to refuse.

A hypothesis ``RuleBasedStateMachine`` sets, reads, deletes, batches and
lists keys of one mapping on a daemon of a few MiB, with values from empty
to hundreds of KiB (many pages), so that writes are refused (persistent:
the persistent share fills) and pages are evicted (ephemeral).  The model
allows exactly what the semantics allow:

* persistent: every read is the last stored value (a refused write keeps
  the previous one); ``len()`` and the keys are the model's;
* ephemeral: a read is a value the key may hold (the last stored one, or
  after a refusal the previous one) or a miss; never a short or other
  value; listed keys are keys that may hold a value.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tmem.client import Client, Refused
from tmem.client._mapping_format import Key

from ..conftest import Daemon, start_daemon

#: A small arena: a few values of a few hundred KiB fill the persistent share.
DAEMON_MEMORY = "2MiB"
#: Small pages, so a value is many pages and a refusal lands mid-value.
PAGE_SIZE = 4096

KEYS = st.sampled_from(["a", b"a", "b", "ключ", b"\x00\xff", "k" * 300])
VALUES = st.one_of(
    st.binary(max_size=16),
    st.tuples(st.sampled_from([1_100_000, 600_000, 70_000, 4096, 4095]), st.integers(0, 255)).map(
        lambda size_fill: bytes([size_fill[1]]) * size_fill[0]
    ),
)
_names = itertools.count()


@pytest.fixture(scope="module")
def small_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp: Path = tmp_path_factory.mktemp("mapping-model")
    daemon = start_daemon(tmp, "--memory", DAEMON_MEMORY)
    yield daemon
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


class MappingMachine(RuleBasedStateMachine):
    address = ""
    persistent = True
    #: Over all runs: refused writes and reads that missed a stored value
    #: (the test checks that the daemon was small enough to cause them).
    outcomes: ClassVar[dict[str, int]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.client = Client(self.address, client_name="model", timeout=30.0)
        self.m = self.client.mapping(
            f"m{next(_names)}", persistent=self.persistent, page_size=PAGE_SIZE
        )
        #: Key -> the values a read may return (None: a miss is allowed).
        self.may: dict[Key, set[bytes | None]] = {}

    def allowed(self, key: Key) -> set[bytes | None]:
        return self.may.get(key, {None})

    def stored(self, key: Key, value: bytes) -> None:
        self.may[key] = {value} if self.persistent else {value, None}

    def refused(self, key: Key) -> None:
        self.outcomes["refused"] = self.outcomes.get("refused", 0) + 1
        if not self.persistent:
            self.may[key] = self.allowed(key) | {None}

    @rule(key=KEYS, value=VALUES)
    def set(self, key: Key, value: bytes) -> None:
        try:
            self.m[key] = value
        except Refused as exc:
            assert exc.keys == (key,)
            self.refused(key)
        else:
            self.stored(key, value)

    @rule(items=st.dictionaries(KEYS, VALUES, max_size=4))
    def set_many(self, items: dict[Key, bytes]) -> None:
        try:
            self.m.set_many(items)
            failed: tuple[Key, ...] = ()
        except Refused as exc:
            failed = exc.keys
        for key, value in items.items():
            if key in failed:
                self.refused(key)
            else:
                self.stored(key, value)

    @rule(key=KEYS)
    def get(self, key: Key) -> None:
        try:
            got: bytes | None = self.m[key]
        except KeyError:
            got = None
        allowed = self.allowed(key)
        assert got in allowed, f"{key!r}: read {None if got is None else len(got)} bytes"
        if got is None and allowed != {None}:
            self.outcomes["missed"] = self.outcomes.get("missed", 0) + 1

    @rule(keys=st.lists(KEYS, max_size=6))
    def get_many(self, keys: list[Key]) -> None:
        found = self.m.get_many(keys)
        for key in keys:
            allowed = self.allowed(key)
            assert found.get(key) in allowed
            if key not in found and allowed != {None}:
                self.outcomes["missed"] = self.outcomes.get("missed", 0) + 1

    @rule(key=KEYS)
    def delete(self, key: Key) -> None:
        try:
            del self.m[key]
            was = True
        except KeyError:
            was = False
        if self.persistent:
            assert was == (key in self.may)
        self.may.pop(key, None)

    @invariant()
    def listing(self) -> None:
        keys = list(self.m)
        assert len(keys) == len(set(keys))
        possible = {key for key, values in self.may.items() if values - {None}}
        if self.persistent:
            assert set(keys) == possible
            assert len(self.m) == len(possible)
        else:
            assert set(keys) <= possible

    def teardown(self) -> None:
        self.m.pool.destroy()
        self.client.close()


#: Derandomized, so that the check that refusals and misses happened is
#: stable from run to run.
MODEL_SETTINGS = settings(
    max_examples=15,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "ephemeral"])
def test_mapping_matches_a_dict(small_daemon: Daemon, persistent: bool) -> None:
    outcomes: dict[str, int] = {}
    attributes = {"address": small_daemon.address, "persistent": persistent, "outcomes": outcomes}
    machine = type("Machine", (MappingMachine,), attributes)
    run_state_machine_as_test(machine, settings=MODEL_SETTINGS)
    # The daemon is small enough for the cases that matter to happen.
    assert outcomes.get("refused" if persistent else "missed", 0) > 0, outcomes

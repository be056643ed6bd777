"""The failed-HELLO throttle on a fake clock: budgets per address and per
name, refill, IPv6 keyed by /64, and a bounded table."""

from __future__ import annotations

from tmemd._throttle import (
    AUTH_FAILURE_BURST,
    AUTH_FAILURE_REFILL_PER_S,
    MAX_THROTTLE_KEYS,
    AuthThrottle,
    peer_key,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fail(throttle: AuthThrottle, peer: str, name: str, times: int) -> None:
    for _ in range(times):
        assert throttle.allow(peer, name)
        throttle.failed(peer, name)


def test_burst_then_refused_then_refilled() -> None:
    clock = Clock()
    throttle = AuthThrottle(clock)
    fail(throttle, "10.0.0.1:5000", "web", AUTH_FAILURE_BURST)
    assert not throttle.allow("10.0.0.1:5001", "web")
    assert (throttle.failures, throttle.throttled) == (AUTH_FAILURE_BURST, 1)
    clock.now += 1 / AUTH_FAILURE_REFILL_PER_S
    assert throttle.allow("10.0.0.1:5002", "web")
    throttle.failed("10.0.0.1:5002", "web")
    assert not throttle.allow("10.0.0.1:5003", "web")


def test_address_budget_covers_every_name() -> None:
    throttle = AuthThrottle(Clock())
    for i in range(AUTH_FAILURE_BURST):
        fail(throttle, "10.0.0.1:5000", f"name{i}", 1)
    assert not throttle.allow("10.0.0.1:6000", "another")
    assert throttle.allow("10.0.0.2:6000", "another")


def test_name_budget_covers_every_address() -> None:
    throttle = AuthThrottle(Clock())
    for i in range(AUTH_FAILURE_BURST):
        fail(throttle, f"10.0.1.{i}:5000", "victim", 1)
    assert not throttle.allow("10.0.2.1:5000", "victim")
    assert throttle.allow("10.0.2.1:5000", "other")


def test_peer_keys() -> None:
    assert peer_key("10.0.0.1:5000") == "10.0.0.1"
    assert peer_key("2001:db8::1:5000") == "2001:db8::/64"
    assert peer_key("2001:db8::ffff:1:5000") == peer_key("2001:db8::2:5000")
    assert peer_key("/run/tmemd.sock") == "/run/tmemd.sock"


def test_table_is_bounded() -> None:
    throttle = AuthThrottle(Clock())
    for i in range(MAX_THROTTLE_KEYS + 10):
        throttle.failed(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}:1", f"n{i}")
    assert len(throttle._by_peer.buckets) == MAX_THROTTLE_KEYS
    assert len(throttle._by_name.buckets) == MAX_THROTTLE_KEYS

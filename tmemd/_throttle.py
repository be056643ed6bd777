"""Failed-HELLO throttle: token guessing at a few tries a minute, not thousands a second.

Why
---
A token is checked in constant time, but nothing else slowed a guesser: a
failed HELLO closes the connection and a new one costs a loopback round
trip, so a single peer could try about a thousand tokens a second.  The
throttle keeps one token bucket per peer address and one per client name;
every failed HELLO takes a token from both, and while either is empty a
HELLO is refused (AUTH_FAILED, connection closed) *without checking its
token*, so a guesser learns nothing from the refused tries.

Policy: ``AUTH_FAILURE_BURST`` failures at once (a mistyped token, a client
retrying with an old one), then one more every
``1 / AUTH_FAILURE_REFILL_PER_S`` seconds.  A guesser therefore gets at
most that refill rate per address, and per name whatever its number of
addresses.  IPv6 peers are keyed by their /64, which one host usually owns
whole.  A successful HELLO does not refill a bucket: it would let a guesser
holding one valid token reset its own budget.

Price: a peer that fails on purpose with a real client's name throttles that
name for everyone until it stops; the log line (``auth throttled``) and
``tmemd_auth_throttled_total`` show it, and the remedy is to block the
address (docs/multi-tenancy.md, "Limits that protect the daemon").

Memory: at most ``MAX_THROTTLE_KEYS`` buckets per table; past it the least
recently failed key is dropped (by then it has usually refilled).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable

__all__ = [
    "AUTH_FAILURE_BURST",
    "AUTH_FAILURE_REFILL_PER_S",
    "MAX_THROTTLE_KEYS",
    "AuthThrottle",
    "peer_key",
]

#: Failures allowed at once per address and per name: enough for a client
#: retrying with a stale token a few times, far too few to guess one.
AUTH_FAILURE_BURST = 10
#: Failures allowed per second per address and per name once the burst is
#: spent: one every two seconds is ~43,000 a day, against 2^128 tokens.
AUTH_FAILURE_REFILL_PER_S = 0.5
#: Buckets kept per table: a bucket is ~200 bytes, so 4096 bound the throttle
#: under 1 MiB however many addresses a guesser uses.
MAX_THROTTLE_KEYS = 4096
#: IPv6 peers are keyed by this prefix: a host usually owns a whole /64.
IPV6_PREFIX_BITS = 64


def peer_key(peer: str) -> str:
    """The throttle key of a peer written ``host:port`` (IPv6 by its /64)."""
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX_BITS}", strict=False))
    return str(address)


class _Buckets:
    """Token buckets keyed by a string, least recently failed first."""

    def __init__(self) -> None:
        #: key -> (tokens left, when they were counted)
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def tokens(self, key: str, now: float) -> float:
        left, since = self.buckets.get(key, (AUTH_FAILURE_BURST, now))
        return min(AUTH_FAILURE_BURST, left + (now - since) * AUTH_FAILURE_REFILL_PER_S)

    def take(self, key: str, now: float) -> None:
        self.buckets[key] = (self.tokens(key, now) - 1, now)
        self.buckets.move_to_end(key)
        while len(self.buckets) > MAX_THROTTLE_KEYS:
            self.buckets.popitem(last=False)


class AuthThrottle:
    """Per-address and per-name budgets of failed HELLOs, with counters."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._by_peer = _Buckets()
        self._by_name = _Buckets()
        #: Counters for metrics: HELLOs whose token was wrong, and HELLOs
        #: refused unchecked because a budget was spent.
        self.failures = 0
        self.throttled = 0

    def allow(self, peer: str, name: str) -> bool:
        """May a HELLO from ``peer`` for ``name`` have its token checked now?"""
        now = self._clock()
        if self._by_peer.tokens(peer_key(peer), now) < 1 or self._by_name.tokens(name, now) < 1:
            self.throttled += 1
            return False
        return True

    def failed(self, peer: str, name: str) -> None:
        """A HELLO from ``peer`` for ``name`` had a wrong token (or none)."""
        now = self._clock()
        self.failures += 1
        self._by_peer.take(peer_key(peer), now)
        self._by_name.take(name, now)

"""Admission: which connections the daemon keeps, and for how long without HELLO.

Why
---
Every connection costs a file descriptor and a slot of ``--max-connections``,
and until HELLO succeeds it costs them for nobody: PING is allowed before
HELLO, so a peer with no token could hold every slot with a few hundred
sockets kept alive by PINGs, and authenticated clients would get BUSY.  So
unauthenticated connections are limited twice:

* in time: a connection that has not completed HELLO within
  ``--hello-timeout`` seconds of connecting is closed; PING does not extend
  the deadline (it is counted from the connect, not from the last byte);
* in number: at most ``--max-unauthenticated`` of them at once (and never
  more than ``--max-connections``).  When a new connection would pass that
  number, the *oldest* unauthenticated connection is closed to make room,
  not the new one: a real client sends HELLO within a round trip of
  connecting, so it gets in even while a flood holds every unauthenticated
  slot, and a flood can only ever take those slots, never the ones of
  authenticated clients.  When all ``--max-connections`` are taken, a new
  connection also replaces the oldest unauthenticated one if there is one,
  and gets BUSY only when every connection is authenticated.

The table is ordered by connect time (a ``dict`` keeps insertion order), so
both the oldest connection and the overdue ones are found from its front.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Admission", "Verdict"]

Member = TypeVar("Member", bound=Hashable)


class Verdict(Generic[Member]):
    """What ``Admission.admit`` decided: admitted or not, and whom to close for room."""

    __slots__ = ("admitted", "evict")

    def __init__(self, admitted: bool, evict: Member | None = None) -> None:
        self.admitted = admitted
        self.evict = evict


class Admission(Generic[Member]):
    """The connection limits; the server owns the sockets and closes what it is told."""

    def __init__(self, max_connections: int, max_unauthenticated: int, hello_timeout_s: float):
        self.max_connections = max_connections
        self.max_unauthenticated = min(max_unauthenticated, max_connections)
        self.hello_timeout_s = hello_timeout_s
        #: Connections that have not completed HELLO -> when they connected.
        self.unauthenticated: dict[Member, float] = {}
        #: Counters for metrics: closed for room, and for a missed HELLO deadline.
        self.evicted = 0
        self.hello_timeouts = 0

    def admit(self, member: Member, open_connections: int, now: float) -> Verdict[Member]:
        """Admit ``member`` (not yet counted in ``open_connections``) or not."""
        full = open_connections >= self.max_connections
        if full and not self.unauthenticated:
            return Verdict(False)
        evict = None
        if full or len(self.unauthenticated) >= self.max_unauthenticated:
            evict = next(iter(self.unauthenticated))
            del self.unauthenticated[evict]
            self.evicted += 1
        self.unauthenticated[member] = now
        return Verdict(True, evict)

    def authenticated(self, member: Member) -> None:
        """HELLO succeeded: ``member`` no longer counts as unauthenticated."""
        self.unauthenticated.pop(member, None)

    def forget(self, member: Member) -> None:
        self.unauthenticated.pop(member, None)

    def overdue(self, now: float) -> list[Member]:
        """Unauthenticated connections past their HELLO deadline, removed from the table."""
        late: list[Member] = []
        for member, opened in self.unauthenticated.items():
            if now - opened <= self.hello_timeout_s:
                break  # ordered by connect time: the rest are younger
            late.append(member)
        for member in late:
            del self.unauthenticated[member]
        self.hello_timeouts += len(late)
        return late

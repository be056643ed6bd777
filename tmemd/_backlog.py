"""The reply backlog: how many reply bytes may wait for slow readers.

Why
---
A request of 48 bytes can ask for a reply of 64 KiB, so a client that
pipelines GETs and never reads makes the daemon hold replies, not requests.
asyncio's ``pause_writing`` fires only after a write, and the daemon answers
a whole read burst before writing it, so that signal alone bounds nothing:
one 256 KiB read of GETs is 5,000 replies.  The connection therefore asks
this ledger for a *budget* before it answers a burst and stops answering
(leaving the rest of the frames in its decoder, and its socket unread) once
the burst's replies have spent it.

The bound
---------
Per connection: the transport's buffer plus the burst being answered stay
within ``per_connection_bytes`` plus one reply frame (the frame that crossed
the line is sent whole).  Across connections: ``total_bytes`` plus one reply
frame per connection, because a connection whose own queue is empty may
always answer one frame; a client that reads its replies is therefore never
stalled by others that do not, while a client that stops reading holds at
most one frame once the total is spent.

How
---
Each connection's queued bytes are sampled from its transport (one
``get_write_buffer_size()`` per burst) and summed here.  A transport's
buffer only grows through our writes and shrinks on its own, so a sample is
never below the truth until the next one, and the sum is an upper bound of
what really waits.  A connection refused a budget is *stalled*: it stops
reading, and the server wakes it when room may have appeared (another
connection drained or closed, or the sweeper re-sampled every queue).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["BacklogMember", "ReplyBacklog"]


class BacklogMember(Protocol):
    """What the ledger needs of a connection."""

    #: Reply bytes this connection had queued at its last sample.
    queued: int

    def write_buffer_size(self) -> int: ...


class ReplyBacklog:
    """Sum of the reply bytes queued on every connection, and the budgets."""

    def __init__(self, per_connection_bytes: int, total_bytes: int) -> None:
        self.per_connection_bytes = per_connection_bytes
        self.total_bytes = total_bytes
        #: Upper bound of the reply bytes queued on all connections now.
        self.queued = 0
        #: Connections with bytes queued at their last sample.
        self.holders: set[BacklogMember] = set()

    def sample(self, member: BacklogMember) -> int:
        """Re-read ``member``'s queue; return it."""
        return self.record(member, member.write_buffer_size())

    def record(self, member: BacklogMember, size: int) -> int:
        self.queued += size - member.queued
        member.queued = size
        if size:
            self.holders.add(member)
        else:
            self.holders.discard(member)
        return size

    def budget(self, member: BacklogMember) -> int:
        """Reply bytes ``member`` may produce now; <= 0 means wait.

        Producing stops once the budget is spent, after the frame that spent
        it, so the frame that crosses the line is the only overshoot.
        """
        own = self.sample(member)
        budget = min(self.per_connection_bytes - own, self.total_bytes - self.queued)
        return budget if own else max(budget, 1)

    def resample(self) -> None:
        """Re-read every queue (the sweeper's tick): drained ones free room."""
        for member in list(self.holders):
            self.sample(member)

    def forget(self, member: BacklogMember) -> None:
        """``member`` closed: its queue goes with its transport."""
        self.record(member, 0)

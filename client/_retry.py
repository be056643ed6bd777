"""Retry policies: when a failed call is tried again, and after how long.

After redis-py's ``Retry`` and its backoff classes: a ``Retry`` says how many
attempts a call gets and which errors earn another one; a backoff object says
how long to wait before each retry.  Both clients ask the same policy object
(``Retry.delay_s``) and do the waiting themselves (``time.sleep`` or
``asyncio.sleep``), so one policy serves both and a test drives it with a fake
clock.

What may be retried, and why it is safe:

* Only errors that say the *connection* failed (``TmemConnectionError``:
  refused, reset, closed, timed out, a garbled stream) and ``ServerBusy`` (a
  daemon at its connection limit turns new connections away with BUSY).  A
  command error (``BadPool``, ``BadArgument``, ...) is an answer: trying it
  again gives the same answer, so it is never retried by default.
* Only calls that are idempotent in tmem: put, get, flush and flush_object,
  their batch forms, and ping.  Doing one twice leaves the daemon as doing it
  once.  ``new_pool``, ``destroy`` and ``control`` are never retried (a
  retried ``new_pool`` could make a second pool).
* An *exclusive* get removes the page as it answers.  If the reply is lost,
  the retry finds no page and answers a miss: on an ephemeral pool a miss is
  always a legitimate answer, so such a get is retried; on a persistent pool
  (``exclusive=True``) a miss would hide a lost page, so that get is not
  retried and the caller sees the connection error.
* A retry goes over a new connection, which says HELLO again.  When the
  daemon is the same instance (same ``server_id``) the pool's id is still
  valid within the lease and the call simply goes on; when it is another
  instance, the pool raises ``PoolGone`` before anything is sent.

The default, ``DEFAULT_RETRY``, is one retry after a short jittered pause:
enough to ride over a connection the daemon closed while it sat idle
(``--idle-timeout``) or a dropped connection, without hiding an outage
behind long waits.  ``Retry(attempts=1)`` (or ``retry=None``) turns retries
off.
"""

from __future__ import annotations

import random
from typing import Protocol

from ._errors import ServerBusy, TmemConnectionError
from ._spec import PoolInfo

__all__ = [
    "DEFAULT_BACKOFF_BASE_S",
    "DEFAULT_BACKOFF_CAP_S",
    "DEFAULT_RETRY",
    "NO_RETRY",
    "Backoff",
    "ConstantBackoff",
    "ExponentialBackoff",
    "NoBackoff",
    "Retry",
    "retries_get",
]

#: First backoff step: a loopback reconnect takes well under a millisecond,
#: so 10 ms is long enough not to hammer a daemon that is restarting.
DEFAULT_BACKOFF_BASE_S = 0.01
#: Longest pause between two attempts: past a second a caller is better told.
DEFAULT_BACKOFF_CAP_S = 1.0


class Backoff(Protocol):
    """How long to wait before the next attempt, after ``failures`` failures."""

    def delay_s(self, failures: int) -> float: ...


class NoBackoff:
    """Retry at once."""

    def delay_s(self, failures: int) -> float:
        return 0.0


class ConstantBackoff:
    """The same pause before every retry."""

    def __init__(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a backoff cannot be negative")
        self.seconds = seconds

    def delay_s(self, failures: int) -> float:
        return self.seconds


class ExponentialBackoff:
    """``base_s * 2**(failures - 1)``, at most ``cap_s``; with ``jitter`` a
    uniform draw below that ("full jitter"), so that clients that lost the
    same daemon at the same moment do not all come back at once."""

    def __init__(
        self,
        base_s: float = DEFAULT_BACKOFF_BASE_S,
        cap_s: float = DEFAULT_BACKOFF_CAP_S,
        jitter: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        if base_s < 0 or cap_s < 0:
            raise ValueError("a backoff cannot be negative")
        self.base_s = base_s
        self.cap_s = cap_s
        self.jitter = jitter
        self._rng = rng if rng is not None else random.Random()

    def delay_s(self, failures: int) -> float:
        # The exponent is bounded so a huge failure count cannot overflow.
        step = min(self.cap_s, self.base_s * 2.0 ** min(max(failures - 1, 0), 64))
        return self._rng.uniform(0.0, step) if self.jitter else step


class Retry:
    """``attempts`` tries in all (1: no retry) for errors of the ``retry_on``
    classes, waiting ``backoff.delay_s(failures)`` between them."""

    def __init__(
        self,
        attempts: int = 2,
        backoff: Backoff | None = None,
        retry_on: tuple[type[BaseException], ...] = (TmemConnectionError, ServerBusy),
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts counts the first try too: it must be at least 1")
        self.attempts = attempts
        self.backoff: Backoff = backoff if backoff is not None else ExponentialBackoff()
        self.retry_on = retry_on

    def delay_s(self, failures: int, error: BaseException) -> float | None:
        """The pause before the next attempt after ``failures`` failed ones,
        the last with ``error``; None when the call must give up and raise."""
        if failures >= self.attempts or not isinstance(error, self.retry_on):
            return None
        return self.backoff.delay_s(failures)

    def __repr__(self) -> str:
        names = ", ".join(cls.__name__ for cls in self.retry_on)
        return f"Retry(attempts={self.attempts}, backoff={self.backoff!r}, retry_on=({names}))"


def retries_get(info: PoolInfo, exclusive: bool | None) -> bool:
    """Whether a get may be retried: not an exclusive get from a persistent
    pool, whose lost reply took the only copy of the page with it."""
    return not (info.persistent and exclusive is True)


#: The clients' default: one retry after at most 10 ms, for the errors above.
DEFAULT_RETRY = Retry()
#: No retries.
NO_RETRY = Retry(attempts=1)

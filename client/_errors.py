"""Exceptions of the tmem client, and the one table that maps statuses to them.

The families, after pymemcache's small exception module:

* ``TmemConnectionError`` (a builtin ``ConnectionError``): the transport failed
  or the reply stream cannot be trusted any more.  The connection has been
  closed; the next call reconnects (and says HELLO again).  ``TmemTimeout``
  and ``TmemProtocolError`` are kinds of it.
* ``ServerError``: the server answered a request with an error status.  Each
  error ``Status`` has its own subclass, found through ``STATUS_TO_EXCEPTION``
  (a unit test checks the table covers every status but OK, MISS and
  REFUSED, which are outcomes, not errors).  The exception carries the wire
  ``status`` and the server's human message, which is for logs only: code
  should branch on the class or on ``status``, never on the text.
  Command errors (status 16-63) leave the connection usable.
* ``Refused``: a ``client.mapping()`` write the daemon did not store whole
  (a put refusal is an outcome on the page level, ``Pool.put`` returns
  False; a value of many pages needs an exception).
* ``FramingError``: a ``ServerError`` *and* a ``TmemConnectionError``: the
  server found our byte stream out of sync (status 64 and up), sent one error
  frame and closed the connection.

``ValueError``/``TypeError`` are raised, before anything is sent, for
arguments the client can check itself (ids out of range, wrong page length).
"""

from __future__ import annotations

from typing import Any

import msgpack

from tmem.proto import RefuseReason, Status

__all__ = [
    "FIRST_ERROR_STATUS",
    "FIRST_FRAMING_STATUS",
    "STATUS_TO_EXCEPTION",
    "AuthFailed",
    "BadArgument",
    "BadFlags",
    "BadLength",
    "BadMagic",
    "BadOpcode",
    "BadPageSize",
    "BadPool",
    "BadSpecVersion",
    "BadVersion",
    "Forbidden",
    "FrameTooLarge",
    "FramingError",
    "NotAuthenticated",
    "PoolGone",
    "Refused",
    "ServerBusy",
    "ServerDead",
    "ServerError",
    "ServerInternalError",
    "ServerTimeout",
    "TmemConnectionError",
    "TmemError",
    "TmemProtocolError",
    "TmemTimeout",
    "TooManyPools",
    "Unsupported",
    "error_from_response",
]


class TmemError(Exception):
    """Base class of every error this library raises (but ValueError/TypeError)."""


class TmemConnectionError(TmemError, ConnectionError):
    """The connection failed or was closed; it has been dropped.

    Likely causes: the daemon is not running or not listening on that
    address, a firewall, the daemon restarted, or the network dropped.  The
    next call reconnects; a request that was in flight may or may not have
    been carried out.
    """


class TmemTimeout(TmemConnectionError, TimeoutError):
    """No reply (or no connection) within the client's ``timeout``.

    Likely causes: an overloaded or stopped daemon (SIGSTOP, a debugger), a
    network partition, or a ``timeout`` too short for a very large batch.
    The connection was closed because a late reply would be out of step.
    """


class TmemProtocolError(TmemConnectionError):
    """The reply stream broke the protocol (bad magic, a reply to a request
    we did not send, an undecodable body); the connection was closed.

    Likely causes: the address is not a tmemd (a web server, memcached, a
    TLS port spoken to in plain text or the reverse), or a daemon bug.
    """


class ServerDead(TmemConnectionError):
    """A client of several servers: the server holding this page is marked
    dead (it failed a connect or a call less than ``dead_timeout`` seconds
    ago), so nothing was sent to it.

    Raised for persistent pools (whose pages cannot be faked as misses) when
    no replica can answer, and for every pool of a client made with
    ``raise_on_dead=True``; an ephemeral pool otherwise misses quietly.
    docs/multi-server.md says what happens to the pages meanwhile.
    """


class Refused(TmemError):
    """A value was not stored: the daemon refused a page of it (``reason``,
    a ``RefuseReason``), or its key's object holds another key (a hash
    collision; ``reason`` is None).  Raised by ``client.mapping()`` writes,
    which are all-or-nothing: the new value is not visible and the key's
    previous value, if any, is still there.  ``keys`` are the keys that
    were not stored (a batch may store the others).

    Likely causes: the daemon's memory or the persistent share is full, the
    client's cap is reached, or an administrator froze the client.
    """

    def __init__(
        self, message: str, reason: RefuseReason | None = None, keys: tuple[Any, ...] = ()
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.keys = keys

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.reason, self.keys))


def _status_name(status: int) -> str:
    try:
        return Status(status).name
    except ValueError:
        return f"STATUS_{status}"


class ServerError(TmemError):
    """The server answered with an error status.

    ``status`` is the wire status (a ``Status`` unless the daemon is newer
    than this client); ``message`` the server's text (for logs, not for
    logic); ``request_id`` the id of the failed request.
    """

    def __init__(self, status: int, message: str = "", request_id: int = 0) -> None:
        name = _status_name(status)
        super().__init__(f"{name}: {message}" if message else name)
        self.status = status
        self.message = message
        self.request_id = request_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status, self.message, self.request_id))


class BadOpcode(ServerError):
    """The server does not know this opcode: it speaks an older protocol."""


class BadPool(ServerError):
    """No pool with this id for this client.

    Likely causes: the pool was destroyed, the client's lease ended while it
    was disconnected (its pools were freed), the daemon restarted, or the
    pool belongs to another client name.
    """


class PoolGone(BadPool):
    """This ``Pool`` object's pool no longer exists, for good; nothing was sent.

    Raised by every call on the pool object once it knows: it destroyed the
    pool itself, the daemon answered BAD_POOL for it (pool ids are never
    reused within one daemon instance, so BAD_POOL means gone), or the client
    reconnected to a different daemon instance (another ``server_id``: a
    restart without saved state), where the same id may name someone else's
    new pool.  Make a new pool (or re-attach with ``client.pool(id)`` if you
    know the id is yours on this instance).
    """


class BadLength(ServerError):
    """The payload length does not fit the request (a page of the wrong size)."""


class BadFlags(ServerError):
    """Reserved or contradictory flag bits (e.g. a persistent shared pool)."""


class BadArgument(ServerError):
    """A field or body the server rejected: a bad client name, a second HELLO,
    a shared pool without a UUID, a malformed control body."""


class NotAuthenticated(ServerError):
    """A request arrived before HELLO; a client bug, since ``Client`` always
    says HELLO first."""


class AuthFailed(ServerError):
    """The daemon does not know this client name or the token is wrong; the
    server closes the connection.  Check ``client_name`` and ``token``."""


class Forbidden(ServerError):
    """Not allowed for this client: an admin-only control command, or a shared
    pool UUID an administrator has not authorised for this client."""


class TooManyPools(ServerError):
    """This client already has the most pools the daemon allows; destroy
    unused pools (pools outlive connections until the lease ends)."""


class BadPageSize(ServerError):
    """The daemon does not support this pool page size."""


class BadSpecVersion(ServerError):
    """The pool-flags ABI version is not one the daemon speaks."""


class Unsupported(ServerError):
    """The daemon does not support this command (an unknown control ``cmd``)."""


class ServerBusy(ServerError):
    """The daemon is temporarily unable to serve the request; retry later."""


class ServerInternalError(ServerError):
    """A bug in the daemon; its log has the traceback."""


class FramingError(ServerError, TmemConnectionError):
    """The server could not parse our byte stream and closed the connection."""


class BadMagic(FramingError):
    """The server saw a bad magic byte: our stream was out of step (a client bug)."""


class BadVersion(FramingError):
    """The server does not speak this framing version of the protocol."""


class FrameTooLarge(FramingError):
    """A request payload exceeded the server's limit (``max_request_payload``)."""


class ServerTimeout(FramingError):
    """The server gave up waiting for the rest of a partly sent request
    (a stalled or very slow client)."""


#: The one map from error status to exception class.
STATUS_TO_EXCEPTION: dict[Status, type[ServerError]] = {
    Status.BAD_OPCODE: BadOpcode,
    Status.BAD_POOL: BadPool,
    Status.BAD_LENGTH: BadLength,
    Status.BAD_FLAGS: BadFlags,
    Status.BAD_ARGUMENT: BadArgument,
    Status.NOT_AUTHENTICATED: NotAuthenticated,
    Status.AUTH_FAILED: AuthFailed,
    Status.FORBIDDEN: Forbidden,
    Status.TOO_MANY_POOLS: TooManyPools,
    Status.BAD_PAGE_SIZE: BadPageSize,
    Status.BAD_SPEC_VERSION: BadSpecVersion,
    Status.UNSUPPORTED: Unsupported,
    Status.BUSY: ServerBusy,
    Status.INTERNAL_ERROR: ServerInternalError,
    Status.BAD_MAGIC: BadMagic,
    Status.BAD_VERSION: BadVersion,
    Status.FRAME_TOO_LARGE: FrameTooLarge,
    Status.TIMEOUT: ServerTimeout,
}

#: First status of the framing-error range (the server closes after these).
FIRST_FRAMING_STATUS = 64
#: First status of the command-error range (below it: outcomes).
FIRST_ERROR_STATUS = 16


def _message_of(payload: bytes | bytearray | memoryview) -> str:
    """The human text of an error body; never fails (the text is for logs)."""
    if not payload:
        return ""
    try:
        body = msgpack.unpackb(payload, raw=False)
    except Exception:  # any garbage: the message is informative only
        return repr(bytes(payload[:200]))
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return repr(body)[:200]


def error_from_response(
    status: int, request_id: int, payload: bytes | bytearray | memoryview
) -> ServerError:
    """The exception for an error status (16 and up), unknown statuses included.

    A status this client does not know (a newer daemon) becomes a plain
    ``ServerError`` in the command range and a plain ``FramingError`` in the
    framing range, so the connection rule still holds.
    """
    message = _message_of(payload)
    try:
        known = Status(status)
    except ValueError:
        cls = FramingError if status >= FIRST_FRAMING_STATUS else ServerError
        return cls(status, message, request_id)
    return STATUS_TO_EXCEPTION.get(known, ServerError)(known, message, request_id)

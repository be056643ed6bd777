"""Protocol errors, split as h11 splits them.

``RemoteProtocolError``: the *peer* sent bytes that break the framing.  It
carries the wire ``Status`` to answer with (BAD_MAGIC, BAD_VERSION,
FRAME_TOO_LARGE); after it the stream is out of sync and the connection must
close.  ``LocalProtocolError``: *our* caller asked to encode something that
cannot go on the wire (a field out of range); nothing was sent.
"""

from __future__ import annotations

from ._constants import NO_OPCODE, Status

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base of both protocol error kinds."""


class RemoteProtocolError(ProtocolError):
    """The peer's bytes are malformed; answer with ``status`` and close.

    ``request_id`` and ``opcode`` come from the offending header when it was
    readable (FRAME_TOO_LARGE), so that the error frame can name the request
    that broke the stream; otherwise they are 0 and ``NO_OPCODE``.
    """

    def __init__(
        self, status: Status, message: str, request_id: int = 0, *, opcode: int = NO_OPCODE
    ) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id
        self.opcode = opcode


class LocalProtocolError(ProtocolError, ValueError):
    """A frame we were asked to encode has a field that does not fit."""

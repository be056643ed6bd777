"""Requests as the daemon's handlers receive them, for tests without sockets."""

from __future__ import annotations

from tmem.proto import Request, RequestDecoder, RequestFields, encode


def fields_of(request: Request) -> RequestFields:
    """``request`` through the wire and the decoder: the fields a handler reads."""
    decoder = RequestDecoder()
    decoder.feed(encode(request))
    fields = RequestFields()
    assert decoder.next_into(fields)
    return fields

"""The sans-IO heart of the client: requests out, replies matched, results in.

Theory of operation
-------------------
``ClientCore`` knows the protocol and nothing of sockets or event loops
(after h11 and asyncpg's protocol core).  One core serves one connection:

1. A *builder* (``hello``, ``put``, ``get``, ...) checks its arguments,
   assigns the next request id, packs the header with
   ``tmem.proto.request_header`` and queues ``[header, payload]`` in an
   outbox (the page itself is never copied), and appends a ``Call`` to a
   FIFO of requests in flight.  A check that fails raises before anything
   is queued, so a caller's mistake never disturbs the stream.
2. The transport takes the outbox with ``data_to_send()`` and writes it in
   one go (a batch of builders, one write: that is pipelining).
3. The transport hands every received chunk to ``receive_data()``.  The
   one ``ResponseDecoder`` turns bytes into frames; each frame must carry the
   request id and opcode of the call at the head of the FIFO (the server
   answers in order), and the call's converter turns it into a value or a
   typed exception.  ``receive_data`` returns the calls it completed.
4. Anything that means the stream can no longer be trusted — a garbled
   frame, a reply nobody asked for, a framing-error status from the server,
   the connection ending — is *fatal*: every call in flight fails with that
   error and ``core.error`` is set.  The transport then closes the
   connection (pymemcache's rule: an error while reading a reply closes the
   connection) and a fresh core serves the next connection.

Command errors (status 16-63) fail only their own call; the stream is still
in step and the connection lives on.  ``Call.on_done`` lets an asyncio
transport wake a future without the core knowing about futures.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, Generic, NoReturn, TypeVar, cast

import msgpack

from tmem.proto import (
    NEED_DATA,
    NO_OPCODE,
    NO_POOL,
    GetFlags,
    LocalProtocolError,
    Opcode,
    PoolSpec,
    RefuseReason,
    RemoteProtocolError,
    Response,
    ResponseDecoder,
    Status,
    encode_pool_flags,
    pack_request_header,
)

from ._errors import (
    FIRST_ERROR_STATUS,
    FIRST_FRAMING_STATUS,
    ServerError,
    TmemConnectionError,
    TmemError,
    TmemProtocolError,
    error_from_response,
)
from ._spec import Page, PoolInfo, check_client_name, check_handle, check_object_id, check_page

__all__ = [
    "MAX_IN_FLIGHT_BYTES",
    "MAX_IN_FLIGHT_REQUESTS",
    "BatchCall",
    "Call",
    "ClientCore",
    "window_for",
    "window_plan",
]

T = TypeVar("T")
_U32: Final = 0xFFFFFFFF

#: Most requests a batch keeps in flight.  Enough to hide a loopback round
#: trip (tens of µs, docs/bench/) many times over, few enough that a huge batch never has more
#: than a bounded amount of data queued in either direction.
MAX_IN_FLIGHT_REQUESTS: Final = 256
#: Most page bytes a batch keeps in flight (1 MiB: 256 pages of 4 KiB).  With
#: blocking sends, a batch whose unread replies outgrow the socket buffers
#: of both ends would deadlock; bounding bytes (not only requests) keeps
#: 64 KiB pages as safe as 4 KiB ones.
MAX_IN_FLIGHT_BYTES: Final = 1 << 20


def window_for(page_size: int) -> int:
    """How many page requests a batch may keep in flight for this page size."""
    return max(1, min(MAX_IN_FLIGHT_REQUESTS, MAX_IN_FLIGHT_BYTES // max(1, page_size)))


def window_plan(count: int, window: int) -> Iterator[tuple[int, int, int]]:
    """Split a batch of ``count`` requests into chunks of half a window.

    Yields ``(start, stop, wait_chunk)``: before sending requests
    ``[start, stop)``, chunk number ``wait_chunk`` (if >= 0) must be
    complete, so that at most ``window`` requests are ever in flight while
    the next half window is already on its way as the previous one is
    answered.  Example: count 1000, window 256 -> (0, 128, -2),
    (128, 256, -1), (256, 384, 0), ...
    """
    step = max(1, window // 2)
    chunks_in_flight = max(1, window // step)
    for chunk, start in enumerate(range(0, count, step)):
        yield start, min(count, start + step), chunk - chunks_in_flight


class Call(Generic[T]):
    """One request in flight; the core completes it when its reply arrives."""

    __slots__ = ("_convert", "_error", "_value", "done", "on_done", "opcode", "request_id")

    #: Replies still to come (a ``BatchCall`` waits for several).
    remaining = 1

    def __init__(self, request_id: int, opcode: Opcode, convert: Callable[[Response], T]) -> None:
        #: The id of the next reply this call expects.
        self.request_id = request_id
        self.opcode = opcode
        self._convert = convert
        self._value: T | None = None
        self._error: BaseException | None = None
        self.done = False
        #: Called (no arguments) once the call completes; for async transports.
        self.on_done: Callable[[], object] | None = None

    def result(self) -> T:
        """The value of the reply, or raise its error."""
        if not self.done:
            raise RuntimeError(f"request #{self.request_id} has no reply yet")
        if self._error is not None:
            raise self._error
        return cast(T, self._value)

    @property
    def error(self) -> BaseException | None:
        """The exception ``result()`` raises, if any."""
        return self._error

    def _complete(self, response: Response) -> None:
        """Convert the reply; a protocol error is re-raised (it is fatal)."""
        try:
            self._value = self._convert(response)
        except ServerError as exc:
            self._error = exc
        except TmemProtocolError as exc:
            self._finish(exc)
            raise
        self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        if error is not None:
            self._error = error
        self.done = True
        if self.on_done is not None:
            self.on_done()


class BatchCall(Call[list[T]]):
    """Consecutive requests of one kind, completed as one call.

    The server answers in order, so one FIFO entry can stand for a run of
    requests with consecutive ids: it converts each reply as it comes and
    its value is the list of their values.  A ``Call`` per page was a quarter
    of the client's cost per pipelined op (``bench/client_path.py``,
    docs/bench/micro.md).
    A command error in one reply (BadPool, ...) is kept and raised by
    ``result()`` once every reply is in, as a list of calls would.
    """

    __slots__ = ("_item", "remaining", "values")

    def __init__(
        self, request_id: int, opcode: Opcode, convert: Callable[[Response], T], count: int
    ) -> None:
        super().__init__(request_id, opcode, _no_convert)
        self._item = convert
        self.remaining = count
        self.values: list[T | None] = []

    def _complete(self, response: Response) -> None:
        try:
            value: T | None = self._item(response)
        except ServerError as exc:
            value = None
            if self._error is None:
                self._error = exc
        except TmemProtocolError as exc:
            if self.remaining == 1:  # already off the FIFO: finish here
                self._finish(exc)
            raise
        self.values.append(value)
        self.remaining -= 1
        self.request_id = (self.request_id + 1) & _U32
        if not self.remaining:
            self._value = cast(list[T], self.values)
            self._finish(None)


def _no_convert(response: Response) -> NoReturn:
    raise AssertionError("a BatchCall converts each reply itself")


# --- reply converters: Response -> value, or raise ----------------------------


def _unexpected(response: Response) -> NoReturn:
    if response.status >= FIRST_ERROR_STATUS:
        raise error_from_response(response.status, response.request_id, response.payload)
    raise TmemProtocolError(f"unexpected outcome to request: {response.describe()}")


def _to_none(response: Response) -> None:
    if response.status != Status.OK:
        _unexpected(response)


def _to_value(response: Response) -> int:
    if response.status != Status.OK:
        _unexpected(response)
    return response.value


def _to_flushed(response: Response) -> bool:
    return _to_value(response) != 0


def _to_map(response: Response) -> dict[str, Any]:
    if response.status != Status.OK:
        _unexpected(response)
    try:
        body = msgpack.unpackb(response.payload, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise TmemProtocolError(f"undecodable reply body: {exc}") from exc
    if not isinstance(body, dict):
        raise TmemProtocolError(f"reply body is a {type(body).__name__}, not a map")
    return body


def _to_refusal(response: Response) -> RefuseReason | None:
    status = response.status
    if status == Status.OK:
        return None
    if status != Status.REFUSED:
        _unexpected(response)
    try:
        return RefuseReason(response.value)
    except ValueError:  # a reason from a newer daemon: still a refusal
        return RefuseReason.UNSPECIFIED


def _to_page(response: Response) -> bytes | None:
    status = response.status
    if status == Status.OK:
        payload = response.payload
        return payload if isinstance(payload, bytes) else bytes(payload)
    if status != Status.MISS:
        _unexpected(response)
    return None


def _get_flags(exclusive: bool | None) -> int:
    if exclusive is None:
        return 0
    return GetFlags.EXCLUSIVE if exclusive else GetFlags.KEEP


class ClientCore:
    """Protocol state of one connection: builders, the FIFO and the decoder."""

    def __init__(self, client_name: str, token: str | None = None) -> None:
        self.client_name = check_client_name(client_name)
        if token is not None and not isinstance(token, str):
            raise TypeError("token must be a str or None")
        self._token = token
        self._decoder = ResponseDecoder()
        self._pending: deque[Call[Any]] = deque()
        self._outbox: list[bytes | bytearray | memoryview] = []
        self._next_id = 1
        #: The fatal error that ended this core (the connection must close).
        self.error: TmemError | None = None
        #: HELLO's reply: server name, version, lease_s, max_request_payload.
        self.server_info: dict[str, Any] = {}

    @property
    def idle(self) -> bool:
        """In step with nothing in flight: the connection may serve another caller."""
        return self.error is None and not self._pending

    @property
    def in_flight(self) -> int:
        """Requests built whose replies have not arrived."""
        return sum(call.remaining for call in self._pending)

    # --- output ---------------------------------------------------------------

    def data_to_send(self) -> list[bytes | bytearray | memoryview]:
        """Every queued request's bytes, in order, as a list of buffers."""
        out, self._outbox = self._outbox, []
        return out

    def _request(
        self,
        opcode: Opcode,
        convert: Callable[[Response], T],
        pool_id: int = NO_POOL,
        object_id: int = 0,
        index: int = 0,
        flags: int = 0,
        arg: int = 0,
        payload: Page = b"",
    ) -> Call[T]:
        if self.error is not None:
            raise self.error
        request_id = self._next_id
        # Callers validated object id, index and page already (check_handle,
        # check_page): pack without request_header()'s checks.
        header = pack_request_header(
            opcode, request_id, pool_id, object_id, index, flags, arg, len(payload)
        )
        self._next_id = (request_id + 1) & _U32
        self._outbox.append(header)
        if payload:
            self._outbox.append(payload)
        call = Call(request_id, opcode, convert)
        self._pending.append(call)
        return call

    def hello(self) -> Call[dict[str, Any]]:
        """HELLO with this core's client name (and token); must go first."""
        body: dict[str, str] = {"client": self.client_name}
        if self._token is not None:
            body["token"] = self._token
        return self._request(Opcode.HELLO, self._on_hello, payload=msgpack.packb(body))

    def _on_hello(self, response: Response) -> dict[str, Any]:
        self.server_info = _to_map(response)
        return self.server_info

    def ping(self) -> Call[None]:
        """PING: a round trip with no effect."""
        return self._request(Opcode.PING, _to_none)

    def control(self, cmd: str, args: Mapping[str, Any]) -> Call[dict[str, Any]]:
        """CONTROL ``{"cmd": cmd, **args}``; the reply is a map."""
        if not isinstance(cmd, str):
            raise TypeError("control cmd must be a str")
        body = msgpack.packb({**args, "cmd": cmd})
        return self._request(Opcode.CONTROL, _to_map, payload=body)

    def new_pool(self, spec: PoolSpec, shared_uuid: int | None = None) -> Call[int]:
        """NEW_POOL; the call's value is the new pool id."""
        flags = encode_pool_flags(spec)
        return self._request(Opcode.NEW_POOL, _to_value, object_id=shared_uuid or 0, arg=flags)

    def destroy_pool(self, pool_id: int) -> Call[None]:
        """DESTROY_POOL."""
        return self._request(Opcode.DESTROY_POOL, _to_none, pool_id=pool_id)

    def put(
        self, info: PoolInfo, object_id: int, index: int, page: Page
    ) -> Call[RefuseReason | None]:
        """PUT_PAGE; the value is None when stored, else the refusal reason."""
        oid, idx = check_handle(object_id, index)
        page = check_page(info, page)
        return self._request(Opcode.PUT_PAGE, _to_refusal, info.pool_id, oid, idx, payload=page)

    def put_batch(
        self, info: PoolInfo, items: Sequence[tuple[int, int, Page]]
    ) -> BatchCall[RefuseReason | None]:
        """PUT_PAGE for each ``(object_id, index, page)``, as one call whose
        value lists None or the refusal per page.

        The items must already be checked (``check_handle``, ``check_page``:
        ``Pool.put_many`` does); checking them again here was a measurable
        cost per page (docs/bench/micro.md).
        """
        return self._batch_of(Opcode.PUT_PAGE, _to_refusal, info.pool_id, 0, items)

    def get_batch(
        self, info: PoolInfo, items: Sequence[tuple[int, int]], exclusive: bool | None = None
    ) -> BatchCall[bytes | None]:
        """GET_PAGE for each checked ``(object_id, index)``, as one call whose
        value lists the page or None per item (see ``put_batch``)."""
        return self._batch_of(Opcode.GET_PAGE, _to_page, info.pool_id, _get_flags(exclusive), items)

    def _batch_of(
        self,
        opcode: Opcode,
        convert: Callable[[Response], T],
        pool_id: int,
        flags: int,
        items: Sequence[tuple[int, int]] | Sequence[tuple[int, int, Page]],
    ) -> BatchCall[T]:
        if self.error is not None:
            raise self.error
        if not items:
            raise ValueError("a batch needs at least one request")
        outbox = self._outbox
        mark = len(outbox)
        first = request_id = self._next_id
        append = outbox.append
        try:
            for item in items:
                payload = item[2] if len(item) == 3 else b""
                append(
                    pack_request_header(
                        opcode, request_id, pool_id, item[0], item[1], flags, 0, len(payload)
                    )
                )
                if payload:
                    append(payload)
                request_id = (request_id + 1) & _U32
        except LocalProtocolError:
            del outbox[mark:]  # nothing of a bad batch is sent
            raise
        self._next_id = request_id
        call = BatchCall(first, opcode, convert, len(items))
        self._pending.append(call)
        return call

    def get(
        self, info: PoolInfo, object_id: int, index: int, exclusive: bool | None = None
    ) -> Call[bytes | None]:
        """GET_PAGE; the value is the page, or None on a miss."""
        oid, idx = check_handle(object_id, index)
        return self._request(
            Opcode.GET_PAGE, _to_page, info.pool_id, oid, idx, flags=_get_flags(exclusive)
        )

    def flush_page(self, info: PoolInfo, object_id: int, index: int) -> Call[bool]:
        """FLUSH_PAGE; the value says whether a page was there."""
        oid, idx = check_handle(object_id, index)
        return self._request(Opcode.FLUSH_PAGE, _to_flushed, info.pool_id, oid, idx)

    def flush_object(self, info: PoolInfo, object_id: int) -> Call[int]:
        """FLUSH_OBJECT; the value is the number of pages flushed."""
        oid = check_object_id(object_id)
        return self._request(Opcode.FLUSH_OBJECT, _to_value, info.pool_id, oid)

    # --- input ----------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Call[Any]]:
        """Feed received bytes; return the calls completed (possibly none).

        Never raises for anything the server sends: a fatal problem fails
        every call in flight and sets ``error`` (the caller closes).
        """
        if self.error is not None:
            return []
        completed: list[Call[Any]] = []
        try:
            self._decoder.feed(data)
            while True:
                frame = self._decoder.next_frame()
                if frame is NEED_DATA:
                    break
                self._dispatch(cast(Response, frame), completed)
        except RemoteProtocolError as exc:
            self._fail_all(TmemProtocolError(f"garbled reply stream: {exc}"), completed)
        except TmemError as error:  # another name: mypyc gives one name one type per function
            self._fail_all(error, completed)
        return completed

    def connection_lost(self, exc: BaseException | None = None) -> list[Call[Any]]:
        """The transport closed; fail what is in flight.  Returns those calls."""
        completed: list[Call[Any]] = []
        if self.error is None:
            reason = f": {exc}" if exc is not None else " by the server"
            error = TmemConnectionError(f"connection closed{reason}")
            if exc is not None:
                error.__cause__ = exc
            self._fail_all(error, completed)
        return completed

    def _dispatch(self, frame: Response, completed: list[Call[Any]]) -> None:
        if frame.status >= FIRST_FRAMING_STATUS or frame.opcode == NO_OPCODE:
            # A connection-level error: the server lost sync with us, or turned
            # the connection away (BUSY), and closes.  Its frame names no
            # request of ours (request id 0, opcode 0xFF), so do not match it.
            raise error_from_response(frame.status, frame.request_id, frame.payload)
        if not self._pending:
            raise TmemProtocolError(f"reply to no request in flight: {frame.describe()}")
        call = self._pending[0]
        if frame.request_id != call.request_id or frame.opcode != call.opcode:
            raise TmemProtocolError(
                f"reply out of order: expected #{call.request_id} {call.opcode.name}, "
                f"got {frame.describe()}"
            )
        if call.remaining == 1:  # its last reply: the call is done after this
            self._pending.popleft()
            completed.append(call)
        call._complete(frame)

    def _fail_all(self, error: TmemError, completed: list[Call[Any]]) -> None:
        self.error = error
        pending, self._pending = self._pending, deque()
        self._outbox = []
        for call in pending:
            call._finish(error)
            completed.append(call)

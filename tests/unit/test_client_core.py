"""The sans-IO client core: request bytes, reply matching, errors (no sockets)."""

from __future__ import annotations

import itertools
import pickle
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmem.client import (
    STATUS_TO_EXCEPTION,
    BadPool,
    FramingError,
    ServerError,
    TmemConnectionError,
    TmemProtocolError,
)
from tmem.client._core import ClientCore, window_for, window_plan
from tmem.client._spec import PoolInfo
from tmem.proto import (
    NO_POOL,
    CodecId,
    GetFlags,
    LocalProtocolError,
    Opcode,
    PoolSpec,
    RefuseReason,
    Request,
    RequestDecoder,
    Response,
    Status,
    encode,
    encode_pool_flags,
)
from tmemd._handlers import UNUSED

PAGE = bytes(range(256)) * 16
INFO = PoolInfo(pool_id=3)
BIG_OID = (1 << 192) - 2


def sent(core: ClientCore) -> bytes:
    return b"".join(bytes(chunk) for chunk in core.data_to_send())


def reply(
    opcode: int, request_id: int, status: int = Status.OK, value: int = 0, payload: bytes = b""
) -> bytes:
    return encode(Response(opcode, status, request_id, value, payload))


def answered(
    core: ClientCore, call: Any, status: int = Status.OK, value: int = 0, payload: bytes = b""
) -> Any:
    """Feed the reply to ``call`` and return its result."""
    core.receive_data(reply(call.opcode, call.request_id, status, value, payload))
    assert call.done
    return call.result()


# --- request bytes ---------------------------------------------------------------


def test_each_builder_sends_exactly_the_encoded_request() -> None:
    core = ClientCore("host-1", token="s3cret")
    spec = PoolSpec(persistent=True, page_size=8192, codec=CodecId.ZSTD)
    cases: list[tuple[Any, Request]] = [
        (
            core.hello,
            Request(
                Opcode.HELLO, 1, payload=msgpack.packb({"client": "host-1", "token": "s3cret"})
            ),
        ),
        (core.ping, Request(Opcode.PING, 2)),
        (
            lambda: core.control("stats", {}),
            Request(Opcode.CONTROL, 3, payload=msgpack.packb({"cmd": "stats"})),
        ),
        (lambda: core.new_pool(spec), Request(Opcode.NEW_POOL, 4, arg=encode_pool_flags(spec))),
        (
            lambda: core.new_pool(PoolSpec(shared=True), 0xABC),
            Request(
                Opcode.NEW_POOL, 5, object_id=0xABC, arg=encode_pool_flags(PoolSpec(shared=True))
            ),
        ),
        (lambda: core.destroy_pool(3), Request(Opcode.DESTROY_POOL, 6, pool_id=3)),
        (
            lambda: core.put(INFO, BIG_OID, 7, PAGE),
            Request(Opcode.PUT_PAGE, 7, 3, BIG_OID, 7, payload=PAGE),
        ),
        (lambda: core.get(INFO, 1, 2), Request(Opcode.GET_PAGE, 8, 3, 1, 2)),
        (
            lambda: core.get(INFO, 1, 2, exclusive=True),
            Request(Opcode.GET_PAGE, 9, 3, 1, 2, flags=GetFlags.EXCLUSIVE),
        ),
        (
            lambda: core.get(INFO, 1, 2, exclusive=False),
            Request(Opcode.GET_PAGE, 10, 3, 1, 2, flags=GetFlags.KEEP),
        ),
        (lambda: core.flush_page(INFO, 5, 6), Request(Opcode.FLUSH_PAGE, 11, 3, 5, 6)),
        (lambda: core.flush_object(INFO, BIG_OID), Request(Opcode.FLUSH_OBJECT, 12, 3, BIG_OID)),
    ]
    for build, expected in cases:
        call = build()
        assert call.request_id == expected.request_id
        assert sent(core) == encode(expected), expected.describe()
    assert core.in_flight == len(cases)


def test_a_page_is_queued_without_a_copy() -> None:
    core = ClientCore("a")
    page = bytearray(PAGE)
    core.put(INFO, 1, 1, page)
    chunks = core.data_to_send()
    assert chunks[1] is page
    assert core.data_to_send() == []


def test_request_ids_wrap_at_32_bits() -> None:
    core = ClientCore("a")
    core._next_id = 0xFFFFFFFF
    assert core.ping().request_id == 0xFFFFFFFF
    assert core.ping().request_id == 0


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda c: c.put(INFO, 1 << 192, 0, PAGE), ValueError),
        (lambda c: c.put(INFO, -1, 0, PAGE), ValueError),
        (lambda c: c.put(INFO, 0, 1 << 32, PAGE), ValueError),
        (lambda c: c.put(INFO, 0, 0, PAGE[:-1]), ValueError),
        (lambda c: c.put(INFO, 0, 0, "text" * 1024), TypeError),
        (lambda c: c.put(INFO, 1.0, 0, PAGE), TypeError),
        (lambda c: c.get(INFO, 0, -1), ValueError),
        (lambda c: c.flush_object(INFO, 1 << 192), ValueError),
        (lambda c: c.control(7, {}), TypeError),
        (lambda c: c.control("x", {"arg": object()}), TypeError),
    ],
)
def test_bad_arguments_raise_before_anything_is_queued(build: Any, error: type) -> None:
    core = ClientCore("a")
    with pytest.raises(error):
        build(core)
    assert core.data_to_send() == []
    assert core.in_flight == 0


def test_precompressed_pools_take_short_pages_but_not_empty_ones() -> None:
    core = ClientCore("a")
    info = PoolInfo(pool_id=0, precompressed=True)
    core.put(info, 0, 0, b"z")
    core.put(info, 0, 1, memoryview(PAGE))
    with pytest.raises(ValueError):
        core.put(info, 0, 2, b"")
    with pytest.raises(ValueError):
        core.put(info, 0, 3, PAGE + b"!")


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "é", "a/b"])
def test_bad_client_names_are_refused_locally(name: str) -> None:
    with pytest.raises(ValueError):
        ClientCore(name)


# --- replies -----------------------------------------------------------------------


def test_replies_are_matched_in_order_and_converted() -> None:
    core = ClientCore("a")
    hello = core.hello()
    put = core.put(INFO, 1, 2, PAGE)
    refused = core.put(INFO, 1, 3, PAGE)
    hit, miss = core.get(INFO, 1, 2), core.get(INFO, 1, 3)
    flushed, objects = core.flush_page(INFO, 1, 2), core.flush_object(INFO, 1)
    pool = core.new_pool(PoolSpec())
    control = core.control("stats", {"verbose": True})
    server = {"server": "tmemd", "protocol": 1, "lease_s": 60.0}
    stream = b"".join(
        [
            reply(Opcode.HELLO, hello.request_id, payload=msgpack.packb(server)),
            reply(Opcode.PUT_PAGE, put.request_id),
            reply(
                Opcode.PUT_PAGE, refused.request_id, Status.REFUSED, RefuseReason.PERSISTENT_FULL
            ),
            reply(Opcode.GET_PAGE, hit.request_id, payload=PAGE),
            reply(Opcode.GET_PAGE, miss.request_id, Status.MISS),
            reply(Opcode.FLUSH_PAGE, flushed.request_id, value=1),
            reply(Opcode.FLUSH_OBJECT, objects.request_id, value=41),
            reply(Opcode.NEW_POOL, pool.request_id, value=5),
            reply(Opcode.CONTROL, control.request_id, payload=msgpack.packb({"pools": []})),
        ]
    )
    done = core.receive_data(stream)
    assert done == [hello, put, refused, hit, miss, flushed, objects, pool, control]
    assert hello.result() == server == core.server_info
    assert put.result() is None
    assert refused.result() is RefuseReason.PERSISTENT_FULL
    assert hit.result() == PAGE and miss.result() is None
    assert flushed.result() is True and objects.result() == 41
    assert pool.result() == 5 and control.result() == {"pools": []}
    assert core.in_flight == 0 and core.error is None


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_replies_split_anywhere_give_the_same_results(data: st.DataObject) -> None:
    core = ClientCore("a")
    calls = [core.get(INFO, 1, i) for i in range(4)]
    pages = [bytes([i]) * 4096 for i in range(4)]
    stream = b"".join(
        reply(Opcode.GET_PAGE, call.request_id, payload=page)
        if i % 2 == 0
        else reply(Opcode.GET_PAGE, call.request_id, Status.MISS)
        for i, (call, page) in enumerate(zip(calls, pages, strict=True))
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    for start, stop in itertools.pairwise(bounds):
        core.receive_data(stream[start:stop])
    assert [call.result() for call in calls] == [pages[0], None, pages[2], None]


def test_replies_fed_byte_by_byte() -> None:
    core = ClientCore("a")
    calls = [core.ping() for _ in range(3)]
    stream = b"".join(reply(Opcode.PING, call.request_id) for call in calls)
    completed = []
    for i in range(len(stream)):
        completed += core.receive_data(stream[i : i + 1])
    assert completed == calls
    assert all(call.result() is None for call in calls)


@pytest.mark.parametrize(
    "bad",
    [
        lambda call: reply(Opcode.PING, call.request_id + 1),  # wrong request id
        lambda call: reply(Opcode.GET_PAGE, call.request_id),  # wrong opcode
        lambda call: b"\x00" * 16,  # bad magic
        lambda call: reply(Opcode.PING, call.request_id)[:1] + b"\x09" + b"\x00" * 14,
        lambda call: reply(Opcode.PING, call.request_id, Status.MISS),  # not an outcome of PING
    ],
)
def test_a_broken_reply_fails_everything_in_flight(bad: Any) -> None:
    core = ClientCore("a")
    first, second = core.ping(), core.ping()
    done = core.receive_data(bad(first))
    assert done == [first, second]
    assert isinstance(core.error, TmemProtocolError)
    for call in (first, second):
        with pytest.raises(TmemProtocolError):
            call.result()
    assert core.receive_data(reply(Opcode.PING, second.request_id)) == []
    with pytest.raises(TmemProtocolError):
        core.ping()


def test_a_reply_to_nothing_is_a_protocol_error() -> None:
    core = ClientCore("a")
    core.receive_data(reply(Opcode.PING, 1))
    assert isinstance(core.error, TmemProtocolError)


def test_an_undecodable_control_reply_is_a_protocol_error() -> None:
    core = ClientCore("a")
    call, after = core.control("stats", {}), core.ping()
    core.receive_data(reply(Opcode.CONTROL, call.request_id, payload=b"\xc1"))
    assert isinstance(call.error, TmemProtocolError) and isinstance(after.error, TmemProtocolError)


def test_connection_lost_fails_what_is_in_flight() -> None:
    core = ClientCore("a")
    calls = [core.ping(), core.ping()]
    assert core.connection_lost(OSError("reset")) == calls
    for call in calls:
        with pytest.raises(TmemConnectionError, match="reset"):
            call.result()
    assert core.connection_lost(None) == []


def test_on_done_is_called_once_per_call() -> None:
    core = ClientCore("a")
    seen: list[int] = []
    ok, lost = core.ping(), core.ping()
    ok.on_done = lambda: seen.append(ok.request_id)
    lost.on_done = lambda: seen.append(lost.request_id)
    core.receive_data(reply(Opcode.PING, ok.request_id))
    core.connection_lost(None)
    assert seen == [ok.request_id, lost.request_id]


def test_result_before_the_reply_is_a_usage_error() -> None:
    with pytest.raises(RuntimeError):
        ClientCore("a").ping().result()


@pytest.mark.parametrize(
    ("value", "reason"), [(3, RefuseReason.CLIENT_PERSISTENT_CAP), (250, RefuseReason.UNSPECIFIED)]
)
def test_refusal_reasons(value: int, reason: RefuseReason) -> None:
    core = ClientCore("a")
    assert answered(core, core.put(INFO, 0, 0, PAGE), Status.REFUSED, value) is reason


# --- status -> exception -----------------------------------------------------------


def test_the_status_table_is_total_over_error_statuses() -> None:
    outcomes = {Status.OK, Status.MISS, Status.REFUSED}
    assert set(STATUS_TO_EXCEPTION) == set(Status) - outcomes
    assert len(set(STATUS_TO_EXCEPTION.values())) == len(STATUS_TO_EXCEPTION)
    for status, cls in STATUS_TO_EXCEPTION.items():
        assert issubclass(cls, ServerError)
        framing = status >= 64
        assert issubclass(cls, FramingError) == framing
        assert issubclass(cls, TmemConnectionError) == framing
        assert cls.__doc__


@pytest.mark.parametrize("status", sorted(STATUS_TO_EXCEPTION))
def test_every_error_status_raises_its_exception(status: Status) -> None:
    core = ClientCore("a")
    call, after = core.ping(), core.ping()
    body = msgpack.packb({"error": "why it failed"})
    request_id = 0 if status >= 64 else call.request_id
    core.receive_data(
        reply(0xFF if status >= 64 else Opcode.PING, request_id, status, payload=body)
    )
    with pytest.raises(STATUS_TO_EXCEPTION[status]) as caught:
        call.result()
    assert caught.value.status == status
    assert caught.value.message == "why it failed"
    assert str(caught.value) == f"{status.name}: why it failed"
    if status >= 64:  # framing errors: the server closed; all in flight fail
        assert core.error is caught.value and after.done
    else:  # command errors: the stream is in step and goes on
        assert core.error is None and not after.done
        assert answered(core, after) is None


@pytest.mark.parametrize(("status", "kind"), [(40, ServerError), (90, FramingError)])
def test_unknown_error_statuses_keep_the_connection_rule(status: int, kind: type) -> None:
    core = ClientCore("a")
    call = core.ping()
    core.receive_data(reply(Opcode.PING, call.request_id, status, payload=b"\xc1junk"))
    assert type(call.error) is kind
    assert isinstance(call.error, ServerError) and call.error.status == status
    assert (core.error is not None) == (status >= 64)


def test_server_errors_pickle() -> None:
    error = BadPool(Status.BAD_POOL, "no pool 9", 12)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is BadPool and copy.status == Status.BAD_POOL
    assert (copy.message, copy.request_id, str(copy)) == ("no pool 9", 12, str(error))


# --- batch windows --------------------------------------------------------------------


def test_window_sizes_bound_requests_and_bytes() -> None:
    assert window_for(4096) == 256
    assert window_for(65536) == 16
    assert window_for(1 << 30) == 1


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2000), st.integers(1, 300))
def test_window_plan_covers_everything_with_a_bounded_window(count: int, window: int) -> None:
    next_start = 0
    stops: list[int] = []
    for start, stop, wait_chunk in window_plan(count, window):
        assert start == next_start and start < stop <= count
        assert wait_chunk < len(stops)  # only a chunk already sent is waited for
        completed = stops[wait_chunk] if wait_chunk >= 0 else 0  # replies come in order
        assert stop - completed <= max(window, 1)
        stops.append(stop)
        next_start = stop
    assert next_start == count


# --- batch calls --------------------------------------------------------------------


def test_a_batch_sends_the_same_bytes_as_single_calls() -> None:
    single, batched = ClientCore("a"), ClientCore("a")
    items = [(1, 0, PAGE), (BIG_OID, 7, PAGE), (0, 0xFFFFFFFF, PAGE)]
    for item in items:
        single.put(INFO, *item)
    batch = batched.put_batch(INFO, items)
    assert sent(batched) == sent(single)
    assert batch.request_id == 1 and batched.in_flight == 3
    handles = [(1, 0), (BIG_OID, 7)]
    for handle in handles:
        single.get(INFO, *handle, exclusive=False)
    batched.get_batch(INFO, handles, exclusive=False)
    assert sent(batched) == sent(single)
    assert batched.in_flight == 5


def test_a_batch_completes_when_its_last_reply_arrives() -> None:
    core = ClientCore("a")
    before = core.ping()
    batch = core.get_batch(INFO, [(1, i) for i in range(3)])
    after = core.ping()
    stream = (
        reply(Opcode.PING, before.request_id)
        + reply(Opcode.GET_PAGE, 2, payload=PAGE)
        + reply(Opcode.GET_PAGE, 3, Status.MISS)
    )
    done = core.receive_data(stream)
    assert done == [before] and not batch.done and core.in_flight == 2
    done = core.receive_data(reply(Opcode.GET_PAGE, 4, payload=PAGE[:4096]))
    assert done == [batch] and batch.result() == [PAGE, None, PAGE]
    assert answered(core, after) is None and core.in_flight == 0


def test_a_command_error_in_a_batch_is_raised_after_every_reply() -> None:
    core = ClientCore("a")
    batch = core.put_batch(INFO, [(1, i, PAGE) for i in range(3)])
    error = msgpack.packb({"error": "no pool 3"})
    core.receive_data(
        reply(Opcode.PUT_PAGE, 1) + reply(Opcode.PUT_PAGE, 2, Status.BAD_POOL, payload=error)
    )
    assert not batch.done  # the stream is still in step: wait for the rest
    core.receive_data(reply(Opcode.PUT_PAGE, 3, Status.REFUSED, RefuseReason.NO_MEMORY))
    assert batch.done and core.error is None
    with pytest.raises(BadPool, match="no pool 3"):
        batch.result()


@pytest.mark.parametrize("at", [0, 1, 2])
def test_a_broken_reply_in_a_batch_fails_it_and_what_follows(at: int) -> None:
    core = ClientCore("a")
    batch = core.put_batch(INFO, [(1, i, PAGE) for i in range(3)])
    later = core.ping()
    good = b"".join(reply(Opcode.PUT_PAGE, 1 + k) for k in range(at))
    done = core.receive_data(good + reply(Opcode.PING, 1 + at))  # out of order
    assert batch in done and later in done and core.error is not None
    for call in (batch, later):
        with pytest.raises(TmemProtocolError):
            call.result()


def test_a_batch_out_of_range_queues_nothing() -> None:
    core = ClientCore("a")
    with pytest.raises(LocalProtocolError):
        core.get_batch(INFO, [(1, 0), (1, 1 << 32)])  # unchecked items: struct still guards
    assert core.data_to_send() == [] and core.in_flight == 0
    with pytest.raises(ValueError, match="at least one"):
        core.put_batch(INFO, [])
    assert core.ping().request_id == 1


def test_no_request_sets_a_field_its_opcode_does_not_use() -> None:
    """The daemon answers BAD_ARGUMENT to a set unused field (its ``UNUSED``
    table); every builder, batches included, leaves them empty."""
    core = ClientCore("a")
    core.hello(), core.ping(), core.control("stats", {}), core.destroy_pool(3)
    core.new_pool(PoolSpec()), core.new_pool(PoolSpec(shared=True), 0xABC)
    core.put(INFO, 1, 2, PAGE), core.get(INFO, 1, 2), core.get(INFO, 1, 2, exclusive=True)
    core.flush_page(INFO, 1, 2), core.flush_object(INFO, BIG_OID)
    core.put_batch(INFO, [(1, 2, PAGE), (1, 3, PAGE)])
    core.get_batch(INFO, [(1, 2), (1, 3)], False)
    decoder = RequestDecoder()
    decoder.feed(sent(core))
    requests = []
    while isinstance(frame := decoder.next_frame(), Request):
        requests.append(frame)
    assert {r.opcode for r in requests} == {*UNUSED, Opcode.NEW_POOL, Opcode.PUT_PAGE}
    empty = {"pool_id": NO_POOL, "object_id": 0, "index": 0, "payload": b""}
    for request in requests:
        for name in UNUSED.get(request.opcode, ()):
            assert getattr(request, name) == empty[name], request.describe()
        if request.opcode == Opcode.NEW_POOL:
            assert (request.pool_id, request.index, request.payload) == (NO_POOL, 0, b"")

"""BytesPam: the reference PAM's contract and its memory charge."""

from __future__ import annotations

import pytest

from tmemd.engine import BYTES_PAM_OVERHEAD, BytesPam, Pam, PamFull


def test_is_a_pam() -> None:
    assert isinstance(BytesPam(100), Pam)
    assert BytesPam(100).reclaim() is None


def test_store_load_free() -> None:
    pam = BytesPam(1 << 20)
    blobs: list[bytes | bytearray | memoryview] = [
        b"a",
        bytes(100),
        b"xyz" * 1000,
        bytearray(b"mutable"),
        memoryview(b"view"),
    ]
    handles = [pam.store(blob) for blob in blobs]
    assert 0 not in handles and len(set(handles)) == len(handles)
    for handle, blob in zip(handles, blobs, strict=True):
        assert pam.load(handle) == bytes(blob) and type(pam.load(handle)) is bytes
        assert pam.stored_size(handle) == len(blob)
    pam.free(handles[1])
    with pytest.raises(KeyError):
        pam.load(handles[1])
    assert pam.store(b"new") not in handles  # handles are never reused
    pam.check_invariants()


def test_store_copies_mutable_input() -> None:
    pam = BytesPam(1000)
    buffer = bytearray(b"before")
    handle = pam.store(memoryview(buffer))
    buffer[:] = b"after!"
    assert pam.load(handle) == b"before"


def test_charge_and_capacity_boundary() -> None:
    capacity = 2 * (3000 + BYTES_PAM_OVERHEAD)
    pam = BytesPam(capacity)
    first = pam.store(bytes(3000))
    pam.store(bytes(3000))
    assert pam.bytes_used() == capacity  # exactly full is allowed
    with pytest.raises(PamFull):
        pam.store(b"x")
    pam.free(first)
    with pytest.raises(PamFull):
        pam.store(bytes(3001))
    pam.store(bytes(3000))
    stats = pam.statistics()
    assert (stats.objects, stats.bytes_stored, stats.bytes_used) == (2, 6000, capacity)
    assert stats.capacity == capacity and stats.name == "bytes"
    pam.check_invariants()


def test_check_invariants_catches_corruption() -> None:
    pam = BytesPam(1000)
    pam.store(b"abc")
    pam._bytes_stored += 1
    with pytest.raises(AssertionError):
        pam.check_invariants()


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BytesPam(0)

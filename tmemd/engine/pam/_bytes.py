"""BytesPam: the simplest PAM, one ``bytes`` object per stored page.

What: a dict from handle to an immutable ``bytes`` copy of the stored data.
Why: it is the reference PAM.  It is obviously correct, so the engine's
semantics and tests are built on it before the arena PAMs exist, and the
arena PAMs are measured against it (a dict of bytes already comes within 3%
of zsmalloc's density; it just does not bound the process).

How it charges memory: each object costs ``len(data) + BYTES_PAM_OVERHEAD``
against ``capacity_bytes``, and ``store`` raises ``PamFull`` when the charge
would pass the capacity.  Worked example: with ``capacity_bytes = 8192``,
two 3000-byte objects charge 2 * (3000 + 128) = 6256 bytes; a third one
would bring the charge to 9384 > 8192, so it raises ``PamFull`` and the
engine evicts an ephemeral page (freeing 3128 bytes) and retries.

Guarantee: ``load(h)`` returns exactly the bytes stored under ``h`` until
``free(h)``.  Handles count up from 1 and are never reused, so a stale
handle can never alias a newer object (the dict lookup fails instead).
Granularity: one object; there is no larger reclaim unit (``reclaim()``
returns ``None``), so the engine evicts page by page.
"""

from __future__ import annotations

from typing import Final

from mypy_extensions import mypyc_attr

from ._pam import Pam, PamFull, PamStats

__all__ = ["BYTES_PAM_OVERHEAD", "BytesPam", "choose_pams"]

#: Bytes charged per stored object beyond its length.  Measured with
#: tracemalloc at 10^5 objects: 117 bytes (``bytes`` header 33, the dict
#: slot amortized over its growth ~52, the handle ``int`` 32), plus the 8-16
#: bytes of glibc malloc's own header that tracemalloc does not see.
BYTES_PAM_OVERHEAD: Final = 128


# The reference store: tests derive PAMs with other behaviours from it.
@mypyc_attr(allow_interpreted_subclasses=True)
class BytesPam(Pam):
    """A dict of ``bytes`` objects bounded by a byte budget."""

    NAME = "bytes"

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, not {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self._objects: dict[int, bytes] = {}
        self._next_handle = 1
        self._bytes_stored = 0

    def store(self, data: bytes | bytearray | memoryview) -> int:
        blob = bytes(data)  # no copy when ``data`` already is ``bytes``
        size = len(blob)
        charged = self._bytes_stored + size + BYTES_PAM_OVERHEAD * (len(self._objects) + 1)
        if charged > self.capacity_bytes:
            raise PamFull(f"{size} bytes do not fit: {self.bytes_used()} of {self.capacity_bytes}")
        handle = self._next_handle
        self._next_handle = handle + 1
        self._objects[handle] = blob
        self._bytes_stored += size
        return handle

    def load(self, handle: int) -> bytes:
        return self._objects[handle]

    def free(self, handle: int) -> int:
        size = len(self._objects.pop(handle))
        self._bytes_stored -= size
        return size

    def stored_size(self, handle: int) -> int:
        return len(self._objects[handle])

    def bytes_used(self) -> int:
        return self._bytes_stored + BYTES_PAM_OVERHEAD * len(self._objects)

    def check_invariants(self) -> None:
        total = sum(len(blob) for blob in self._objects.values())
        assert total == self._bytes_stored, f"bytes_stored {self._bytes_stored} != sum {total}"
        assert all(0 < h < self._next_handle for h in self._objects), "handle out of range"
        assert self.bytes_used() <= self.capacity_bytes, "charge above capacity"

    def statistics(self) -> PamStats:
        return PamStats(
            name=self.name,
            objects=len(self._objects),
            bytes_stored=self._bytes_stored,
            bytes_used=self.bytes_used(),
            capacity=self.capacity_bytes,
        )


def choose_pams(
    memory_bytes: int, ephemeral: Pam | None, persistent: Pam | None
) -> tuple[Pam, Pam]:
    """The engine's (ephemeral, persistent) PAMs: one given serves both kinds;
    none given, one ``BytesPam`` of ``memory_bytes`` does."""
    if ephemeral is None and persistent is None:
        ephemeral = BytesPam(memory_bytes)
    if ephemeral is None:
        ephemeral = persistent
    if persistent is None:
        persistent = ephemeral
    assert ephemeral is not None and persistent is not None
    return ephemeral, persistent

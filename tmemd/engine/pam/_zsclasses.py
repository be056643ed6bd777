"""zsmalloc size classes: slot size, span length and merging, computed once.

What: the table that maps an object length to the class it is stored in.
Classes step by 16 bytes from 16 to 4_096 (256 sizes).  An object of
length ``n`` needs a slot of ``n + 4`` bytes (the in-band header holding its
handle, see ``_zsmalloc``), rounded up to the class step.

Why spans: a class's slots are packed end to end across a *span* of 1 to
``max_span_frames`` frames, so objects may cross a frame boundary and a
slot size that does not divide 4 KiB still wastes little.  For each size we
pick the span length whose tail waste is smallest, as the kernel's
``calculate_zspage_chain_size()`` does:

    used(k) = floor(k * 4096 / size) * size / (k * 4096),  best k = argmax

Worked example: size 3_008 wastes 1_088 of 4_096 bytes in one frame (1
slot, 73 % used), but 3 frames hold 4 slots (12_032 of 12_288, 97.9 %).
With spans of up to 8 frames, 7 frames hold 9 slots (27_072 of 28_672,
94.4 %) which is less, so 3 it is; and as every size from 2_992 to 3_072
also gives 4 slots in 3 frames, they all merge into the 3_072 class below.

Merging: neighbouring sizes that give the same (span frames, slots per
span) waste the same frames, so they are merged into the largest of them,
as zsmalloc merges classes with equal ``pages_per_zspage`` and
``objs_per_zspage``: fewer classes means fewer half-filled spans.  Example
with 4-frame spans: sizes 2_352..2_448 all give 5 slots in 3 frames and
become one class of 2_448-byte slots.

Huge: a class with one slot per span (sizes above ~3_640 bytes with 8-frame
spans) gains nothing from a header, so its objects are stored alone in a
frame, header-less, up to the full 4_096 bytes (a page stored raw).

Why 8 frames by default, not the 4 of the kernel's old ZS_MAX_ZSPAGE_ORDER:
on the benchmark corpus spans of up to 4 frames lose ~6 % to tail waste,
8 frames ~3 % (the kernel itself went to chains of 8 pages by default in
6.3 for the same reason).  16 frames do worse on 50_000 pages because each
class keeps one half-filled span.  ``bench/pam_density.py`` prints both.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Final

from ._arena import FRAME_BYTES

__all__ = [
    "CLASS_STEP_BYTES",
    "DEFAULT_MAX_SPAN_FRAMES",
    "HEADER_BYTES",
    "MAX_SPAN_FRAMES_LIMIT",
    "ClassTable",
    "SizeClass",
    "build_classes",
]

#: Class step (kernel ZS_SIZE_CLASS_DELTA on 4 KiB pages).  A 16-byte step
#: wastes 7.5 bytes per object on average (0.5 % of a 1.5 KiB object) and
#: keeps every slot 16-byte aligned, so a 4-byte header never crosses frames.
CLASS_STEP_BYTES: Final = 16
#: In-band header per object: ``handle << 1 | 1`` (u32), the reverse map
#: that lets compaction find whose indirection entry to update.
HEADER_BYTES: Final = 4
#: Span length used unless the caller says otherwise (see module docstring).
DEFAULT_MAX_SPAN_FRAMES: Final = 8
#: Longest span accepted: span frame chains are walked in Python when a
#: span is set up or compacted, and longer spans stopped helping.
MAX_SPAN_FRAMES_LIMIT: Final = 16


@dataclass(frozen=True, slots=True)
class SizeClass:
    """One (merged) size class."""

    #: Class id: index into the table's ``classes``.
    index: int
    #: Slot size in bytes (a multiple of 16, header included unless huge).
    size: int
    #: Frames per span.
    span_frames: int
    #: Slots per span.
    objs: int
    #: One object per frame, stored without header.
    huge: bool


@dataclass(frozen=True, slots=True)
class ClassTable:
    """Classes by id and the length -> class id map."""

    classes: tuple[SizeClass, ...]
    #: ``by_length[n]`` is the class id of an object of ``n`` bytes (0..4096).
    by_length: array[int]
    max_span_frames: int

    @property
    def huge(self) -> SizeClass:
        return self.classes[-1]


def _best_span(size: int, max_span_frames: int) -> tuple[int, int]:
    """(frames, slots) of the span length that wastes least for ``size``."""
    best_used, best = -1, (1, 1)
    for frames in range(1, max_span_frames + 1):
        objs = frames * FRAME_BYTES // size
        used = objs * size * 1_000_000 // (frames * FRAME_BYTES)
        if used > best_used:  # strictly better: ties keep the shorter span
            best_used, best = used, (frames, objs)
    return best


def build_classes(max_span_frames: int = DEFAULT_MAX_SPAN_FRAMES) -> ClassTable:
    """The merged class table for spans of up to ``max_span_frames`` frames."""
    if not 1 <= max_span_frames <= MAX_SPAN_FRAMES_LIMIT:
        raise ValueError(f"max_span_frames must be 1..{MAX_SPAN_FRAMES_LIMIT}")
    sizes = range(FRAME_BYTES, 0, -CLASS_STEP_BYTES)
    merged: list[tuple[int, int, int]] = []  # (size, frames, objs), largest first
    size_to_merged: dict[int, int] = {}
    for size in sizes:
        frames, objs = _best_span(size, max_span_frames)
        if not merged or (merged[-1][1], merged[-1][2]) != (frames, objs):
            merged.append((size, frames, objs))
        size_to_merged[size] = len(merged) - 1
    count = len(merged)
    classes = tuple(
        SizeClass(index=i, size=s, span_frames=f, objs=o, huge=o == 1)
        for i, (s, f, o) in enumerate(reversed(merged))
    )
    assert classes[-1].huge and sum(c.huge for c in classes) == 1
    by_length = array("H", [0]) * (FRAME_BYTES + 1)
    for n in range(FRAME_BYTES + 1):
        footprint = n + HEADER_BYTES
        if footprint > FRAME_BYTES:
            by_length[n] = count - 1
            continue
        slot = max(CLASS_STEP_BYTES, -(-footprint // CLASS_STEP_BYTES) * CLASS_STEP_BYTES)
        by_length[n] = count - 1 - size_to_merged[slot]
    return ClassTable(classes=classes, by_length=by_length, max_span_frames=max_span_frames)

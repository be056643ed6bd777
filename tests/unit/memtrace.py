"""Measuring what Python allocates, for the metadata-per-page tests."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable


def traced(build: Callable[[], object]) -> int:
    """Python bytes that ``build()`` allocated and kept."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        del keep
        return after - before
    finally:
        tracemalloc.stop()

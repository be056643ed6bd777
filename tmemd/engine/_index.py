"""The per-pool page index: (object_id, index) -> page token.

What: a two-level map, object id -> {page index -> token}, where a token is
the engine's nonzero integer naming how and where a page is stored (see
``_engine.py``).  0 means "no page", as a PAM handle is never 0.

Why two levels: tmem's flush_object drops every page of one object (a file
truncated, a swap area switched off) and must not scan unrelated pages;
with one dict per object it pops that dict in O(pages of the object).  A
single dict keyed by (object_id, index) tuples would also cost a tuple per
page, which is more memory than the inner dict slot it saves.

Cost: per page, one inner-dict slot plus the token ``int`` (the index
``int`` is shared with the caller's for small values); per object, one
inner dict.  Measured bytes per page are printed by
``tests/unit/test_engine_index.py::test_index_bytes_per_page`` (run with
``-s``).  The class hides the layout so that it can become compact
(arrays keyed by a hash) without touching the engine.

Guarantee: an object with no pages has no entry, so ``object_count`` is
exact and an empty pool holds no memory beyond the outer dict.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["PageIndex"]


class PageIndex:
    """Pages of one pool, grouped by object."""

    __slots__ = ("_objects", "_pages")

    def __init__(self) -> None:
        self._objects: dict[int, dict[int, int]] = {}
        self._pages = 0

    def __len__(self) -> int:
        """Pages indexed."""
        return self._pages

    @property
    def object_count(self) -> int:
        """Objects holding at least one page."""
        return len(self._objects)

    def get(self, object_id: int, index: int) -> int:
        """The token at (object_id, index), or 0."""
        pages = self._objects.get(object_id)
        if pages is None:
            return 0
        return pages.get(index, 0)

    def set(self, object_id: int, index: int, token: int) -> int:
        """Store ``token`` (nonzero) at (object_id, index); return the old token or 0."""
        pages = self._objects.get(object_id)
        if pages is None:
            self._objects[object_id] = {index: token}
            self._pages += 1
            return 0
        old = pages.get(index, 0)
        pages[index] = token
        if not old:
            self._pages += 1
        return old

    def delete(self, object_id: int, index: int) -> int:
        """Remove (object_id, index); return its token or 0 if there was none."""
        pages = self._objects.get(object_id)
        if pages is None:
            return 0
        token = pages.pop(index, 0)
        if token:
            self._pages -= 1
            if not pages:
                del self._objects[object_id]
        return token

    def pop_object(self, object_id: int) -> list[int]:
        """Remove every page of one object; return their tokens."""
        pages = self._objects.pop(object_id, None)
        if pages is None:
            return []
        self._pages -= len(pages)
        return list(pages.values())

    def pop_all(self) -> list[int]:
        """Remove every page; return their tokens."""
        tokens = [token for pages in self._objects.values() for token in pages.values()]
        self._objects = {}
        self._pages = 0
        return tokens

    def items(self) -> Iterator[tuple[int, int, int]]:
        """Every (object_id, index, token); for invariant checks, not the hot path."""
        for object_id, pages in self._objects.items():
            for index, token in pages.items():
                yield object_id, index, token

    def check_invariants(self) -> None:
        """Raise ``AssertionError`` if the counts or the tokens are inconsistent."""
        counted = sum(len(pages) for pages in self._objects.values())
        assert counted == self._pages, f"page count {self._pages} != {counted} indexed"
        for object_id, pages in self._objects.items():
            assert pages, f"object {object_id} has an empty page dict"
            assert all(pages.values()), f"object {object_id} holds a zero token"

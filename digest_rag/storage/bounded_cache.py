"""A bounded, thread-safe cache of what a loaded index read from its store (`BoundedCache`): a generation never
changes, so a record read once stays right; the least recently used leave first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

__all__ = ["BoundedCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """The last ``size`` values kept (`keep`), least recently used out first; shared by a loaded index's
    searches, so every access holds a lock."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def found(self, keys: Iterable[K]) -> dict[K, V]:
        """The values of those ``keys`` the cache holds, in ``keys``' order, each now the most recently used."""
        with self._lock:
            out = {key: self._items[key] for key in keys if key in self._items}
            for key in out:
                self._items.move_to_end(key)
        return out

    def keep(self, items: Mapping[K, V]) -> None:
        """Add ``items``; the least recently used leave while more than ``size`` are held."""
        with self._lock:
            self._items.update(items)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __iter__(self) -> Iterator[K]:
        """The keys, least recently used first."""
        with self._lock:
            return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

"""A bounded, thread-safe LRU of image features, keyed by the content digest of a row's image slots.

    cache = ImageCache.of_megabytes(64)          # at most 64 MiB of feature arrays
    hit = cache.get(key)                         # None on a miss (counted)
    cache.put(key, features)                     # a read-only copy, the least recently used evicted

The size is measured from the ``nbytes`` of the arrays it holds: a cache of N MiB never holds more than
N MiB of arrays, and an array larger than the whole cache is not stored. One lock guards the table;
callers compute features outside it (two threads missing the same key both compute it, the first
stored copy wins), so a hit returns exactly the array that the miss which filled it computed.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np

MIB = 1 << 20  # what ``image_cache_mb`` counts in


class ImageCache:
    """LRU of ``key -> float32 array`` within ``capacity_bytes`` (module doc)."""

    def __init__(self, capacity_bytes: int):
        """An empty cache holding at most ``capacity_bytes`` of array data (>= 0)."""
        self.capacity_bytes = max(0, int(capacity_bytes))
        self._entries: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    @classmethod
    def of_megabytes(cls, megabytes: float) -> ImageCache:
        """A cache of ``megabytes`` MiB (1 MiB = 2**20 bytes; fractions allowed)."""
        return cls(int(megabytes * MIB))

    def get(self, key: Hashable) -> np.ndarray | None:
        """The array stored under ``key`` (now the most recently used), or None; counts a hit or a miss."""
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return value

    def put(self, key: Hashable, value: np.ndarray) -> bool:
        """Store a read-only copy of ``value`` under ``key``, evicting the least recently used entries;
        False (nothing stored) when it is larger than the cache or ``key`` is already there."""
        if value.nbytes > self.capacity_bytes:
            return False
        copy = np.array(value, copy=True, order="C")
        copy.setflags(write=False)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return False
            while self._entries and self._bytes + copy.nbytes > self.capacity_bytes:
                _, old = self._entries.popitem(last=False)
                self._bytes -= old.nbytes
            self._entries[key] = copy
            self._bytes += copy.nbytes
            return True

    def held_bytes(self) -> int:
        """The ``nbytes`` of every array held, summed from the arrays themselves."""
        with self._lock:
            return sum(a.nbytes for a in self._entries.values())

    def stats(self) -> dict:
        """``{capacity_bytes, bytes, entries, hits, misses}`` (what ``describe()["image_cache"]`` shows)."""
        with self._lock:
            return {"capacity_bytes": self.capacity_bytes, "bytes": self._bytes, "entries": len(self._entries),
                    "hits": self._hits, "misses": self._misses}

    def clear(self) -> None:
        """Drop every entry (the hit and miss counts stay)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

"""
Bounded memos for the hot paths: one eviction rule, written once.

A memo is a plain C{dict} (so a look-up is C{dict.get}, nothing slower on
the paths that answer every packet) that forgets everything when it is
full.  Clearing whole is the rule because the memos hold answers that are
cheap to make again: a least-recently-used order would cost on every hit
to save a miss.
"""

from __future__ import annotations

from typing import TypeVar

from twisted.internet.interfaces import IReactorTime

K = TypeVar("K")
V = TypeVar("V")


class BoundedMemo(dict[K, V]):
    """A dict of at most C{size} entries: full, it starts again empty."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def remember(self, key: K, value: V) -> V:
        """Keep C{value} for C{key} (emptying the memo first if it is full); return it."""
        if len(self) >= self.size:
            self.clear()
        self[key] = value
        return value


class PerSecondMemo(BoundedMemo[K, V]):
    """
    A L{BoundedMemo} of answers that hold for the current second of
    C{clock} only (they carry its Date, or a token signed for it).
    """

    __slots__ = ("_clock", "_second")

    def __init__(self, clock: IReactorTime, size: int) -> None:
        super().__init__(size)
        self._clock = clock
        self._second = -1

    def current(self) -> PerSecondMemo[K, V]:
        """The memo, emptied first if the clock's second has moved on."""
        second = int(self._clock.seconds())
        if second != self._second:
            self.clear()
            self._second = second
        return self

"""
When each of many things is due, on one timer: L{Deadlines}.

The table had one DelayedCall per session, about 310 bytes each (3 MB per
10 000 sessions), all but one of them waiting for nothing but their turn.
Here a heap holds (when, key) and one call waits for the soonest.  A key set
again or cancelled leaves its old entry in the heap, skipped when it comes
up; the heap is rebuilt when such entries outnumber the live ones, so sign-in
churn cannot grow it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger()


class Deadlines:
    """C{due(key)} is called once C{clock} reaches the time last set for C{key}, unless cancelled first."""

    def __init__(self, clock: IReactorTime, due: Callable[[str], None]) -> None:
        self._clock = clock
        self._due = due
        # key -> (when, the number of its entry): only that entry counts.
        self._live: dict[str, tuple[float, int]] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._numbered = 0
        self._call: IDelayedCall | None = None
        self._call_at = 0.0

    def __len__(self) -> int:
        return len(self._live)

    def set(self, key: str, when: float) -> None:
        """C{key} is due at C{when} (and no longer when it was before)."""
        self._numbered += 1
        self._live[key] = (when, self._numbered)
        heapq.heappush(self._heap, (when, self._numbered, key))
        self._compact()
        if self._call is None or when < self._call_at:
            self._schedule()

    def cancel(self, key: str) -> None:
        """C{key} is not due after all."""
        if self._live.pop(key, None) is not None:
            self._compact()
            if not self._live:
                self.stop()

    def stop(self) -> None:
        """No call waits any more (what was set stays, for a later L{set} to schedule)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _compact(self) -> None:
        if len(self._heap) > 2 * len(self._live) + 64:
            self._heap = [(when, number, key) for key, (when, number) in self._live.items()]
            heapq.heapify(self._heap)

    def _schedule(self) -> None:
        self.stop()
        heap = self._heap
        # Entries no longer live are dropped as they reach the top.
        while heap and self._live.get(heap[0][2], (0.0, 0))[1] != heap[0][1]:
            heapq.heappop(heap)
        if heap:
            self._call_at = heap[0][0]
            self._call = self._clock.callLater(max(0.0, self._call_at - self._clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._call = None
        now = self._clock.seconds()
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, number, key = heapq.heappop(heap)
            if self._live.get(key, (0.0, 0))[1] != number:
                continue
            del self._live[key]
            try:
                self._due(key)
            except Exception:
                # One key's failure is its own: the others still come due.
                log.failure("what was due for {key} failed", key=key)
            # What it did may have set or cancelled others (and compacted the heap).
            heap = self._heap
        self._schedule()

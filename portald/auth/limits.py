"""Rate limiting of login attempts, per device."""

from __future__ import annotations

from collections import deque

from twisted.internet.interfaces import IReactorTime


class AttemptLimiter:
    """
    At most C{max_attempts} failed attempts per MAC within any
    C{window} seconds (a sliding window on the injected clock).

    Memory stays bounded by the number of devices that failed recently:
    a MAC whose failures have all aged out is forgotten.
    """

    def __init__(self, clock: IReactorTime, max_attempts: int, window: float) -> None:
        self._clock = clock
        self._max = max_attempts
        self._window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, mac: str) -> deque[float] | None:
        failures = self._failures.get(mac)
        if failures is None:
            return None
        horizon = self._clock.seconds() - self._window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[mac]
            return None
        return failures

    def retry_after(self, mac: str) -> float:
        """Seconds until C{mac} may try again; 0 if it may now."""
        failures = self._recent(mac)
        if failures is None or len(failures) < self._max:
            return 0.0
        # The oldest failure that still counts must age out first.
        return failures[-self._max] + self._window - self._clock.seconds()

    def record_failure(self, mac: str) -> None:
        self._sweep()
        self._failures.setdefault(mac, deque()).append(self._clock.seconds())

    def clear(self, mac: str) -> None:
        """Forget C{mac}'s failures (after it signed in)."""
        self._failures.pop(mac, None)

    def _sweep(self) -> None:
        # Now and then, drop devices that stopped trying.
        if len(self._failures) >= 1024:
            for mac in list(self._failures):
                self._recent(mac)

    def __len__(self) -> int:
        return len(self._failures)

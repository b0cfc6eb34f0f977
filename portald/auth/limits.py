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


# Devices waiting for the global budget: past this many, newcomers are told
# to wait without a place (the budget still holds; only fairness suffers).
MAX_WAITING = 4096


class GuessingBudget:
    """
    At most C{max_attempts} evaluations of a guessable secret per C{window}
    seconds across all devices, so that guessing does not scale with the
    number of MACs a guesser can lease.

    An attempt takes its unit when it starts (an answer that comes later,
    from RADIUS, is already counted while in flight).  Devices turned away
    wait in arrival order: when units free up, the device at the head of the
    line gets the next one, so a guest with the right code gets in after at
    most the devices ahead of it, however many guessers keep trying.  A
    device that does not come back within two windows loses its place.
    """

    def __init__(self, clock: IReactorTime, max_attempts: int, window: float) -> None:
        self._clock = clock
        self._max = max_attempts
        self._window = window
        self._taken: deque[float] = deque()
        # MAC -> when it last asked, in the order devices were first turned away.
        self._waiting: dict[str, float] = {}

    def _free(self, now: float) -> int:
        horizon = now - self._window
        while self._taken and self._taken[0] <= horizon:
            self._taken.popleft()
        return self._max - len(self._taken)

    def _forget_the_gone(self, now: float) -> None:
        horizon = now - 2 * self._window
        for mac in [mac for mac, asked in self._waiting.items() if asked <= horizon]:
            del self._waiting[mac]

    def take(self, mac: str) -> float:
        """
        Take a unit for C{mac}'s attempt and return 0; or, if its turn has
        not come, return the seconds after which to ask again.
        """
        now = self._clock.seconds()
        free = self._free(now)
        self._forget_the_gone(now)
        if mac in self._waiting:
            ahead = list(self._waiting).index(mac)
        else:
            ahead = len(self._waiting)
        if ahead < free:
            self._waiting.pop(mac, None)
            self._taken.append(now)
            return 0.0
        if mac in self._waiting or len(self._waiting) < MAX_WAITING:
            self._waiting[mac] = now
        # When enough units age out for this device's turn (at least a second).
        needed = ahead - free
        if needed < len(self._taken):
            return max(1.0, self._taken[needed] + self._window - now)
        return self._window

    def give_back(self) -> None:
        """An attempt that turned out not to evaluate anything (an empty field)."""
        if self._taken:
            self._taken.pop()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

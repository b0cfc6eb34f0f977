"""One call at the end of a burst of events, on an injected clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Debounce:
    """
    Calls C{work} C{delay} seconds after the last of a burst of L{poke}s, but
    a burst that goes on for C{patience} seconds puts it off no further: a
    file written without pause is still read.
    """

    def __init__(
        self, clock: IReactorTime, delay: float, work: Callable[[], Any], *, patience: float
    ) -> None:
        self._clock = clock
        self._delay = delay
        self._patience = patience
        self._work = work
        self._call: IDelayedCall | None = None
        self._burst_began = 0.0

    @property
    def pending(self) -> bool:
        """Whether a call is to come."""
        return self._call is not None and self._call.active()

    def poke(self) -> None:
        """Something happened: call C{work} once things are quiet."""
        now = self._clock.seconds()
        if self._call is not None and self._call.active():
            if now - self._burst_began < self._patience:
                self._call.reset(self._delay)
            return
        self._burst_began = now
        self._call = self._clock.callLater(self._delay, self._fire)

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _fire(self) -> None:
        # Cleared first: C{work} may poke again, and that is a new burst.
        self._call = None
        self._work()

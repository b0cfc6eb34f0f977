"""
Calls to come on an injected clock: L{PendingCall} (at most one at a time)
and L{Debounce} (one at the end of a burst of events).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class PendingCall:
    """At most one call of C{work} to come on C{clock}."""

    def __init__(self, clock: IReactorTime, work: Callable[[], Any]) -> None:
        self._clock = clock
        self._work = work
        self._call: IDelayedCall | None = None

    @property
    def pending(self) -> bool:
        return self._call is not None and self._call.active()

    def after(self, delay: float) -> None:
        """Call C{work} in C{delay} seconds, instead of any call to come."""
        self.cancel()
        self._call = self._clock.callLater(delay, self._fire)

    def put_off(self, delay: float) -> None:
        """The call to come, C{delay} seconds from now instead."""
        assert self._call is not None
        self._call.reset(delay)

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _fire(self) -> None:
        # Cleared first: C{work} may ask for the next call.
        self._call = None
        self._work()


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
        self._call = PendingCall(clock, work)
        self._burst_began = 0.0

    @property
    def pending(self) -> bool:
        """Whether a call is to come."""
        return self._call.pending

    def poke(self) -> None:
        """Something happened: call C{work} once things are quiet."""
        now = self._clock.seconds()
        if self._call.pending:
            if now - self._burst_began < self._patience:
                self._call.put_off(self._delay)
            return
        # A poke from C{work} itself starts a new burst.
        self._burst_began = now
        self._call.after(self._delay)

    def cancel(self) -> None:
        self._call.cancel()

"""
How late the reactor runs a periodic tick: the one figure that shows a
stalled reactor (a long nft run, a slow disk, a CPU-bound parse).
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime

TICK = 1.0
# A tick later than this is a stall worth counting.
STALL = 0.1


class ReactorLag(Service):
    """
    A call every C{tick} seconds of C{clock}; C{last} is how late the latest
    one ran, C{stalls} how many ran more than L{STALL} late.
    """

    name = "reactor-lag"

    def __init__(self, clock: IReactorTime, tick: float = TICK) -> None:
        self._clock = clock
        self._tick = tick
        self._due = 0.0
        self._call: IDelayedCall | None = None
        self.last = 0.0
        self.stalls = 0

    def startService(self) -> None:
        super().startService()
        self._schedule()

    def stopService(self) -> None:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self) -> None:
        self._due = self._clock.seconds() + self._tick
        self._call = self._clock.callLater(self._tick, self._ticked)

    def _ticked(self) -> None:
        self.last = max(0.0, self._clock.seconds() - self._due)
        if self.last > STALL:
            self.stalls += 1
        self._schedule()

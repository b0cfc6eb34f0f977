"""Work that repeats on an injected clock, started and stopped with a service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger()


class Periodic:
    """
    C{work} every C{interval} seconds of C{clock}, from L{start} to L{stop}.

    The one place a C{LoopingCall} is told which clock to run on.  A failure
    of C{work} is its own business: C{work} logs and swallows what it can
    survive, and what it cannot stops the loop, as a C{LoopingCall} does.
    """

    def __init__(self, clock: IReactorTime, interval: float, work: Callable[[], Any], *, now: bool = False):
        self.interval = interval
        self._now = now
        self._call = LoopingCall(work)
        self._call.clock = clock

    @property
    def running(self) -> bool:
        return self._call.running

    def start(self) -> None:
        if not self._call.running:
            self._call.start(self.interval, now=self._now).addErrback(
                lambda failure: log.failure("periodic {work!r} stopped", failure, work=self._call.f)
            )

    def stop(self) -> None:
        if self._call.running:
            self._call.stop()

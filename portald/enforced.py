"""
How an answer to a person waits for the firewall: until it has what the
table says (L{portald.firewall.IFirewall.applied}), but only so long, so
that a slow firewall delays an answer and never loses it.  May import:
Twisted.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()


def in_force_soon(
    applied: Callable[[], Deferred[None]], clock: IReactorTime, wait: float, what: str
) -> Deferred[None]:
    """C{applied()}, given up after C{wait} seconds on C{clock} (logged, naming C{what}); never fails."""
    waiting = applied()
    waiting.addTimeout(wait, clock)
    waiting.addErrback(
        lambda failure: log.warn(
            "answering {what} before the firewall confirmed it: {why}", what=what, why=failure.value
        )
    )
    return waiting

"""Work that would hold the reactor (a password hash, a big lease file), run in its thread pool."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool

# Runs a function elsewhere and fires with its result on the reactor.
Offload = Callable[[Callable[[], Any]], Deferred[Any]]


def in_thread_pool(reactor: IReactorThreads) -> Offload:
    """C{work()} in C{reactor}'s thread pool; pure work only: it shares nothing with the reactor's thread."""

    def offload(work: Callable[[], Any]) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), work)  # type: ignore[arg-type]

    return offload

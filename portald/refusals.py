"""
What portald refused and why: counted always, logged once per client per window.

Every input bound (a body too large, a head too slow, too many connections,
too many guesses) reports here.  The counts are what the metrics will
export; the log says once per client and limit per C{window} seconds that
the limit was hit, so a flood never becomes a log line per packet.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

# Past this many remembered (limit, client) pairs, the memory of who was
# already logged starts again: at worst one more line per client.
_MAX_REMEMBERED = 4096

log = Logger(namespace="portald.refusals")


class Refusals:
    """Counts of refused input by limit name, and a log that does not flood."""

    def __init__(self, clock: IReactorTime, window: float = 60.0) -> None:
        self._clock = clock
        self._window = window
        self.counts: Counter[str] = Counter()
        self._last_logged: dict[tuple[str, str], float] = {}

    def refuse(self, limit: str, client: str, detail: str = "") -> None:
        """C{client} hit C{limit} (a config key's name); count it, log it if not lately."""
        self.counts[limit] += 1
        now = self._clock.seconds()
        key = (limit, client)
        last = self._last_logged.get(key)
        if last is not None and now - last < self._window:
            return
        if len(self._last_logged) >= _MAX_REMEMBERED:
            self._last_logged.clear()
        self._last_logged[key] = now
        log.warn(
            "refused {client}: {limit} reached{detail} (counted; logged once per {window:.0f}s per client)",
            client=client,
            limit=limit,
            detail=f" ({detail})" if detail else "",
            window=self._window,
        )

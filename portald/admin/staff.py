"""
Who is signed in to the admin page (in memory: a restart signs staff out),
and how wrong passwords are slowed down.
"""

from __future__ import annotations

import hmac
import secrets
from collections import deque

import attrs
from twisted.internet.interfaces import IReactorTime

# Staff sign-ins held at once: more than a venue has people at its desk.
MOST_SIGNED_IN = 256
# Printable sheets kept per sign-in (a voucher's code is shown only when it is made).
SHEETS_KEPT = 8
# Addresses and names with recent wrong passwords, remembered at most.
MOST_REMEMBERED = 10_000


@attrs.define
class StaffSession:
    token: str
    name: str
    # Sent back in every form: a page on another site cannot know it.
    csrf: str
    started: float
    seen: float
    # Batch → its printable sheet, for the sign-in that made it.
    sheets: dict[str, str] = attrs.field(factory=dict)
    # What the next page tells: the last change done, or why it was not.
    notice: str | None = None
    error: str | None = None

    def csrf_matches(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())

    def keep_sheet(self, batch: str, sheet: str) -> None:
        self.sheets[batch] = sheet
        while len(self.sheets) > SHEETS_KEPT:
            del self.sheets[next(iter(self.sheets))]


class StaffSessions:
    """Sign-ins by cookie token: each ends after C{lifetime}, or C{idle} seconds unused."""

    def __init__(self, clock: IReactorTime, lifetime: float, idle: float) -> None:
        self._clock = clock
        self.lifetime = lifetime
        self.idle = idle
        self._by_token: dict[str, StaffSession] = {}

    def begin(self, name: str) -> StaffSession:
        now = self._clock.seconds()
        self._expire(now)
        while len(self._by_token) >= MOST_SIGNED_IN:
            oldest = min(self._by_token.values(), key=lambda session: session.seen)
            del self._by_token[oldest.token]
        session = StaffSession(secrets.token_urlsafe(32), name, secrets.token_urlsafe(32), now, now)
        self._by_token[session.token] = session
        return session

    def find(self, token: str | None) -> StaffSession | None:
        if not token:
            return None
        now = self._clock.seconds()
        self._expire(now)
        session = self._by_token.get(token)
        if session is not None:
            session.seen = now
        return session

    def end(self, token: str) -> None:
        self._by_token.pop(token, None)

    def _expire(self, now: float) -> None:
        for token, session in list(self._by_token.items()):
            if now - session.started >= self.lifetime or now - session.seen >= self.idle:
                del self._by_token[token]


class SignInThrottle:
    """
    Wrong passwords, by address and by name: after C{most} within
    C{window} seconds, that address (or name) may not try again until the
    oldest of them is C{window} old.
    """

    def __init__(self, clock: IReactorTime, most: int = 5, window: float = 900.0) -> None:
        self._clock = clock
        self._most = most
        self._window = window
        self._failures: dict[str, deque[float]] = {}

    def wait(self, address: str, name: str) -> float:
        """Seconds until C{address} may try C{name} again (0: now)."""
        now = self._clock.seconds()
        return max(self._wait_for(f"ip {address}", now), self._wait_for(f"name {name}", now))

    def failed(self, address: str, name: str) -> None:
        now = self._clock.seconds()
        for key in (f"ip {address}", f"name {name}"):
            self._failures.setdefault(key, deque(maxlen=self._most)).append(now)
        if len(self._failures) > MOST_REMEMBERED:
            # Forget the stale ones, then the oldest: a flood of names cannot grow this without end.
            for key in [k for k, times in self._failures.items() if now - times[-1] >= self._window]:
                del self._failures[key]
            while len(self._failures) > MOST_REMEMBERED:
                del self._failures[next(iter(self._failures))]

    def succeeded(self, address: str, name: str) -> None:
        self._failures.pop(f"ip {address}", None)
        self._failures.pop(f"name {name}", None)

    def _wait_for(self, key: str, now: float) -> float:
        times = self._failures.get(key)
        if times is None or len(times) < self._most:
            return 0.0
        return max(0.0, times[0] + self._window - now)

"""
The log of intercepted requests, kept readable and cheap under load.

A phone retrying its probes or an app polling in a loop can send hundreds
of requests a minute; a line for each would bury everything else and wear
out a Raspberry Pi's SD card.  So the first intercepted request of each
client in a window is logged in full, and the rest of the window is summed
up in one line per client when the window closes.

What a guest sent is logged without its query string (it can carry another
site's tokens) and with control characters escaped (an LF in a method must
not start a forged log line).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger(namespace="portald.web.intercept")


@attrs.define
class _Quiet:
    mac: str
    count: int = 0
    answers: Counter[str] = attrs.field(factory=Counter)
    # (method, url or None, host + target): formatted only when logged.
    latest: tuple[bytes, str | None, bytes] = (b"", None, b"")


class InterceptLog:
    def __init__(self, clock: IReactorTime, window: float = 10.0) -> None:
        self._clock = clock
        self._window = window
        self._quiet: dict[str, _Quiet] = {}
        self._flush_call: IDelayedCall | None = None

    def record(
        self, ip: str, mac: str | None, method: bytes, url: str | None, requested: bytes, answer: str
    ) -> None:
        """
        One intercepted request: C{url} as portald understood it, or (when
        it did not) the C{requested} Host and target as they came.
        """
        quiet = self._quiet.get(ip)
        if quiet is not None:
            quiet.count += 1
            quiet.answers[answer] += 1
            quiet.latest = (method, url, requested)
            return
        log.info(
            "intercepted {method} {url} from {ip} ({mac}): {answer}",
            method=_escaped(method),
            url=_shown(url, requested),
            ip=ip,
            mac=mac or "no lease",
            answer=answer,
        )
        self._quiet[ip] = _Quiet(mac or "no lease")
        if self._flush_call is None:
            self._flush_call = self._clock.callLater(self._window, self.flush)

    def flush(self) -> None:
        """Sum up the window that ends now."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        for ip, quiet in self._quiet.items():
            if quiet.count:
                log.info(
                    "intercepted {count} more from {ip} ({mac}) within {window:.0f}s: {answers}; latest {latest}",
                    count=quiet.count,
                    ip=ip,
                    mac=quiet.mac,
                    window=self._window,
                    answers=tally(quiet.answers),
                    latest=f"{_escaped(quiet.latest[0])} {_shown(*quiet.latest[1:])}",
                )
        self._quiet.clear()


def _shown(url: str | None, requested: bytes) -> str:
    if url is not None:
        path, query, _ = url.partition("?")
        return path + ("?…" if query else "")
    path, query, _ = requested.partition(b"?")
    return _escaped(path) + ("?…" if query else "")


def _escaped(raw: bytes) -> str:
    """Bytes as printable ASCII: control characters and the rest as escapes."""
    return repr(raw)[2:-1]


def tally(counts: Counter[Any]) -> str:
    """C{3× 511 ..., 1× 302 ...}: most frequent first (enum members by their value)."""
    return ", ".join(f"{n}× {getattr(what, 'value', what)}" for what, n in counts.most_common())

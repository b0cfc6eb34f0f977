"""
What a lease file says, as values: L{Lease}, L{ParseProblem}, L{ParseResult}.

Shared by the parsers (one module per format) and the watcher; nothing here
reads a file or knows a clock.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

import attrs

from portald.addresses import normalise_ip

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable_hostname(name: str | None) -> str | None:
    """
    A client-chosen hostname made safe to log and show: control characters
    (a newline would forge a log line) become '?'.
    """
    if not name:
        return None
    return _CONTROL.sub("?", name)


@attrs.frozen
class Lease:
    """One address handed to one device until C{expires} (None: never)."""

    ip: str
    mac: str
    hostname: str | None = attrs.field(converter=printable_hostname)
    expires: float | None

    def active(self, now: float) -> bool:
        return self.expires is None or self.expires > now


@attrs.frozen
class ParseProblem:
    """Something in a lease file that could not be used."""

    line: int
    message: str


@attrs.frozen
class ParseResult:
    """
    What a lease file says: the active leases, the problems, and whether the
    text ends mid-record (C{truncated}: a writer was caught half-way).
    """

    leases: tuple[Lease, ...]
    problems: tuple[ParseProblem, ...] = ()
    truncated: bool = False


@attrs.frozen
class Journal:
    """
    What a journal's text says before a clock is applied: each address's last
    word (None: no longer leased), the problems, whether it ends mid-record,
    and what reading on after its end needs (C{context}: Kea's columns).  A
    C{void} journal is unusable as a whole (Kea: a bad header), whatever it
    held before.  L{then} joins two journals read one after the other, which
    is what lets a file that only grows be read from where it was last cut.
    """

    latest: Mapping[str, Lease | None]
    problems: tuple[ParseProblem, ...] = ()
    truncated: bool = False
    context: object = None
    void: bool = False

    def result(self, now: float) -> ParseResult:
        leases = () if self.void else active_leases(self.latest, now)
        return ParseResult(leases, self.problems, self.truncated)

    def then(self, later: Journal, lines: int) -> Journal:
        """This journal followed by C{later}, whose text starts after this one's C{lines} lines."""
        shifted = tuple(ParseProblem(problem.line + lines, problem.message) for problem in later.problems)
        return Journal(
            {**self.latest, **later.latest},
            self.problems + shifted,
            later.truncated,
            later.context,
            later.void,
        )


def lease_ip(text: str) -> str:
    """An IPv4 address as leases are keyed by it (L{ValueError} if it is none)."""
    return normalise_ip(str(ipaddress.IPv4Address(text)))


def active_leases(latest: Mapping[str, Lease | None], now: float) -> tuple[Lease, ...]:
    """
    The leases still active at C{now} of each address's last word (None: the
    file's last word on that address is that it is no longer leased).
    """
    return tuple(lease for lease in latest.values() if lease is not None and lease.active(now))

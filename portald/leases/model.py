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


def lease_ip(text: str) -> str:
    """An IPv4 address as leases are keyed by it (L{ValueError} if it is none)."""
    return normalise_ip(str(ipaddress.IPv4Address(text)))


def active_leases(latest: Mapping[str, Lease | None], now: float) -> tuple[Lease, ...]:
    """
    The leases still active at C{now} of each address's last word (None: the
    file's last word on that address is that it is no longer leased).
    """
    return tuple(lease for lease in latest.values() if lease is not None and lease.active(now))

"""
The lease-file formats by the names the configuration gives them.

Each parser (L{portald.leases.dnsmasq}, L{portald.leases.isc},
L{portald.leases.kea}) takes a file's whole text and the current time
(seconds since the epoch) and returns a L{ParseResult}: the leases active at
that time, the problems found (with their line), and whether the text looked
cut short (a file caught while its server was writing it).  Parsers never
raise on any text: a malformed line or block is skipped and reported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from portald.leases.dnsmasq import parse_dnsmasq
from portald.leases.isc import parse_isc_dhcpd
from portald.leases.kea import kea_earlier_files, parse_kea
from portald.leases.model import ParseResult

Parser = Callable[[str, float], ParseResult]

PARSERS: dict[str, Parser] = {
    "dnsmasq": parse_dnsmasq,
    "isc-dhcpd": parse_isc_dhcpd,
    "kea": parse_kea,
}


def no_earlier_files(path: Path) -> list[Path]:
    """Most servers keep all their leases in the one file."""
    return []


# The files a server reads before its own, oldest first (Kea's cleanup leaves
# the current file with only a header): read and parsed ahead of it.
EARLIER_FILES: dict[str, Callable[[Path], list[Path]]] = {"kea": kea_earlier_files}

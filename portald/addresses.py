"""
MAC and IP addresses as portald compares them: normalised once, at the edge,
and plain strings after.
"""

from __future__ import annotations

import ipaddress
import re


class InvalidMAC(ValueError):
    """Text that is not a MAC address."""


_MAC = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}")


def normalise_mac(text: str) -> str:
    """
    Return C{text} as a lower-case, colon-separated MAC address.

    Accepts the two spellings DHCP servers and kernels write (``:`` or ``-``
    between six two-digit hex groups); anything else is rejected, so that a
    MAC is normalised once at the edge and compared as a plain string after.

    @raise InvalidMAC: if C{text} is not a MAC address.
    """
    candidate = text.strip().lower()
    if not _MAC.fullmatch(candidate):
        raise InvalidMAC(f"not a MAC address: {text!r}")
    return candidate.replace("-", ":")


def normalise_ip(text: str) -> str:
    """
    Return C{text} as the canonical text of an IP address (IPv4-mapped IPv6
    addresses, as a dual-stack socket reports IPv4 peers, become IPv4).

    @raise ValueError: if C{text} is not an IP address.
    """
    address = ipaddress.ip_address(text.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)

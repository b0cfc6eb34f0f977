"""
dnsmasq's lease file (``--dhcp-leasefile``), read as a pure function of its text.

``<expiry> <mac> <ip> <hostname> <client-id>`` lines; expiry 0 is infinite;
a ``duid`` line starts the IPv6 leases of a dual-stack server.
"""

from __future__ import annotations

from collections.abc import Mapping

from portald.addresses import InvalidMAC, normalise_mac
from portald.leases.model import Lease, ParseProblem, ParseResult, active_leases, lease_ip

# What one IPv4 line says: its lease, a problem (the message), or nothing.
LineOutcome = Lease | str | None


def parse_dnsmasq(text: str, now: float) -> ParseResult:
    """
    dnsmasq's lease file (``--dhcp-leasefile``): one lease per line, written
    whole by dnsmasq on every change (truncate and rewrite in place).
    """
    return parse_dnsmasq_remembering(text, now, {})[0]


def parse_dnsmasq_remembering(
    text: str, now: float, known: Mapping[str, LineOutcome]
) -> tuple[ParseResult, dict[str, LineOutcome]]:
    """
    L{parse_dnsmasq}, where the lines in C{known} (what each line of an
    earlier read said) are not parsed again; also returns what this text's
    lines say, for the next read.
    """
    seen: dict[str, LineOutcome] = {}
    leases: dict[str, Lease | None] = {}
    problems: list[ParseProblem] = []
    lines = text.split("\n")
    # A last line without its newline: dnsmasq was caught mid-write.
    truncated = lines[-1] != ""
    ipv6 = False
    for number, line in enumerate(lines, 1):
        if ipv6:
            # From a duid line on, the leases of a dual-stack dnsmasq are IPv6.
            continue
        outcome = known.get(line, _UNKNOWN)
        if outcome is _UNKNOWN:
            if line.split()[:1] == ["duid"]:
                ipv6 = True
                continue
            outcome = _dnsmasq_line(line)
        seen[line] = outcome
        if outcome is None:
            continue
        if isinstance(outcome, str):
            problems.append(ParseProblem(number, outcome))
            continue
        leases[outcome.ip] = outcome
    return ParseResult(active_leases(leases, now), tuple(problems), truncated), seen


_UNKNOWN = object()


def _dnsmasq_line(line: str) -> LineOutcome:
    """What one line (not a duid line, not after one) says."""
    fields = line.split()
    if not fields:
        return None
    if len(fields) < 4:
        return f"expected 'expiry mac ip hostname client-id': {line!r}"
    expiry_text, mac_text, ip_text, hostname = fields[:4]
    if ":" in ip_text:
        # IPv6 leases (IAID in the MAC's place) are not part of the IPv4 map.
        return None
    try:
        expiry = float(int(expiry_text))
        if expiry < 0:
            raise ValueError
    except (ValueError, OverflowError):
        return f"bad expiry time {expiry_text!r}"
    try:
        ip = lease_ip(ip_text)
    except ValueError:
        return f"bad IPv4 address {ip_text!r}"
    try:
        mac = normalise_mac(mac_text)
    except InvalidMAC:
        # dnsmasq writes "<type>-<address>" for non-Ethernet hardware.
        return f"not an Ethernet MAC address: {mac_text!r}"
    return Lease(ip, mac, None if hostname == "*" else hostname, None if expiry == 0 else expiry)

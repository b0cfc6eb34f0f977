"""
dnsmasq's lease file (``--dhcp-leasefile``), read as a pure function of its text.

``<expiry> <mac> <ip> <hostname> <client-id>`` lines; expiry 0 is infinite;
a ``duid`` line starts the IPv6 leases of a dual-stack server.
"""

from __future__ import annotations

from portald.addresses import InvalidMAC, normalise_mac
from portald.leases.model import Lease, ParseProblem, ParseResult, active_leases, lease_ip


def parse_dnsmasq(text: str, now: float) -> ParseResult:
    """
    dnsmasq's lease file (``--dhcp-leasefile``): one lease per line, written
    whole by dnsmasq on every change (truncate and rewrite in place).
    """
    leases: dict[str, Lease | None] = {}
    problems: list[ParseProblem] = []
    lines = text.split("\n")
    # A last line without its newline: dnsmasq was caught mid-write.
    truncated = lines[-1] != ""
    ipv6 = False
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "duid":
            # From here on, the leases of a dual-stack dnsmasq are IPv6.
            ipv6 = True
            continue
        if len(fields) < 4:
            problems.append(ParseProblem(number, f"expected 'expiry mac ip hostname client-id': {line!r}"))
            continue
        expiry_text, mac_text, ip_text, hostname = fields[:4]
        if ipv6 or ":" in ip_text:
            # IPv6 leases (IAID in the MAC's place) are not part of the IPv4 map.
            continue
        try:
            expiry = float(int(expiry_text))
            if expiry < 0:
                raise ValueError
        except (ValueError, OverflowError):
            problems.append(ParseProblem(number, f"bad expiry time {expiry_text!r}"))
            continue
        try:
            ip = lease_ip(ip_text)
        except ValueError:
            problems.append(ParseProblem(number, f"bad IPv4 address {ip_text!r}"))
            continue
        try:
            mac = normalise_mac(mac_text)
        except InvalidMAC:
            # dnsmasq writes "<type>-<address>" for non-Ethernet hardware.
            problems.append(ParseProblem(number, f"not an Ethernet MAC address: {mac_text!r}"))
            continue
        leases[ip] = Lease(ip, mac, None if hostname == "*" else hostname, None if expiry == 0 else expiry)
    return ParseResult(active_leases(leases, now), tuple(problems), truncated)

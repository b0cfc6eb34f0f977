"""
The kernel's IPv4 neighbour table (``/proc/net/arp``): the optional fallback
for devices no lease explains (static addresses).
"""

from __future__ import annotations

from pathlib import Path

from portald.addresses import InvalidMAC, normalise_ip, normalise_mac

PROC_NET_ARP = Path("/proc/net/arp")


def read_proc_net_arp(path: Path = PROC_NET_ARP) -> dict[str, str]:
    """The kernel's complete IPv4 neighbour entries: IP -> MAC."""
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return {}
    neighbours = {}
    for line in lines:
        fields = line.split()
        # IP address, HW type, Flags, HW address, Mask, Device; 0x2 = complete.
        if len(fields) < 6 or not int(fields[2], 16) & 0x2:
            continue
        try:
            mac = normalise_mac(fields[3])
            ip = normalise_ip(fields[0])
        except (InvalidMAC, ValueError):
            continue
        if mac != "00:00:00:00:00:00":
            neighbours[ip] = mac
    return neighbours

"""
Which MAC is behind which IP: the map every service identifies a client
through, fed by the lease watcher (and, for IPv6 addresses, which devices
make themselves, by what the kernel saw: L{portald.learning6}).
"""

from __future__ import annotations

from collections.abc import Mapping


class Neighbours:
    """
    Which MAC is behind which IP right now.

    Replaced atomically from a snapshot (the lease watcher's merged view), so
    a lookup never sees half of an update.  An IP maps to exactly one MAC; a
    MAC may hold several IPs (IPv4 and IPv6, or two leases).
    """

    def __init__(self) -> None:
        self._leased: dict[str, str] = {}
        self._learned: dict[str, str] = {}
        self._mac_by_ip: dict[str, str] = {}
        self._ips_by_mac: dict[str, frozenset[str]] = {}

    def replace(self, mac_by_ip: Mapping[str, str]) -> None:
        """Make C{mac_by_ip} (normalised IP -> normalised MAC) the whole map of leases."""
        old, new = self._leased, dict(mac_by_ip)
        self._leased = new
        # A DHCP server changes a lease or two at a time: only those addresses
        # are looked at again (the whole map took milliseconds with thousands).
        changed = [ip for ip, mac in new.items() if old.get(ip) != mac]
        changed += [ip for ip in old if ip not in new]
        # In place: everything runs on the reactor, so no lookup comes between.
        mac_by_ip_now, ips_by_mac = self._mac_by_ip, self._ips_by_mac
        for ip in changed:
            was = mac_by_ip_now.pop(ip, None)
            now = new.get(ip, self._learned.get(ip))
            if was is not None:
                remaining = ips_by_mac[was] - {ip}
                if remaining:
                    ips_by_mac[was] = remaining
                else:
                    del ips_by_mac[was]
            if now is not None:
                mac_by_ip_now[ip] = now
                ips_by_mac[now] = ips_by_mac.get(now, frozenset()) | {ip}

    def learn6(self, mac_by_ip6: Mapping[str, str]) -> None:
        """Make C{mac_by_ip6} the IPv6 addresses learned from the kernel (a lease wins over it)."""
        self._learned = dict(mac_by_ip6)
        self._combine()

    def _combine(self) -> None:
        # One dict for the hot paths' lookups: a single get, as before.
        combined = {**self._learned, **self._leased}
        ips_by_mac: dict[str, set[str]] = {}
        for ip, mac in combined.items():
            ips_by_mac.setdefault(mac, set()).add(ip)
        self._mac_by_ip = combined
        self._ips_by_mac = {mac: frozenset(ips) for mac, ips in ips_by_mac.items()}

    def mac_for(self, ip: str) -> str | None:
        return self._mac_by_ip.get(ip)

    def ips_for(self, mac: str) -> frozenset[str]:
        return self._ips_by_mac.get(mac, frozenset())

    def snapshot(self) -> dict[str, str]:
        """The leases (not what was learned): IP -> MAC."""
        return dict(self._leased)

    def __len__(self) -> int:
        return len(self._mac_by_ip)

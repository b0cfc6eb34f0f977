"""
The text portald gives to ``nft -f -``: pure functions, no I/O.

One table of portald's own (``inet <firewall.table>``) holds everything.  It
is always written whole, as ``table …{}`` + ``delete table …`` + the new
definition, so that loading it is one atomic replacement whether or not an
older copy exists.  Element changes after that are small command lists that
are idempotent: "add, delete, add again" replaces an element (and its
timeout) whether or not the kernel still has it, and "add, delete" removes
one that may already have timed out, so a retried batch never fails on an
element that changed underneath it.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping, Sequence

import attrs

from portald.config import Config, GatewayService, IPAddress, IPNetwork

# An IPv6 address stays its device's this long after its last packet
# (privacy addresses are used for hours, then dropped), and the kernel
# remembers at most this many.
IPV6_ADDRESS_HELD = "1h"
IPV6_ADDRESSES = 65536

# nft keeps element timeouts in milliseconds; sub-second ones are rounded up.
_MIN_TIMEOUT_MS = 1000


@attrs.frozen
class FirewallPlan:
    """Everything the ruleset is generated from: configuration only, no state."""

    table: str
    interface: str
    allowed_macs: tuple[str, ...]
    walled_garden: tuple[IPNetwork, ...]
    portal4: ipaddress.IPv4Address
    portal6: ipaddress.IPv6Address | None
    dns_port: int
    http_port: int
    gateway_services: tuple[GatewayService, ...] = ()
    # The portal over HTTPS (http.tls): the portal's addresses only.
    https_port: int | None = None

    @classmethod
    def from_config(cls, config: Config) -> FirewallPlan:
        return cls(
            table=config.firewall.table,
            interface=config.portal.interface,
            allowed_macs=config.firewall.allowed_macs,
            walled_garden=config.firewall.walled_garden,
            portal4=config.portal.address,
            portal6=config.portal.address6,
            dns_port=config.dns.port,
            http_port=config.http.port,
            gateway_services=config.firewall.gateway_services,
            https_port=config.http.tls.port if config.http.tls is not None else None,
        )

    @property
    def qualified_table(self) -> str:
        return f"inet {self.table}"


@attrs.frozen
class Counter:
    """One nft counter's value."""

    packets: int = 0
    bytes: int = 0


@attrs.frozen
class AuthorizedClient:
    """An authorized MAC as the kernel should hold it."""

    mac: str
    ip: IPAddress | None
    timeout: float | None
    # Values carried over from the table being replaced (a restart must not
    # reset a session's traffic, which quotas are counted from).
    from_client: Counter = Counter()
    to_client: Counter = Counter()


@attrs.frozen
class LearnedAddress:
    """A walled-garden address that portald's DNS resolved, for C{timeout} seconds."""

    address: IPAddress
    timeout: float


def parse_address(text: str) -> IPAddress | None:
    """C{text} as an address the rules can name; C{None} if empty or not an IP address."""
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def nft_timeout(seconds: float) -> str:
    """An element timeout: whole milliseconds, at least one second."""
    return f"{max(_MIN_TIMEOUT_MS, math.ceil(seconds * 1000))}ms"


def _elements(items: Iterable[str]) -> str:
    listed = list(items)
    if not listed:
        return ""
    return "\t\telements = { " + ",\n\t\t\t     ".join(listed) + " }\n"


def _set(
    name: str, kind: str, comment: str, elements: Iterable[str] = (), flags: Sequence[str] = (), *extra: str
) -> str:
    lines = [f"\tset {name} {{\n", f"\t\ttype {kind}\n"]
    if flags:
        lines.append(f"\t\tflags {','.join(flags)}\n")
    lines.extend(f"\t\t{line}\n" for line in extra)
    lines.append(f'\t\tcomment "{comment}"\n')
    lines.append(_elements(elements))
    lines.append("\t}\n")
    return "".join(lines)


def _chain(name: str, comment: str, rules: Sequence[str], hook: str = "") -> str:
    body = [f"\tchain {name} {{\n", f'\t\tcomment "{comment}"\n']
    if hook:
        body.append(f"\t\t{hook}\n")
    body.extend(f"\t\t{rule}\n" for rule in rules)
    body.append("\t}\n")
    return "".join(body)


def _counted(value: str, counter: Counter) -> str:
    return value + _counter_suffix(counter)


def _counter_suffix(counter: Counter) -> str:
    return f" counter packets {counter.packets} bytes {counter.bytes}"


def _family_set(address: IPAddress, v4: str, v6: str) -> str:
    return v4 if address.version == 4 else v6


def _leased_pair(ip: str, mac: str) -> str:
    return f"{ip} . {mac}"


def ruleset(
    plan: FirewallPlan,
    authorized: Sequence[AuthorizedClient] = (),
    learned: Sequence[LearnedAddress] = (),
    leased: Mapping[str, str] | None = None,
    allowed: Iterable[str] | None = None,
    seen6: Mapping[str, str] | None = None,
    to_client6: Mapping[str, Counter] | None = None,
    signed_in6: Iterable[str] = (),
) -> str:
    """
    The whole table, replacing any older copy in one transaction.
    C{leased} maps each leased IPv4 address to its MAC (see L{lease});
    C{allowed} is the always-allowed list (default: the configured one);
    C{seen6}, the IPv6 addresses the kernel had learned (kept across the
    replacement, so that no device can take another's address meanwhile);
    C{to_client6}, the IPv6 addresses' download counters, and
    C{signed_in6}, the addresses signed-in devices sent from, carried over.
    """
    leased = dict(sorted((leased or {}).items(), key=lambda item: ipaddress.ip_address(item[0])))
    counted6 = dict(to_client6 or {})
    # A signed-in client's own address: its counter as the session has it.
    counted6.update((str(c.ip), c.to_client) for c in authorized if c.ip is not None and c.ip.version == 6)
    table = plan.qualified_table
    lan = f'"{plan.interface}"'
    garden4 = sorted((n for n in plan.walled_garden if n.version == 4), key=lambda n: n.network_address)
    garden6 = sorted((n for n in plan.walled_garden if n.version == 6), key=lambda n: n.network_address)
    dns4 = f"{plan.portal4}:{plan.dns_port}"
    http4 = f"{plan.portal4}:{plan.http_port}"

    def timed(value: str, timeout: float | None) -> str:
        return value if timeout is None else f"{value} timeout {nft_timeout(timeout)}"

    sets = [
        _set(
            "allowed_macs",
            "ether_addr",
            "firewall.allowed_macs and portald-ctl allow: pass without signing in",
            plan.allowed_macs if allowed is None else sorted(set(allowed)),
        ),
        _set(
            "authorized",
            "ether_addr",
            "signed-in clients; timeout = the session's end",
            (timed(c.mac, c.timeout) for c in authorized),
            ("timeout",),
        ),
        _set(
            "bytes_from_client",
            "ether_addr",
            "traffic each signed-in client sent (by MAC)",
            (_counted(c.mac, c.from_client) for c in authorized),
            (),
            "counter",
        ),
        _set(
            "bytes_to_client4",
            "ipv4_addr",
            "traffic each signed-in client received (by IPv4 address)",
            (_counted(str(c.ip), c.to_client) for c in authorized if c.ip is not None and c.ip.version == 4),
            (),
            "counter",
        ),
        _set(
            "bytes_to_client6",
            "ipv6_addr",
            "traffic to each IPv6 address (added to its device's by portald)",
            (_counted(address, counter) for address, counter in sorted(counted6.items())),
            ("dynamic", "timeout"),
            "counter",
            f"timeout {IPV6_ADDRESS_HELD}",
            f"size {IPV6_ADDRESSES}",
        ),
        _set(
            "signed_in6",
            "ipv6_addr",
            "IPv6 addresses signed-in devices sent from: answers to them are counted",
            sorted(signed_in6),
            ("dynamic", "timeout"),
            f"timeout {IPV6_ADDRESS_HELD}",
            f"size {IPV6_ADDRESSES}",
        ),
        _set(
            "walled_garden4",
            "ipv4_addr",
            "firewall.walled_garden: everyone may reach these",
            (str(n) for n in garden4),
            ("interval",),
            "auto-merge",
        ),
        _set(
            "walled_garden6",
            "ipv6_addr",
            "firewall.walled_garden: everyone may reach these",
            (str(n) for n in garden6),
            ("interval",),
            "auto-merge",
        ),
        _set(
            "walled_garden_dns4",
            "ipv4_addr",
            "addresses of dns.walled_garden names; timeout = answer's TTL",
            (f"{a.address} timeout {nft_timeout(a.timeout)}" for a in learned if a.address.version == 4),
            ("timeout",),
        ),
        _set(
            "walled_garden_dns6",
            "ipv6_addr",
            "addresses of dns.walled_garden names; timeout = answer's TTL",
            (f"{a.address} timeout {nft_timeout(a.timeout)}" for a in learned if a.address.version == 6),
            ("timeout",),
        ),
    ]

    sets += [
        _set(
            "leased_ips4",
            "ipv4_addr",
            "addresses the DHCP server leased (to some device)",
            leased,
        ),
        _set(
            "leased4",
            "ipv4_addr . ether_addr",
            "each leased address with the device it was leased to",
            (_leased_pair(ip, mac) for ip, mac in leased.items()),
        ),
        _set(
            "seen6",
            "ipv6_addr . ether_addr",
            "which device sent from which IPv6 address (learned from its packets)",
            (_leased_pair(ip, mac) for ip, mac in sorted((seen6 or {}).items())),
            ("dynamic", "timeout"),
            f"timeout {IPV6_ADDRESS_HELD}",
            f"size {IPV6_ADDRESSES}",
        ),
        _set(
            "owned6",
            "ipv6_addr",
            "IPv6 addresses a device sent from: no other device may, until they time out",
            sorted((seen6 or {}).keys()),
            ("dynamic", "timeout"),
            f"timeout {IPV6_ADDRESS_HELD}",
            f"size {IPV6_ADDRESSES}",
        ),
    ]

    dnat_dns = [
        f"meta nfproto ipv4 meta l4proto {{ tcp, udp }} th dport 53 dnat ip to {dns4} "
        '''comment "any resolver, even a hard-coded one, is portald's DNS"''',
    ]
    dnat_http = [
        f'meta nfproto ipv4 tcp dport 80 dnat ip to {http4} comment "web requests get the portal"',
    ]
    if plan.portal6 is not None:
        dnat_dns.append(
            f"meta nfproto ipv6 meta l4proto {{ tcp, udp }} th dport 53 dnat ip6 to [{plan.portal6}]:{plan.dns_port}"
        )
        dnat_http.append(f"meta nfproto ipv6 tcp dport 80 dnat ip6 to [{plan.portal6}]:{plan.http_port}")
    garden_return = [
        "ip daddr @walled_garden4 return",
        "ip daddr @walled_garden_dns4 return",
        "ip6 daddr @walled_garden6 return",
        "ip6 daddr @walled_garden_dns6 return",
    ]
    listed = [
        f"{protocol} dport {{ {', '.join(str(s.port) for s in plan.gateway_services if s.protocol == protocol)} }} "
        'accept comment "firewall.gateway_services"'
        for protocol in ("tcp", "udp")
        if any(s.protocol == protocol for s in plan.gateway_services)
    ]
    https = []
    if plan.https_port is not None:
        https.append(
            f'ip daddr {plan.portal4} tcp dport {plan.https_port} accept comment "the portal over HTTPS"'
        )
        if plan.portal6 is not None:
            https.append(
                f'ip6 daddr {plan.portal6} tcp dport {plan.https_port} accept comment "the portal over HTTPS"'
            )
    chains = [
        _chain(
            "input",
            "what guests may reach on the gateway itself, on any of its addresses",
            [
                f"iifname != {lan} return",
                "ct state established,related accept",
                'udp dport 67 accept comment "DHCP"',
                'udp dport 547 accept comment "DHCPv6"',
                f'meta l4proto {{ tcp, udp }} th dport {plan.dns_port} accept comment "portald\'s DNS"',
                f'tcp dport {plan.http_port} accept comment "the portal"',
                *https,
                "icmp type echo-request accept",
                "icmpv6 type { echo-request, nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept",
                *listed,
                'counter drop comment "nothing else on the gateway answers guests"',
            ],
            "type filter hook input priority filter; policy accept;",
        ),
        _chain(
            "spoofing",
            "a device using another's leased address reaches nothing, portald included",
            [
                f"iifname != {lan} return",
                "ip saddr @leased_ips4 ip saddr . ether saddr != @leased4 "
                'counter drop comment "not the device this address was leased to"',
                # IPv6 addresses are made by devices, not leased: the first
                # device to send from one holds it while it keeps using it.
                # (Not "::": duplicate address detection sends from it.)
                "ip6 saddr != :: ip6 saddr . ether saddr != @seen6 ip6 saddr @owned6 "
                'counter drop comment "another device\'s IPv6 address"',
                "ip6 saddr != :: update @seen6 { ip6 saddr . ether saddr } update @owned6 { ip6 saddr } "
                'comment "portald asks this set who sent from an IPv6 address"',
            ],
            # Before the redirections (dstnat) and before routing decides
            # between portald (input) and the internet (forward).
            "type filter hook prerouting priority -150; policy accept;",
        ),
        _chain(
            "prerouting",
            "clients that have not signed in: DNS and web go to portald",
            [
                f"iifname != {lan} return",
                "ether saddr @allowed_macs return",
                "ether saddr @authorized return",
                *dnat_dns,
                *garden_return,
                *dnat_http,
            ],
            "type nat hook prerouting priority dstnat; policy accept;",
        ),
        _chain(
            "forward",
            "portald's part of forwarding; the rest of the machine's rules still apply",
            [f"iifname {lan} jump from_clients", f"oifname {lan} jump to_clients"],
            "type filter hook forward priority filter; policy accept;",
        ),
        _chain(
            "from_clients",
            "what clients send out: signed in, allowed or walled garden, else refused",
            [
                "ether saddr @allowed_macs accept",
                "ether saddr @authorized goto signed_in",
                "ip daddr @walled_garden4 accept",
                "ip daddr @walled_garden_dns4 accept",
                "ip6 daddr @walled_garden6 accept",
                "ip6 daddr @walled_garden_dns6 accept",
                'tcp dport { 443, 853 } reject with tcp reset comment "TLS fails fast; never intercepted"',
                'udp dport 443 drop comment "QUIC: browsers fall back to TCP"',
                'drop comment "not signed in"',
            ],
        ),
        _chain(
            "signed_in",
            "count a signed-in client's traffic, then let it out",
            [
                "ether saddr @bytes_from_client",
                "meta nfproto ipv6 update @signed_in6 { ip6 saddr }",
                "accept",
            ],
        ),
        _chain(
            "to_clients",
            "what comes back to clients: only answers to what they opened",
            [
                "ct state established,related goto answers",
                'drop comment "nothing outside opens connections to clients"',
            ],
        ),
        _chain(
            "answers",
            "count an answer for a signed-in client, then let it in",
            [
                "ip daddr @bytes_to_client4",
                # Every IPv6 address a signed-in device makes gets its counter here.
                "ip6 daddr @signed_in6 update @bytes_to_client6 { ip6 daddr }",
                "accept",
            ],
        ),
    ]
    return (
        f"table {table} {{}}\n"
        f"delete table {table}\n"
        f"table {table} {{\n"
        f'\tcomment "portald: captive portal enforcement (generated; replaced at every start)"\n'
        + "\n".join(sets + chains)
        + "}\n"
    )


def list_seen6(plan: FirewallPlan) -> list[str]:
    """``nft`` arguments that list the IPv6 addresses the kernel learned (JSON)."""
    return ["-j", "list", "set", "inet", plan.table, "seen6"]


def forget_ipv6(plan: FirewallPlan, addresses: Iterable[str]) -> list[str]:
    """A signed-out device's IPv6 addresses: no longer counted, their counters gone."""
    lines = []
    for address in addresses:
        lines += _remove(plan, "signed_in6", address) + _remove(plan, "bytes_to_client6", address)
    return lines


def remove_table(plan: FirewallPlan) -> str:
    """Delete portald's table, whether or not it exists."""
    table = plan.qualified_table
    return f"table {table} {{}}\ndelete table {table}\n"


def _replace(plan: FirewallPlan, set_name: str, value: str, suffix: str = "") -> list[str]:
    prefix = f"element {plan.qualified_table} {set_name} {{ "
    return [
        f"add {prefix}{value} }}",
        f"delete {prefix}{value} }}",
        f"add {prefix}{value}{suffix} }}",
    ]


def _remove(plan: FirewallPlan, set_name: str, value: str) -> list[str]:
    prefix = f"element {plan.qualified_table} {set_name} {{ "
    return [f"add {prefix}{value} }}", f"delete {prefix}{value} }}"]


def _to_client_set(ip: IPAddress) -> str:
    return _family_set(ip, "bytes_to_client4", "bytes_to_client6")


def grant(plan: FirewallPlan, mac: str, ip: IPAddress | None, timeout: float | None) -> list[str]:
    """Let C{mac} out, with fresh traffic counters (a new session)."""
    suffix = "" if timeout is None else f" timeout {nft_timeout(timeout)}"
    lines = _replace(plan, "authorized", mac, suffix) + _replace(plan, "bytes_from_client", mac)
    if ip is not None:
        lines += _replace(plan, _to_client_set(ip), str(ip))
    return lines


def extend(plan: FirewallPlan, mac: str, timeout: float | None) -> list[str]:
    """Move C{mac}'s kernel timeout; its counters are left alone."""
    suffix = "" if timeout is None else f" timeout {nft_timeout(timeout)}"
    return _replace(plan, "authorized", mac, suffix)


def revoke(plan: FirewallPlan, mac: str, ip: IPAddress | None) -> list[str]:
    """Stop letting C{mac} out and forget its counters."""
    lines = _remove(plan, "authorized", mac) + _remove(plan, "bytes_from_client", mac)
    if ip is not None:
        lines += _remove(plan, _to_client_set(ip), str(ip))
    return lines


def count_to(plan: FirewallPlan, ip: IPAddress, start: Counter | None = None) -> list[str]:
    """
    Count traffic to C{ip} from C{start} (a signed-in client's new address,
    carrying on from what its old one had counted).
    """
    return _replace(plan, _to_client_set(ip), str(ip), "" if start is None else _counter_suffix(start))


def forget_counter(plan: FirewallPlan, ip: IPAddress) -> list[str]:
    """Stop counting traffic to C{ip} (a client that moved to another address)."""
    return _remove(plan, _to_client_set(ip), str(ip))


def replace_walled_garden(plan: FirewallPlan) -> list[str]:
    """C{firewall.walled_garden} as the plan has it now, in place of what the sets held."""
    table = plan.qualified_table
    lines = []
    for version in (4, 6):
        networks = sorted(
            (n for n in plan.walled_garden if n.version == version), key=lambda n: n.network_address
        )
        lines.append(f"flush set {table} walled_garden{version}")
        if networks:
            lines.append(f"add element {table} walled_garden{version} {{ {', '.join(map(str, networks))} }}")
    return lines


def allow(plan: FirewallPlan, mac: str) -> list[str]:
    """Let C{mac} pass without signing in (staff put it on the list)."""
    return _replace(plan, "allowed_macs", mac)


def disallow(plan: FirewallPlan, mac: str) -> list[str]:
    """C{mac} is off the always-allowed list."""
    return _remove(plan, "allowed_macs", mac)


def lease(plan: FirewallPlan, ip: str, mac: str) -> list[str]:
    """C{ip} is leased to C{mac}: only C{mac} may send from it."""
    return _replace(plan, "leased_ips4", ip) + _replace(plan, "leased4", _leased_pair(ip, mac))


def unlease(plan: FirewallPlan, ip: str, mac: str) -> list[str]:
    """C{ip}'s lease to C{mac} is over (free, or leased to another device next)."""
    return _remove(plan, "leased4", _leased_pair(ip, mac)) + _remove(plan, "leased_ips4", ip)


def learn(plan: FirewallPlan, address: IPAddress, timeout: float) -> list[str]:
    """Open C{address} (a walled-garden name's) to everyone for C{timeout} seconds."""
    set_name = _family_set(address, "walled_garden_dns4", "walled_garden_dns6")
    return _replace(plan, set_name, str(address), f" timeout {nft_timeout(timeout)}")

"""
portald's configuration: YAML in, one validated, frozen L{Config} out.

Every section is a frozen attrs class whose fields carry their own parser
(``metadata["parse"]``).  The loader walks the YAML *node* tree rather than
the loaded Python objects, so that every error can name the key path, the
line it is on, and what was expected.  Unknown and duplicate keys are errors:
a typo never passes silently.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import yaml

from portald.addresses import InvalidMAC, normalise_mac
from portald.rates import rate_bits, rate_in_range

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LEASE_FORMATS = ("dnsmasq", "isc-dhcpd", "kea")
AUTH_METHODS = ("click-through", "access-code", "voucher", "radius")
# What the portal's RADIUS form asks: a name and a password, or a code alone (sent as the name).
RADIUS_CREDENTIALS = ("password", "code")
WHEN_FULL = ("refuse", "replace-oldest")
FIREWALL_BACKENDS = ("none", "nftables")
ON_STOP_CHOICES = ("keep", "remove")
LOG_FORMATS = ("text", "json")

DEFAULT_CONFIG_PATH = "/etc/portald/portald.yaml"


class ConfigError(Exception):
    """
    A configuration that cannot be used, with where and why.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str = "",
        line: int | None = None,
        source: str = "",
    ) -> None:
        self.message = message
        self.key = key
        self.line = line
        self.source = source
        super().__init__(message)

    def __str__(self) -> str:
        where = self.source or "configuration"
        if self.line is not None:
            where += f", line {self.line}"
        if self.key:
            return f"{where}: {self.key}: {self.message}"
        return f"{where}: {self.message}"


@attrs.frozen
class Node:
    """
    A YAML node together with the dotted key path that led to it.
    """

    yaml_node: yaml.Node
    key: str
    loader: yaml.SafeLoader
    # Every key path seen so far -> its line, shared by the whole tree, so
    # that checks spanning several keys can still say where.
    lines: dict[str, int] = attrs.field(factory=dict, eq=False)

    def child(self, yaml_node: yaml.Node, key: str) -> Node:
        return Node(yaml_node, key, self.loader, self.lines)

    @property
    def line(self) -> int:
        return self.yaml_node.start_mark.line + 1

    def error(self, expected: str) -> ConfigError:
        got = self.describe()
        return ConfigError(f"expected {expected}, got {got}", key=self.key, line=self.line)

    def describe(self) -> str:
        node = self.yaml_node
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        value = self.scalar()
        if value is None:
            return "nothing (null)"
        return repr(value)

    def scalar(self) -> Any:
        if not isinstance(self.yaml_node, yaml.ScalarNode):
            return self.yaml_node
        try:
            return self.loader.construct_object(self.yaml_node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:
            # A tag or a date YAML cannot build (2024-13-45, !!int abc, !foo).
            problem = getattr(e, "problem", None) or str(e)
            raise ConfigError(
                f"cannot read {self.yaml_node.value!r} ({problem})", key=self.key, line=self.line
            ) from None


Parser = Callable[[Node], Any]
T = TypeVar("T")


# --- scalar parsers ----------------------------------------------------------


def parse_text(node: Node) -> str:
    yaml_node = node.yaml_node
    if (
        isinstance(yaml_node, yaml.ScalarNode)
        and yaml_node.style is None
        and yaml_node.tag != "tag:yaml.org,2002:null"
        and not yaml_node.tag.startswith("!")
    ):
        # As written: YAML 1.1 would make the room number 0123 into 83,
        # 12:30 into 750, 2024-02-03 into a date and yes into true.
        return str(yaml_node.value)
    value = node.scalar()
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise node.error("a text value")
    return str(value)


def parse_name(node: Node) -> str:
    """A non-empty identifier-like word (nft table names, theme names)."""
    value = node.scalar()
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", value):
        raise node.error("a name of letters, digits, '-' and '_', starting with a letter")
    return value


def parse_interface(node: Node) -> str:
    """A network interface name as Linux allows it (wlan0, br-lan, eth0.100)."""
    value = node.scalar()
    if (
        not isinstance(value, str)
        or not re.fullmatch(r"[A-Za-z0-9_.@-]{1,15}", value)
        or value in (".", "..")
    ):
        raise node.error("an interface name of at most 15 letters, digits, '.', '-', '_' or '@'")
    return value


def parse_bool(node: Node) -> bool:
    value = node.scalar()
    if not isinstance(value, bool):
        raise node.error("true or false")
    return value


def parse_port(node: Node) -> int:
    value = node.scalar()
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise node.error("a port number from 1 to 65535")
    return value


def positive_int(node: Node) -> int:
    value = node.scalar()
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise node.error("a whole number of at least 1")
    return value


def _address_parser(kind: type | tuple[type, ...], expected: str) -> Parser:
    def parse(node: Node) -> IPAddress:
        value = node.scalar()
        try:
            address = ipaddress.ip_address(value) if isinstance(value, str) else None
        except ValueError:
            address = None
        if not isinstance(address, kind):
            raise node.error(expected)
        return address

    return parse


parse_ip = _address_parser(
    (ipaddress.IPv4Address, ipaddress.IPv6Address), "an IP address such as 192.0.2.1 or 2001:db8::1"
)
parse_ipv4 = _address_parser(ipaddress.IPv4Address, "an IPv4 address such as 192.0.2.1")
parse_ipv6 = _address_parser(ipaddress.IPv6Address, "an IPv6 address such as 2001:db8::1")


def parse_network(node: Node) -> IPNetwork:
    value = node.scalar()
    try:
        if isinstance(value, str):
            return ipaddress.ip_network(value, strict=True)
    except ValueError:
        pass
    raise node.error("a network in CIDR form with no host bits set, such as 192.0.2.0/24")


_HOSTNAME_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def parse_hostname(node: Node) -> str:
    value = node.scalar()
    if isinstance(value, str):
        name = value.lower().rstrip(".")
        labels = name.split(".")
        if 0 < len(name) <= 253 and all(_HOSTNAME_LABEL.fullmatch(label) for label in labels):
            return name
    raise node.error("a DNS name such as portal.example")


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


DURATION_EXAMPLES = "a duration such as 90s, 30m, 2h, 1h30m or 1d"


def duration_seconds(text: str) -> float | None:
    """C{text} such as ``90s``, ``1h30m`` or ``200ms`` in seconds; C{None} if it is not one."""
    text = text.strip()
    parts = _DURATION_PART.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    return None


def parse_duration(node: Node) -> float:
    """
    A duration such as ``90s``, ``30m``, ``2h``, ``1h30m``, ``1d`` or
    ``200ms``, in seconds.  A bare ``0`` means zero (used for "off").
    """
    value = node.scalar()
    if value == 0 and not isinstance(value, bool):
        return 0.0
    seconds = duration_seconds(value) if isinstance(value, str) else None
    if seconds is None:
        raise node.error(DURATION_EXAMPLES)
    return seconds


def positive_duration(node: Node) -> float:
    """A duration above zero (a timeout or an interval that 0 would break)."""
    value = parse_duration(node)
    if value <= 0:
        raise node.error("a duration above zero, such as 90s, 30m, 2h, 1h30m or 1d")
    return value


def whole_seconds(node: Node) -> float:
    """A duration in whole seconds, as DNS TTLs are."""
    value = parse_duration(node)
    if value != int(value):
        raise node.error("a duration in whole seconds, such as 5s or 1h (DNS TTLs have no fractions)")
    return value


_SIZE = re.compile(r"(\d+)\s*(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "kB": 10**3,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}


def byte_count(text: str) -> int | None:
    """C{text} such as ``500MB`` or ``2GiB`` in bytes; C{None} if it is not one."""
    match = _SIZE.fullmatch(text.strip())
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)] if match else None


def parse_byte_size(node: Node) -> int:
    """A data amount such as ``500MB`` or ``2GiB``, in bytes; 0 is "none"."""
    value = node.scalar()
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        count = byte_count(value)
        if count is not None:
            return count
    raise node.error("a data amount such as 500MB, 2GB or 1GiB (0 for unlimited)")


def parse_rate(node: Node) -> int:
    """A rate in bit/s: ``10Mbit``, ``2mbit``, ``500kbit``; 0 is unlimited."""
    value = node.scalar()
    expected = "a rate such as 10Mbit, 2Mbit or 500kbit (0 for unlimited)"
    if isinstance(value, int) and not isinstance(value, bool):
        bits = value
    elif isinstance(value, str):
        bits = rate_bits(value)
    else:
        bits = None
    if bits is None or bits < 0:
        raise node.error(expected)
    if not rate_in_range(bits):
        raise node.error(expected + ", from 8kbit to 100Gbit")
    return bits


def positive_byte_size(node: Node) -> int:
    """A data amount above zero (a bound that 0 would make refuse everything)."""
    value = parse_byte_size(node)
    if value < 1:
        raise node.error("a data amount above zero, such as 8192 or 8KiB")
    return value


def parse_mac(node: Node) -> str:
    value = node.scalar()
    try:
        if isinstance(value, str):
            return normalise_mac(value)
    except InvalidMAC:
        pass
    raise node.error("a MAC address such as 02:00:00:aa:bb:cc")


def parse_path(node: Node) -> Path:
    """A file path; relative paths are resolved later against the config file."""
    value = node.scalar()
    if not isinstance(value, str) or not value or "\0" in value:
        raise node.error("a file path")
    return Path(value)


def parse_url_path(node: Node) -> str:
    value = node.scalar()
    if not isinstance(value, str) or not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
        raise node.error("a path such as /api/captive")
    return value


def parse_web_url(node: Node) -> str:
    value = node.scalar()
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s\"<>]+", value) or len(value) > 512:
        raise node.error("an http:// or https:// URL")
    return value


def choice(*choices: str) -> Parser:
    def parse(node: Node) -> str:
        value = node.scalar()
        if value not in choices:
            raise node.error("one of " + ", ".join(choices))
        return value

    return parse


def optional(parse: Parser) -> Parser:
    def parse_optional(node: Node) -> Any:
        if isinstance(node.yaml_node, yaml.ScalarNode) and node.scalar() is None:
            return None
        return parse(node)

    return parse_optional


def list_of(parse: Parser, *, non_empty: bool = False) -> Parser:
    def parse_list(node: Node) -> tuple[Any, ...]:
        if not isinstance(node.yaml_node, yaml.SequenceNode):
            raise node.error("a list")
        items = tuple(
            parse(node.child(item, f"{node.key}[{index}]")) for index, item in enumerate(node.yaml_node.value)
        )
        if non_empty and not items:
            raise node.error("a list with at least one entry")
        return items

    return parse_list


# --- compound values -----------------------------------------------------------


@attrs.frozen
class Endpoint:
    """An address and port, such as an upstream resolver."""

    host: IPAddress
    port: int

    def __str__(self) -> str:
        if self.host.version == 6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


_ENDPOINT = re.compile(r"\[(?P<v6>[^\]]+)\]:(?P<v6port>\d+)|(?P<v4>[0-9.]+):(?P<v4port>\d+)")


def endpoint(default_port: int) -> Parser:
    """``198.51.100.53``, ``198.51.100.53:5353``, ``2001:db8::53`` or ``[2001:db8::53]:5353``."""

    def parse_endpoint(node: Node) -> Endpoint:
        value = node.scalar()
        expected = f"an address with an optional port, such as 198.51.100.53 or 198.51.100.53:{default_port}"
        if not isinstance(value, str):
            raise node.error(expected)
        match = _ENDPOINT.fullmatch(value.strip())
        host, port = value.strip(), str(default_port)
        if match:
            host = match.group("v6") or match.group("v4")
            port = match.group("v6port") or match.group("v4port")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise node.error(expected) from None
        if not 1 <= int(port) <= 65535:
            raise node.error(expected + " (port 1 to 65535)")
        return Endpoint(address, int(port))

    return parse_endpoint


@attrs.frozen
class GatewayService:
    """A port on the gateway itself that guests may reach (C{firewall.gateway_services})."""

    protocol: str  # "tcp" or "udp"
    port: int

    def __str__(self) -> str:
        return f"{self.protocol}/{self.port}"


_SERVICE = re.compile(r"(tcp|udp)/([0-9]{1,5})")


def parse_gateway_service(node: Node) -> GatewayService:
    value = node.scalar()
    match = _SERVICE.fullmatch(value.strip().lower()) if isinstance(value, str) else None
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise node.error("a protocol and port such as tcp/22 or udp/123")
    return GatewayService(match.group(1), int(match.group(2)))


@attrs.frozen
class ProbeRule:
    """
    An OS connectivity probe: a host, and a path on it (``None``: any path).
    """

    host: str
    path: str | None = None

    def matches(self, host: str, path: str) -> bool:
        return host == self.host and (self.path is None or path == self.path)

    def __str__(self) -> str:
        return self.host + (self.path or "")


def parse_probe(node: Node) -> ProbeRule:
    value = node.scalar()
    expected = "a probe as host or host/path, such as connectivitycheck.gstatic.com/generate_204"
    if not isinstance(value, str):
        raise node.error(expected)
    host, slash, path = value.partition("/")
    host_node = node.child(yaml.ScalarNode("tag:yaml.org,2002:str", host), node.key)
    try:
        name = parse_hostname(host_node)
    except ConfigError:
        raise node.error(expected) from None
    if slash and any(c in path for c in " \t\r\n?#"):
        raise node.error(expected)
    return ProbeRule(name, "/" + path if slash else None)


# --- sections ------------------------------------------------------------------


def setting(parse: Parser, default: Any = attrs.NOTHING, doc: str = "") -> Any:
    """An attrs field that the YAML loader fills with C{parse}."""
    return attrs.field(default=default, metadata={"parse": parse, "doc": doc})


def section(cls: type[T]) -> Parser:
    def parse_section(node: Node) -> T:
        return build(cls, node)

    return parse_section


@attrs.frozen
class PortalSettings:
    address: ipaddress.IPv4Address = setting(parse_ipv4, doc="the gateway's LAN IPv4 address")
    subnets: tuple[IPNetwork, ...] = setting(
        list_of(parse_network, non_empty=True), doc="LAN subnets that clients come from"
    )
    address6: ipaddress.IPv6Address | None = setting(optional(parse_ipv6), None)
    hostname: str = setting(parse_hostname, "portal.example")
    venue: str = setting(parse_text, "Guest Wi-Fi")
    # The venue's own page (opening hours, the menu), for the Captive Portal API.
    venue_info_url: str | None = setting(optional(parse_web_url), None)
    terms: str = setting(parse_text, "Be kind to the network and to each other.")
    interface: str = setting(parse_interface, "wlan0")


DEFAULT_WALLED_GARDEN: tuple[str, ...] = ()


@attrs.frozen
class DNSSettings:
    listen: tuple[IPAddress, ...] = setting(list_of(parse_ip), ())
    port: int = setting(parse_port, 53)
    upstream: tuple[Endpoint, ...] = setting(list_of(endpoint(53)), ())
    redirect_ttl: float = setting(whole_seconds, 5.0)
    upstream_timeout: float = setting(positive_duration, 2.0)
    cache_size: int = setting(positive_int, 10000)
    max_cache_ttl: float = setting(whole_seconds, 3600.0)
    walled_garden: tuple[str, ...] = setting(list_of(parse_hostname), DEFAULT_WALLED_GARDEN)
    # 0x20: questions sent upstream in random letter case (a forged answer
    # must guess it); off for an upstream that does not keep the case.
    randomise_case: bool = setting(parse_bool, True)
    # DNS over TCP, bounded: connections in all and per client, how long a
    # quiet one stays open, and queries one connection may have unanswered.
    max_tcp_connections: int = setting(positive_int, 256)
    max_tcp_connections_per_client: int = setting(positive_int, 8)
    tcp_timeout: float = setting(positive_duration, 10.0)
    max_tcp_pending: int = setting(positive_int, 16)


DEFAULT_PROBES: tuple[ProbeRule, ...] = (
    ProbeRule("connectivitycheck.gstatic.com", "/generate_204"),
    ProbeRule("connectivitycheck.android.com", "/generate_204"),
    ProbeRule("clients3.google.com", "/generate_204"),
    ProbeRule("www.google.com", "/generate_204"),
    ProbeRule("www.gstatic.com", "/generate_204"),
    ProbeRule("captive.apple.com"),
    ProbeRule("www.apple.com", "/library/test/success.html"),
    ProbeRule("netcts.cdn-apple.com"),
    ProbeRule("www.msftconnecttest.com"),
    ProbeRule("ipv6.msftconnecttest.com"),
    ProbeRule("www.msftncsi.com", "/ncsi.txt"),
    ProbeRule("detectportal.firefox.com"),
    ProbeRule("connectivity-check.ubuntu.com"),
    ProbeRule("nmcheck.gnome.org", "/check_network_status.txt"),
    ProbeRule("fedoraproject.org", "/static/hotspot.txt"),
)


@attrs.frozen
class TLSSettings:
    """The portal's own name over HTTPS: the operator's certificate chain and key for C{portal.hostname}."""

    certificate: Path = setting(parse_path, doc="PEM: the certificate, then its chain")
    key: Path = setting(parse_path, doc="PEM: its private key (unencrypted)")
    port: int = setting(parse_port, 443)
    # Renewed files (an ACME client's) are picked up this often, and at a reload.
    check_interval: float = setting(positive_duration, 60.0)


@attrs.frozen
class HTTPSettings:
    listen: IPAddress | None = setting(optional(parse_ip), None)
    port: int = setting(parse_port, 80)
    tls: TLSSettings | None = setting(optional(section(TLSSettings)), None, doc="HTTPS for portal.hostname")
    # The RFC 8908 Captive Portal API, on the portal's own name.
    api_path: str = setting(parse_url_path, "/api/captive")
    probes: tuple[ProbeRule, ...] = setting(list_of(parse_probe), DEFAULT_PROBES)
    theme: Path | None = setting(optional(parse_path), None)
    # Input bounds: what one guest can make the portal hold.
    max_body_bytes: int = setting(
        positive_byte_size, 8192, doc="largest request body the portal's forms accept"
    )
    request_timeout: float = setting(
        positive_duration, 10.0, doc="time a request's head and body may take to arrive"
    )
    max_connections: int = setting(positive_int, 4096, doc="open HTTP connections, all clients together")
    max_connections_per_client: int = setting(
        positive_int, 64, doc="open HTTP connections per client address"
    )


@attrs.frozen
class LeaseSource:
    format: str = setting(choice(*LEASE_FORMATS))
    path: Path = setting(parse_path)


@attrs.frozen
class LeaseSettings:
    sources: tuple[LeaseSource, ...] = setting(list_of(section(LeaseSource), non_empty=True))
    poll_interval: float = setting(positive_duration, 5.0)
    debounce: float = setting(parse_duration, 0.1)
    neighbour_fallback: bool = setting(parse_bool, False)


@attrs.frozen
class WayIn:
    """
    One way to sign in on the portal page, with its own session settings
    (each unset one is the C{sessions} section's).
    """

    method: str = setting(choice(*AUTH_METHODS))
    label: str | None = setting(optional(parse_text), None, doc="its form's heading when there are several")
    codes: tuple[str, ...] = setting(list_of(parse_text), ())
    timeout: float | None = setting(optional(positive_duration), None)
    idle_timeout: float | None = setting(optional(parse_duration), None)
    quota: int | None = setting(optional(parse_byte_size), None)
    rate_down: int | None = setting(optional(parse_rate), None)
    rate_up: int | None = setting(optional(parse_rate), None)


@attrs.frozen
class AuthSettings:
    method: str = setting(choice(*AUTH_METHODS), "click-through")
    codes: tuple[str, ...] = setting(list_of(parse_text), ())
    timeout: float | None = setting(optional(positive_duration), None)
    max_attempts: int = setting(positive_int, 5)
    max_attempts_total: int = setting(positive_int, 30, doc="code evaluations per window, all devices")
    attempt_window: float = setting(positive_duration, 60.0)
    methods: tuple[WayIn, ...] = setting(list_of(section(WayIn)), (), doc="several ways in, side by side")


@attrs.frozen
class WifiNetwork:
    """The guest Wi-Fi, for the voucher slip's second QR code (scanning it joins the network)."""

    ssid: str = setting(parse_text, doc="the network's name")
    password: str | None = setting(
        optional(parse_text), None, doc="its WPA passphrase; none for an open network"
    )
    hidden: bool = setting(parse_bool, False)


def parse_wifi(node: Node) -> WifiNetwork:
    wifi = build(WifiNetwork, node)
    if not 1 <= len(wifi.ssid.encode()) <= 32:
        raise ConfigError(
            "expected 1 to 32 bytes (a Wi-Fi network name)", key=f"{node.key}.ssid", line=node.line
        )
    if wifi.password is not None and not 8 <= len(wifi.password) <= 63:
        raise ConfigError(
            "expected 8 to 63 characters (a WPA passphrase), or none for an open network",
            key=f"{node.key}.password",
            line=node.line,
        )
    return wifi


@attrs.frozen
class VoucherSettings:
    when_full: str = setting(
        choice(*WHEN_FULL), "refuse", doc="a voucher on its most devices: refuse, or end its oldest session"
    )
    # The key vouchers are hashed with, kept apart from the database (a
    # stolen database gives no code away).  Default: next to the database.
    key_file: Path | None = setting(optional(parse_path), None)
    wifi: WifiNetwork | None = setting(
        optional(parse_wifi), None, doc="the guest Wi-Fi, printed on the slips"
    )


@attrs.frozen
class SessionSettings:
    timeout: float = setting(positive_duration, 4 * 3600.0)
    idle_timeout: float = setting(parse_duration, 0.0)
    quota: int = setting(parse_byte_size, 0)
    extendable: bool = setting(parse_bool, False)
    warn_before: float = setting(parse_duration, 300.0)
    sample_interval: float = setting(positive_duration, 60.0)
    # Each signed-in device's download and upload rate (0: unlimited), shaped in the kernel.
    rate_down: int = setting(parse_rate, 0)
    rate_up: int = setting(parse_rate, 0)


@attrs.frozen
class ShapingSettings:
    """Where per-device rates are shaped: downloads on portal.interface, uploads on the uplink."""

    uplink: str | None = setting(optional(parse_interface), None, doc="the interface towards the internet")
    # The line's real capacity (0: not shaped as a whole): queues then form in
    # portald's fair classes, not in the modem's buffer, and devices without
    # a rate of their own share it equally.
    uplink_rate_down: int = setting(parse_rate, 0)
    uplink_rate_up: int = setting(parse_rate, 0)
    tc: Path = setting(parse_path, Path("/usr/sbin/tc"))


@attrs.frozen
class FirewallSettings:
    backend: str = setting(choice(*FIREWALL_BACKENDS), "none")
    table: str = setting(parse_name, "portald")
    allowed_macs: tuple[str, ...] = setting(list_of(parse_mac), ())
    walled_garden: tuple[IPNetwork, ...] = setting(list_of(parse_network), ())
    # What guests may reach on the gateway itself besides DHCP, portald's
    # DNS and web ports and ping (everything else there is dropped).
    gateway_services: tuple[GatewayService, ...] = setting(list_of(parse_gateway_service), ())
    on_stop: str = setting(choice(*ON_STOP_CHOICES), "keep")
    nft: Path = setting(parse_path, Path("/usr/sbin/nft"))
    conntrack: Path = setting(parse_path, Path("/usr/sbin/conntrack"))


@attrs.frozen
class StateSettings:
    database: Path = setting(parse_path, Path("/var/lib/portald/sessions.sqlite3"))


def parse_group(node: Node) -> str:
    """A Unix group name (whether it exists is checked when the socket is made)."""
    value = node.scalar()
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", value):
        raise node.error("a group name such as portald")
    return value


@attrs.frozen
class ControlSettings:
    # The operators' API (portald-ctl): a UNIX socket, never a network address.
    socket: Path = setting(parse_path, Path("/run/portald/control.sock"), doc="the control API's UNIX socket")
    group: str | None = setting(
        optional(parse_group), None, doc="group that may use the socket (default: portald's own)"
    )


@attrs.frozen
class MetricsSettings:
    # Prometheus exposition; off unless an address is given.
    listen: Endpoint | None = setting(optional(endpoint(9120)), None, doc="address:port of /metrics")
    # The guests' side is refused unless the operator insists.
    allow_guest_side: bool = setting(parse_bool, False)


@attrs.frozen
class AdminTLSSettings:
    """HTTPS for the admin page: any certificate the staff's browsers trust (its names are not checked)."""

    certificate: Path = setting(parse_path, doc="PEM: the certificate, then its chain")
    key: Path = setting(parse_path, doc="PEM: its private key (unencrypted)")
    check_interval: float = setting(positive_duration, 60.0)


@attrs.frozen
class AdminSettings:
    # The staff's web page; off unless an address is given.
    listen: Endpoint | None = setting(optional(endpoint(8081)), None, doc="address:port of the admin page")
    users_file: Path = setting(
        parse_path, Path("/etc/portald/admin-users"), doc="staff accounts (portald-ctl admin add-user)"
    )
    tls: AdminTLSSettings | None = setting(optional(section(AdminTLSSettings)), None, doc="HTTPS for it")
    # A staff sign-in lasts this long, and ends sooner when left alone.
    session_lifetime: float = setting(positive_duration, 12 * 3600.0)
    idle_timeout: float = setting(positive_duration, 3600.0)
    # The guests' side is refused unless the operator insists.
    allow_guest_side: bool = setting(parse_bool, False)


def parse_secret(node: Node) -> str:
    """A RADIUS shared secret: printable, 1 to 128 characters (what FreeRADIUS accepts)."""
    value = parse_text(node)
    if not 1 <= len(value) <= 128 or not value.isprintable():
        raise node.error("a shared secret of 1 to 128 printable characters")
    return value


@attrs.frozen
class RadiusServer:
    """One AAA server; several are tried in order, the next when one does not answer."""

    address: IPAddress = setting(parse_ip, doc="the server's address")
    secret: str = setting(parse_secret, doc="the secret shared with it")
    auth_port: int = setting(parse_port, 1812)
    acct_port: int = setting(parse_port, 1813)


@attrs.frozen
class DASClient:
    """Who may send Disconnect and CoA requests (RFC 5176), with its own secret."""

    address: IPAddress = setting(parse_ip)
    secret: str = setting(parse_secret)


@attrs.frozen
class DASSettings:
    # Dynamic authorization: off unless an address is given.
    listen: Endpoint | None = setting(optional(endpoint(3799)), None, doc="address:port of the DAS")
    clients: tuple[DASClient, ...] = setting(list_of(section(DASClient)), ())


@attrs.frozen
class MacAuthSettings:
    """A device seen in the leases is first tried by its MAC, as CoovaChilli and uspot do."""

    enabled: bool = setting(parse_bool, False)
    # The MAC as the name: AA-BB-CC-DD-EE-FF (RFC 3580); the password: this text, or the name again.
    password: str | None = setting(optional(parse_text), None)


@attrs.frozen
class RadiusSettings:
    servers: tuple[RadiusServer, ...] = setting(list_of(section(RadiusServer)), ())
    nas_identifier: str = setting(parse_text, "portald")
    nas_ip_address: ipaddress.IPv4Address | None = setting(
        optional(parse_ipv4), None, doc="default: portal.address"
    )
    called_station_id: str | None = setting(optional(parse_text), None, doc="default: nas_identifier")
    credentials: str = setting(choice(*RADIUS_CREDENTIALS), "password")
    # RFC 5080: the first retransmission after timeout, then doubling, at
    # most retries times per server; a guest waits at most give_up_after.
    timeout: float = setting(positive_duration, 2.0)
    retries: int = setting(positive_int, 2)
    give_up_after: float = setting(positive_duration, 10.0)
    # A server that did not answer is skipped this long, unless Status-Server finds it sooner.
    dead_time: float = setting(positive_duration, 30.0)
    accounting: bool = setting(parse_bool, True)
    # Interim-Updates when the Access-Accept names no interval (0: none); never under 60 s.
    interim_interval: float = setting(parse_duration, 0.0)
    mac_auth: MacAuthSettings = setting(section(MacAuthSettings), MacAuthSettings())
    das: DASSettings = setting(section(DASSettings), DASSettings())


@attrs.frozen
class LogSettings:
    format: str = setting(choice(*LOG_FORMATS), "text", doc="text, or json: one JSON object per line")


@attrs.frozen
class Config:
    portal: PortalSettings = setting(section(PortalSettings))
    leases: LeaseSettings = setting(section(LeaseSettings))
    dns: DNSSettings = setting(section(DNSSettings), DNSSettings())
    http: HTTPSettings = setting(section(HTTPSettings), HTTPSettings())
    auth: AuthSettings = setting(section(AuthSettings), AuthSettings())
    vouchers: VoucherSettings = setting(section(VoucherSettings), VoucherSettings())
    sessions: SessionSettings = setting(section(SessionSettings), SessionSettings())
    shaping: ShapingSettings = setting(section(ShapingSettings), ShapingSettings())
    firewall: FirewallSettings = setting(section(FirewallSettings), FirewallSettings())
    state: StateSettings = setting(section(StateSettings), StateSettings())
    control: ControlSettings = setting(section(ControlSettings), ControlSettings())
    metrics: MetricsSettings = setting(section(MetricsSettings), MetricsSettings())
    admin: AdminSettings = setting(section(AdminSettings), AdminSettings())
    radius: RadiusSettings = setting(section(RadiusSettings), RadiusSettings())
    log: LogSettings = setting(section(LogSettings), LogSettings())
    source: Path | None = attrs.field(default=None, eq=False)

    @property
    def dns_listen(self) -> tuple[IPAddress, ...]:
        """Where DNS listens: as configured, or else the portal's addresses."""
        if self.dns.listen:
            return self.dns.listen
        if self.portal.address6 is not None:
            return (self.portal.address, self.portal.address6)
        return (self.portal.address,)

    @property
    def http_listen(self) -> IPAddress:
        return self.http.listen or self.portal.address

    @property
    def http_listen6(self) -> IPAddress | None:
        """A second HTTP listener, on C{portal.address6}, unless C{http.listen} covers IPv6 already."""
        if self.portal.address6 is None or self.http_listen.version == 6:
            return None
        return self.portal.address6

    @property
    def portal_url(self) -> str:
        """The portal's own root URL, on its own host name: over HTTPS when it has a certificate."""
        if self.http.tls is not None:
            port = "" if self.http.tls.port == 443 else f":{self.http.tls.port}"
            return f"https://{self.portal.hostname}{port}/"
        return self.plain_portal_url

    @property
    def plain_portal_url(self) -> str:
        """The portal's root URL over plain HTTP."""
        port = "" if self.http.port == 80 else f":{self.http.port}"
        return f"http://{self.portal.hostname}{port}/"

    @property
    def captive_api_url(self) -> str:
        """The RFC 8908 API's URI, as DHCP option 114 and RA option 37 announce it."""
        return self.portal_url.rstrip("/") + self.http.api_path

    def on_guest_side(self, host: IPAddress) -> bool:
        """Whether a listener on C{host} would be reachable from the guests' side."""
        return (
            host.is_unspecified
            or host in (self.portal.address, self.portal.address6)
            or any(host in subnet for subnet in self.portal.subnets)
        )

    @property
    def admin_url(self) -> str | None:
        """The admin page's root URL, if it is on."""
        listen = self.admin.listen
        if listen is None:
            return None
        return f"{'https' if self.admin.tls is not None else 'http'}://{listen}/"

    def session_timeout(self) -> float:
        """The hard session length for the configured login method."""
        return self.auth.timeout if self.auth.timeout is not None else self.sessions.timeout

    def ways_in(self) -> tuple[WayIn, ...]:
        """The ways to sign in, in the page's order: C{auth.methods}, or the one C{auth.method}."""
        if self.auth.methods:
            return self.auth.methods
        return (WayIn(method=self.auth.method, codes=self.auth.codes, timeout=self.auth.timeout),)

    def session_settings(self, way: WayIn) -> tuple[float, float | None, int | None]:
        """(hard length, idle timeout or None, quota or None) of a session that C{way} begins."""
        sessions = self.sessions
        idle = way.idle_timeout if way.idle_timeout is not None else sessions.idle_timeout
        quota = way.quota if way.quota is not None else sessions.quota
        return (way.timeout or sessions.timeout, idle or None, quota or None)

    def rates_for(self, method: str) -> tuple[int, int]:
        """(down, up) bit/s of a session by C{method} (0: unlimited); staff's sessions are never shaped."""
        down, up = self.sessions.rate_down, self.sessions.rate_up
        for way in self.ways_in():
            if way.method == method:
                down = way.rate_down if way.rate_down is not None else down
                up = way.rate_up if way.rate_up is not None else up
        if method == "staff":
            return (0, 0)
        return (down, up)

    @property
    def rates_configured(self) -> bool:
        """Whether the file gives any way in a rate."""
        rates = [self.sessions.rate_down, self.sessions.rate_up]
        rates += [r for way in self.ways_in() for r in (way.rate_down, way.rate_up) if r is not None]
        return any(rates)

    @property
    def shapes(self) -> bool:
        """Whether portald shapes (a rate may come from the file, a voucher or portald-ctl rate)."""
        return self.shaping.uplink is not None

    @property
    def voucher_key_file(self) -> Path:
        return self.vouchers.key_file or self.state.database.with_name("vouchers.key")


# --- the loader ---------------------------------------------------------------------


def build(cls: type[T], node: Node) -> T:
    """Build the attrs class C{cls} from a YAML mapping node, strictly."""
    if not isinstance(node.yaml_node, yaml.MappingNode):
        raise node.error("a mapping of settings")
    fields = {field.name: field for field in attrs.fields(cls) if "parse" in field.metadata}
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.yaml_node.value:
        key = node.child(key_node, node.key).scalar()
        path = f"{node.key}.{key}" if node.key else str(key)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str) or key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1)
            known = f"did you mean {hint[0]!r}?" if hint else "known keys: " + ", ".join(fields)
            raise ConfigError(f"unknown key ({known})", key=path, line=line)
        if key in values:
            raise ConfigError(f"given twice (first on line {lines[key]})", key=path, line=line)
        node.lines[path] = line
        values[key] = fields[key].metadata["parse"](node.child(value_node, path))
        lines[key] = line
    missing = [
        name for name, field in fields.items() if name not in values and field.default is attrs.NOTHING
    ]
    if missing:
        where = node.key or "the top level"
        raise ConfigError(f"missing required key {missing[0]!r} in {where}", key=node.key, line=node.line)
    return cls(**values)


def _check_consistency(config: Config, lines: dict[str, int]) -> None:
    """Checks that span more than one key."""

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(message, key=key, line=lines.get(key))

    if not any(config.portal.address in subnet for subnet in config.portal.subnets):
        raise fail("portal.address", "expected an address inside one of portal.subnets")
    for section_name, listen, insisted in (
        ("metrics", config.metrics.listen, config.metrics.allow_guest_side),
        ("admin", config.admin.listen, config.admin.allow_guest_side),
    ):
        if listen is not None and not insisted and config.on_guest_side(listen.host):
            raise fail(
                f"{section_name}.listen",
                "expected an address on the staff's side, not the guests' (portal.address, "
                f"portal.subnets or every address); set {section_name}.allow_guest_side: true to insist",
            )
    if config.auth.method == "access-code" and not config.auth.codes:
        raise fail("auth.method", "access-code needs at least one code in auth.codes")
    if config.auth.methods:
        for key in ("auth.method", "auth.codes", "auth.timeout"):
            if key in lines:
                raise fail(key, "expected either auth.methods (several ways in) or auth.method, not both")
        seen: set[str] = set()
        for index, way in enumerate(config.auth.methods):
            if way.method in seen:
                raise fail(f"auth.methods[{index}].method", f"{way.method} is listed twice")
            seen.add(way.method)
            if way.method == "access-code" and not way.codes:
                raise fail(f"auth.methods[{index}].codes", "access-code needs at least one code")
            if way.method != "access-code" and way.codes:
                raise fail(f"auth.methods[{index}].codes", f"codes are for access-code, not {way.method}")
    _check_radius(config, fail)
    if config.rates_configured or config.shapes:
        if config.firewall.backend != "nftables":
            key = "sessions.rate_down" if config.rates_configured else "shaping.uplink"
            raise fail(key, "rates are shaped in the kernel: they need firewall.backend: nftables")
        if config.shaping.uplink is None:
            raise fail(
                "shaping.uplink", "expected the interface towards the internet, where uploads are shaped"
            )
        if config.shaping.uplink == config.portal.interface:
            raise fail("shaping.uplink", "expected another interface than portal.interface")
    elif config.shaping.uplink_rate_down or config.shaping.uplink_rate_up:
        raise fail("shaping.uplink", "expected the interface towards the internet, whose line rate is given")
    if config.firewall.backend == "nftables":
        # The firewall sends captive clients' DNS and HTTP to portal.address:
        # something must listen there.
        def serves_portal_address(address: IPAddress) -> bool:
            return address == config.portal.address or address.is_unspecified

        if not any(serves_portal_address(address) for address in config.dns_listen):
            raise fail(
                "dns.listen",
                "expected portal.address (or 0.0.0.0) among the addresses: the firewall redirects DNS there",
            )
        if not serves_portal_address(config.http_listen):
            raise fail(
                "http.listen", "expected portal.address (or 0.0.0.0): the firewall redirects HTTP there"
            )


def _check_radius(config: Config, fail: Callable[[str, str], ConfigError]) -> None:
    radius = config.radius
    uses_radius = any(way.method == "radius" for way in config.ways_in()) or radius.mac_auth.enabled
    if uses_radius and not radius.servers:
        raise fail("radius.servers", "expected at least one server for the radius way in (or mac_auth)")
    if radius.interim_interval and radius.interim_interval < 60:
        raise fail("radius.interim_interval", "expected at least 60s (or 0 for none), as RFC 2869 asks")
    if radius.give_up_after < radius.timeout:
        raise fail("radius.give_up_after", "expected at least radius.timeout")
    das = radius.das
    if das.listen is not None:
        if not das.clients:
            raise fail("radius.das.clients", "expected at least one client allowed to send requests")
        if config.on_guest_side(das.listen.host):
            raise fail("radius.das.listen", "expected an address on the AAA's side, not the guests'")


def _resolve_paths(config: Config, base: Path) -> Config:
    """Make relative paths relative to the configuration file's directory."""

    def resolve(path: Path) -> Path:
        return path if path.is_absolute() else (base / path).resolve()

    sources = tuple(attrs.evolve(s, path=resolve(s.path)) for s in config.leases.sources)
    theme = resolve(config.http.theme) if config.http.theme else None
    tls = config.http.tls
    if tls is not None:
        tls = attrs.evolve(tls, certificate=resolve(tls.certificate), key=resolve(tls.key))
    admin_tls = config.admin.tls
    if admin_tls is not None:
        admin_tls = attrs.evolve(
            admin_tls, certificate=resolve(admin_tls.certificate), key=resolve(admin_tls.key)
        )
    return attrs.evolve(
        config,
        admin=attrs.evolve(config.admin, users_file=resolve(config.admin.users_file), tls=admin_tls),
        leases=attrs.evolve(config.leases, sources=sources),
        http=attrs.evolve(config.http, theme=theme, tls=tls),
        state=attrs.evolve(config.state, database=resolve(config.state.database)),
        control=attrs.evolve(config.control, socket=resolve(config.control.socket)),
        vouchers=attrs.evolve(
            config.vouchers, key_file=resolve(config.vouchers.key_file) if config.vouchers.key_file else None
        ),
    )


def parse_config(text: str, source: str = "configuration", base: Path | None = None) -> Config:
    """
    Parse and validate configuration text.

    @raise ConfigError: naming the key, line and what was expected.
    """
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark else None
            problem = e.problem or e.context or "malformed"
            raise ConfigError(f"YAML syntax error: {problem}", line=line, source=source) from None
        except yaml.YAMLError as e:
            raise ConfigError(f"YAML error: {e}", source=source) from None
        if root is None:
            raise ConfigError("the file is empty; see etc/portald.yaml for an example", source=source)
        try:
            top = Node(root, "", loader)
            config = build(Config, top)
            _check_consistency(config, top.lines)
        except ConfigError as e:
            e.source = source
            raise
    finally:
        loader.dispose()
    if base is not None:
        config = _resolve_paths(config, base)
    return attrs.evolve(config, source=Path(source) if base is not None else None)


def load_config(path: str | Path) -> Config:
    """Read, parse and validate the configuration file at C{path}."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the configuration file: {e.strerror}", source=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("the configuration file is not UTF-8 text", source=str(path)) from None
    return parse_config(text, str(path), base=path.resolve().parent)

"""Configuration: the shipped files load, and every mistake is named."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from portald.config import (
    DEFAULT_PROBES,
    Config,
    ConfigError,
    Endpoint,
    ProbeRule,
    load_config,
    parse_config,
)

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """\
portal:
  address: 192.0.2.1
  subnets: [192.0.2.0/24]
leases:
  sources:
    - format: dnsmasq
      path: /var/lib/misc/dnsmasq.leases
"""


def with_lines(*extra: str) -> str:
    return MINIMAL + "".join(line + "\n" for line in extra)


def error_for(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "test.yaml")
    return caught.value


# --- the shipped configurations ---


def test_appliance_config_loads() -> None:
    config = load_config(ROOT / "etc" / "portald.yaml")
    assert config.portal.address == ipaddress.ip_address("192.0.2.1")
    assert config.portal.interface == "wlan0"
    assert config.firewall.backend == "nftables"
    assert config.dns.port == 53 and config.http.port == 80
    assert config.dns.upstream == (
        Endpoint(ipaddress.ip_address("198.51.100.53"), 53),
        Endpoint(ipaddress.ip_address("198.51.100.54"), 53),
    )
    assert config.sessions.idle_timeout == 1800
    assert config.http.probes == DEFAULT_PROBES
    assert config.leases.sources[0].format == "dnsmasq"


def test_development_config_loads_and_needs_no_root() -> None:
    path = ROOT / "etc" / "dev" / "portald.yaml"
    config = load_config(path)
    assert config.portal.address == ipaddress.ip_address("127.0.0.1")
    assert config.dns_listen == (ipaddress.ip_address("127.0.0.1"),)
    assert config.dns.port == 8053 and config.http.port == 8080
    assert config.firewall.backend == "none"
    # relative paths are relative to the file, so `make run` works from anywhere
    lease_file = config.leases.sources[0].path
    assert lease_file == path.parent / "dnsmasq.leases"
    assert "127.0.0.1" in lease_file.read_text()
    assert config.state.database.is_relative_to(path.parent)


def test_defaults_fill_what_is_left_out() -> None:
    config = parse_config(MINIMAL)
    assert config == Config(portal=config.portal, leases=config.leases)
    assert config.dns_listen == (ipaddress.ip_address("192.0.2.1"),)
    assert config.http_listen == ipaddress.ip_address("192.0.2.1")
    assert config.dns.redirect_ttl == 5
    assert config.auth.method == "click-through"
    assert config.session_timeout() == config.sessions.timeout
    assert config.portal_url == "http://portal.example/"


# --- values ---


@pytest.mark.parametrize(
    "text, seconds",
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("1d", 86400), ("200ms", 0.2), ("0", 0)],
)
def test_durations(text: str, seconds: float) -> None:
    # idle_timeout: 0 means "off", so every form is accepted there.
    config = parse_config(with_lines("sessions:", f"  idle_timeout: {text}"))
    assert config.sessions.idle_timeout == pytest.approx(seconds)


@pytest.mark.parametrize("text, size", [("0", 0), ("500MB", 500 * 10**6), ("1GiB", 2**30), ("1024", 1024)])
def test_byte_sizes(text: str, size: int) -> None:
    assert parse_config(with_lines("sessions:", f"  quota: {text}")).sessions.quota == size


def test_upstreams_with_and_without_ports() -> None:
    config = parse_config(
        with_lines("dns:", "  upstream: [198.51.100.53, '198.51.100.54:5353', '[2001:db8::53]:53']")
    )
    assert [str(e) for e in config.dns.upstream] == [
        "198.51.100.53:53",
        "198.51.100.54:5353",
        "[2001:db8::53]:53",
    ]


def test_probes_and_macs_are_normalised() -> None:
    config = parse_config(
        with_lines(
            "http:",
            "  probes: [Captive.Apple.com, connectivitycheck.gstatic.com/generate_204]",
            "firewall:",
            "  allowed_macs: ['02-00-00-AA-BB-CC']",
        )
    )
    assert config.http.probes == (
        ProbeRule("captive.apple.com"),
        ProbeRule("connectivitycheck.gstatic.com", "/generate_204"),
    )
    assert config.http.probes[0].matches("captive.apple.com", "/anything")
    assert not config.http.probes[1].matches("connectivitycheck.gstatic.com", "/other")
    assert config.firewall.allowed_macs == ("02:00:00:aa:bb:cc",)


# --- errors: key, line, what was expected ---


def test_unknown_top_level_key() -> None:
    error = error_for(with_lines("dsn:", "  port: 53"))
    assert (error.key, error.line) == ("dsn", 8)
    assert "unknown key" in str(error) and "did you mean 'dns'" in str(error)
    assert str(error).startswith("test.yaml, line 8: dsn:")


def test_unknown_nested_key() -> None:
    error = error_for(with_lines("dns:", "  prot: 53"))
    assert (error.key, error.line) == ("dns.prot", 9)
    assert "did you mean 'port'" in str(error)


def test_port_out_of_range() -> None:
    error = error_for(with_lines("dns:", "  port: 70000"))
    assert str(error) == "test.yaml, line 9: dns.port: expected a port number from 1 to 65535, got 70000"


def test_address_that_is_not_one() -> None:
    error = error_for(MINIMAL.replace("192.0.2.1\n", "192.0.2.300\n"))
    assert (error.key, error.line) == ("portal.address", 2)
    assert "expected an IPv4 address" in str(error) and "'192.0.2.300'" in str(error)


def test_duration_in_words() -> None:
    error = error_for(with_lines("sessions:", "  timeout: 2 hours"))
    assert (error.key, error.line) == ("sessions.timeout", 9)
    assert "expected a duration such as 90s, 30m, 2h" in str(error) and "'2 hours'" in str(error)


def test_lease_format_that_does_not_exist() -> None:
    error = error_for(MINIMAL.replace("format: dnsmasq", "format: udhcpd"))
    assert (error.key, error.line) == ("leases.sources[0].format", 6)
    assert "expected one of dnsmasq, isc-dhcpd, kea, got 'udhcpd'" in str(error)


def test_yaml_syntax_error_has_its_line() -> None:
    error = error_for(with_lines("dns:", "  port: [53", "http:", "  port: 80"))
    assert error.line is not None and error.line >= 9
    assert "YAML syntax error" in str(error)


@pytest.mark.parametrize(
    "extra, key, expected",
    [
        (("dns:", "  upstream: [resolver.example]"), "dns.upstream[0]", "an address with an optional port"),
        (("dns:", "  upstream: 198.51.100.53"), "dns.upstream", "a list"),
        (("portal:",), "portal", "given twice"),
        (("sessions:", "  quota: lots"), "sessions.quota", "a data amount"),
        (("sessions:", "  extendable: maybe"), "sessions.extendable", "true or false"),
        (("firewall:", "  allowed_macs: [02:00:00:aa:bb]"), "firewall.allowed_macs[0]", "a MAC address"),
        (("firewall:", "  table: 'my table'"), "firewall.table", "a name of letters"),
        (("firewall:", "  walled_garden: [192.0.2.1/24]"), "firewall.walled_garden[0]", "no host bits"),
        (("dns:", "  walled_garden: ['bad name!']"), "dns.walled_garden[0]", "a DNS name"),
        (("auth:", "  method: access-code"), "auth.method", "needs at least one code"),
        (("dns: 53",), "dns", "a mapping of settings"),
        (
            ("dns: {listen: [192.0.2.2]}", "firewall: {backend: nftables}"),
            "dns.listen",
            "the firewall redirects DNS there",
        ),
        (
            ("http: {listen: 192.0.2.2}", "firewall: {backend: nftables}"),
            "http.listen",
            "the firewall redirects HTTP there",
        ),
        (("  poll_interval: 0",), "leases.poll_interval", "above zero"),
        (("sessions:", "  sample_interval: 0"), "sessions.sample_interval", "above zero"),
        (("sessions:", "  timeout: 0"), "sessions.timeout", "above zero"),
        (("auth:", "  timeout: 0s"), "auth.timeout", "above zero"),
        (("dns:", "  upstream_timeout: 0"), "dns.upstream_timeout", "above zero"),
        (("dns:", "  redirect_ttl: 200ms"), "dns.redirect_ttl", "whole seconds"),
        (("http:", "  max_body_bytes: 0"), "http.max_body_bytes", "above zero"),
        (("dns:", "  tcp_timeout: 0"), "dns.tcp_timeout", "above zero"),
        (("firewall:", "  gateway_services: [ssh]"), "firewall.gateway_services[0]", "such as tcp/22"),
        (("firewall:", "  gateway_services: [tcp/70000]"), "firewall.gateway_services[0]", "such as tcp/22"),
        (("dns:", "  max_tcp_pending: 0"), "dns.max_tcp_pending", "at least 1"),
        (("auth:", "  max_attempts_total: many"), "auth.max_attempts_total", "a whole number"),
        (("http:", "  request_timeout: 0"), "http.request_timeout", "above zero"),
        (("http:", "  max_connections: lots"), "http.max_connections", "a whole number"),
        (("http:", "  max_connections_per_client: 0"), "http.max_connections_per_client", "at least 1"),
        # Values YAML itself cannot build: a message with the key, never a traceback.
        (("sessions:", "  timeout: 2024-13-45"), "sessions.timeout", "cannot read '2024-13-45'"),
        (("dns:", "  port: !!int abc"), "dns.port", "cannot read 'abc'"),
        (("auth:", "  codes: [!foo x]"), "auth.codes[0]", "cannot read 'x'"),
    ],
)
def test_other_mistakes_are_named(extra: tuple[str, ...], key: str, expected: str) -> None:
    error = error_for(with_lines(*extra))
    assert error.key == key
    assert error.line is not None
    assert expected in str(error)


def test_missing_required_section() -> None:
    error = error_for("portal:\n  address: 192.0.2.1\n  subnets: [192.0.2.0/24]\n")
    assert "missing required key 'leases'" in str(error)


def test_portal_address_outside_its_subnets() -> None:
    error = error_for(MINIMAL.replace("192.0.2.0/24", "198.51.100.0/24"))
    assert (error.key, error.line) == ("portal.address", 2)


def test_empty_and_unreadable_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(empty)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_codes_and_names_stay_as_written() -> None:
    config = parse_config(
        MINIMAL + "auth:\n  method: access-code\n  codes: [0123, 12:30, 1_000, 42, '007']\n",
        "test.yaml",
    )
    assert config.auth.codes == ("0123", "12:30", "1_000", "42", "007")
    venue = parse_config(MINIMAL.replace("portal:\n", "portal:\n  venue: 1.10\n"), "test.yaml")
    assert venue.portal.venue == "1.10"


@pytest.mark.parametrize("name", ["wlan0", "br-lan", "eth0.100", "wlp2s0"])
def test_interface_names_as_linux_allows_them(name: str) -> None:
    text = MINIMAL.replace("portal:\n", f"portal:\n  interface: {name}\n")
    assert parse_config(text, "test.yaml").portal.interface == name


@pytest.mark.parametrize("name", ["'wlan 0'", "a-name-longer-than-15", "'..'", "'eth0\"'"])
def test_interface_names_linux_would_refuse(name: str) -> None:
    error = error_for(MINIMAL.replace("portal:\n", f"portal:\n  interface: {name}\n"))
    assert error.key == "portal.interface" and "interface name" in str(error)

"""Firewall plans and state the firewall tests share (documentation addresses only)."""

from __future__ import annotations

import ipaddress

from portald.config import Config, parse_config
from portald.firewall.ruleset import AuthorizedClient, Counter, FirewallPlan, LearnedAddress

MINIMAL_YAML = """\
portal:
  address: 192.0.2.1
  subnets: [192.0.2.0/24]
  interface: lan
leases:
  sources: [{format: dnsmasq, path: /var/lib/misc/dnsmasq.leases}]
firewall:
  backend: nftables
"""

FULL_YAML = """\
portal:
  address: 192.0.2.1
  address6: 2001:db8::1
  subnets: [192.0.2.0/24, 2001:db8::/64]
  interface: wlan0
leases:
  sources: [{format: dnsmasq, path: /var/lib/misc/dnsmasq.leases}]
dns:
  port: 5353
http:
  port: 8080
  tls: {certificate: /etc/portald/portal.crt, key: /etc/portald/portal.key, port: 8443}
firewall:
  backend: nftables
  table: guests
  allowed_macs: [02:00:00:00:aa:01, 02-00-00-00-AA-02]
  walled_garden: [203.0.113.64/26, 198.51.100.7/32, 203.0.113.96/27, 2001:db8:f::/48]
  gateway_services: [tcp/22, UDP/123, tcp/2222]
  on_stop: remove
"""


def config(text: str = MINIMAL_YAML) -> Config:
    return parse_config(text)


def plan(text: str = MINIMAL_YAML) -> FirewallPlan:
    return FirewallPlan.from_config(config(text))


FULL_CLIENTS = (
    AuthorizedClient(
        "02:00:00:00:00:01", ipaddress.ip_address("192.0.2.10"), 3600.0, Counter(7, 700), Counter(9, 9000)
    ),
    AuthorizedClient("02:00:00:00:00:02", ipaddress.ip_address("2001:db8::20"), 0.2),
    AuthorizedClient("02:00:00:00:00:03", None, None),
)
FULL_LEARNED = (
    LearnedAddress(ipaddress.ip_address("203.0.113.200"), 300.0),
    LearnedAddress(ipaddress.ip_address("2001:db8:e::1"), 60.5),
)

# Leases: IPv4 address -> MAC, as the lease watcher publishes them.
FULL_LEASED = {"192.0.2.10": "02:00:00:00:00:01", "192.0.2.9": "02:00:00:00:00:09"}

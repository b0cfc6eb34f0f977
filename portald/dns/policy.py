"""
Who gets which answer, asked by both paths:

* A source outside the LAN subnets gets REFUSED (never an open resolver).
* ``use-application-dns.net`` (Firefox's DNS-over-HTTPS canary) and its
  subdomains get NXDOMAIN, for everyone.
* The portal's own hostname gets the portal's address, for everyone.
* Walled-garden names (and their subdomains) are forwarded, for everyone.
* An authorized client (source IP -> MAC via L{Neighbours} -> the
  L{AuthorizationTable}) is forwarded to the upstreams, through the cache.
* Everyone else gets the portal's address for A (the portal's IPv6 address
  for AAAA if it has one), an empty answer for other types, with the short
  redirect TTL: L{LocalAnswers}.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterable

from twisted.logger import Logger
from twisted.names import dns

from portald.addresses import normalise_ip
from portald.config import Config
from portald.memo import BoundedMemo
from portald.neighbours import Neighbours
from portald.table import AuthorizationTable

log = Logger()

CANARY = b"use-application-dns.net"
CANARY_SUBDOMAINS = b"." + CANARY
# The memo of which source addresses are inside the LAN stays this small.
SOURCE_MEMO_SIZE = 4096

# (mac, bytes received from the client, bytes sent to it)
ActivityCallback = Callable[[str | None, int, int], None]


class Verdict(enum.Enum):
    CANARY = "nxdomain"
    PORTAL = "portal"
    WALLED_GARDEN = "walled-garden"
    FORWARD = "forward"
    REDIRECT = "redirect"


# On Python 3.11 each C{Verdict.X} goes through a descriptor (about 0.2 µs,
# a fifth of a redirect on the fast path): the hot paths use these instead.
CANARY_VERDICT = Verdict.CANARY
PORTAL_VERDICT = Verdict.PORTAL
WALLED_GARDEN_VERDICT = Verdict.WALLED_GARDEN
FORWARD_VERDICT = Verdict.FORWARD
REDIRECT_VERDICT = Verdict.REDIRECT


class Policy:
    """Who gets which answer: the one place both paths ask."""

    def __init__(
        self,
        config: Config,
        neighbours: Neighbours,
        table: AuthorizationTable,
        on_activity: ActivityCallback | None = None,
    ) -> None:
        self.on_activity = on_activity
        self._subnets = config.portal.subnets
        self._neighbours = neighbours
        self._table = table
        self._portal = config.portal.hostname.encode("ascii")
        self.set_walled_garden(config.dns.walled_garden)
        self._sources: BoundedMemo[str, str | None] = BoundedMemo(SOURCE_MEMO_SIZE)

    def set_walled_garden(self, names: Iterable[str]) -> None:
        """The names (and their subdomains) everyone may resolve (C{dns.walled_garden})."""
        self._walled = frozenset(name.encode("ascii") for name in names)
        # For one C-level test per query: ".zone" matches any subdomain.
        self._walled_subdomains = tuple(b"." + name for name in self._walled)

    def client(self, source: str) -> str | None:
        """C{source} normalised, or C{None} if it is outside the LAN subnets."""
        try:
            return self._sources[source]
        except KeyError:
            pass
        try:
            address = ipaddress.ip_address(normalise_ip(source))
        except ValueError:
            normalised = None
        else:
            inside = any(address in subnet for subnet in self._subnets)
            normalised = str(address) if inside else None
        return self._sources.remember(source, normalised)

    def classify(self, client: str, name: bytes) -> Verdict:
        """What C{client} (normalised, inside the LAN) gets for C{name} (lower case)."""
        if name == CANARY or name.endswith(CANARY_SUBDOMAINS):
            return CANARY_VERDICT
        if name == self._portal:
            return PORTAL_VERDICT
        if name in self._walled or (self._walled_subdomains and name.endswith(self._walled_subdomains)):
            return WALLED_GARDEN_VERDICT
        if self._table.may_pass(self._neighbours.mac_for(client)):
            return FORWARD_VERDICT
        return REDIRECT_VERDICT

    def saw(self, client: str, received: int, sent: int) -> None:
        """A signed-in client's query was answered: tell C{on_activity}, if any."""
        if self.on_activity is None:
            return
        try:
            self.on_activity(self._neighbours.mac_for(client), received, sent)
        except Exception:
            log.failure("the activity callback failed for {client}", client=client)


class LocalAnswers:
    """portald's own answers: the portal's addresses, with the redirect TTL."""

    def __init__(self, config: Config) -> None:
        self.ttl = int(config.dns.redirect_ttl)
        self.address = str(config.portal.address)
        self.address6 = str(config.portal.address6) if config.portal.address6 else None

    def records(self, query: dns.Query) -> list[dns.RRHeader]:
        if query.cls != dns.IN:
            return []
        if query.type == dns.A:
            payload: dns.Record_A | dns.Record_AAAA = dns.Record_A(self.address, self.ttl)
        elif query.type == dns.AAAA and self.address6:
            payload = dns.Record_AAAA(self.address6, self.ttl)
        else:
            return []
        return [dns.RRHeader(query.name.name, query.type, dns.IN, self.ttl, payload, auth=True)]

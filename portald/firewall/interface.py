"""What every firewall backend offers the rest of portald."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from twisted.internet.defer import Deferred
from zope.interface import Attribute

from portald.config import Config
from portald.limits import Counters
from portald.table import IAuthorizationObserver


class IFirewall(IAuthorizationObserver):
    """
    Makes packets obey the authorization table.  Also an C{IService}: it
    applies its rules in C{startService} and leaves them as configured in
    C{stopService}.
    """

    backend = Attribute("The backend's name, as in firewall.backend.")
    counts_traffic = Attribute(
        """
        C{True} if L{read_counters} gives each client's real traffic (the
        kernel counts it): the limits read their idle and quota figures from
        this backend.  C{False} if it counts nothing (its L{read_counters} is
        always empty): the limits must count activity some other way.
        """
    )

    def on_walled_garden_answer(addresses: Sequence[str], ttl: float) -> None:
        """
        portald's DNS resolved a walled-garden name to C{addresses}: let
        everyone reach them for C{ttl} seconds (at least a minimum that
        covers clients that keep answers a little past their TTL).
        """

    def addresses_changed(ips_for: Callable[[str], frozenset[str]]) -> None:
        """
        The leases changed: C{ips_for(mac)} gives each device's addresses
        now.  A signed-in device that moved is counted at its new address.
        """

    def leases_changed(mac_by_ip: Mapping[str, str]) -> None:
        """
        The leases changed: C{mac_by_ip} is every leased address and its
        device now.  Packets from the LAN that carry a leased address but
        not the MAC it was leased to are dropped, so that a device cannot
        pass for another by taking its address.
        """

    def read_counters() -> Deferred[Counters]:
        """
        Each authorized client's traffic in its session so far: MAC -> (bytes
        from the client, bytes to the client), as L{portald.limits.ITrafficSource}
        reads it.  A backend that counts nothing answers an empty mapping.
        """

    def ipv6_devices() -> Deferred[Mapping[str, str]]:
        """
        Which device sent from each IPv6 address lately (address -> MAC), as
        the kernel learned it from their packets; empty if the backend
        learns nothing.  Fails if the kernel cannot be asked.
        """

    def applied() -> Deferred[None]:
        """Fires once every change made to the table so far is in force."""

    def health() -> dict[str, object]:
        """What an operator asks of the backend: its last apply and its result, as JSON values."""

    def reconfigure(config: Config) -> None:
        """A reload's configuration: what changed live (the walled garden) takes effect."""

    def reload() -> Deferred[None]:
        """Replace the kernel's rules with freshly generated ones (the table wins)."""

"""What every firewall backend offers the rest of portald."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Attribute

from portald.clients import IAuthorizationObserver


@attrs.frozen
class TrafficCounters:
    """Bytes one authorized client has sent and received in its session."""

    from_client: int
    to_client: int

    @property
    def total(self) -> int:
        return self.from_client + self.to_client


class IFirewall(IAuthorizationObserver):
    """
    Makes packets obey the authorization table.  Also an C{IService}: it
    applies its rules in C{startService} and leaves them as configured in
    C{stopService}.
    """

    backend = Attribute("The backend's name, as in firewall.backend.")

    def on_walled_garden_answer(addresses: Sequence[str], ttl: float) -> None:
        """
        portald's DNS resolved a walled-garden name to C{addresses}: let
        everyone reach them for C{ttl} seconds (at least a minimum that
        covers clients that keep answers a little past their TTL).
        """

    def read_counters() -> Deferred[dict[str, TrafficCounters]]:
        """
        Each authorized client's traffic so far (MAC -> counters).  A backend
        that counts nothing answers an empty mapping.
        """

    def reload() -> Deferred[None]:
        """Replace the kernel's rules with freshly generated ones (the table wins)."""

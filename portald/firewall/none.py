"""The backend that enforces nothing: development and DNS-only deployments."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from portald.config import Config
from portald.firewall.interface import IFirewall
from portald.limits import Counters
from portald.table import EndReason, Session


@implementer(IFirewall)
class NoFirewall(Service):
    """
    Leaves the kernel alone.  Unauthorized clients are only steered by DNS,
    and nothing is counted.
    """

    name = "firewall"
    backend = "none"
    counts_traffic = False

    def session_started(self, session: Session) -> None:
        pass

    def session_extended(self, session: Session) -> None:
        pass

    def session_ended(self, session: Session, reason: EndReason) -> None:
        pass

    def on_walled_garden_answer(self, addresses: Sequence[str], ttl: float) -> None:
        pass

    def addresses_changed(self, ips_for: Callable[[str], frozenset[str]]) -> None:
        pass

    def leases_changed(self, mac_by_ip: Mapping[str, str]) -> None:
        pass

    def read_counters(self) -> Deferred[Counters]:
        return succeed({})

    def ipv6_devices(self) -> Deferred[Mapping[str, str]]:
        return succeed({})

    def applied(self) -> Deferred[None]:
        return succeed(None)

    def reload(self) -> Deferred[None]:
        return succeed(None)

    def health(self) -> dict[str, object]:
        return {"backend": self.backend, "enforced": False}

    def reconfigure(self, config: Config) -> None:
        pass

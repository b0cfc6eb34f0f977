"""
portald's RADIUS side as one service: the authentication and accounting
clients' UDP ports, the accounting queue, and the DAS listener.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.internet import UDPServer
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.logger import Logger

from portald.config import Config
from portald.control.operations import Operations
from portald.radius.accounting import RADIUS_METHODS, RadiusAccounting
from portald.radius.client import RadiusClient, Timing, listen
from portald.radius.das import DynamicAuthorization
from portald.radius.macauth import MacAuthentication
from portald.radius.method import NAS, RadiusMethod
from portald.radius.queue import AccountingQueue
from portald.table import AuthorizationTable

log = Logger()

# At a clean stop, records on their way get this long to be acknowledged (the rest wait on disk).
STOP_GRACE = 2.0


def queue_path(config: Config) -> Path:
    """The accounting queue's file, beside the session database."""
    return config.state.database.with_name("radius.sqlite3")


class RadiusService(MultiService):
    """The ``radius`` way in, accounting of its sessions, and dynamic authorization."""

    def __init__(
        self,
        config: Config,
        reactor: IReactorTime,
        table: AuthorizationTable,
        usage: Callable[[str], tuple[int, int] | None],
    ) -> None:
        super().__init__()
        settings = config.radius
        self._reactor = reactor
        self._table = table
        self.nas = NAS.from_settings(settings, config.portal.address)
        timing = Timing(settings.timeout, settings.retries, settings.give_up_after, settings.dead_time)
        self.auth = RadiusClient(
            reactor,
            [(str(s.address), s.auth_port, s.secret.encode()) for s in settings.servers],
            timing,
            what="authentication",
            nas_identifier=self.nas.identifier,
        )
        self.acct = RadiusClient(
            reactor,
            [(str(s.address), s.acct_port, s.secret.encode()) for s in settings.servers],
            timing,
            what="accounting",
            nas_identifier=self.nas.identifier,
        )
        self.queue = AccountingQueue.open(queue_path(config))
        self.accounting: RadiusAccounting | None = None
        if settings.accounting:
            self.accounting = RadiusAccounting(
                self.queue,
                self.acct,
                reactor,
                usage=usage,
                sessions=table.session,
                nas=self.nas.attributes(),
                default_interim=settings.interim_interval,
            )
            self.accounting.setServiceParent(self)
        self.method = RadiusMethod(self.auth, self.nas, settings, on_accept=self.queue.remember)
        self.mac_auth: MacAuthentication | None = None
        if settings.mac_auth.enabled:
            self.mac_auth = MacAuthentication(
                self.auth, self.nas, config, table, reactor, self.queue.remember
            )
        self._das_settings = settings.das
        self._ports: list[IListeningPort] = []

    def add_das(self, operations: Operations) -> None:
        """Listen for Disconnect and CoA requests, if radius.das.listen is set."""
        das = self._das_settings
        if das.listen is None:
            return
        protocol = DynamicAuthorization(
            {str(client.address): client.secret.encode() for client in das.clients},
            operations,
            self._table.sessions,
            self.queue.grants,
            {
                "NAS-Identifier": self.nas.identifier,
                "NAS-IP-Address": self.nas.ip_address,
                "Called-Station-Id": self.nas.called_station_id,
            },
            self._reactor,
        )
        self.das = protocol
        UDPServer(das.listen.port, protocol, interface=str(das.listen.host)).setServiceParent(self)

    def _radius_online(self) -> bool:
        return any(session.method in RADIUS_METHODS for session in self._table.sessions())

    def startService(self) -> None:
        for client in (self.auth, self.acct):
            self._ports.append(listen(self._reactor, client))  # type: ignore[arg-type]
        super().startService()
        if self.mac_auth is not None:
            self.mac_auth.ask_waiting()  # the devices the first leases listed
        if self.accounting is not None and not self._radius_online():
            # Nothing of this NAS is online: whatever the server holds open for it is over.
            self.accounting.nas_event("Accounting-On")

    def stopService(self) -> Deferred[None]:
        if self.accounting is not None and not self._radius_online():
            self.accounting.nas_event("Accounting-Off")
        d: Deferred[Any] = defer.maybeDeferred(self._drain)
        d.addBoth(lambda _: defer.maybeDeferred(super(RadiusService, self).stopService))
        d.addBoth(lambda _: self._close())
        return d

    def _drain(self) -> Deferred[None]:
        """Give the records on their way a moment to be acknowledged."""
        if self.accounting is None or not self.accounting.on_the_way:
            return defer.succeed(None)
        waited = self.accounting.drained()
        waited.addTimeout(STOP_GRACE, self._reactor)  # type: ignore[arg-type]
        waited.addErrback(lambda _: None)
        return waited

    def _close(self) -> None:
        for client in (self.auth, self.acct):
            client.stop()
        for port in self._ports:
            port.stopListening()
        self._ports.clear()
        self.queue.close()

    def health(self) -> dict[str, object]:
        health: dict[str, object] = {"authentication": self.auth.health()}
        if self.accounting is not None:
            health["accounting"] = self.accounting.health()
        return health

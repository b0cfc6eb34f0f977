"""
MAC authentication (as CoovaChilli and uspot do it): a device that gets a
lease is first asked about by its MAC, so that a returning device the AAA
knows is let in without the portal.  A device the AAA refuses meets the
portal as usual, and is not asked about again for a while.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pyrad import packet as radius
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from portald.config import Config
from portald.radius.client import NoAnswer, RadiusClient
from portald.radius.method import NAS, accepted, ask
from portald.radius.packets import ACCESS_ACCEPT, station_id
from portald.radius.queue import Grant
from portald.table import AuthorizationTable, JournalRefused

log = Logger()

METHOD = "radius-mac"
# A device refused (or not answered for) is asked about again after this long.
ASK_AGAIN_AFTER = 600.0
# Devices asked about at once, at most (a lease file read at start may list thousands).
MOST_IN_FLIGHT = 32


class MacAuthentication:
    """Asks the AAA about each new device in the leases, and signs in those it accepts."""

    def __init__(
        self,
        client: RadiusClient,
        nas: NAS,
        config: Config,
        table: AuthorizationTable,
        clock: IReactorTime,
        on_accept: Callable[[str, Grant], None],
    ) -> None:
        self._client = client
        self._nas = nas
        self._password = config.radius.mac_auth.password
        self._config = config
        self._table = table
        self._clock = clock
        self._on_accept = on_accept
        # MAC -> when it may be asked about again.
        self._asked: dict[str, float] = {}
        self._in_flight: set[str] = set()
        self._waiting: dict[str, str] = {}
        self.accepted = 0

    def leases_changed(self, leases: Mapping[str, str]) -> None:
        """The leases now (IP -> MAC): ask about every device not signed in and not asked lately."""
        now = self._clock.seconds()
        for mac, until in list(self._asked.items()):
            if until <= now:
                del self._asked[mac]
        for ip, mac in leases.items():
            if ":" in ip or mac in self._asked or mac in self._in_flight or self._table.may_pass(mac):
                continue
            self._waiting[mac] = ip
        self.ask_waiting()

    def ask_waiting(self) -> None:
        """Ask about the devices waiting, as many as may be in flight (once the client's port is open)."""
        if self._client.transport is None:
            return
        while self._waiting and len(self._in_flight) < MOST_IN_FLIGHT:
            mac, ip = self._waiting.popitem()
            self._asked[mac] = self._clock.seconds() + ASK_AGAIN_AFTER
            self._in_flight.add(mac)
            name = station_id(mac)
            session_id, reply = ask(self._client, self._nas, mac, ip, name, self._password or name)
            reply.addCallbacks(self._answered, self._unanswered, (mac, ip, name, session_id), None, (mac,))
            reply.addBoth(self._done, mac)

    def _answered(self, reply: radius.Packet, mac: str, ip: str, name: str, session_id: str) -> None:
        if reply.code != ACCESS_ACCEPT or self._table.may_pass(mac):
            return
        limits = accepted(reply)
        way_duration, way_idle, way_quota = self._config.session_settings(self._way())
        self._on_accept(mac, Grant(session_id, name, limits.classes, limits.interim))
        try:
            self._table.authorize(
                mac,
                ip=ip,
                method=METHOD,
                user=name,
                duration=limits.duration or way_duration,
                idle_timeout=limits.idle_timeout or way_idle,
                quota_bytes=limits.quota_bytes or way_quota,
                rate_down=limits.rate_down,
                rate_up=limits.rate_up,
            )
        except JournalRefused as e:
            log.error("could not sign in {mac} by its MAC: {why}", mac=mac, why=str(e))
            return
        self.accepted += 1
        log.info("RADIUS accepted {mac} by its MAC", mac=mac)

    def _way(self):  # type: ignore[no-untyped-def]
        ways = {way.method: way for way in self._config.ways_in()}
        return ways.get("radius") or self._config.ways_in()[0]

    def _unanswered(self, failure: Failure, mac: str) -> None:
        failure.trap(NoAnswer)
        log.warn("{mac} not asked about by its MAC: {why}", mac=mac, why=str(failure.value))

    def _done(self, result: object, mac: str) -> None:
        self._in_flight.discard(mac)
        self.ask_waiting()
        if isinstance(result, Failure):
            log.failure("MAC authentication of {mac} failed", result, mac=mac)

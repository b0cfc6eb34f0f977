"""
RADIUS accounting (RFC 2866) of the sessions RADIUS granted: Start,
Interim-Update and Stop, with octets as the NAS sees them (download is
Output, upload is Input), queued on disk and sent at least once, in order
for each session, whenever a server answers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from pyrad import packet as radius
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from portald.radius.client import NoAnswer, RadiusClient
from portald.radius.packets import (
    ACCOUNTING_RESPONSE,
    TERMINATE_CAUSES,
    accounting_request,
    split_octets,
    station_id,
)
from portald.radius.queue import AccountingQueue, Grant, Record
from portald.table import EndReason, IAuthorizationObserver, Session

log = Logger()

# The ways in whose sessions RADIUS granted, and so accounts.
RADIUS_METHODS = ("radius", "radius-mac")
# Records on their way at once (never two of one session: they stay in order).
WINDOW = 64
# After no server answered, the queue waits this long before trying again.
RETRY_AFTER = 5.0
# RFC 2869 section 5.16: interim updates no more often than this.
SHORTEST_INTERIM = 60.0

UsageOf = Callable[[str], "tuple[int, int] | None"]


@implementer(IAuthorizationObserver)
class RadiusAccounting(Service):
    """Follows the table; turns each RADIUS session's life into queued accounting records, and sends them."""

    def __init__(
        self,
        queue: AccountingQueue,
        client: RadiusClient,
        clock: IReactorTime,
        *,
        usage: UsageOf,
        sessions: Callable[[str], Session | None],
        nas: dict[str, Any],
        default_interim: float,
    ) -> None:
        self._queue = queue
        self._client = client
        self._clock = clock
        self._usage = usage
        # The table's lookup: accounting asks it whether an interim's session still lasts.
        self._session_lookup = sessions
        # NAS-Identifier, NAS-IP-Address, Called-Station-Id: in every record.
        self._nas = nas
        self._default_interim = default_interim
        self._interims: dict[str, IDelayedCall] = {}
        self._on_the_way: set[int] = set()
        self._sessions_on_the_way: set[str] = set()
        self._retry: IDelayedCall | None = None
        self._drain_waiters: list[Deferred[None]] = []
        self._unwritten: list[tuple[str, float, str, dict[str, Any]]] = []
        self._acknowledged_seqs: list[int] = []
        self._write_soon: IDelayedCall | None = None
        self.sent = 0
        self.restored = 0

    # --- grants, from the way in ---

    def granted(self, mac: str, grant: Grant) -> None:
        """An Access-Accept for C{mac}: what its session's records will carry."""
        self._queue.remember(mac, grant)

    # --- IAuthorizationObserver ---

    def session_started(self, session: Session) -> None:
        if session.method not in RADIUS_METHODS:
            return
        grant = self._queue.grant(session.mac)
        if grant is None:
            log.warn("no RADIUS grant for {mac}'s session: it is not accounted", mac=session.mac)
            return
        if grant.started == session.started:
            # The same session, put back after a restart: its Start went already.
            self.restored += 1
        else:
            grant = Grant(grant.session_id, session.user, grant.classes, grant.interim, session.started)
            self._queue.remember(session.mac, grant)
            self._record(session, grant, "Start")
        self._schedule_interim(session.mac, grant)

    def session_extended(self, session: Session) -> None:
        pass

    def session_ended(self, session: Session, reason: EndReason) -> None:
        if session.method not in RADIUS_METHODS:
            return
        timer = self._interims.pop(session.mac, None)
        if timer is not None and timer.active():
            timer.cancel()
        grant = self._queue.grant(session.mac)
        if grant is None or grant.started != session.started:
            return
        self._record(session, grant, "Stop", cause=TERMINATE_CAUSES[reason])
        self._queue.forget(session.mac)

    # --- interim updates ---

    def _interval(self, grant: Grant) -> float:
        interval = grant.interim or self._default_interim
        return max(SHORTEST_INTERIM, interval) if interval else 0.0

    def _schedule_interim(self, mac: str, grant: Grant) -> None:
        interval = self._interval(grant)
        if interval and grant.started is not None:
            # Every interval from the session's start, a restart in between or not.
            since = max(0.0, self._clock.seconds() - grant.started)
            wait = interval - since % interval
            self._interims[mac] = self._clock.callLater(wait, self._interim, mac, grant)

    def _interim(self, mac: str, grant: Grant) -> None:
        self._interims.pop(mac, None)
        session = self._session_lookup(mac)
        if session is None or session.started != grant.started:
            return
        self._record(session, grant, "Interim-Update")
        self._schedule_interim(mac, grant)

    # --- records ---

    def _record(self, session: Session, grant: Grant, kind: str, cause: str | None = None) -> None:
        now = self._clock.seconds()
        received, sent = self._usage(session.mac) or (0, 0)
        attributes: dict[str, Any] = {
            "Acct-Status-Type": kind,
            "Acct-Session-Id": grant.session_id,
            "User-Name": session.user or station_id(session.mac),
            "Calling-Station-Id": station_id(session.mac),
            "Framed-IP-Address": session.ip if _is_ipv4(session.ip) else None,
            "Acct-Authentic": "RADIUS",
            "NAS-Port-Type": "Wireless-802.11",
            "Class": [c.hex() for c in grant.classes] or None,
        }
        if kind != "Start":
            input_octets, input_gigawords = split_octets(received)
            output_octets, output_gigawords = split_octets(sent)
            attributes.update({
                "Acct-Session-Time": int(max(0.0, now - session.started)),
                "Acct-Input-Octets": input_octets,
                "Acct-Input-Gigawords": input_gigawords,
                "Acct-Output-Octets": output_octets,
                "Acct-Output-Gigawords": output_gigawords,
            })  # fmt: skip
        if cause is not None:
            attributes["Acct-Terminate-Cause"] = cause
        # Written together at the end of this turn of the reactor: one disk sync for
        # a burst (10 000 Interim-Updates due at once held the reactor 526 ms, one sync each).
        self._unwritten.append((grant.session_id, now, kind, attributes))
        self._write_at_end_of_turn()

    def _write_at_end_of_turn(self) -> None:
        if self._write_soon is None:
            self._write_soon = self._clock.callLater(0, self._write)

    def _write(self) -> None:
        self._write_soon = None
        records, self._unwritten = self._unwritten, []
        done, self._acknowledged_seqs = self._acknowledged_seqs, []
        if records or done:
            dropped = self._queue.add_many(records, done)
            if dropped:
                log.warn("RADIUS accounting queue is full: {count} Interim-Update(s) dropped", count=dropped)
        self.flush()

    def nas_event(self, kind: str) -> None:
        """Accounting-On (this NAS starts afresh) or Accounting-Off (it stops)."""
        self._queue.add(f"nas-{kind}", self._clock.seconds(), kind, {"Acct-Status-Type": kind,
                        "Acct-Session-Id": f"{self._nas['NAS-Identifier']}-{kind}"})  # fmt: skip
        self.flush()

    def flush(self) -> None:
        """Send what waits, up to the window; each acknowledged record is deleted."""
        if not self.running or self._retry is not None:
            return
        room = WINDOW - len(self._on_the_way)
        if room <= 0:
            return
        for record in self._queue.oldest(room * 2, self._on_the_way | set(self._acknowledged_seqs)):
            if len(self._on_the_way) >= WINDOW:
                break
            if record.session_id in self._sessions_on_the_way:
                continue  # its earlier record first
            self._send(record)

    def _send(self, record: Record) -> None:
        self._on_the_way.add(record.seq)
        self._sessions_on_the_way.add(record.session_id)
        d = self._client.request(lambda secret: self._packet(secret, record))
        d.addCallbacks(self._acknowledged, self._unanswered, (record,), None, (record,))

    def _packet(self, secret: bytes, record: Record) -> radius.Packet:
        attributes = dict(self._nas)
        for name, value in record.attributes.items():
            if name == "Class" and value is not None:
                value = [bytes.fromhex(c) for c in value]
            attributes[name] = value
        made = record.made
        attributes["Event-Timestamp"] = int(made)
        attributes["Acct-Delay-Time"] = int(max(0.0, self._clock.seconds() - made))
        return accounting_request(secret, attributes)

    def _acknowledged(self, reply: radius.Packet, record: Record) -> None:
        self._settle(record)
        if reply.code != ACCOUNTING_RESPONSE:
            log.warn("RADIUS answered accounting with code {code}: record dropped", code=reply.code)
        # Deleted with this turn's other changes; until then it is not sent again (on its way).
        self._acknowledged_seqs.append(record.seq)
        self.sent += 1
        self._write_at_end_of_turn()

    def _unanswered(self, failure: Failure, record: Record) -> None:
        self._settle(record)
        if not self.running:
            return
        failure.trap(NoAnswer)
        if self._retry is None:
            log.warn(
                "{why}: {waiting} accounting record(s) wait, kept on disk",
                why=str(failure.value), waiting=self._queue.waiting(),
            )  # fmt: skip
            self._retry = self._clock.callLater(RETRY_AFTER, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self.flush()

    def _settle(self, record: Record) -> None:
        self._on_the_way.discard(record.seq)
        self._sessions_on_the_way.discard(record.session_id)
        if not self._on_the_way:
            waiters, self._drain_waiters = self._drain_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    @property
    def on_the_way(self) -> int:
        return len(self._on_the_way)

    def drained(self) -> Deferred[None]:
        """Fires when no record is on its way."""
        if not self._on_the_way:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._drain_waiters.append(waiter)
        return waiter

    # --- service ---

    def startService(self) -> None:
        super().startService()
        self.flush()

    def stopService(self) -> Deferred[None]:
        if self._write_soon is not None and self._write_soon.active():
            self._write_soon.cancel()
        self._write_soon = None
        records, self._unwritten = self._unwritten, []
        done, self._acknowledged_seqs = self._acknowledged_seqs, []
        if records or done:
            self._queue.add_many(records, done)
        super().stopService()
        for timer in self._interims.values():
            if timer.active():
                timer.cancel()
        self._interims.clear()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        return succeed(None)

    def health(self) -> dict[str, object]:
        return {
            "waiting": self._queue.waiting() + len(self._unwritten),
            "sent": self.sent,
            "dropped": self._queue.dropped,
            "servers": self._client.health(),
        }


def _is_ipv4(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False

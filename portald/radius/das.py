"""
Dynamic authorization (RFC 5176): the AAA side ends a session
(Disconnect-Request) or changes it (CoA-Request) while the guest is online.
Only listed clients, each with its own secret, with a valid Request
Authenticator and Message-Authenticator; answered ACK, or NAK with the
Error-Cause that says why.
"""

from __future__ import annotations

import collections
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from pyrad import packet as radius
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from portald.control.operations import Operations, Refused
from portald.radius.packets import (
    COA_NAK,
    COA_REQUEST,
    DISCONNECT_NAK,
    DISCONNECT_REQUEST,
    LONGEST_PACKET,
    MESSAGE_AUTHENTICATOR,
    dictionary,
    first,
    station_id,
)
from portald.radius.queue import Grant
from portald.table import Session

log = Logger()

# Attributes that say which session (RFC 5176 section 3), or who asks.
IDENTIFIERS = ("Acct-Session-Id", "User-Name", "Calling-Station-Id", "Framed-IP-Address")
NAS_IDENTIFICATION = ("NAS-Identifier", "NAS-IP-Address", "Called-Station-Id")
ALWAYS_ALLOWED = ("Message-Authenticator", "Event-Timestamp", "Proxy-State", "State", "Class")
# What a CoA-Request may change.
CHANGES = ("Session-Timeout", "WISPr-Bandwidth-Max-Down", "WISPr-Bandwidth-Max-Up")

# A retransmitted request gets the same answer (RFC 5176 section 2.3), for this long.
REMEMBERED_FOR = 30.0
MOST_REMEMBERED = 1024


@attrs.frozen
class Verdict:
    """What a request is answered: ACK, or NAK with its Error-Cause."""

    ok: bool
    error_cause: str | None = None
    sessions: tuple[str, ...] = ()


class DynamicAuthorization(DatagramProtocol):
    """The DAS: Disconnect-Request and CoA-Request from the configured clients."""

    def __init__(
        self,
        clients: Mapping[str, bytes],
        operations: Operations,
        sessions: Callable[[], Iterable[Session]],
        accounted: Callable[[], Mapping[str, Grant]],
        nas: Mapping[str, str],
        clock: IReactorTime,
    ) -> None:
        self._clients = {str(ipaddress.ip_address(address)): secret for address, secret in clients.items()}
        self._operations = operations
        self._sessions = sessions
        self._accounted = accounted
        self._nas = nas
        self._clock = clock
        self._answers: collections.OrderedDict[tuple[str, int, bytes], tuple[float, bytes]] = (
            collections.OrderedDict()
        )
        self.counts: collections.Counter[str] = collections.Counter()

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        secret = self._clients.get(addr[0])
        if secret is None:
            self.counts["unknown_client"] += 1
            log.warn("dynamic authorization request from {address}, not a radius.das client: dropped",
                     address=addr[0])  # fmt: skip
            return
        if not 20 <= len(data) <= LONGEST_PACKET:
            self.counts["malformed"] += 1
            return
        key = (addr[0], data[1], data[4:20])
        answered = self._answers.get(key)
        if answered is not None and self._clock.seconds() - answered[0] < REMEMBERED_FOR:
            self._reply(answered[1], addr)
            return
        try:
            request = radius.CoAPacket(packet=data, secret=secret, dict=dictionary())
        except Exception:
            self.counts["malformed"] += 1
            log.warn("malformed dynamic authorization request from {address}: dropped", address=addr[0])
            return
        if request.code not in (DISCONNECT_REQUEST, COA_REQUEST):
            self.counts["malformed"] += 1
            return
        if not self._authentic(request):
            # Not signed with this client's secret: no answer (RFC 5176 section 3.3).
            self.counts["bad_authenticator"] += 1
            log.warn("dynamic authorization request from {address} not signed with its secret: dropped",
                     address=addr[0])  # fmt: skip
            return
        verdict = self._judge(request)
        reply = request.CreateReply()
        reply.message_authenticator = True
        if not verdict.ok:
            reply.code = DISCONNECT_NAK if request.code == DISCONNECT_REQUEST else COA_NAK
            reply["Error-Cause"] = verdict.error_cause
        encoded = reply.ReplyPacket()
        what = "Disconnect" if request.code == DISCONNECT_REQUEST else "CoA"
        self.counts[f"{what.lower()}_{'ack' if verdict.ok else 'nak'}"] += 1
        log.info(
            "{what}-Request from {address}: {answer} {sessions}",
            what=what, address=addr[0], answer="ACK" if verdict.ok else f"NAK ({verdict.error_cause})",
            sessions=", ".join(verdict.sessions),
        )  # fmt: skip
        self._remember(key, encoded)
        self._reply(encoded, addr)

    def _authentic(self, request: radius.Packet) -> bool:
        if not request.VerifyCoARequest():
            return False
        if not request.message_authenticator:  # pyrad sets it when the packet has one
            return False
        try:
            return bool(request.verify_message_authenticator())
        except Exception:
            return False

    def _judge(self, request: radius.Packet) -> Verdict:
        names = {name for name in request.keys() if isinstance(name, str)}
        if any(isinstance(name, int) and name != MESSAGE_AUTHENTICATOR for name in request.keys()):
            return Verdict(False, "Unsupported-Attribute")
        for name in NAS_IDENTIFICATION:
            if name in names and str(first(request, name)) != self._nas.get(name):
                return Verdict(False, "NAS-Identification-Mismatch")
        allowed = {*IDENTIFIERS, *NAS_IDENTIFICATION, *ALWAYS_ALLOWED}
        if request.code == COA_REQUEST:
            allowed |= set(CHANGES)
        if names - allowed:
            return Verdict(False, "Unsupported-Attribute")
        if not names & set(IDENTIFIERS):
            return Verdict(False, "Missing-Attribute")
        macs = self._matching(request)
        if not macs:
            return Verdict(False, "Session-Context-Not-Found")
        try:
            if request.code == DISCONNECT_REQUEST:
                for mac in macs:
                    self._operations.deauthorize(mac)
            else:
                self._change(request, macs)
        except Refused as e:
            log.warn("dynamic authorization refused: {why}", why=str(e))
            return Verdict(False, "Resources-Unavailable", tuple(macs))
        return Verdict(True, sessions=tuple(macs))

    def _matching(self, request: radius.Packet) -> list[str]:
        """The MACs of every session that all of the request's identifiers name."""
        wanted: dict[str, Any] = {
            name: first(request, name) for name in IDENTIFIERS if name in request.keys()
        }
        accounted = self._accounted()
        found = []
        for session in self._sessions():
            grant = accounted.get(session.mac)
            facts = {
                "Acct-Session-Id": grant.session_id if grant is not None else None,
                "User-Name": session.user,
                "Calling-Station-Id": station_id(session.mac),
                "Framed-IP-Address": session.ip,
            }
            if all(_same(name, facts[name], value) for name, value in wanted.items()):
                found.append(session.mac)
        return found

    def _change(self, request: radius.Packet, macs: list[str]) -> None:
        timeout = first(request, "Session-Timeout")
        down, up = first(request, "WISPr-Bandwidth-Max-Down"), first(request, "WISPr-Bandwidth-Max-Up")
        for mac in macs:
            if timeout is not None:
                self._operations.limit(mac, float(timeout))
            if down is not None or up is not None:
                self._operations.rate(mac, down, up)

    def _remember(self, key: tuple[str, int, bytes], encoded: bytes) -> None:
        self._answers[key] = (self._clock.seconds(), encoded)
        while len(self._answers) > MOST_REMEMBERED:
            self._answers.popitem(last=False)

    def _reply(self, encoded: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.write(encoded, addr)


def _same(name: str, fact: Any, value: Any) -> bool:
    if fact is None:
        return False
    if name == "Calling-Station-Id":
        return str(fact).upper() == str(value).upper().replace(":", "-")
    return str(fact) == str(value)

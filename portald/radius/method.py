"""
The ``radius`` way in: the portal's form sent as PAP in an Access-Request,
and the Access-Accept's attributes made into the session's limits.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import attrs
from pyrad import packet as radius
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from portald.auth.interface import AuthResult, Credentials, FormField, IAuthenticator
from portald.config import RadiusSettings
from portald.radius.client import NoAnswer, RadiusClient
from portald.radius.packets import (
    ACCESS_ACCEPT,
    access_request,
    first,
    join_octets,
    new_session_id,
    station_id,
)
from portald.radius.queue import Grant

log = Logger()

USER_FIELD = "username"
PASSWORD_FIELD = "password"
CODE_FIELD = "code"

NOT_ANSWERING = "The sign-in service is not answering. Please try again in a minute."
REFUSED = "That user name and password were not accepted."


@attrs.frozen
class Accepted:
    """What an Access-Accept grants, in portald's units."""

    duration: float | None = None
    idle_timeout: float | None = None
    quota_bytes: int | None = None
    rate_down: int | None = None
    rate_up: int | None = None
    interim: float = 0.0
    classes: tuple[bytes, ...] = ()


def accepted(reply: radius.Packet) -> Accepted:
    """The limits an Access-Accept sets (an attribute it lacks is the way in's setting)."""

    def number(name: str) -> int | None:
        value = first(reply, name)
        return value if isinstance(value, int) and value > 0 else None

    def octets(name: str) -> int | None:
        low, high = number(f"ChilliSpot-Max-{name}-Octets"), number(f"ChilliSpot-Max-{name}-Gigawords")
        if low is None and high is None:
            return None
        return join_octets(low or 0, high or 0)

    # The session's allowance counts both ways: the total, else the tighter of the two.
    one_way = [q for q in (octets("Input"), octets("Output")) if q is not None]
    quota = octets("Total") or (min(one_way) if one_way else None)
    # WISPr in bit/s; CoovaChilli's own in kbit/s.
    down = number("WISPr-Bandwidth-Max-Down") or _kbit(number("ChilliSpot-Bandwidth-Max-Down"))
    up = number("WISPr-Bandwidth-Max-Up") or _kbit(number("ChilliSpot-Bandwidth-Max-Up"))
    try:
        classes = tuple(reply["Class"])
    except KeyError:
        classes = ()
    timeout, idle = number("Session-Timeout"), number("Idle-Timeout")
    return Accepted(
        duration=float(timeout) if timeout else None,
        idle_timeout=float(idle) if idle else None,
        quota_bytes=quota,
        rate_down=down,
        rate_up=up,
        interim=float(number("Acct-Interim-Interval") or 0),
        classes=classes,
    )


def _kbit(value: int | None) -> int | None:
    return value * 1000 if value is not None else None


def reply_message(reply: radius.Packet) -> str:
    """The Reply-Message lines, joined (RFC 2865 allows several)."""
    try:
        lines = reply["Reply-Message"]
    except KeyError:
        return ""
    return " ".join(str(line).strip() for line in lines if str(line).strip())[:300]


@attrs.frozen
class NAS:
    """How portald names itself in every request."""

    identifier: str
    ip_address: str
    called_station_id: str

    @classmethod
    def from_settings(cls, settings: RadiusSettings, portal_address: ipaddress.IPv4Address) -> NAS:
        return cls(
            settings.nas_identifier,
            str(settings.nas_ip_address or portal_address),
            settings.called_station_id or settings.nas_identifier,
        )

    def attributes(self) -> dict[str, Any]:
        return {
            "NAS-Identifier": self.identifier,
            "NAS-IP-Address": self.ip_address,
            "Called-Station-Id": self.called_station_id,
        }


def ask(
    client: RadiusClient, nas: NAS, mac: str, ip: str, user: str, password: str
) -> tuple[str, Deferred[radius.Packet]]:
    """Send one Access-Request for C{mac}; its Acct-Session-Id, and the reply to come."""
    session_id = new_session_id()
    framed_ip = ip if ipaddress.ip_address(ip).version == 4 else None

    attributes = {
        "User-Name": user,
        "Service-Type": "Login-User",
        "NAS-Port-Type": "Wireless-802.11",
        "Calling-Station-Id": station_id(mac),
        "Framed-IP-Address": framed_ip,
        "Acct-Session-Id": session_id,
        **nas.attributes(),
    }

    def build(secret: bytes) -> radius.Packet:
        return access_request(secret, attributes, password)

    return session_id, client.request(build)


@implementer(IAuthenticator)
class RadiusMethod:
    """A user name and password (or a code alone, as the name) checked by the AAA server."""

    name = "radius"
    guessable = True
    submit_label = "Sign in"

    def __init__(
        self,
        client: RadiusClient,
        nas: NAS,
        settings: RadiusSettings,
        on_accept: Callable[[str, Grant], None],
    ) -> None:
        self._client = client
        self._nas = nas
        self._code_only = settings.credentials == "code"
        self._on_accept = on_accept
        if self._code_only:
            self.fields: tuple[FormField, ...] = (FormField(CODE_FIELD, "Access code", "text"),)
        else:
            self.fields = (
                FormField(USER_FIELD, "User name", "text", "username"),
                FormField(PASSWORD_FIELD, "Password", "password", "current-password"),
            )

    def authenticate(self, credentials: Credentials) -> Deferred[AuthResult]:
        fields = credentials.fields
        if self._code_only:
            user, password = fields.get(CODE_FIELD, "").strip(), fields.get(CODE_FIELD, "").strip()
            missing = "Please type the access code."
        else:
            user, password = fields.get(USER_FIELD, "").strip(), fields.get(PASSWORD_FIELD, "")
            missing = "Please type your user name and password."
        if not user or not password:
            return succeed(AuthResult.failure(missing, incomplete=True))
        if len(user.encode()) > 253 or len(password.encode()) > 128:
            return succeed(AuthResult.failure(REFUSED))
        session_id, reply = ask(self._client, self._nas, credentials.mac, credentials.ip, user, password)
        reply.addCallbacks(self._answered, self._unanswered, (credentials, user, session_id))
        return reply

    def _answered(
        self, reply: radius.Packet, credentials: Credentials, user: str, session_id: str
    ) -> AuthResult:
        if reply.code != ACCESS_ACCEPT:
            # A reject, or a challenge portald cannot put on its page.
            return AuthResult.failure(reply_message(reply) or REFUSED)
        limits = accepted(reply)
        self._on_accept(credentials.mac, Grant(session_id, user, limits.classes, limits.interim))
        log.info("RADIUS accepted {user} for {mac}", user=user, mac=credentials.mac)
        return AuthResult.success(
            user,
            duration=limits.duration,
            quota_bytes=limits.quota_bytes,
            rate_down=limits.rate_down,
            rate_up=limits.rate_up,
            idle_timeout=limits.idle_timeout,
        )

    def _unanswered(self, failure: Failure) -> AuthResult:
        failure.trap(NoAnswer)
        log.warn("sign-in not checked: {why}", why=str(failure.value))
        # Not a guess: the guest did nothing wrong.
        return AuthResult.failure(NOT_ANSWERING, counts=False)

"""
RADIUS packets as portald writes and reads them: pyrad's packet layer
with portald's dictionary, and the few conversions RADIUS needs (the MAC as
a station id, 64-bit counters as octets and gigawords, end reasons as
terminate causes).
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from pyrad import packet as radius
from pyrad.dictionary import Dictionary

from portald.table import EndReason

DICTIONARY_PATH = Path(__file__).with_name("dictionary")

# Codes, named as the RFCs name them.
ACCESS_REQUEST = radius.AccessRequest
ACCESS_ACCEPT = radius.AccessAccept
ACCESS_REJECT = radius.AccessReject
ACCOUNTING_REQUEST = radius.AccountingRequest
ACCOUNTING_RESPONSE = radius.AccountingResponse
STATUS_SERVER = radius.StatusServer
DISCONNECT_REQUEST = radius.DisconnectRequest
DISCONNECT_ACK = radius.DisconnectACK
DISCONNECT_NAK = radius.DisconnectNAK
COA_REQUEST = radius.CoARequest
COA_ACK = radius.CoAACK
COA_NAK = radius.CoANAK

MESSAGE_AUTHENTICATOR = 80
PROXY_STATE = 33
# A RADIUS packet is at most this long (RFC 2865 section 3).
LONGEST_PACKET = 4096


@cache
def dictionary() -> Dictionary:
    """The attributes portald knows (read once)."""
    return Dictionary(str(DICTIONARY_PATH))


def station_id(mac: str) -> str:
    """A MAC as RADIUS writes it in Calling-Station-Id: AA-BB-CC-DD-EE-FF (RFC 3580)."""
    return mac.upper().replace(":", "-")


def new_session_id() -> str:
    """An Acct-Session-Id: unique across restarts and gateways, 16 hex digits."""
    return secrets.token_hex(8).upper()


def split_octets(count: int) -> tuple[int, int]:
    """A 64-bit byte count as (octets, gigawords): RADIUS' integers hold 32 bits."""
    count = max(0, count)
    return count & 0xFFFFFFFF, count >> 32


def join_octets(octets: int, gigawords: int = 0) -> int:
    return (gigawords << 32) + octets


# How each of portald's end reasons is told to accounting (RFC 2866 section 5.10).
TERMINATE_CAUSES: Mapping[EndReason, str] = {
    EndReason.LOGOUT: "User-Request",
    EndReason.EXPIRED: "Session-Timeout",
    EndReason.IDLE: "Idle-Timeout",
    EndReason.QUOTA: "Session-Timeout",
    EndReason.ADMIN: "Admin-Reset",
    EndReason.REPLACED: "User-Request",
    EndReason.VOUCHER_REVOKED: "Admin-Reset",
    EndReason.VOUCHER_ELSEWHERE: "User-Request",
}


def _signed(request: radius.Packet, attributes: Mapping[str, Any]) -> radius.Packet:
    """C{request} with a Message-Authenticator first (BlastRADIUS, CVE-2024-3596), then C{attributes} (None: left out)."""
    request.add_message_authenticator()
    for name, value in attributes.items():
        if value is not None:
            request[name] = value
    return request


def access_request(secret: bytes, attributes: Mapping[str, Any], password: str) -> radius.AuthPacket:
    """An Access-Request with C{attributes} and C{password} (PAP), signed."""
    request = _signed(radius.AuthPacket(secret=secret, dict=dictionary()), attributes)
    request["User-Password"] = request.PwCrypt(password)
    return request


def accounting_request(secret: bytes, attributes: Mapping[str, Any]) -> radius.AcctPacket:
    """An Accounting-Request with C{attributes}, signed too."""
    return _signed(radius.AcctPacket(secret=secret, dict=dictionary()), attributes)


def status_server(secret: bytes, attributes: Mapping[str, Any]) -> radius.Packet:
    """A Status-Server (RFC 5997): is this server alive?"""
    return _signed(radius.AcctPacket(code=STATUS_SERVER, secret=secret, dict=dictionary()), attributes)


def valid_reply(request: radius.Packet, data: bytes) -> radius.Packet | None:
    """
    C{data} decoded as the reply to C{request}, or C{None} if it is not a
    genuine one: wrong id or authenticator, no valid Message-Authenticator
    (required in answers to Access-Request and Status-Server), or a
    Proxy-State that was not sent (the signs of BlastRADIUS).
    """
    try:
        reply = request.CreateReply(packet=data)
    except (radius.PacketError, struct.error, ValueError, KeyError, IndexError, TypeError):
        return None
    try:
        if not request.VerifyReply(reply, data, enforce_ma=True):
            return None
    except Exception:
        # pyrad raises a bare Exception for a Message-Authenticator it cannot check.
        return None
    return reply


def first(packet: radius.Packet, name: str, default: Any = None) -> Any:
    """The first value of attribute C{name}, or C{default}."""
    try:
        values = packet[name]
    except KeyError:
        return default
    return values[0] if values else default

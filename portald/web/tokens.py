"""
Signed, expiring tokens bound to one client address: the anti-forgery token
of every form, and the destination a client was going to when intercepted.

Nothing is kept server-side per client; a token is only good for the
client address it was issued to, for its purpose, until it expires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re

from twisted.internet.interfaces import IReactorTime

# What sign() writes for the issue time: ASCII digits, no leading zero.  str.isdigit()
# would also take "²" or Arabic-Indic digits, which int() then refuses or
# reads as the same number as another spelling.
_ISSUED = re.compile(r"(?:0|[1-9][0-9]{0,11})\Z", re.ASCII)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """
    C{payload.issued.signature}, with an HMAC-SHA256 over the purpose, the
    client's IP, the issue time and the payload.  The key is random per
    process: a restart only invalidates open forms and pending redirects.
    """

    def __init__(self, clock: IReactorTime, key: bytes | None = None) -> None:
        self._clock = clock
        self._key = key if key is not None else os.urandom(32)

    def _signature(self, purpose: str, client_ip: str, issued: int, payload: str) -> str:
        message = f"{purpose}\0{client_ip}\0{issued}\0{payload}".encode()
        return _b64encode(hmac.new(self._key, message, hashlib.sha256).digest()[:18])

    def sign(self, purpose: str, client_ip: str, value: str) -> str:
        payload = _b64encode(value.encode("utf-8"))
        issued = int(self._clock.seconds())
        return f"{payload}.{issued}.{self._signature(purpose, client_ip, issued, payload)}"

    def verify(self, purpose: str, client_ip: str, token: str, max_age: float) -> str | None:
        """The signed value, or C{None} if C{token} is forged, foreign, stale or junk."""
        # sign() only writes ASCII; anything else is junk, refused before it
        # reaches an encode() or int() that could raise.
        if len(token) > 8192 or not token.isascii():
            return None
        parts = token.split(".")
        if len(parts) != 3 or _ISSUED.match(parts[1]) is None:
            return None
        payload, issued_text, signature = parts
        issued = int(issued_text)
        expected = self._signature(purpose, client_ip, issued, payload)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            return None
        age = self._clock.seconds() - issued
        if not -60 <= age <= max_age:
            return None
        try:
            return _b64decode(payload).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None

"""
The ways in that need nothing outside portald: click-through (accept the
terms) and an access code (a room number, the code of the day).
"""

from __future__ import annotations

import hmac

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from portald.auth.interface import AuthResult, Credentials, FormField, IAuthenticator, Way
from portald.config import Config, WayIn

ACCEPT_FIELD = "accept"


@implementer(IAuthenticator)
class ClickThrough:
    """Accept the terms, and pass."""

    name = "click-through"
    guessable = False
    fields = (FormField(ACCEPT_FIELD, "I accept the terms of use", "checkbox"),)
    submit_label = "Connect"

    def authenticate(self, credentials: Credentials) -> Deferred[AuthResult]:
        if credentials.fields.get(ACCEPT_FIELD) != "yes":
            return succeed(AuthResult.failure("Please tick the box to accept the terms.", incomplete=True))
        return succeed(AuthResult.success())


CODE_FIELD = "code"


@implementer(IAuthenticator)
class AccessCode:
    """
    One of a list of shared codes (a password of the day, room numbers).
    Codes are compared without regard to case or surrounding spaces, since
    they are read off a card or a receipt and typed on a phone.
    """

    name = "access-code"
    guessable = True
    fields = (FormField(CODE_FIELD, "Access code", "text"),)
    submit_label = "Connect"

    def __init__(self, codes: tuple[str, ...]) -> None:
        if not codes:
            raise ValueError("access-code needs at least one code")
        self._codes = tuple(self._normalise(code).encode("utf-8") for code in codes)

    @staticmethod
    def _normalise(code: str) -> str:
        return code.strip().casefold()

    def authenticate(self, credentials: Credentials) -> Deferred[AuthResult]:
        typed = self._normalise(credentials.fields.get(CODE_FIELD, ""))
        if not typed:
            return succeed(AuthResult.failure("Please type the access code.", incomplete=True))
        candidate = typed.encode("utf-8")
        # Compare with every code, in constant time each: no early exit
        # tells a guesser how close they came or which list entry matched.
        matched = False
        for code in self._codes:
            matched |= hmac.compare_digest(candidate, code)
        if not matched:
            return succeed(AuthResult.failure("That code is not valid. Check it and try again."))
        return succeed(AuthResult.success())


def authenticator_for(
    way: WayIn, vouchers: IAuthenticator | None = None, radius: IAuthenticator | None = None
) -> IAuthenticator:
    """The method that checks C{way} (C{vouchers}: the voucher book's; C{radius}: the AAA client's)."""
    if way.method == "access-code":
        return AccessCode(way.codes)
    if way.method == "voucher":
        if vouchers is None:
            raise ValueError("the voucher way in needs the voucher book")
        return vouchers
    if way.method == "radius":
        if radius is None:
            raise ValueError("the radius way in needs the RADIUS client")
        return radius
    return ClickThrough()


def ways_for(
    config: Config, vouchers: IAuthenticator | None = None, radius: IAuthenticator | None = None
) -> tuple[Way, ...]:
    """Every way in the configuration offers, in the page's order."""
    return tuple(Way(way, authenticator_for(way, vouchers, radius)) for way in config.ways_in())

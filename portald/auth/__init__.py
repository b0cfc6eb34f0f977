"""
How a guest proves they may pass: one interface, several methods.

The portal pages only know L{IAuthenticator}: which fields to show and how
to check what came back.  Vouchers or RADIUS are new implementations of it,
not changes to the pages.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

import attrs
from twisted.internet.defer import Deferred, succeed
from zope.interface import Attribute, Interface, implementer

from portald.config import Config


@attrs.frozen
class FormField:
    """One input of the login form; C{kind} is an HTML input type."""

    name: str
    label: str
    kind: str  # "checkbox", "text" or "password"
    autocomplete: str = "off"


@attrs.frozen
class Credentials:
    """What a login attempt carries: who asks, and the form's fields."""

    mac: str
    ip: str
    fields: Mapping[str, str]


@attrs.frozen
class AuthResult:
    """
    The verdict on one attempt.  C{message} says what was wrong (shown on the
    form); C{counts} is whether a failure counts against the attempt limit
    (a guessed code does, a forgotten tick box does not).
    """

    ok: bool
    message: str = ""
    user: str | None = None
    counts: bool = True

    @classmethod
    def success(cls, user: str | None = None) -> AuthResult:
        return cls(True, user=user)

    @classmethod
    def failure(cls, message: str, *, counts: bool = True) -> AuthResult:
        return cls(False, message, counts=counts)


class IAuthenticator(Interface):
    """A way to sign in."""

    name = Attribute("The method's name, recorded on the session (str).")
    fields = Attribute("The form's inputs, in order (tuple of FormField).")
    submit_label = Attribute("The text of the form's button (str).")

    def authenticate(credentials: Credentials) -> Deferred[AuthResult]:
        """
        Check one attempt.  Asynchronous, so that methods that ask another
        server (RADIUS) fit the same shape; never fails, a refusal is an
        L{AuthResult}.
        """


ACCEPT_FIELD = "accept"


@implementer(IAuthenticator)
class ClickThrough:
    """Accept the terms, and pass."""

    name = "click-through"
    fields = (FormField(ACCEPT_FIELD, "I accept the terms of use", "checkbox"),)
    submit_label = "Connect"

    def authenticate(self, credentials: Credentials) -> Deferred[AuthResult]:
        if credentials.fields.get(ACCEPT_FIELD) != "yes":
            return succeed(AuthResult.failure("Please tick the box to accept the terms.", counts=False))
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
            return succeed(AuthResult.failure("Please type the access code.", counts=False))
        candidate = typed.encode("utf-8")
        # Compare with every code, in constant time each: no early exit
        # tells a guesser how close they came or which list entry matched.
        matched = False
        for code in self._codes:
            matched |= hmac.compare_digest(candidate, code)
        if not matched:
            return succeed(AuthResult.failure("That code is not valid. Check it and try again."))
        return succeed(AuthResult.success())


def authenticator_for(config: Config) -> IAuthenticator:
    """The authenticator the configuration asks for."""
    if config.auth.method == "access-code":
        return AccessCode(config.auth.codes)
    return ClickThrough()

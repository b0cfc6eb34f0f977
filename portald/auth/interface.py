"""
What a way in looks like to the portal: the form it shows and how it
checks what came back (L{IAuthenticator}), with the value types it passes.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from portald.config import WayIn


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
    # A failure because the form was not filled in (an empty field, no tick).
    incomplete: bool = False
    # What the method says of the session, over the way in's settings: its
    # length and data allowance (a voucher's), and other devices' sessions
    # it ends once granted (a voucher on its most devices).
    duration: float | None = None
    quota_bytes: int | None = None
    ends: tuple[str, ...] = ()
    # The session's own rates in bit/s (a voucher's; 0 unlimited), over the way in's.
    rate_down: int | None = None
    rate_up: int | None = None
    # Seconds without traffic that end the session (RADIUS' Idle-Timeout), over the way in's.
    idle_timeout: float | None = None

    @classmethod
    def success(
        cls,
        user: str | None = None,
        *,
        duration: float | None = None,
        quota_bytes: int | None = None,
        ends: tuple[str, ...] = (),
        rate_down: int | None = None,
        rate_up: int | None = None,
        idle_timeout: float | None = None,
    ) -> AuthResult:
        return cls(
            True, user=user, duration=duration, quota_bytes=quota_bytes, ends=ends,
            rate_down=rate_down, rate_up=rate_up, idle_timeout=idle_timeout,
        )  # fmt: skip

    @classmethod
    def failure(cls, message: str, *, counts: bool = True, incomplete: bool = False) -> AuthResult:
        return cls(False, message, counts=counts and not incomplete, incomplete=incomplete)


class IAuthenticator(Interface):
    """A way to sign in."""

    name = Attribute("The method's name, recorded on the session (str).")
    fields = Attribute("The form's inputs, in order (tuple of FormField).")
    submit_label = Attribute("The text of the form's button (str).")
    guessable = Attribute(
        "True if an attempt checks a secret that can be guessed (a code, a password): "
        "such attempts take from the global guessing budget (bool)."
    )

    def authenticate(credentials: Credentials) -> Deferred[AuthResult]:
        """
        Check one attempt.  Asynchronous, so that methods that ask another
        server (RADIUS) fit the same shape; never fails, a refusal is an
        L{AuthResult}.
        """


# The login form's field that says which way in it is (a page may offer several).
METHOD_FIELD = "method"


@attrs.frozen
class Way:
    """One way in as the portal offers it: its settings and the method that checks it."""

    settings: WayIn
    authenticator: IAuthenticator

    @property
    def name(self) -> str:
        return self.authenticator.name  # type: ignore[no-any-return]

    @property
    def label(self) -> str:
        return self.settings.label or DEFAULT_LABELS.get(self.name, self.name)


# The heading of each form when the page offers several.
DEFAULT_LABELS = {
    "click-through": "Free access",
    "access-code": "With an access code",
    "voucher": "With a voucher",
    "radius": "With your account",
}

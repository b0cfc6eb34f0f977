"""
The portal's forms and cross-site request forgery: every form carries a
token signed for the client's address, and a POST without a genuine one (or
from another site's page) is refused here, in one place, changing nothing.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.web.server import Request

from portald.config import Config
from portald.refusals import Refusals
from portald.web.replies import Replies
from portald.web.tokens import Signer
from portald.web.urls import portal_hosts

CSRF = "csrf"  # the token's purpose and its form field
CSRF_MAX_AGE = 3600.0


def form_value(request: Request, name: str) -> str | None:
    """The first value of the form field or query parameter C{name}, as text."""
    values = (request.args or {}).get(name.encode())
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


@attrs.frozen
class Form:
    """A form the portal serves: how to name it in the log, and what a refusal tells the person."""

    name: str
    unchanged: str
    back: tuple[str, str]


LOGIN = Form("a login form", "Nothing was changed.", ("/", "Back to the sign-in page"))
EXTEND = Form("an extension form", "Nothing was changed.", ("/status", "Back to your session"))
LOGOUT = Form("a sign-out form", "You are still signed in.", ("/status", "Back to your session"))


class FormGuard:
    """Issues the forms' tokens and refuses forged forms."""

    def __init__(self, config: Config, signer: Signer, replies: Replies, refusals: Refusals) -> None:
        self._signer = signer
        self._replies = replies
        self._refusals = refusals
        # The portal answers on its name and on its addresses; a browser
        # that hides where a form came from says "null".
        port = "" if config.http.port == 80 else f":{config.http.port}"
        hosts = portal_hosts(config.portal)
        self._origins = {f"http://{host}{port}".encode("ascii") for host in hosts} | {b"null"}
        if config.http.tls is not None:
            # Over HTTPS only the portal's own name is ever answered.
            tls_port = "" if config.http.tls.port == 443 else f":{config.http.tls.port}"
            self._origins.add(f"https://{config.portal.hostname}{tls_port}".encode("ascii"))

    def token(self, ip: str) -> str:
        return self._signer.sign(CSRF, ip, "form")

    def refusal(self, request: Request, ip: str, form: Form) -> Any:
        """C{None} for a genuine C{form} from C{ip}; else the 403 page to answer with."""
        if not self._forged(request, ip):
            return None
        # Counted, and logged once a minute per client: a forger's loop is no log flood.
        self._refusals.refuse("form token", ip, form.name)
        return self._replies.message(
            request,
            "Please try again",
            [f"This form has expired or did not come from this portal. {form.unchanged}"],
            form.back,
            403,
        )

    def _forged(self, request: Request, ip: str) -> bool:
        origin = request.getHeader(b"origin")
        if origin is not None and origin not in self._origins:
            return True
        token = form_value(request, CSRF)
        return token is None or self._signer.verify(CSRF, ip, token, CSRF_MAX_AGE) is None

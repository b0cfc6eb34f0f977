"""The ways a portal page answers: a page in the layout, a message, a redirect."""

from __future__ import annotations

from typing import Any

from twisted.web.server import Request
from twisted.web.template import Element, renderElement

from portald.web.pages import Layout, MessageBody
from portald.web.security import HTML, NO_STORE
from portald.web.theme import Theme

TRY_AGAIN = "Please try again in a moment."


class Replies:
    """Every portal page's answer goes through here: one layout, one set of headers."""

    def __init__(self, theme: Theme, venue: str) -> None:
        self.theme = theme
        self.venue = venue

    def page(
        self, request: Request, title: str, body: Element, code: int = 200, refresh: int | None = None
    ) -> Any:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", HTML)
        request.setHeader(b"Cache-Control", NO_STORE)
        return renderElement(request, Layout(self.theme, self.venue, title, body, refresh))

    def message(
        self,
        request: Request,
        title: str,
        paragraphs: list[str],
        link: tuple[str, str] | None,
        code: int = 200,
    ) -> Any:
        return self.page(request, title, MessageBody(self.theme, paragraphs, link), code)

    def not_recorded(self, request: Request, title: str, why: str, link: tuple[str, str]) -> Any:
        """The journal refused the change: nothing happened, and it is worth trying again."""
        return self.message(request, title, [why, TRY_AGAIN], link, 503)

    def see_other(self, request: Request, location: str) -> bytes:
        request.setResponseCode(303)
        request.setHeader(b"Location", location.encode("ascii"))
        request.setHeader(b"Cache-Control", NO_STORE)
        request.setHeader(b"Content-Type", HTML)
        return b""

    def no_lease(self, request: Request, code: int) -> Any:
        return self.message(
            request,
            "You cannot sign in yet",
            [
                "This network does not know your device yet: it has no address lease from the "
                "network's DHCP server for the address you are using.",
                "Turn Wi-Fi off and on again, or reconnect to the network, so that your device asks "
                "for an address; then reload this page.",
            ],
            ("/", "Reload"),
            code,
        )

    def not_found(self, request: Request) -> Any:
        return self.message(request, "Page not found", ["There is no such page here."], ("/", "Sign in"), 404)

    def method_not_allowed(self, request: Request, allowed: list[bytes]) -> bytes:
        # Short and plain: twisted.web's own page would quote the request back.
        request.setResponseCode(405)
        request.setHeader(b"Allow", b", ".join(allowed))
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"Method not allowed\n"

"""
A portal page: a twisted.web resource whose C{render_GET} (HEAD too) and
C{render_POST} answer, and the little it does differently from twisted.web.
"""

from __future__ import annotations

from typing import Any, ClassVar

from twisted.web.error import UnsupportedMethod
from twisted.web.resource import Resource
from twisted.web.server import Request

from portald.addresses import normalise_ip
from portald.web.forms import Form
from portald.web.portal import Portal


def client_ip(request: Request) -> str:
    return normalise_ip(request.getClientAddress().host)


class PortalPage(Resource):
    """
    One page at one path.  Unlike a plain L{Resource}: a path below it is
    not found (not the page again), a method it does not answer gets a short
    plain 405 naming what it does (twisted.web's own would be an HTML page,
    or a 501 for methods it does not know), and HEAD is only answered where
    GET is.  A subclass leaves out, or sets to C{None}, what it does not answer.
    """

    isLeaf = True
    allowedMethods: tuple[bytes, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        get = getattr(cls, "render_GET", None) is not None
        post = getattr(cls, "render_POST", None) is not None
        cls.allowedMethods = ((b"GET", b"HEAD") if get else ()) + ((b"POST",) if post else ())
        if not get:
            # Resource's render_HEAD would call the missing render_GET.
            cls.render_HEAD = None  # type: ignore[assignment]
        elif cls.render_HEAD is None:
            cls.render_HEAD = Resource.render_HEAD  # type: ignore[method-assign]

    def __init__(self, portal: Portal) -> None:
        super().__init__()
        self.portal = portal

    def render(self, request: Request) -> Any:
        if request.postpath not in ([], [b""]):
            return self.portal.replies.not_found(request)
        try:
            return super().render(request)
        except UnsupportedMethod as e:
            return self.portal.replies.method_not_allowed(request, list(e.allowedMethods))


class MissingFile(PortalPage):
    """What is not there, asked for with GET or HEAD."""

    def render_GET(self, request: Request) -> Any:
        return self.portal.replies.not_found(request)


class MissingPage(MissingFile):
    """What is not there, whether a page is asked for or a form sent to it."""

    render_POST = MissingFile.render_GET


class DevicePage(PortalPage):
    """
    A page about the device asking, which the portal knows by its lease;
    one without a lease is told why it cannot sign in yet.
    """

    def render_GET(self, request: Request) -> Any:
        ip = client_ip(request)
        mac = self.portal.neighbours.mac_for(ip)
        if mac is None:
            return self.portal.replies.no_lease(request, 200)
        return self.show(request, ip, mac)

    def show(self, request: Request, ip: str, mac: str) -> Any:
        raise NotImplementedError


class FormTarget(PortalPage):
    """
    Where C{form} is posted: a forged one is refused before the page sees
    it; a genuine one is the page's with the device's MAC, if it has a lease.
    """

    form: ClassVar[Form]

    def render_POST(self, request: Request) -> Any:
        ip = client_ip(request)
        refusal = self.portal.forms.refusal(request, ip, self.form)
        if refusal is not None:
            return refusal
        return self.submitted(request, ip, self.portal.neighbours.mac_for(ip))

    def submitted(self, request: Request, ip: str, mac: str | None) -> Any:
        raise NotImplementedError

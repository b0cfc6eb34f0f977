"""
The root of the web: the portal's own Host gets its pages, every other Host
is intercepted (what came the slow way; the front door answers the rest).
"""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Request

from portald.web.account import Extend, Logout, Status
from portald.web.captive_api import CaptiveAPI
from portald.web.intercept import Interception
from portald.web.page import MissingPage, client_ip
from portald.web.portal import Portal
from portald.web.security import COMMON_HEADERS, PORTAL_CSP
from portald.web.signin import Landing, Login
from portald.web.static import StaticFiles


class InterceptedRequest(Resource):
    """A request for another Host that came the slow way (a body, an odd header)."""

    isLeaf = True

    def __init__(self, interception: Interception) -> None:
        super().__init__()
        self._interception = interception

    def render(self, request: Request) -> bytes:
        response = self._interception.answer(
            client_ip(request), request.method, request.getHeader(b"host") or b"", request.uri
        )
        request.setResponseCode(response.code, response.reason)
        for name, value in response.headers:
            request.setHeader(name, value)
        if response.closes:
            request.setHeader(b"connection", b"close")
            request.channel.persistent = False
        return response.body


class PortalRoot(Resource):
    """The portal's own Host gets the pages; every other Host is intercepted."""

    def __init__(self, portal: Portal) -> None:
        super().__init__()
        self._interception = portal.interception
        self._intercepted = InterceptedRequest(portal.interception)
        self._pages = {
            b"": Landing(portal),
            b"login": Login(portal),
            b"status": Status(portal),
            b"logout": Logout(portal),
            b"extend": Extend(portal),
            b"static": StaticFiles(portal),
        }
        self._not_found = MissingPage(portal)
        self._api_path = portal.config.http.api_path.encode("ascii")
        self._api = CaptiveAPI(portal)

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        if not self._interception.is_portal_host(request.getHeader(b"host")):
            return self._intercepted
        for name, value in COMMON_HEADERS:
            request.setHeader(name, value)
        request.setHeader(b"Content-Security-Policy", PORTAL_CSP)
        if request.path == self._api_path:
            return self._api
        return self._pages.get(path, self._not_found)

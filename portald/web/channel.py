"""
twisted.web's HTTP channel with portald's input bounds.

What the front door hands over (the portal's Host, bodies, unusual heads)
is parsed by twisted.web, which on its own would take any body (spooling a
large one to a temporary file), let a head trickle in forever, and answer
its own errors bare.  Here:

* a request to a foreign Host may carry no body: it gets the interception's
  answer (511) and the connection closes, without a byte of the body read;
* a body for the portal larger than C{http.max_body_bytes} is refused with
  413 before it is read (a chunked one, whose size cannot be known first,
  with 411);
* a request's head and body must have arrived within C{http.request_timeout}
  of the connection opening or of the previous answer;
* every reply, twisted.web's own 400 included, carries the security headers
  and no C{Server} header.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.web.http import HTTPChannel, datetimeToString
from twisted.web.server import Request, Site

from portald.refusals import Refusals
from portald.web.intercept import Interception
from portald.web.security import COMMON_HEADERS, NO_STORE, PLAIN_CSP


def plain_reply(status: bytes, text: bytes = b"") -> bytes:
    """A whole reply that closes the connection: for input refused before any page runs."""
    headers = b"".join(b"%s: %s\r\n" % pair for pair in COMMON_HEADERS)
    return (
        b"HTTP/1.1 %s\r\n%sContent-Security-Policy: %s\r\nCache-Control: %s\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (status, headers, PLAIN_CSP, NO_STORE, len(text), text)
    )


BAD_REQUEST = plain_reply(b"400 Bad Request", b"Bad request.\n")
TOO_LARGE = plain_reply(b"413 Content Too Large", b"That request is larger than this portal accepts.\n")
LENGTH_REQUIRED = plain_reply(
    b"411 Length Required", b"This portal accepts only bodies of a stated length.\n"
)


class PortalRequest(Request):
    """twisted.web's request, sending the security headers and no C{Server} header."""

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            headers = self.responseHeaders
            # Nothing to gain from telling every guest what the portal runs.
            headers.removeHeader(b"server")
            for name, value in COMMON_HEADERS:
                if not headers.hasHeader(name):
                    headers.setRawHeaders(name, [value])
            if self.path == b"*":
                # twisted.web answers OPTIONS * itself, before any resource.
                headers.setRawHeaders(b"cache-control", [NO_STORE])
                headers.setRawHeaders(b"content-security-policy", [PLAIN_CSP])
        super().write(data)


class PortalChannel(HTTPChannel):
    """An L{HTTPChannel} that refuses what a captive portal must not hold."""

    site: PortalSite

    def __init__(self) -> None:
        super().__init__()
        self._refused = False
        self._deadline: IDelayedCall | None = None

    # --- the deadline for a whole request ---

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_deadline()

    def _start_deadline(self) -> None:
        self._stop_deadline()
        self._deadline = self.site.clock.callLater(self.site.request_timeout, self._too_slow)

    def _stop_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self._handlingRequest:
            # The request is in; its answer may take its time (sign-in waits
            # for the firewall), and twisted.web's own timeout covers it.
            return
        # A quiet kept-alive connection is closed without a word; one in the
        # middle of a head is told why (if it still reads).
        if self._buffer or self._receivedHeaderSize or self.requests:
            self.site.refusals.refuse("http.request_timeout", self._client(), "request too slow")
            self._refuse(plain_reply(b"408 Request Timeout", b"That request took too long.\n"))
        else:
            self.transport.loseConnection()

    def allContentReceived(self) -> None:
        self._stop_deadline()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        if self.persistent and not self._handlingRequest:
            # Waiting for the next request on a kept-alive connection.
            self._start_deadline()

    def connectionLost(self, reason: Any) -> None:
        self._stop_deadline()
        super().connectionLost(reason)

    # --- bodies ---

    def allHeadersReceived(self) -> None:
        request = self.requests[-1]
        length = self.length  # None: chunked
        if length != 0:
            interception: Interception = self.site.interception
            if not interception.is_portal_host(request.getHeader(b"host")):
                self.site.refusals.refuse("http.max_body_bytes", self._client(), "a body for another host")
                host = request.getHeader(b"host") or b""
                self._refuse(self.site.intercepted_reply(self._client(), self._command, host, self._path))
                return
            if length is None:
                self.site.refusals.refuse("http.max_body_bytes", self._client(), "a chunked body")
                self._refuse(LENGTH_REQUIRED)
                return
            if length > self.site.max_body_bytes:
                self.site.refusals.refuse("http.max_body_bytes", self._client(), f"{length} bytes")
                self._refuse(TOO_LARGE)
                return
        super().allHeadersReceived()

    def _refuse(self, reply: bytes) -> None:
        """Answer C{reply} and close, reading nothing more from this connection."""
        self._refused = True
        self._stop_deadline()
        self.persistent = False
        self.transport.write(reply)
        self.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        super().dataReceived(data)

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        super().rawDataReceived(data)

    def _respondToBadRequestAndDisconnect(self) -> None:
        # twisted.web's own 400 is a bare status line; this one carries the
        # security headers like every other answer.
        self._refuse(BAD_REQUEST)

    def _client(self) -> str:
        return self.transport.getPeer().host  # type: ignore[no-any-return]


class PortalSite(Site):
    """The L{Site} of the portal's pages, building L{PortalChannel}s with its bounds."""

    protocol = PortalChannel  # type: ignore[assignment]
    requestFactory = PortalRequest

    def __init__(
        self,
        resource: Any,
        interception: Interception,
        refusals: Refusals,
        clock: IReactorTime,
        *,
        max_body_bytes: int,
        request_timeout: float,
        timeout: float,
    ) -> None:
        super().__init__(resource, timeout=timeout, reactor=clock)
        self.interception = interception
        self.refusals = refusals
        self.clock = clock
        self.max_body_bytes = max_body_bytes
        self.request_timeout = request_timeout
        self.displayTracebacks = False

    def log(self, request: Any) -> None:
        # The interception keeps its own log; twisted.web's would log every
        # request a second time.
        pass

    def intercepted_reply(self, client_ip: str, method: bytes, host: bytes, target: bytes) -> bytes:
        """The interception's answer to a request, whole, closing the connection."""
        response = self.interception.answer(client_ip, method, host, target)
        body = b"" if method == b"HEAD" else response.body
        return response.wire_head + b"Date: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
            datetimeToString(int(self.clock.seconds())),
            len(response.body),
            body,
        )

"""
The portal's own pages, and the root resource that sends every other Host
to interception.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http import CACHED
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.template import Element, renderElement

from portald.addresses import normalise_ip
from portald.auth.interface import AuthResult, Credentials, IAuthenticator
from portald.auth.limits import AttemptLimiter
from portald.config import Config
from portald.neighbours import Neighbours
from portald.store import StoreError
from portald.table import AuthorizationTable, EndReason
from portald.web.intercept import NEXT, Answer, Interception
from portald.web.pages import LandingBody, Layout, MessageBody, StatusBody, describe_duration, describe_ending
from portald.web.security import COMMON_HEADERS, HTML, NO_STORE, PORTAL_CSP
from portald.web.theme import Theme
from portald.web.tokens import Signer
from portald.web.urls import is_http_url

log = Logger()

# Bytes (from, to) a client moved in its current session, if known.
Usage = Callable[[str], "tuple[int, int] | None"]
# Why and when a client's latest session ended (None: never, or still open).
LastEnding = Callable[[str], "tuple[EndReason, float] | None"]

CSRF = "csrf"
CSRF_MAX_AGE = 3600.0
# The longest a sign-in answer waits for the firewall to confirm it.
ENFORCED_WAIT = 2.0
STATIC_MAX_AGE = 3600
# The landing page says why the last session ended if it ended this recently.
ENDING_SHOWN_FOR = 24 * 3600.0
_TRY_AGAIN = "Please try again in a moment."


def client_ip(request: Request) -> str:
    return normalise_ip(request.getClientAddress().host)


def _arg(request: Request, name: str) -> str | None:
    values = (request.args or {}).get(name.encode())
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


class Portal:
    """
    Everything the pages need, and the pages as methods; L{PortalRoot}
    routes requests to them.
    """

    def __init__(
        self,
        config: Config,
        table: AuthorizationTable,
        neighbours: Neighbours,
        clock: IReactorTime,
        authenticator: IAuthenticator,
        signer: Signer,
        theme: Theme,
        interception: Interception,
        usage: Usage | None = None,
        enforced: Callable[[], Deferred[None]] | None = None,
        last_ending: LastEnding | None = None,
    ) -> None:
        self._config = config
        self._last_ending = last_ending
        self._usage = usage
        self._enforced = enforced
        self._table = table
        self._neighbours = neighbours
        self._clock = clock
        self._authenticator = authenticator
        self._signer = signer
        self._theme = theme
        self._interception = interception
        self._limiter = AttemptLimiter(clock, config.auth.max_attempts, config.auth.attempt_window)
        # The portal answers on its name and on its addresses; a browser
        # that hides where a form came from says "null".
        port = "" if config.http.port == 80 else f":{config.http.port}"
        hosts = [config.portal.hostname, str(config.portal.address)]
        if config.portal.address6 is not None:
            hosts.append(f"[{config.portal.address6}]")
        self._origins = {f"http://{host}{port}".encode("ascii") for host in hosts} | {b"null"}

    # --- helpers ---

    def _render(
        self,
        request: Request,
        title: str,
        body: Element,
        code: int = 200,
        refresh: int | None = None,
    ) -> Any:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", HTML)
        request.setHeader(b"Cache-Control", NO_STORE)
        return renderElement(request, Layout(self._theme, self._config.portal.venue, title, body, refresh))

    def _message(
        self,
        request: Request,
        title: str,
        paragraphs: list[str],
        link: tuple[str, str] | None,
        code: int = 200,
    ) -> Any:
        return self._render(request, title, MessageBody(self._theme, paragraphs, link), code)

    def _see_other(self, request: Request, location: str) -> bytes:
        request.setResponseCode(303)
        request.setHeader(b"Location", location.encode("ascii"))
        request.setHeader(b"Cache-Control", NO_STORE)
        request.setHeader(b"Content-Type", HTML)
        return b""

    def _no_lease(self, request: Request, code: int) -> Any:
        return self._message(
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

    def _csrf_token(self, ip: str) -> str:
        return self._signer.sign(CSRF, ip, "form")

    def _forged(self, request: Request, ip: str) -> bool:
        origin = request.getHeader(b"origin")
        if origin is not None and origin not in self._origins:
            return True
        token = _arg(request, CSRF)
        return token is None or self._signer.verify(CSRF, ip, token, CSRF_MAX_AGE) is None

    def _landing(
        self,
        request: Request,
        ip: str,
        next_token: str | None,
        message: str = "",
        code: int = 200,
        ending: str = "",
    ) -> Any:
        body = LandingBody(
            self._theme,
            terms=self._config.portal.terms,
            authenticator=self._authenticator,
            csrf=self._csrf_token(ip),
            next_token=next_token,
            message=message,
            ending=ending,
        )
        return self._render(request, f"Welcome to {self._config.portal.venue}", body, code)

    def _ending_notice(self, mac: str) -> str:
        """ "Your session ended … because …" for a recent ending, else nothing."""
        if self._last_ending is None:
            return ""
        try:
            ending = self._last_ending(mac)
        except Exception:
            # A notice is a courtesy: the sign-in form matters more.
            log.failure("could not look up how {mac}'s last session ended", mac=mac)
            return ""
        if ending is None:
            return ""
        reason, ended = ending
        ago = max(0.0, self._clock.seconds() - ended)
        because = describe_ending(
            reason, idle_timeout=self._config.sessions.idle_timeout, quota=self._config.sessions.quota
        )
        if because is None or ago > ENDING_SHOWN_FOR:
            return ""
        return f"Your session ended {describe_duration(ago)} ago {because}."

    def _extension(self, remaining: float | None) -> float | None:
        """
        The time the extend button adds, or C{None} where it is not offered:
        not configured, a session without an end, or one that already has
        more than a session's length left (so presses do not pile up).
        """
        length = self._config.session_timeout()
        if not self._config.sessions.extendable or remaining is None or remaining > length:
            return None
        return length

    def _valid_next(self, ip: str, token: str | None) -> str | None:
        """C{token} if it genuinely carries a destination for this client, else C{None}."""
        destination = self._interception.destination(ip, token)
        return token if destination is not None and is_http_url(destination) else None

    # --- pages ---

    def landing(self, request: Request) -> Any:
        ip = client_ip(request)
        mac = self._neighbours.mac_for(ip)
        if mac is None:
            return self._no_lease(request, 200)
        if self._table.is_authorized(mac):
            return self._see_other(request, "/status")
        return self._landing(
            request, ip, self._valid_next(ip, _arg(request, NEXT)), ending=self._ending_notice(mac)
        )

    def login(self, request: Request) -> Any:
        ip = client_ip(request)
        mac = self._neighbours.mac_for(ip)
        if self._forged(request, ip):
            log.warn("refused a login form without a valid token from {ip}", ip=ip)
            return self._message(
                request,
                "Please try again",
                ["This form has expired or did not come from this portal. Nothing was changed."],
                ("/", "Back to the sign-in page"),
                403,
            )
        if mac is None:
            return self._no_lease(request, 403)
        next_token = self._valid_next(ip, _arg(request, NEXT))
        if self._table.is_authorized(mac):
            return self._signed_in(request, next_token, ip)
        wait = self._limiter.retry_after(mac)
        if wait > 0:
            request.setHeader(b"Retry-After", str(int(wait) + 1).encode())
            message = f"Too many attempts. Please wait {int(wait) + 1} seconds and try again."
            return self._landing(request, ip, next_token, message, 429)
        # Field names and values as the browser sent them, whatever bytes.
        fields = {
            name.decode("utf-8", "replace"): values[0].decode("utf-8", "replace") if values else ""
            for name, values in (request.args or {}).items()
        }
        fields.pop(CSRF, None)
        fields.pop(NEXT, None)
        attempt: Deferred[AuthResult] = self._authenticator.authenticate(Credentials(mac, ip, fields))
        finished: list[bool] = []
        request.notifyFinish().addBoth(finished.append)
        attempt.addCallback(self._attempted, request, ip, mac, next_token, finished)
        attempt.addErrback(self._failed, request, finished)
        return NOT_DONE_YET

    def _attempted(
        self,
        result: AuthResult,
        request: Request,
        ip: str,
        mac: str,
        next_token: str | None,
        finished: list[bool],
    ) -> None:
        if not result.ok:
            if result.counts:
                self._limiter.record_failure(mac)
            log.info("sign-in refused for {mac} ({ip}): {why}", mac=mac, ip=ip, why=result.message)
            if not finished:
                self._landing(request, ip, next_token, result.message, 403)
            return
        self._limiter.clear(mac)
        try:
            self._table.authorize(
                mac,
                ip=ip,
                method=self._authenticator.name,
                user=result.user,
                duration=self._config.session_timeout(),
                idle_timeout=self._config.sessions.idle_timeout or None,
                quota_bytes=self._config.sessions.quota or None,
            )
        except StoreError as e:
            # Not on disk, so not granted: a login must survive a restart.
            log.error("could not sign in {mac} ({ip}): {why}", mac=mac, ip=ip, why=str(e))
            if not finished:
                self._message(
                    request,
                    "We could not sign you in",
                    ["The network could not record your sign-in, so you are not online yet.", _TRY_AGAIN],
                    ("/", "Try again"),
                    503,
                )
            return
        if finished:
            return
        if self._enforced is None:
            self._answer_signed_in(request, next_token, ip, finished)
            return
        # Answer once the firewall lets the client out, so that the browser's
        # next request (often the page it wanted) is not intercepted again;
        # but never keep a person waiting long on a slow firewall.
        waiting = self._enforced()
        waiting.addTimeout(ENFORCED_WAIT, self._clock)
        waiting.addErrback(
            lambda failure: log.warn(
                "answering {ip}'s sign-in before the firewall confirmed it: {why}", ip=ip, why=failure.value
            )
        )
        waiting.addCallback(lambda _: self._answer_signed_in(request, next_token, ip, finished))

    def _answer_signed_in(
        self, request: Request, next_token: str | None, ip: str, finished: list[bool]
    ) -> None:
        if finished:
            return
        body = self._signed_in(request, next_token, ip)
        if body is not NOT_DONE_YET:
            request.write(body)
            request.finish()

    def _failed(self, failure: Any, request: Request, finished: list[bool]) -> None:
        log.failure("sign-in failed", failure)
        if not finished:
            self._message(
                request, "Something went wrong", ["Please try again in a moment."], ("/", "Back"), 500
            )

    def _signed_in(self, request: Request, next_token: str | None, ip: str) -> Any:
        destination = self._interception.destination(ip, next_token)
        if destination is not None:
            return self._see_other(request, destination)
        return self._message(
            request,
            "You are online",
            ["You are signed in. You can close this page, or open any website."],
            ("/status", "Your session: time left and sign out"),
        )

    def status(self, request: Request) -> Any:
        ip = client_ip(request)
        mac = self._neighbours.mac_for(ip)
        if mac is None:
            return self._no_lease(request, 200)
        session = self._table.session(mac)
        if session is None:
            return self._see_other(request, "/")
        body = StatusBody(
            self._theme,
            session=session,
            now=self._clock.seconds(),
            warn_before=self._config.sessions.warn_before,
            csrf=self._csrf_token(ip),
            used=self._usage(mac) if self._usage is not None else None,
            extension=self._extension(session.remaining(self._clock.seconds())),
        )
        return self._render(request, "You are online", body, refresh=60)

    def extend(self, request: Request) -> Any:
        ip = client_ip(request)
        back = ("/status", "Back to your session")
        if self._forged(request, ip):
            log.warn("refused an extension form without a valid token from {ip}", ip=ip)
            return self._message(
                request,
                "Please try again",
                ["This form has expired or did not come from this portal. Nothing was changed."],
                back,
                403,
            )
        mac = self._neighbours.mac_for(ip)
        if mac is None:
            return self._no_lease(request, 403)
        session = self._table.session(mac)
        if session is None:
            return self._message(
                request,
                "You are not signed in",
                ["Your session has already ended, so there is nothing to extend. Sign in again."],
                ("/", "Sign in"),
                409,
            )
        extension = self._extension(session.remaining(self._clock.seconds()))
        if extension is None:
            why = (
                "Sessions on this network cannot be extended."
                if not self._config.sessions.extendable or session.expires is None
                else "Your session has plenty of time left; you can extend it later."
            )
            return self._message(request, "Your session was not extended", [why], back, 403)
        try:
            extended = self._table.extend(mac, extension)
        except StoreError as e:
            log.error("could not extend {mac}'s session: {why}", mac=mac, why=str(e))
            return self._message(
                request,
                "We could not extend your session",
                ["The network could not record the extension; your session ends as before.", _TRY_AGAIN],
                back,
                503,
            )
        remaining = extended.remaining(self._clock.seconds()) if extended is not None else None
        left = "" if remaining is None else f" You now have {describe_duration(remaining)} left."
        return self._message(request, "Your session was extended", [f"Thank you.{left}"], back)

    def logout(self, request: Request) -> Any:
        ip = client_ip(request)
        if self._forged(request, ip):
            log.warn("refused a sign-out form without a valid token from {ip}", ip=ip)
            return self._message(
                request,
                "Please try again",
                ["This form has expired or did not come from this portal. You are still signed in."],
                ("/status", "Back to your session"),
                403,
            )
        mac = self._neighbours.mac_for(ip)
        if mac is not None:
            self._table.deauthorize(mac, EndReason.LOGOUT)
        return self._message(
            request, "You are signed out", ["This device no longer has access."], ("/", "Sign in again")
        )

    def not_found(self, request: Request) -> Any:
        return self._message(
            request, "Page not found", ["There is no such page here."], ("/", "Sign in"), 404
        )


class _Page(Resource):
    """One portal page: GET/HEAD and POST go to the given methods."""

    isLeaf = True

    def __init__(self, portal: Portal, get: Any = None, post: Any = None) -> None:
        super().__init__()
        self._portal = portal
        self._get = get
        self._post = post

    def render(self, request: Request) -> Any:
        if request.postpath not in ([], [b""]):
            return self._portal.not_found(request)
        if request.method in (b"GET", b"HEAD") and self._get is not None:
            return self._get(request)
        if request.method == b"POST" and self._post is not None:
            return self._post(request)
        allowed = [b"GET", b"HEAD"] if self._get else []
        allowed += [b"POST"] if self._post else []
        request.setResponseCode(405)
        request.setHeader(b"Allow", b", ".join(allowed))
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"Method not allowed\n"


class StaticFiles(Resource):
    """The theme's static files, with validators (ETag, Last-Modified) and an hour of caching."""

    def __init__(self, theme: Theme, portal: Portal) -> None:
        super().__init__()
        self._theme = theme
        self._portal = portal

    def getChild(self, name: bytes, request: Request) -> Resource:
        path = self._theme.static_file(name.decode("utf-8", "replace")) if not request.postpath else None
        if path is None:
            return _Page(self._portal, get=self._portal.not_found)
        return _StaticFile(path)


class _StaticFile(Resource):
    """
    One small file (a stylesheet, a logo), read whole at each request: no
    producer to pump, and an edit to a theme shows at the next reload.
    """

    isLeaf = True

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path

    def render_GET(self, request: Request) -> bytes:
        try:
            stat = self._path.stat()
            content = self._path.read_bytes()
        except OSError:
            request.setResponseCode(404)
            return b""
        request.setHeader(b"Cache-Control", f"public, max-age={STATIC_MAX_AGE}".encode())
        kind = mimetypes.guess_type(self._path.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("image/svg+xml", "application/javascript"):
            kind += "; charset=utf-8"
        request.setHeader(b"Content-Type", kind.encode())
        tag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'.encode()
        if request.setETag(tag) is CACHED or request.setLastModified(stat.st_mtime) is CACHED:
            return b""
        return content

    render_HEAD = render_GET


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
        if response.answer is Answer.ONLINE:
            # As the front door does: this connection was opened for another
            # site before signing in; the next request must connect anew.
            request.setHeader(b"connection", b"close")
            request.channel.persistent = False
        return response.body


class PortalRoot(Resource):
    """The portal's own Host gets the pages; every other Host is intercepted."""

    def __init__(self, portal: Portal, interception: Interception, theme: Theme) -> None:
        super().__init__()
        self._interception = interception
        self._intercepted = InterceptedRequest(interception)
        self._pages = Resource()
        self._pages.putChild(b"", _Page(portal, get=portal.landing))
        self._pages.putChild(b"login", _Page(portal, post=portal.login))
        self._pages.putChild(b"status", _Page(portal, get=portal.status))
        self._pages.putChild(b"logout", _Page(portal, post=portal.logout))
        self._pages.putChild(b"extend", _Page(portal, post=portal.extend))
        self._pages.putChild(b"static", StaticFiles(theme, portal))
        self._not_found = _Page(portal, get=portal.not_found, post=portal.not_found)

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        if not self._interception.is_portal_host(request.getHeader(b"host")):
            return self._intercepted
        for name, value in COMMON_HEADERS:
            request.setHeader(name, value)
        request.setHeader(b"Content-Security-Policy", PORTAL_CSP)
        return self._pages.children.get(path, self._not_found)

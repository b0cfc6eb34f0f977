"""The web part of portald, composed from the configuration: its TCP listener (and one on portal.address6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application.internet import SSLServer, TCPServer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from portald.auth.interface import IAuthenticator
from portald.auth.methods import ways_for
from portald.config import Config
from portald.learning6 import IPv6Learner, LearnFirst
from portald.neighbours import Neighbours
from portald.refusals import Refusals
from portald.table import AuthorizationTable
from portald.web.channel import PortalSite
from portald.web.forms import FormGuard
from portald.web.frontdoor import ConnectionLimits, FrontDoorFactory
from portald.web.intercept import Interception
from portald.web.portal import NO_HOOKS, LastEnding, Portal, PortalHooks, Usage
from portald.web.replies import Replies
from portald.web.root import PortalRoot
from portald.web.theme import load_theme
from portald.web.tokens import Signer

if TYPE_CHECKING:
    # Imported where TLS is on only: it brings pyOpenSSL (portald.tap.leave_tls_unloaded).
    from portald.web.tls import PortalTLS

log = Logger()

# How long twisted.web keeps a quiet connection (its default is 12 hours).
CHANNEL_TIMEOUT = 30


class PortalWeb:
    """The interception and the portal pages, wired together (no socket yet)."""

    def __init__(
        self,
        config: Config,
        table: AuthorizationTable,
        neighbours: Neighbours,
        reactor: IReactorTime,
        hooks: PortalHooks = NO_HOOKS,
        refusals: Refusals | None = None,
        vouchers: IAuthenticator | None = None,
        radius: IAuthenticator | None = None,
    ) -> None:
        # The voucher and RADIUS ways in, when the portal may offer them (built outside the web).
        self._vouchers = vouchers
        self._radius = radius
        # What the web refused (bodies, slow heads, guesses, ...): portald's
        # one count when given, else this web's own.
        self.refusals = refusals if refusals is not None else Refusals(reactor)
        theme = load_theme(config)
        signer = Signer(reactor)
        replies = Replies(theme, config.portal.venue)
        self.interception = Interception(config, table, neighbours, signer, theme, reactor)
        self.portal = Portal(
            config,
            table,
            neighbours,
            reactor,
            ways_for(config, vouchers, radius),
            self.interception,
            replies,
            FormGuard(config, signer, replies, self.refusals),
            hooks,
            self.refusals,
        )
        self.root = PortalRoot(self.portal)
        self.site = PortalSite(
            self.root,
            self.interception,
            self.refusals,
            reactor,
            max_body_bytes=config.http.max_body_bytes,
            request_timeout=config.http.request_timeout,
            timeout=CHANNEL_TIMEOUT,
        )
        self.factory = FrontDoorFactory(
            self.interception,
            self.site,
            reactor,
            self.refusals,
            ConnectionLimits(
                request_timeout=config.http.request_timeout,
                max_connections=config.http.max_connections,
                max_connections_per_client=config.http.max_connections_per_client,
            ),
        )

    def reconfigure(self, config: Config) -> None:
        """
        A reloaded configuration's pages: its theme (read again, so that an
        edited template shows), venue, terms, probes and sign-in method.
        The listener, its address and its bounds stay as they were.

        @raise ConfigError: the theme cannot be used; nothing was changed.
        """
        theme = load_theme(config)
        self.interception.reconfigure(config, theme)
        self.portal.replies.theme = theme
        self.portal.reconfigure(config, ways_for(config, self._vouchers, self._radius))


class HTTPService(TCPServer):
    """
    The HTTP listener on C{http.listen}:C{http.port}.  TCPServer opens it in
    privilegedStartService, before twistd drops root.
    """

    name = "http"

    def __init__(
        self,
        web: PortalWeb,
        port: int,
        interface: str,
        reactor: IReactorTCP,
        learner: IPv6Learner | None = None,
    ) -> None:
        super().__init__(port, _learning(web, interface, learner), interface=interface, reactor=reactor)
        self.web = web

    def stopService(self) -> Any:
        result = super().stopService()
        self.web.interception.log.flush()
        log.info("since start: {summary}", summary=self.web.interception.summary())
        return result


def _learning(web: PortalWeb, interface: str, learner: IPv6Learner | None) -> Factory:
    """The portal's connections; on an IPv6 listener, an unknown guest's wait until the kernel was asked."""
    if learner is not None and ":" in interface:
        return LearnFirst(web.factory, learner)
    return web.factory


def ipv6_listener(
    config: Config, web: HTTPService, reactor: IReactorTCP, learner: IPv6Learner | None
) -> TCPServer | None:
    """The portal on C{portal.address6} too, when C{http.listen} does not cover it."""
    address = config.http_listen6
    if address is None:
        return None
    listener = TCPServer(
        config.http.port, _learning(web.web, str(address), learner), interface=str(address), reactor=reactor
    )
    listener.setName("http6")
    return listener


def https_listeners(
    config: Config, web: HTTPService, tls: PortalTLS | None, reactor: IReactorTCP, learner: IPv6Learner | None
) -> list[SSLServer]:
    """The portal over HTTPS (C{http.tls}) on the same addresses as HTTP: its own name only."""
    if tls is None or config.http.tls is None:
        return []
    addresses = [config.http_listen] + ([config.http_listen6] if config.http_listen6 is not None else [])
    listeners = []
    for index, address in enumerate(addresses):
        listener = SSLServer(
            config.http.tls.port,
            _learning(web.web, str(address), learner),
            tls,
            interface=str(address),
            reactor=reactor,
        )
        listener.setName("https" if index == 0 else "https6")
        listeners.append(listener)
    return listeners


def web_service(
    config: Config,
    table: AuthorizationTable,
    neighbours: Neighbours,
    reactor: IReactorTime,
    usage: Usage | None = None,
    enforced: Callable[[], Deferred[None]] | None = None,
    last_ending: LastEnding | None = None,
    refusals: Refusals | None = None,
    learner: IPv6Learner | None = None,
    vouchers: IAuthenticator | None = None,
    radius: IAuthenticator | None = None,
) -> HTTPService:
    """
    The web part on C{reactor} (its clock, and its TCP for the listener);
    the optional parts are those of L{PortalHooks}.
    """
    hooks = PortalHooks(usage, enforced, last_ending)
    web = PortalWeb(config, table, neighbours, reactor, hooks, refusals, vouchers, radius)
    return HTTPService(web, config.http.port, str(config.http_listen), reactor, learner)  # type: ignore[arg-type]

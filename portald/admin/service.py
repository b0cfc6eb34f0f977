"""The admin page's listener on C{admin.listen}: plain HTTP, or HTTPS with C{admin.tls}."""

from __future__ import annotations

from twisted.application.internet import SSLServer, TCPServer
from twisted.application.service import IService, MultiService
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.logger import Logger
from twisted.web.server import Site

from portald.admin.accounts import StaffAccounts
from portald.admin.site import AdminParts, AdminSite, Verify
from portald.admin.staff import StaffSessions
from portald.config import Config
from portald.threads import in_thread_pool

log = Logger()


def off_the_reactor(reactor: IReactorThreads) -> Verify:
    """Password checks in the reactor's thread pool: scrypt takes tens of milliseconds on purpose."""
    offload = in_thread_pool(reactor)
    return lambda hashed, password: offload(lambda: hashed.matches(password))


class AdminService(MultiService):
    """The admin page's site and its listener (and the certificate's watch, over HTTPS)."""

    name = "admin"

    def __init__(self, config: Config, parts: AdminParts, reactor: IReactorTime, verify: Verify) -> None:
        super().__init__()
        settings = config.admin
        assert settings.listen is not None
        self.accounts = StaffAccounts(settings.users_file)
        self.sessions = StaffSessions(reactor, settings.session_lifetime, settings.idle_timeout)
        self.site = AdminSite(
            parts, self.accounts, self.sessions, verify, reactor, secure=settings.tls is not None
        )
        web = Site(self.site)
        # Staff's actions are logged by name; twisted.web's access lines would add only noise.
        web.log = lambda request: None  # type: ignore[method-assign]
        self._url = config.admin_url
        listen = settings.listen
        listener: IService
        if settings.tls is not None:
            # Raises the keyed ConfigError at start: no admin page with a broken certificate.
            from portald.web.tls import PortalTLS  # pyOpenSSL only where TLS is on

            tls = PortalTLS(settings.tls, None, reactor, section="admin.tls")
            tls.setServiceParent(self)
            listener = SSLServer(listen.port, web, tls, interface=str(listen.host), reactor=reactor)
        else:
            listener = TCPServer(listen.port, web, interface=str(listen.host), reactor=reactor)
        listener.setName("admin-listener")
        listener.setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        names = ", ".join(sorted(self.accounts.current().hashes)) or "none yet"
        log.info(
            "admin page at {url} (staff accounts in {path}: {names})",
            url=self._url,
            path=str(self.accounts.path),
            names=names,
        )

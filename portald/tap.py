"""
``twistd portald``: command-line options and the service tree.

The configuration is loaded and validated in L{Options.postOptions}, which
twistd runs before it daemonizes, so a broken file stops the daemon with a
message that names the key instead of failing in the background.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.logger import Logger
from twisted.python import usage

from portald import __version__
from portald.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from portald.dns.server import DNSService
from portald.firewall import make_firewall
from portald.leases.watcher import LeaseWatcher, make_notifier, watched_files
from portald.limits import ActivityTracker, SessionLimits
from portald.neighbours import Neighbours
from portald.store import SessionStore, StoreError
from portald.table import AuthorizationTable, SessionLog
from portald.web.service import web_service
from portald.welcome import WelcomeService

log = Logger()


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = (
        "Run portald, the captive portal: a DNS server that sends unauthorized "
        "clients to the portal, the portal's web pages, a DHCP-lease watcher "
        "and firewall enforcement, all configured by one YAML file. "
        "The file is validated before the daemon starts."
    )
    optFlags = [
        ["check", None, "Validate the configuration file, say whether it is OK, and exit."],
    ]
    optParameters = [
        ["config", "c", DEFAULT_CONFIG_PATH, "The YAML configuration file (see etc/portald.yaml)."],
    ]

    def opt_version(self) -> None:
        """Print portald's version and exit."""
        print(f"portald {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        try:
            self.config: Config = load_config(self["config"])
        except ConfigError as e:
            # Not a UsageError: twistd would print its whole help text above
            # it, burying the one line that says what is wrong.
            raise SystemExit(f"portald: configuration error: {e}") from None
        if self["check"]:
            print(f"{self['config']}: configuration OK")
            sys.exit(0)


class PortalService(MultiService):
    """
    The whole portal: the shared table and neighbour map, and every service
    that asks or observes them.
    """

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        # Opened here, before twistd daemonizes, so that a database that
        # cannot be read stops portald with a message instead of starting
        # it with an empty table.
        self.store = SessionStore.open(config.state.database)
        # Read now too, so that a database that cannot be read stops portald
        # with its message before it starts; put in the table at start.
        self._to_restore = self.store.restorable(reactor.seconds())
        self.table = AuthorizationTable(reactor, journal=self.store)
        self.table.add_observer(SessionLog())
        self.neighbours = Neighbours()
        self.leases = LeaseWatcher(
            watched_files(config.leases.sources),
            self.neighbours,
            reactor,
            notifier=lambda: make_notifier(reactor),
            debounce=config.leases.debounce,
            poll_interval=config.leases.poll_interval,
            neighbour_fallback=config.leases.neighbour_fallback,
            # A signed-in device whose lease moved is counted at its new address.
            on_update=lambda leases: self.firewall.addresses_changed(self.neighbours.ips_for),
        )
        self.leases.setServiceParent(self)
        self.activity = ActivityTracker()
        self.table.add_observer(self.activity)
        # Enforcement: started before the listeners, loaded from the table
        # once the stored sessions are back in it.
        self.firewall = make_firewall(config, self.table, reactor)
        self.table.add_observer(self.firewall)
        self.firewall.setServiceParent(self)
        # The kernel's per-MAC byte counters when there is a firewall to
        # count them; portald's own view of DNS and web activity otherwise.
        traffic = self.firewall if config.firewall.backend == "nftables" else self.activity
        self.limits = SessionLimits(self.table, traffic, reactor, config.sessions.sample_interval)
        self.limits.setServiceParent(self)
        self.store.usage = self.limits.usage
        self._restored = False
        # DNS tells the firewall where walled-garden names point.
        self.dns = DNSService(
            config,
            reactor,
            self.table,
            self.neighbours,
            on_walled_garden_answer=self.firewall.on_walled_garden_answer,
            on_activity=self.activity.saw if traffic is self.activity else None,
        )
        self.dns.setServiceParent(self)
        WelcomeService(config, reactor).setServiceParent(self)
        web_service(
            config,
            self.table,
            self.neighbours,
            reactor,
            usage=self.limits.usage,
            enforced=self.firewall.applied,
            last_ending=self.store.last_ending,
        ).setServiceParent(self)

    def restore_sessions(self) -> None:
        """
        Put the stored sessions back in the table (and so into the firewall)
        before any listener answers anyone.
        """
        if self._restored:
            return
        self._restored = True
        sessions, self._to_restore = self._to_restore, []
        # restore() declines one that ended since the database was read.
        restored = sum(self.table.restore(session) for session in sessions)
        if restored:
            log.info("restored {count} session(s) from {path}", count=restored, path=str(self.store.path))

    def privilegedStartService(self) -> None:
        self.restore_sessions()
        super().privilegedStartService()

    def startService(self) -> None:
        self.restore_sessions()
        super().startService()

    def stopService(self) -> Any:
        d = defer.maybeDeferred(super().stopService)
        d.addBoth(lambda result: (self.store.close(), result)[1])
        return d


def build_service(config: Config, reactor: IReactorTime | IReactorCore) -> PortalService:
    """Compose every part of portald from one validated L{Config}."""
    return PortalService(config, reactor)


def makeService(options: Options) -> MultiService:
    from twisted.internet import reactor

    try:
        return build_service(options.config, reactor)
    except StoreError as e:
        raise SystemExit(f"portald: {e}") from None

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
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.python import usage

from portald import __version__
from portald.clients import AuthorizationTable, Neighbours, SessionLog
from portald.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from portald.web.service import web_service
from portald.welcome import WelcomeService


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = (
        "Run portald, the captive portal: a DNS server that sends unauthorized "
        "clients to the portal, the portal's web pages, a DHCP-lease watcher "
        "and firewall enforcement, all configured by one YAML file. "
        "The file is validated before the daemon starts."
    )
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


class PortalService(MultiService):
    """
    The whole portal: the shared table and neighbour map, and every service
    that asks or observes them.
    """

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.table = AuthorizationTable(reactor)
        self.table.add_observer(SessionLog())
        self.neighbours = Neighbours()
        WelcomeService(config, reactor).setServiceParent(self)
        web_service(config, self.table, self.neighbours, reactor).setServiceParent(self)


def build_service(config: Config, reactor: IReactorTime | IReactorCore) -> PortalService:
    """Compose every part of portald from one validated L{Config}."""
    return PortalService(config, reactor)


def makeService(options: Options) -> MultiService:
    from twisted.internet import reactor

    return build_service(options.config, reactor)

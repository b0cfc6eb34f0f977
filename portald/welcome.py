"""What to try: logged once at start, so a new user knows where to look."""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger

from portald.admin.accounts import AccountsError, read_accounts
from portald.config import DEFAULT_CONFIG_PATH, Config

log = Logger()


def ctl_command() -> str:
    """How to run portald-ctl from here: beside the running twistd (the venv's), or on the PATH."""
    beside = Path(sys.argv[0]).parent / "portald-ctl"
    return str(beside) if beside.exists() else "portald-ctl"


def what_to_try(config: Config, ctl: str = "portald-ctl") -> list[str]:
    """Commands a person can paste to see this portal work."""
    dns = config.dns_listen[0]
    http = config.http_listen
    port = config.http.port
    host = f"[{http}]" if http.version == 6 else str(http)
    return (
        [
            f"DNS:   dig @{dns} -p {config.dns.port} anything.example A   (unauthorized: the portal's address)",
            f"DNS:   dig @{dns} -p {config.dns.port} use-application-dns.net   (NXDOMAIN)",
            f"HTTP:  curl -i -H 'Host: example.com' http://{host}:{port}/   (511 Network Authentication Required)",
            f"Probe: curl -i -H 'Host: connectivitycheck.gstatic.com' http://{host}:{port}/generate_204   (302 to the portal)",
            f"Staff: {ctl} --config {config.source or DEFAULT_CONFIG_PATH} clients   (who is signed in; also status, auth, deauth)",
        ]
        + (
            [f"Metrics: curl http://{config.metrics.listen}/metrics"]
            if config.metrics.listen is not None
            else []
        )
        + (
            [
                f"Vouchers: {ctl} --config {config.source or DEFAULT_CONFIG_PATH} vouchers create --count 3 "
                "--duration 1d   (then type one on the portal)"
            ]
            if any(way.method == "voucher" for way in config.ways_in())
            else []
        )
        + admin_lines(config)
        + [
            f"API:   curl -H 'Host: {config.portal.hostname}' http://{host}:{port}{config.http.api_path}   "
            "(RFC 8908: captive or not, time left)",
            f"Portal: http://{host}:{port}/ with 'Host: {config.portal.hostname}', or open it in a browser",
        ]
    )


def admin_lines(config: Config) -> list[str]:
    """Where the admin page is, and what its accounts file says to try (the development account)."""
    if config.admin_url is None:
        return []
    try:
        notes = read_accounts(config.admin.users_file).notes
    except AccountsError:
        notes = ()
    return [f"Admin: {config.admin_url} in a browser   (staff accounts: portald-ctl admin add-user NAME)"] + [
        f"Admin: {note}" for note in notes
    ]


class WelcomeService(Service):
    name = "welcome"

    def __init__(self, config: Config, reactor: IReactorCore) -> None:
        self._config = config
        self._reactor = reactor

    def startService(self) -> None:
        super().startService()
        # Once the reactor runs: every listener is open by then.
        self._reactor.callWhenRunning(self._welcome)

    def _welcome(self) -> None:
        config = self._config
        log.info(
            "portald for {venue!r}: portal {hostname} at {address}, firewall backend {backend}, "
            "configuration {source}",
            venue=config.portal.venue,
            hostname=config.portal.hostname,
            address=config.portal.address,
            backend=config.firewall.backend,
            source=config.source or "(built in)",
        )
        if not config.dns.upstream:
            log.warn(
                "dns.upstream is empty: signed-in guests' DNS queries will get SERVFAIL; "
                "list your resolvers there"
            )
        for line in what_to_try(config, ctl_command()):
            log.info("try {line}", line=line)

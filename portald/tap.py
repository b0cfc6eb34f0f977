"""
``twistd portald``: command-line options and the service tree.

The configuration is loaded and validated in L{Options.postOptions}, which
twistd runs before it daemonizes, so a broken file stops the daemon with a
message that names the key instead of failing in the background.
"""

from __future__ import annotations

import datetime
import gc
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.application.service import IService, MultiService
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python import usage

from portald import __version__
from portald.admin.accounts import Accounts, AccountsError, read_accounts
from portald.admin.service import AdminService, off_the_reactor
from portald.admin.site import AdminParts
from portald.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from portald.control.api import ControlAPI, Enforcement
from portald.control.operations import Operations, Sources, store_health
from portald.control.socket import ControlSocketError, ControlSocketService
from portald.control.vouchers import VoucherOperations
from portald.dns.service import DNSService
from portald.filelimit import files_needed, raise_open_file_limit
from portald.firewall.interface import IFirewall
from portald.firewall.shaping import Shaper
from portald.learning6 import IPv6Learner
from portald.leases.notifier import make_notifier
from portald.leases.watcher import LeaseWatcher, watched_files
from portald.limits import ActivityTracker, SessionLimits, UsageLedger
from portald.logs import set_format, write_where_twistd_writes
from portald.metrics.endings import SessionEndCounts
from portald.metrics.lag import ReactorLag
from portald.neighbours import Neighbours
from portald.radius.queue import QueueError
from portald.refusals import Refusals
from portald.reload import Applier, Reloader, ReloadOnHangup
from portald.store import SessionStore, StoreError
from portald.table import AllowedDevice, AuthorizationTable, Session, SessionLog
from portald.vouchers.book import VoucherBook
from portald.vouchers.codes import KeyFileError, VoucherKey
from portald.vouchers.method import VoucherMethod
from portald.vouchers.sheet import Slip
from portald.web.service import HTTPService, https_listeners, ipv6_listener, web_service
from portald.web.theme import load_theme
from portald.welcome import WelcomeService

if TYPE_CHECKING:
    from portald.radius.service import RadiusService

log = Logger()

# The running reactor: portald needs its time, its start and stop, processes
# (nft) and sockets; it is typed by the first, the one every part takes.
PortalReactor = IReactorTime


def check_warnings(config: Config) -> list[str]:
    """What C{--check} points out in a file that loads: things that work, but not as a phone expects."""
    warnings = []
    if config.http.tls is None:
        warnings.append(
            "http.tls is not set: phones use the Captive Portal API (DHCP option 114) only over HTTPS, "
            "so they will find the portal by their probes alone"
        )
    if len(config.captive_api_url.encode()) > 255:
        warnings.append(
            f"the Captive Portal API's URI is over 255 bytes, too long for DHCP: {config.captive_api_url}"
        )
    if config.admin.listen is not None and not staff_accounts(config).hashes:
        warnings.append(
            f"no staff account in {config.admin.users_file}: make one with portald-ctl admin add-user NAME"
        )
    if (
        config.admin.listen is not None
        and config.admin.tls is None
        and not config.admin.listen.host.is_loopback
    ):
        warnings.append("admin.tls is not set: staff passwords cross the network in clear text")
    if not any(address == config.portal.address or address.is_unspecified for address in config.dns_listen):
        warnings.append(
            f"portald's DNS does not listen on portal.address, so a guest asking another resolver may not "
            f"find {config.portal.hostname}: hand out {config.portal.address} as the DNS server"
        )
    return warnings


def staff_accounts(config: Config) -> Accounts:
    """The admin page's accounts, read as a start reads them.

    @raise ConfigError: keyed C{admin.users_file}, when the file cannot be used.
    """
    try:
        return read_accounts(config.admin.users_file)
    except AccountsError as e:
        raise ConfigError(str(e), key="admin.users_file") from None


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
            load_theme(self.config)  # a broken template is the file's error too
            now = datetime.datetime.now(datetime.UTC)
            if self.config.http.tls is not None or self.config.admin.tls is not None:
                from portald.web.tls import load_certificate
            if self.config.http.tls is not None:
                # So is a certificate that cannot serve portal.hostname now.
                load_certificate(self.config.http.tls, self.config.portal.hostname, now)
            if self.config.admin.listen is not None:
                if self.config.admin.tls is not None:
                    load_certificate(self.config.admin.tls, None, now, "admin.tls")
                staff_accounts(self.config)
        except ConfigError as e:
            # Not a UsageError: twistd would print its whole help text above
            # it, burying the one line that says what is wrong.
            raise SystemExit(f"portald: configuration error: {e}") from None
        if self["check"]:
            for warning in check_warnings(self.config):
                print(f"{self['config']}: warning: {warning}")
            print(f"{self['config']}: configuration OK")
            sys.exit(0)
        # twistd starts its logger after this, from its own options: portald's
        # observer writes where its text would have (in log.format, which a
        # reload may change), unless --logger or --syslog says otherwise.
        server = getattr(self, "parent", None)
        if server is not None and not server.get("logger") and not server.get("syslog"):
            server["logger"] = write_where_twistd_writes(
                server.get("logfile"), bool(server.get("nodaemon")), self.config.log.format
            )


class PortalService(MultiService):
    """
    The whole portal: the shared table, and every service that asks or
    observes it, as L{build_service} composed them.  Its own work is to put
    the stored sessions back in the table before any listener answers, and
    to close the store last.
    """

    def __init__(
        self,
        *,
        table: AuthorizationTable,
        neighbours: Neighbours,
        store: SessionStore,
        to_restore: list[Session],
        activity: ActivityTracker,
        firewall: IFirewall,
        limits: SessionLimits,
        services: list[IService],
    ) -> None:
        super().__init__()
        self.table = table
        self.neighbours = neighbours
        self.store = store
        self.activity = activity
        self.firewall = firewall
        self.limits = limits
        self._to_restore = to_restore
        for service in services:
            service.setServiceParent(self)

    def restore_sessions(self) -> None:
        """
        Put the stored sessions back in the table (and so into the firewall)
        before any listener answers anyone.  Once: the second call finds
        nothing left to restore.
        """
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
        # What start made (modules, the restored table, the first leases) is
        # kept for good: moved out of the collector's sight, so that its full
        # passes (which hold every thread, the reactor's too) walk only what
        # came after.  Under lease churn this cut the longest stall by 15-40 ms.
        gc.freeze()

    def stopService(self) -> Deferred[None]:
        d = defer.maybeDeferred(super().stopService)
        d.addBoth(lambda result: (self.store.close(), result)[1])
        return d


def firewall_for(config: Config, table: AuthorizationTable, reactor: PortalReactor) -> IFirewall:
    """The configured enforcement backend, not yet started nor observing C{table}."""
    if config.firewall.backend == "nftables":
        from portald.firewall.nftables import NftablesFirewall
        from portald.firewall.process import SpawnedProcessRunner
        from portald.threads import in_thread_pool

        return NftablesFirewall(
            config, table, reactor, SpawnedProcessRunner(reactor), offload=in_thread_pool(reactor)
        )
    from portald.firewall.none import NoFirewall

    return NoFirewall()


def shaper_for(config: Config, table: AuthorizationTable, reactor: PortalReactor) -> Shaper | None:
    """Per-device rates, when any are configured (the configuration checked they can be shaped)."""
    if not config.shapes:
        return None
    from portald.firewall.process import SpawnedProcessRunner

    return Shaper(config, table, reactor, SpawnedProcessRunner(reactor))


def radius_service(
    config: Config,
    reactor: PortalReactor,
    table: AuthorizationTable,
    usage: Callable[[str], tuple[int, int] | None],
) -> RadiusService | None:
    """The RADIUS side, when radius.servers names any (pyrad is imported only then)."""
    if not config.radius.servers:
        return None
    from portald.radius.service import RadiusService

    return RadiusService(config, reactor, table, usage)


def leases_updated(firewall: IFirewall, neighbours: Neighbours, radius: RadiusService | None = None) -> None:
    """What the firewall (and RADIUS' MAC authentication) does when the leases change."""
    # A signed-in device whose lease moved is counted at its new address.
    firewall.addresses_changed(neighbours.ips_for)
    # Only the device an address was leased to may send from it.
    firewall.leases_changed(neighbours.snapshot())
    if radius is not None and radius.mac_auth is not None:
        radius.mac_auth.leases_changed(neighbours.snapshot())


def reload_appliers(
    table: AuthorizationTable,
    firewall: IFirewall,
    dns: DNSService,
    web: HTTPService,
    operations: Operations,
    book: VoucherBook,
    voucher_desk: VoucherOperations,
) -> list[Applier]:
    """Who takes what of a reloaded configuration (only the reload's live keys differ)."""

    def dns_settings(config: Config) -> None:
        dns.factory.policy.set_walled_garden(config.dns.walled_garden)
        dns.forwarder.set_upstreams(config.dns.upstream, config.dns.upstream_timeout)

    def staff_defaults(config: Config) -> None:
        operations.session_timeout = config.session_timeout()

    def vouchers(config: Config) -> None:
        book.when_full = config.vouchers.when_full
        voucher_desk.slip = Slip.from_config(config)

    def log_format(config: Config) -> None:
        if not set_format(config.log.format):
            log.warn("log.format stays as twistd's --logger or --syslog set it")

    return [
        lambda config: table.set_configured_allowed(config.firewall.allowed_macs),
        firewall.reconfigure,
        dns_settings,
        web.web.reconfigure,
        staff_defaults,
        vouchers,
        log_format,
    ]


def admin_service(
    config: Config,
    operations: Operations,
    voucher_desk: VoucherOperations,
    firewall: IFirewall,
    store: SessionStore,
    web: HTTPService,
    reactor: PortalReactor,
) -> AdminService:
    """The staff's web page: the control API's operations behind a sign-in."""
    portal = web.web.portal
    parts = AdminParts(
        operations=operations,
        vouchers=voucher_desk,
        enforcement=Enforcement(firewall.applied, reactor),
        history=store.sessions_between,
        intercepts=lambda: {answer.value: count for answer, count in web.web.interception.counts.items()},
        logins=lambda: portal.logins + operations.logins,
        venue=lambda: portal.replies.venue,
    )
    return AdminService(config, parts, reactor, off_the_reactor(reactor))  # type: ignore[arg-type]


def build_service(config: Config, reactor: PortalReactor) -> PortalService:
    """
    Compose every part of portald from one validated L{Config}: each part
    built once its dependencies are, nothing assigned after construction,
    and every observer of the table subscribed in one place, below.

    @raise StoreError: if the session database cannot be opened or read.
    @raise KeyFileError: if the voucher key cannot be read or made.
    """
    # What each session has used: the limits fill it, the store writes it
    # when a session ends.
    ledger = UsageLedger(reactor)
    # Opened and read now, before twistd daemonizes, so that a database that
    # cannot be read stops portald with its message instead of starting it
    # with an empty table.  The sessions go into the table at start.
    store = SessionStore.open(config.state.database, usage=ledger.usage)
    to_restore = store.restorable(reactor.seconds())
    # Always allowed: the file's list, then those staff let in (kept in the store).
    allowed = [AllowedDevice(mac, "config") for mac in config.firewall.allowed_macs]
    allowed += [
        device for device in store.allowed_devices() if device.mac not in config.firewall.allowed_macs
    ]
    table = AuthorizationTable(reactor, journal=store, allowed=allowed)
    # Vouchers: kept in the store, their codes hashed with a key of their own.
    book = VoucherBook(
        store, table, reactor, VoucherKey.load_or_create(config.voucher_key_file), config.vouchers.when_full
    )
    neighbours = Neighbours()
    # Every input bound, DNS's and the web's, counts its refusals here.
    refusals = Refusals(reactor)
    activity = ActivityTracker()
    firewall = firewall_for(config, table, reactor)
    # Who sent from an IPv6 address (devices make those themselves): the kernel saw it.
    learner = IPv6Learner(neighbours, firewall.ipv6_devices, reactor, config.portal.subnets)
    # The kernel's per-MAC byte counters when the firewall counts them;
    # portald's own view of DNS and web activity otherwise.
    counted_by_portald = not firewall.counts_traffic
    limits = SessionLimits(
        table,
        activity if counted_by_portald else firewall,
        reactor,
        config.sessions.sample_interval,
        ledger,
        pools=book,
    )
    # RADIUS when servers are configured: the way in, accounting, Disconnect and CoA.
    radius = radius_service(config, reactor, table, ledger.usage)
    leases = LeaseWatcher(
        watched_files(config.leases.sources),
        neighbours,
        reactor,
        notifier=lambda: make_notifier(reactor),
        debounce=config.leases.debounce,
        poll_interval=config.leases.poll_interval,
        neighbour_fallback=config.leases.neighbour_fallback,
        on_update=lambda leases: leases_updated(firewall, neighbours, radius),
        offload=reactor,  # type: ignore[arg-type]
    )
    # The metrics registry first: the forwarder observes into its histogram.
    # prometheus_client is imported only when metrics are on (14 MB otherwise spent for nothing).
    registry, upstream_seconds = None, None
    if config.metrics.listen is not None:
        from portald.metrics.collector import new_registry

        registry, upstream_seconds = new_registry()
    dns = DNSService(
        config,
        reactor,
        table,
        neighbours,
        # DNS tells the firewall where walled-garden names point.
        on_walled_garden_answer=firewall.on_walled_garden_answer,
        on_activity=activity.saw if counted_by_portald else None,
        refusals=refusals,
        on_upstream_answer=upstream_seconds.observe if upstream_seconds is not None else None,
        learner=learner,
    )
    web = web_service(
        config,
        table,
        neighbours,
        reactor,
        usage=ledger.usage,
        enforced=firewall.applied,
        last_ending=store.last_ending,
        refusals=refusals,
        learner=learner,
        vouchers=VoucherMethod(book),
        radius=radius.method if radius is not None else None,
    )
    lag = ReactorLag(reactor)
    endings = SessionEndCounts()
    shaper = shaper_for(config, table, reactor)
    operations = Operations(
        table,
        neighbours,
        reactor,
        Sources(
            leases=leases.leases,
            usage=ledger.of,
            health=(
                ("firewall", firewall.health),
                ("leases", leases.health),
                ("upstreams", lambda: [upstream.as_dict() for upstream in dns.forwarder.health]),
                ("store", store_health(store.path, lambda: store.longest_write)),
                ("reactor", lambda: {"lag_seconds": round(lag.last, 4), "stalls": lag.stalls}),
                *((("radius", radius.health),) if radius is not None else ()),
            ),
            rates=shaper.rates_of if shaper is not None else None,
        ),
        session_timeout=config.session_timeout(),
    )
    # Staff's commands are answered once the firewall has them, as sign-ins are.
    voucher_desk = VoucherOperations(book, reactor, Slip.from_config(config), shapes=shaper is not None)
    api = ControlAPI(operations, Enforcement(firewall.applied, reactor), voucher_desk)
    control = ControlSocketService(config.control, api, reactor)
    if radius is not None:
        radius.add_das(operations)
    services: list[IService] = [
        leases,
        firewall,
        *([shaper] if shaper is not None else []),
        *([radius] if radius is not None else []),
        limits,
        lag,
        dns,
        WelcomeService(config, reactor),
        web,
        control,
    ]
    web6 = ipv6_listener(config, web, reactor, learner)  # type: ignore[arg-type]
    if web6 is not None:
        services.append(web6)
    # HTTPS for the portal's own name; the certificate is checked here, before anything listens.
    tls = None
    if config.http.tls is not None:
        from portald.web.tls import PortalTLS

        tls = PortalTLS(config.http.tls, config.portal.hostname, reactor)
    if tls is not None:
        services.append(tls)
        services.extend(https_listeners(config, web, tls, reactor, learner))  # type: ignore[arg-type]
    if config.source is not None:
        appliers = reload_appliers(table, firewall, dns, web, operations, book, voucher_desk)
        if shaper is not None:
            appliers.append(shaper.reconfigure)
        if tls is not None:
            # A reload reads the certificate files again, changed or not (a renewal's hook may send SIGHUP).
            certificates = tls
            appliers.append(lambda _config: certificates.check(force=True))
        reloader = Reloader(
            config.source.absolute(),
            config,
            appliers,
            # The theme's templates parsed before anything is applied.
            checks=[load_theme],
        )
        api.reloader = reloader
        services.append(ReloadOnHangup(reloader, reactor))
    portal = web.web.portal
    if config.admin.listen is not None:
        services.append(admin_service(config, operations, voucher_desk, firewall, store, web, reactor))
    if registry is not None and config.metrics.listen is not None:
        from portald.metrics.collector import Figures, PortaldCollector
        from portald.metrics.service import MetricsService

        figures = Figures(
            table=table,
            dns=dns.factory,
            intercepts=web.web.interception.counts,
            logins=lambda: portal.logins + operations.logins,
            endings=endings,
            firewall=getattr(firewall, "stats", None),
            leases=leases.health,
            refusals=refusals,
            lag=lag,
            methods=lambda: (*(way.name for way in portal.ways), "staff"),
        )
        registry.register(PortaldCollector(figures))
        services.append(MetricsService(config.metrics.listen, registry, reactor))
    # Every observer of the table, in the order they hear of a change.
    # Accounting hears of an ending before the ledger forgets the session's bytes.
    accounting = [radius.accounting] if radius is not None and radius.accounting is not None else []
    for observer in (
        SessionLog(),
        activity,
        firewall,
        *accounting,
        ledger,
        endings,
        book,
        *([shaper] if shaper else []),
    ):
        table.add_observer(observer)
    return PortalService(
        table=table,
        neighbours=neighbours,
        store=store,
        to_restore=to_restore,
        activity=activity,
        firewall=firewall,
        limits=limits,
        # Started in this order: the leases and the firewall (loaded once
        # the stored sessions are back) before the listeners.
        services=services,
    )


def leave_tls_unloaded(config: Config) -> None:
    """
    With nothing served over TLS, run Twisted as where pyOpenSSL is not
    installed (TLS is an optional extra of Twisted's): its reactor then does
    not load pyOpenSSL and cryptography, 18 MB of RSS, nearly a third of the
    daemon's, on a Pi that never uses them.  Only before the reactor's first
    import (twistd's case); with TLS configured, nothing changes.
    """
    if config.http.tls is None and config.admin.tls is None and "twisted.internet.reactor" not in sys.modules:
        # A None entry makes "import OpenSSL" fail, and every Twisted module
        # that tries it goes on without TLS.
        sys.modules.setdefault("OpenSSL", None)  # type: ignore[arg-type]


def makeService(options: Options) -> MultiService:
    leave_tls_unloaded(options.config)
    from twisted.internet import reactor

    # Room for every connection the limits allow, before any listener opens.
    raise_open_file_limit(files_needed(options.config))
    try:
        return build_service(options.config, reactor)
    except ConfigError as e:
        raise SystemExit(f"portald: configuration error: {e}") from None
    except (StoreError, ControlSocketError, KeyFileError, QueueError) as e:
        raise SystemExit(f"portald: {e}") from None

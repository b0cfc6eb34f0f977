"""The DNS part of portald, composed from the configuration: its listeners, cache and forwarder."""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.internet import TCPServer, UDPServer
from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTCP, IReactorTime, IReactorUDP
from twisted.internet.protocol import DatagramProtocol, ServerFactory
from twisted.logger import Logger

from portald.config import Config
from portald.dns.cache import AnswerCache
from portald.dns.casing import CaseRandomiser, as_asked
from portald.dns.policy import ActivityCallback
from portald.dns.server import PortalDNSFactory, WalledGardenCallback
from portald.dns.upstream import Forwarder
from portald.learning6 import IPv6Learner, LearnFirst, LearningDatagrams
from portald.neighbours import Neighbours
from portald.refusals import Refusals
from portald.table import AuthorizationTable

log = Logger()


class _OpenedWithPrivileges:
    """
    A Twisted server service that opens its port in privilegedStartService
    only.  Twisted's own open it in startService as well when
    privilegedStartService has not run; portald's DNS opens its ports
    before twistd drops root or not at all, as it always has (a service
    tree only started, as some tests do, listens on no DNS port).
    """

    def startService(self) -> None:
        Service.startService(self)  # type: ignore[arg-type]


class _UDPListener(_OpenedWithPrivileges, UDPServer):
    pass


class _TCPListener(_OpenedWithPrivileges, TCPServer):
    pass


class DNSService(MultiService):
    """
    The DNS server on every C{dns.listen} address (UDP and TCP) at
    C{dns.port}: a L{UDPServer} and a L{TCPServer} per address, child
    services that open their ports in privilegedStartService (port 53 needs
    root, which twistd drops afterwards).

    @param reactor: a reactor providing L{IReactorTime}, L{IReactorUDP} and
        L{IReactorTCP} (the union below stands for all three at once).
    @param on_walled_garden_answer: if given, called as
        C{on_walled_garden_answer(addresses, ttl)} with the A and AAAA
        addresses (text) of every upstream answer to a walled-garden name
        (or a subdomain of one), and the seconds the answer stays cached.
        It is how the firewall learns which addresses to let through before
        sign-in.  Called synchronously from the reactor; an exception in it
        is logged and does not affect the answer.
    @param refusals: where what DNS refuses is counted and logged.
    @param on_upstream_answer: if given, told the seconds each upstream
        answer took (the metrics' histogram).
    @param learner: if given, a query to an IPv6 listener from a LAN
        address nobody knows yet waits until the kernel was asked whose it is.
    @param on_activity: if given, called as C{on_activity(mac, received,
        sent)} for each answered query of a signed-in client (bytes of the
        query and of the answer): portald's own view of traffic, for idle
        timeouts and quotas when no firewall counts it.
    """

    name = "dns"

    def __init__(
        self,
        config: Config,
        reactor: IReactorTime | IReactorUDP | IReactorTCP,
        table: AuthorizationTable,
        neighbours: Neighbours,
        on_walled_garden_answer: WalledGardenCallback | None = None,
        on_activity: ActivityCallback | None = None,
        refusals: Refusals | None = None,
        on_upstream_answer: Callable[[float], None] | None = None,
        learner: IPv6Learner | None = None,
    ) -> None:
        super().__init__()
        # What DNS refused (too many TCP connections, ...): portald's one
        # count when given, else the service's own.
        self.refusals = refusals if refusals is not None else Refusals(reactor)
        self.cache = AnswerCache(config.dns.cache_size, config.dns.max_cache_ttl)
        spell = CaseRandomiser().spell if config.dns.randomise_case else as_asked
        self.forwarder = Forwarder(
            reactor,
            config.dns.upstream,
            config.dns.upstream_timeout,
            self.cache,
            spell,
            on_upstream_answer=on_upstream_answer,
        )
        self.factory = PortalDNSFactory(
            config,
            neighbours,
            table,
            self.forwarder,
            reactor,
            on_walled_garden_answer,
            on_activity,
            refusals=self.refusals,
        )
        self._dns_port = config.dns.port
        self._interfaces = [str(address) for address in config.dns_listen]
        for interface in self._interfaces:
            datagrams: DatagramProtocol = self.factory.datagram_protocol()
            streams: ServerFactory = self.factory
            if learner is not None and ":" in interface:
                # Who sent from an IPv6 address is asked of the kernel first.
                datagrams, streams = LearningDatagrams(datagrams, learner), LearnFirst(streams, learner)
            udp = _UDPListener(self._dns_port, datagrams, interface=interface, reactor=reactor)
            udp.setServiceParent(self)
            tcp = _TCPListener(self._dns_port, streams, interface=interface, reactor=reactor)
            tcp.setServiceParent(self)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        for interface in self._interfaces:
            log.info("DNS on {address} port {port} (UDP and TCP)", address=interface, port=self._dns_port)

    def stopService(self) -> defer.Deferred:
        listeners = super().stopService()
        return defer.gatherResults([listeners, self.forwarder.stop()])

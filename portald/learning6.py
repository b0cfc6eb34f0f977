"""
Which device is behind an IPv6 address.

Leases name IPv4 addresses; a device makes its IPv6 addresses itself (SLAAC,
a new privacy address every few hours).  The kernel learns each one's MAC
from the device's own packets (nftables' C{seen6} set, updated in prerouting,
before the packet reaches any socket), so when a packet comes from an IPv6
address portald does not know yet, asking the kernel gives the answer for
that very packet.  L{IPv6Learner} asks, one listing at a time, and holds the
packet (a DNS query, a new connection) until the answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger

from portald.neighbours import Neighbours

log = Logger()

# (IPv6 address -> MAC) as the kernel learned it.
ReadDevices = Callable[[], Deferred[Mapping[str, str]]]


class IPv6Learner:
    """
    Learns the MAC of IPv6 addresses from C{read} (the firewall's listing of
    what the kernel saw) into C{neighbours}.

    @param subnets: the LAN; an address outside it is never asked about.
    @param retry_after: an address the kernel did not know is not asked
        about again for this long (a stranger cannot make portald list the
        set for every packet).
    @param max_waiting: at most this many packets held at once; beyond
        that, packets are answered as from an unknown device.
    """

    def __init__(
        self,
        neighbours: Neighbours,
        read: ReadDevices,
        clock: IReactorTime,
        subnets: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
        *,
        retry_after: float = 2.0,
        max_waiting: int = 1024,
    ) -> None:
        self._neighbours = neighbours
        self._read = read
        self._clock = clock
        self._subnets = tuple(net for net in subnets if net.version == 6)
        self._retry_after = retry_after
        self._max_waiting = max_waiting
        self._waiting: list[Deferred[None]] = []
        # The addresses asked about since the last listing began.
        self._asked: list[str] = []
        self._reading = False
        # Address -> when the kernel last did not know it.
        self._unknown: dict[str, float] = {}
        self.listings = 0

    def worth_asking(self, ip: str) -> bool:
        """Whether a packet from C{ip} should wait for L{learn} (an unknown LAN IPv6 address)."""
        if self._neighbours.mac_for(ip) is not None or len(self._waiting) >= self._max_waiting:
            return False
        told_unknown = self._unknown.get(ip)
        if told_unknown is not None and self._clock.seconds() - told_unknown < self._retry_after:
            return False
        try:
            address = ipaddress.IPv6Address(ip)
        except ValueError:
            return False
        return any(address in net for net in self._subnets)

    def learn(self, ip: str) -> Deferred[None]:
        """
        Fires (never with an error) once a listing that began after this
        call has been read into the neighbours: C{ip}'s packet was in the
        kernel before it began.
        """
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        self._asked.append(ip)
        if not self._reading:
            self._list()
        return d

    def _list(self) -> None:
        self._reading = True
        self.listings += 1
        waiting, self._waiting = self._waiting, []
        asked, self._asked = self._asked, []
        d = self._read()
        d.addCallbacks(self._learned, self._failed, callbackArgs=(asked,))
        d.addBoth(lambda _: self._answer(waiting))

    def _learned(self, devices: Mapping[str, str], asked: list[str]) -> None:
        self._neighbours.learn6(devices)
        now = self._clock.seconds()
        self._unknown = {ip: at for ip, at in self._unknown.items() if now - at < self._retry_after}
        for ip in asked:
            if self._neighbours.mac_for(ip) is None:
                self._unknown[ip] = now

    def _failed(self, failure: object) -> None:
        log.warn("cannot list the IPv6 addresses the kernel saw: {failure}", failure=failure)

    def _answer(self, waiting: list[Deferred[None]]) -> None:
        for d in waiting:
            d.callback(None)
        if self._waiting:
            self._list()
        else:
            self._reading = False


class _HeldConnection(Protocol):
    """
    A new connection from an IPv6 address not known yet: not read until the
    learner has asked the kernel, then handed to the protocol it was built
    for (which sees its connection begin only then).
    """

    def __init__(self, real: Protocol, learned: Deferred[None]) -> None:
        self._real = real
        self._learned = learned
        self._lost = False

    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # type: ignore[attr-defined]
        self._learned.addCallback(self._hand_over)

    def _hand_over(self, _: None) -> None:
        if self._lost:
            return
        transport = self.transport
        # From now on the reactor gives the connection's events to the real protocol.
        transport.protocol = self._real  # type: ignore[attr-defined]
        transport.resumeProducing()  # type: ignore[attr-defined]
        self._real.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        # Paused: nothing arrives; if something did, it is the real protocol's.
        self._real.dataReceived(data)

    def connectionLost(self, reason: object = None) -> None:
        self._lost = True


class LearnFirst(Factory):
    """
    C{wrapped}'s connections, except that one from an unknown LAN IPv6
    address waits (unread) until L{IPv6Learner.learn} has asked the kernel.
    """

    def __init__(self, wrapped: Factory, learner: IPv6Learner) -> None:
        self.wrapped = wrapped
        self._learner = learner

    def doStart(self) -> None:
        self.wrapped.doStart()

    def doStop(self) -> None:
        self.wrapped.doStop()

    def buildProtocol(self, addr: IAddress) -> Protocol | None:
        real = self.wrapped.buildProtocol(addr)
        host: str = getattr(addr, "host", "")
        if real is None or not self._learner.worth_asking(host):
            return real
        return _HeldConnection(real, self._learner.learn(host))


class LearningDatagrams(DatagramProtocol):
    """
    C{wrapped}'s datagrams, except that one from an unknown LAN IPv6 address
    waits until L{IPv6Learner.learn} has asked the kernel.
    """

    def __init__(self, wrapped: DatagramProtocol, learner: IPv6Learner) -> None:
        self.wrapped = wrapped
        self._learner = learner

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        self.wrapped.makeConnection(transport)

    def doStop(self) -> None:
        self.wrapped.doStop()
        super().doStop()

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if self._learner.worth_asking(addr[0]):
            self._learner.learn(addr[0]).addCallback(lambda _: self.wrapped.datagramReceived(data, addr))
            return
        self.wrapped.datagramReceived(data, addr)

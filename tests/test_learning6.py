"""
Learning who is behind an IPv6 address: the learner's listings on a Clock,
and the listeners' wrappers holding a query or a connection until then.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.address import IPv6Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from portald.firewall.kernelstate import UnreadableState, parse_kernel_state, parse_seen6
from portald.learning6 import IPv6Learner, LearnFirst, LearningDatagrams
from portald.neighbours import Neighbours

LAN6 = ipaddress.ip_network("2001:db8:1::/64")
PHONE6 = "2001:db8:1::10"
PHONE_MAC = "02:00:00:00:00:10"
OTHER6 = "2001:db8:1::11"
OUTSIDE6 = "2001:db8:9::1"

SEEN6_LISTING = """{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"set": {"family": "inet", "name": "seen6", "table": "portald", "type": ["ipv6_addr", "ether_addr"],
  "handle": 2, "size": 65536, "flags": ["timeout"], "timeout": 3600,
  "elem": [{"elem": {"val": {"concat": ["2001:db8:1::10", "02:00:00:00:00:10"]}, "expires": 3599}}]}}]}"""


class Kernel:
    """The firewall's side: each listing is answered when the test says."""

    def __init__(self) -> None:
        self.devices: dict[str, str] = {}
        self.listings: list[Deferred] = []

    def read(self) -> Deferred:
        d: Deferred = Deferred()
        self.listings.append(d)
        return d

    def answer(self) -> None:
        self.listings.pop(0).callback(dict(self.devices))


def learner_for(kernel: Kernel, clock: Clock | None = None, **kwargs) -> tuple[IPv6Learner, Neighbours]:
    neighbours = Neighbours()
    return IPv6Learner(neighbours, kernel.read, clock or Clock(), [LAN6], **kwargs), neighbours


def test_a_held_packet_is_answered_after_a_listing_that_began_after_it() -> None:
    kernel = Kernel()
    learner, neighbours = learner_for(kernel)
    assert learner.worth_asking(PHONE6)
    first = learner.learn(PHONE6)
    fired: list[str] = []
    first.addCallback(lambda _: fired.append(PHONE6))
    # The other address arrives while the first listing runs: that listing
    # may have begun before its packet reached the kernel.
    second = learner.learn(OTHER6)
    second.addCallback(lambda _: fired.append(OTHER6))
    kernel.devices = {PHONE6: PHONE_MAC}
    kernel.answer()
    assert fired == [PHONE6]
    assert neighbours.mac_for(PHONE6) == PHONE_MAC
    assert len(kernel.listings) == 1  # a second listing, for the other address
    kernel.devices[OTHER6] = "02:00:00:00:00:11"
    kernel.answer()
    assert fired == [PHONE6, OTHER6]
    assert neighbours.mac_for(OTHER6) == "02:00:00:00:00:11"
    assert learner.listings == 2
    assert not learner.worth_asking(PHONE6)  # known now


def test_packets_waiting_together_share_one_listing() -> None:
    kernel = Kernel()
    learner, _ = learner_for(kernel)
    learner.learn(PHONE6)
    waiting = [learner.learn(f"2001:db8:1::{n:x}") for n in range(0x20, 0x40)]
    kernel.answer()  # the first
    kernel.answer()  # all the others, in one
    assert all(d.called for d in waiting)
    assert learner.listings == 2 and not kernel.listings


def test_an_address_the_kernel_does_not_know_is_not_asked_about_again_at_once() -> None:
    clock = Clock()
    kernel = Kernel()
    learner, _ = learner_for(kernel, clock, retry_after=2.0)
    learner.learn(PHONE6)
    kernel.answer()
    assert not learner.worth_asking(PHONE6)
    clock.advance(2.0)
    assert learner.worth_asking(PHONE6)


def test_only_lan_ipv6_addresses_are_asked_about_and_the_queue_is_bounded() -> None:
    kernel = Kernel()
    learner, neighbours = learner_for(kernel, max_waiting=2)
    neighbours.replace({"192.0.2.10": PHONE_MAC})
    assert not learner.worth_asking("192.0.2.10")
    assert not learner.worth_asking("192.0.2.99")  # IPv4: leases name those
    assert not learner.worth_asking(OUTSIDE6)
    assert not learner.worth_asking("not an address")
    learner.learn(PHONE6)
    learner.learn(OTHER6)  # waits for the next listing
    learner.learn("2001:db8:1::12")
    assert not learner.worth_asking("2001:db8:1::13")  # two already wait


def test_a_failed_listing_still_answers_every_held_packet() -> None:
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        learner = IPv6Learner(Neighbours(), lambda: fail(RuntimeError("nft: no such set")), Clock(), [LAN6])
        d = learner.learn(PHONE6)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert d.called and d.result is None
    assert any("cannot list" in str(e.get("log_format")) for e in events)


def test_a_lease_wins_over_what_was_learned() -> None:
    neighbours = Neighbours()
    neighbours.learn6({PHONE6: PHONE_MAC, OTHER6: "02:00:00:00:00:11"})
    neighbours.replace({OTHER6: "02:00:00:00:00:99", "192.0.2.10": PHONE_MAC})
    assert neighbours.mac_for(OTHER6) == "02:00:00:00:00:99"
    assert neighbours.ips_for(PHONE_MAC) == {PHONE6, "192.0.2.10"}
    assert neighbours.snapshot() == {OTHER6: "02:00:00:00:00:99", "192.0.2.10": PHONE_MAC}
    neighbours.learn6({})  # the kernel forgot them: so does the map
    assert neighbours.mac_for(PHONE6) is None
    assert neighbours.mac_for("192.0.2.10") == PHONE_MAC


def test_the_kernels_listing_is_read() -> None:
    assert parse_seen6(SEEN6_LISTING) == {PHONE6: PHONE_MAC}
    assert parse_seen6('{"nftables": []}') == {}
    for broken in ("", "{}", '{"nftables": [{"set": {"elem": [{"elem": {"val": "x"}}]}}]}'):
        try:
            parse_seen6(broken)
        except UnreadableState:
            continue
        raise AssertionError(f"{broken!r} was read")
    # The whole table's listing carries it too.
    assert parse_kernel_state(SEEN6_LISTING).seen6 == {PHONE6: PHONE_MAC}


class Recorder(DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple]] = []

    def datagramReceived(self, data: bytes, addr) -> None:
        self.received.append((data, addr))


def test_a_query_from_an_unknown_address_waits_and_a_known_ones_does_not() -> None:
    kernel = Kernel()
    learner, neighbours = learner_for(kernel)
    real = Recorder()
    wrapper = LearningDatagrams(real, learner)
    wrapper.makeConnection(StringTransport())
    assert real.transport is wrapper.transport
    wrapper.datagramReceived(b"query", (PHONE6, 5353, 0, 0))
    assert real.received == []
    kernel.devices = {PHONE6: PHONE_MAC}
    kernel.answer()
    assert real.received == [(b"query", (PHONE6, 5353, 0, 0))]
    wrapper.datagramReceived(b"again", (PHONE6, 5353, 0, 0))
    assert real.received[-1][0] == b"again" and not kernel.listings


class Echo(Protocol):
    def __init__(self) -> None:
        self.made = 0
        self.data = b""

    def connectionMade(self) -> None:
        self.made += 1

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class PausableTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.protocol: Protocol | None = None


def test_a_connection_from_an_unknown_address_is_not_read_until_the_kernel_was_asked() -> None:
    kernel = Kernel()
    learner, _ = learner_for(kernel)
    built: list[Echo] = []
    factory = Factory.forProtocol(lambda: built.append(Echo()) or built[-1])  # type: ignore[func-returns-value]
    held = LearnFirst(factory, learner).buildProtocol(IPv6Address("TCP", PHONE6, 40000))
    transport = PausableTransport()
    transport.protocol = held
    held.makeConnection(transport)
    assert transport.producerState == "paused"
    assert built[0].made == 0
    kernel.devices = {PHONE6: PHONE_MAC}
    kernel.answer()
    assert transport.producerState == "producing"
    assert transport.protocol is built[0] and built[0].made == 1
    # Known now: the next connection is the real protocol at once.
    again = LearnFirst(factory, learner).buildProtocol(IPv6Address("TCP", PHONE6, 40001))
    assert again is built[1]


def test_a_held_connection_that_closes_meanwhile_is_never_handed_over() -> None:
    kernel = Kernel()
    learner, _ = learner_for(kernel)
    real = Echo()
    held = LearnFirst(Factory.forProtocol(lambda: real), learner).buildProtocol(
        IPv6Address("TCP", PHONE6, 40000)
    )
    transport = PausableTransport()
    transport.protocol = held
    held.makeConnection(transport)
    held.connectionLost(None)
    kernel.answer()
    assert real.made == 0 and transport.protocol is held

"""DNS over TCP, bounded: connections per client and in all, a quiet one's timeout, queries in flight, readers that do not read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from tests.dns_fakes import (
    CLIENT,
    OTHER,
    Harness,
    a_record,
    addresses,
    framed,
    make_config,
    parse,
    query,
    tcp_connection,
    unframe,
)


@pytest.fixture
def dns_server() -> Iterator[Harness]:
    harness = Harness(
        make_config(
            dns_overrides={
                "max_tcp_connections": "5",
                "max_tcp_connections_per_client": "3",
                "tcp_timeout": "10s",
                "max_tcp_pending": "4",
            }
        )
    )
    yield harness
    harness.close()
    assert harness.errors == []


def test_connections_are_capped_per_client_and_in_all(dns_server: Harness) -> None:
    factory = dns_server.service.factory
    mine = [tcp_connection(dns_server)[0] for _ in range(3)]
    assert factory.buildProtocol(IPv4Address("TCP", *CLIENT)) is None  # the listener closes it unanswered
    others = [tcp_connection(dns_server, OTHER) for _ in range(2)]
    assert factory.buildProtocol(IPv4Address("TCP", "192.0.2.12", 1)) is None  # five in all
    mine[0].connectionLost(Failure(ConnectionDone()))
    assert factory.buildProtocol(IPv4Address("TCP", *CLIENT)) is not None
    assert dns_server.service.refusals.counts == {
        "dns.max_tcp_connections_per_client": 1,
        "dns.max_tcp_connections": 1,
    }
    assert others


def test_a_quiet_connection_closes_at_the_tcp_timeout(dns_server: Harness) -> None:
    protocol, transport = tcp_connection(dns_server)
    protocol.dataReceived(framed(query("a.example")))
    dns_server.reactor.advance(9)
    assert not transport.disconnecting
    # Half a query is not activity: a dripping client is cut off all the same.
    protocol.dataReceived(framed(query("b.example"))[:3])
    dns_server.reactor.advance(1)
    assert transport.disconnecting


def test_queries_in_flight_are_bounded_per_connection(dns_server: Harness) -> None:
    dns_server.authorize()
    protocol, transport = tcp_connection(dns_server)
    # Ten forwarded queries in one read: four go upstream, the rest wait unread.
    protocol.dataReceived(b"".join(framed(query(f"q{n}.example", id=n)) for n in range(10)))
    sent = dns_server.upstream_queries()
    assert len(sent) == 4 and transport.producerState == "paused"
    assert dns_server.service.refusals.counts["dns.max_tcp_pending"] == 1
    # One answer frees one place: the next query is read.
    first, to = sent[0]
    dns_server.upstream_answers(first, to, [a_record(first.queries[0].name.name.decode(), "203.0.113.7")])
    assert addresses(parse(unframe(transport.value())[0])) == ["203.0.113.7"]
    assert len(dns_server.upstream_queries()) == 5


class _ConsumerTransport(StringTransport):
    """Like a TCP connection: pauses its producer past C{room} bytes unsent."""

    room = 4096

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) > self.room and self.producer is not None:
            self.producer.pauseProducing()


def test_a_client_that_does_not_read_its_answers_is_not_read(dns_server: Harness) -> None:
    protocol = dns_server.service.factory.buildProtocol(IPv4Address("TCP", *CLIENT))
    transport = _ConsumerTransport(peerAddress=IPv4Address("TCP", *CLIENT))
    protocol.makeConnection(transport)
    # A thousand locally answered queries at once, and nobody reading.
    protocol.dataReceived(b"".join(framed(query("a.example", id=n)) for n in range(1000)))
    answered = len(unframe(transport.value()))
    assert 0 < answered < 200 and transport.producerState == "paused"
    total = answered
    while transport.producerState == "paused":
        transport.clear()  # the client reads
        protocol.resumeProducing()
        total += len(unframe(transport.value()))
    assert total == 1000


def test_a_client_that_never_reads_is_cut_off_at_the_timeout(dns_server: Harness) -> None:
    protocol = dns_server.service.factory.buildProtocol(IPv4Address("TCP", *CLIENT))
    transport = _ConsumerTransport(peerAddress=IPv4Address("TCP", *CLIENT))
    protocol.makeConnection(transport)
    protocol.dataReceived(b"".join(framed(query("a.example", id=n)) for n in range(1000)))
    assert transport.producerState == "paused"
    dns_server.reactor.advance(10)
    assert transport.disconnected  # aborted (StringTransport marks an abort so)
    # A quiet client that reads is closed gracefully.
    quiet, quiet_transport = tcp_connection(dns_server)
    dns_server.reactor.advance(10)
    assert quiet_transport.disconnecting and not quiet_transport.disconnected

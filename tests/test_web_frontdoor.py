"""The front door: the fast path for simple foreign requests, and its hand-over."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from .web_support import CLIENT_IP, CLIENT_MAC, WebHarness, make_config, parse_replies

PROBE = b"GET /generate_204 HTTP/1.1\r\nHost: connectivitycheck.gstatic.com\r\n\r\n"
PAGE = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


def test_keep_alive_answers_pipelined_requests_and_keeps_the_connection() -> None:
    harness = WebHarness()
    protocol, transport = harness.connect()
    protocol.dataReceived(PROBE + PAGE + PAGE[:10])
    replies = parse_replies(transport.value())
    assert [r.status for r in replies] == [302, 511]
    assert all(r.header("Connection") == "keep-alive" for r in replies)
    assert not transport.disconnecting
    transport.clear()
    protocol.dataReceived(PAGE[10:])  # the rest of a head split across reads
    assert [r.status for r in parse_replies(transport.value())] == [511]


def test_connection_close_and_http_1_0_close_after_the_answer() -> None:
    harness = WebHarness()
    for request in (
        b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: example.com\r\n\r\n",
    ):
        raw, closed = harness.raw(request + PAGE)
        replies = parse_replies(raw)
        assert [r.status for r in replies] == [511] and closed
        assert replies[0].header("Connection") == "close"


def test_the_online_page_closes_the_connection_a_signed_in_browser_kept() -> None:
    harness = WebHarness()
    protocol, transport = harness.connect()
    protocol.dataReceived(PAGE)
    assert parse_replies(transport.value())[0].header("Connection") == "keep-alive"
    harness.table.authorize(CLIENT_MAC, ip=CLIENT_IP, method="click-through", duration=3600.0)
    transport.clear()
    protocol.dataReceived(PAGE + PAGE)
    replies = parse_replies(transport.value())
    assert [r.status for r in replies] == [200] and "You are online" in replies[0].body
    assert replies[0].header("Connection") == "close" and transport.disconnecting


def handed_over(harness: WebHarness, data: bytes) -> tuple[bytes, bool]:
    """What C{data} got as an answer, and whether twisted.web gave it."""
    protocol, transport = harness.connect()
    protocol.dataReceived(data)
    return transport.value(), protocol._delegate is not None


def test_the_portal_host_and_unusual_requests_go_to_twisted_web() -> None:
    harness = WebHarness()
    portal, by_twisted = handed_over(
        harness, b"GET / HTTP/1.1\r\nHost: portal.example\r\nConnection: close\r\n\r\n"
    )
    assert by_twisted and b'name="csrf"' in portal
    # By address as well as by name.
    assert b'name="csrf"' in harness.raw(b"GET / HTTP/1.1\r\nHost: 192.0.2.1\r\nConnection: close\r\n\r\n")[0]
    # No Host at all (HTTP/1.0): twisted.web answers, with the same rules.
    raw, by_twisted = handed_over(harness, b"GET / HTTP/1.0\r\n\r\n")
    (reply,) = parse_replies(raw)
    assert reply.status == 511 and by_twisted
    # A chunked body.
    chunked = b"POST /x HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\na\r\n0\r\n\r\n"
    raw, by_twisted = handed_over(harness, chunked)
    (reply,) = parse_replies(raw)
    assert reply.status_line == "HTTP/1.1 511 Network Authentication Required" and by_twisted


def test_a_large_head_is_handed_over_to_twisted_web_and_its_limits() -> None:
    harness = WebHarness()
    raw, by_twisted = handed_over(
        harness, b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 511 ") and by_twisted
    # Past twisted.web's line limit the connection is dropped unanswered.
    raw, closed = harness.raw(b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Pad: " + b"a" * 200000 + b"\r\n\r\n")
    assert raw == b"" and closed


def test_junk_is_handed_over_and_gets_a_400() -> None:
    harness = WebHarness()
    raw, closed = harness.raw(b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400") and closed


def test_idle_connections_are_closed_by_the_sweep() -> None:
    harness = WebHarness()
    factory = harness.web.factory
    factory.doStart()
    try:
        quiet, quiet_transport = harness.connect()
        busy, busy_transport = harness.connect()
        for _ in range(3):
            busy.dataReceived(PAGE)
            harness.clock.advance(10)
        assert quiet_transport.disconnecting
        assert not busy_transport.disconnecting
        quiet.connectionLost(Failure(ConnectionDone()))
        assert quiet not in factory.connections
    finally:
        factory.doStop()
    assert harness.clock.getDelayedCalls() == [] or all(
        c.func.__self__ is harness.web.interception.log for c in harness.clock.getDelayedCalls()
    )


def test_a_handed_over_connection_gets_its_close_forwarded() -> None:
    harness = WebHarness()
    protocol, transport = harness.connect()
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: portal.example\r\n\r\n")
    assert b"200 OK" in transport.value()
    assert harness.clock.getDelayedCalls()  # twisted.web's idle timeout
    protocol.connectionLost(Failure(ConnectionDone()))
    assert harness.clock.getDelayedCalls() == []


class _Socket:
    """The socket under a transport: takes at most C{room} bytes per send, then would block."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.sent = b""

    def send(self, data: bytes) -> int:
        if self.room <= 0:
            raise BlockingIOError()
        taken = data[: self.room]
        self.room -= len(taken)
        self.sent += taken
        return len(taken)


def test_kept_alive_answers_go_straight_to_the_socket_and_the_rest_in_order() -> None:
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    harness = WebHarness()
    sock = _Socket(room=1000)
    transport = StringTransport(peerAddress=IPv4Address("TCP", CLIENT_IP, 40000))
    transport.socket = sock  # what a real TCP transport has
    protocol = harness.web.factory.buildProtocol(IPv4Address("TCP", CLIENT_IP, 40000))
    protocol.makeConnection(transport)
    protocol.dataReceived(PAGE)  # a 511 of more than 1000 bytes: the socket takes 1000
    assert len(sock.sent) == 1000 and transport.value()
    protocol.dataReceived(PAGE)  # the rest waits in the transport: this one must follow it
    replies = parse_replies(sock.sent + transport.value())
    assert [r.status for r in replies] == [511, 511]
    assert not transport.disconnecting


def test_a_wrapped_transport_is_always_written_through() -> None:
    # TLS (TLSMemoryBIOProtocol) and other wrappers pass .socket through to
    # the TCP connection underneath: bytes sent there would skip them.
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport
    from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

    harness = WebHarness()
    sock = _Socket(room=10_000)
    under = StringTransport(peerAddress=IPv4Address("TCP", CLIENT_IP, 40000))
    under.socket = sock
    wrapper = ProtocolWrapper(
        WrappingFactory(harness.web.factory),
        harness.web.factory.buildProtocol(IPv4Address("TCP", CLIENT_IP, 40000)),
    )
    wrapper.makeConnection(under)
    wrapper.dataReceived(PAGE)
    assert sock.sent == b"" and parse_replies(under.value())[0].status == 511


class _ConsumerTransport(StringTransport):
    """A transport that, like a TCP connection, pauses its producer past C{room} bytes unsent."""

    room = 65536

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) > self.room and self.producer is not None:
            self.producer.pauseProducing()


def test_pipelined_requests_are_answered_only_as_fast_as_the_client_reads() -> None:
    harness = WebHarness()
    transport = _ConsumerTransport(peerAddress=IPv4Address("TCP", CLIENT_IP, 40000))
    protocol = harness.web.factory.buildProtocol(IPv4Address("TCP", CLIENT_IP, 40000))
    protocol.makeConnection(transport)
    # 5000 requests in one read, and a client that never takes an answer.
    protocol.dataReceived(PAGE * 5000)
    answered = len(parse_replies(transport.value()))
    assert 0 < answered < 100 and len(transport.value()) < 2 * _ConsumerTransport.room
    # The connection is not read either, until the client catches up.
    assert transport.producerState == "paused"
    protocol.dataReceived(PAGE * 100)  # already in flight: kept, not answered
    assert len(parse_replies(transport.value())) == answered
    total = answered
    while transport.producerState == "paused":
        transport.clear()  # the client reads
        protocol.resumeProducing()
        total += len(parse_replies(transport.value()))
    assert total == 5100 and transport.producerState == "producing"


def test_a_head_that_trickles_in_is_cut_off_at_the_request_timeout() -> None:
    harness = WebHarness()
    factory = harness.web.factory
    factory.doStart()
    try:
        slow, slow_transport = harness.connect()
        for byte in PAGE[:-1]:
            slow.dataReceived(bytes([byte]))
            harness.clock.advance(0.5)
            if slow_transport.disconnecting:
                break
        assert slow_transport.disconnecting
        assert harness.clock.seconds() - 1_800_000_000 <= 15
        assert slow_transport.value().startswith(b"HTTP/1.1 408 ")
        assert harness.web.refusals.counts["http.request_timeout"] == 1
    finally:
        factory.doStop()


def test_a_bare_lf_never_makes_a_body_a_second_request() -> None:
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"
    head = b"GET / HTTP/1.1\r\nHost: example.com\r\nX-A: a\nContent-Length: %d\r\n\r\n" % len(smuggled)
    raw, closed = WebHarness().raw(head + smuggled)
    (reply,) = parse_replies(raw)
    assert reply.status == 400 and closed


def test_connections_are_capped_per_client_and_in_all() -> None:
    harness = WebHarness(make_config("  max_connections_per_client: 3\n  max_connections: 5\n"))
    factory = harness.web.factory

    def connect(ip: str):
        protocol = factory.buildProtocol(IPv4Address("TCP", ip, 40000))
        if protocol is not None:
            protocol.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", ip, 40000)))
        return protocol

    mine = [connect(CLIENT_IP) for _ in range(4)]
    assert mine[3] is None  # the listener closes it unanswered
    others = [connect("192.0.2.11") for _ in range(3)]
    assert others[:2] != [None, None] and others[2] is None  # five in all
    # A handed-over connection still counts; a closed one frees its place.
    mine[0].dataReceived(b"GET / HTTP/1.1\r\nHost: portal.example\r\n\r\n")
    assert connect(CLIENT_IP) is None
    mine[0].connectionLost(Failure(ConnectionDone()))
    assert connect(CLIENT_IP) is not None
    assert harness.web.refusals.counts == {"http.max_connections_per_client": 1, "http.max_connections": 2}


def test_a_client_that_never_reads_is_cut_off_not_waited_for() -> None:
    harness = WebHarness()
    factory = harness.web.factory
    factory.doStart()
    try:
        transport = _ConsumerTransport(peerAddress=IPv4Address("TCP", CLIENT_IP, 40000))
        protocol = factory.buildProtocol(IPv4Address("TCP", CLIENT_IP, 40000))
        protocol.makeConnection(transport)
        protocol.dataReceived(PAGE * 5000)
        assert transport.producerState == "paused"
        for _ in range(10):
            harness.clock.advance(1)
        # A graceful close would wait for it to read what it never will.
        assert transport.disconnected  # aborted (StringTransport marks an abort so)
    finally:
        factory.doStop()

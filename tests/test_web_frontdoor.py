"""The front door: the fast path for simple foreign requests, and its hand-over."""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from .web_support import CLIENT_IP, CLIENT_MAC, WebHarness, parse_replies

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

"""twisted.web's channel as portald bounds it: bodies, slow requests, its own answers' headers."""

from __future__ import annotations

import pytest

from .web_support import CLIENT_IP, WebHarness, make_config, parse_replies

PORTAL = b"Host: portal.example\r\n"
ELSEWHERE = b"Host: example.com\r\n"


def post(host: bytes, length: int) -> bytes:
    return (
        b"POST /login HTTP/1.1\r\n"
        + host
        + b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % length
    )


@pytest.mark.parametrize("via", ["frontdoor", "site"])
def test_a_large_body_for_the_portal_is_refused_before_it_is_read(via: str) -> None:
    harness = WebHarness()
    protocol, transport = harness.connect(via=via)
    protocol.dataReceived(post(PORTAL, 200_000_000))
    (reply,) = parse_replies(transport.value())
    assert reply.status == 413 and reply.header("Connection") == "close" and transport.disconnecting
    assert reply.header("X-Frame-Options") == "DENY" and reply.header("Server") is None
    # What the client sends on is not read into anything.
    transport.clear()
    for _ in range(100):
        protocol.dataReceived(b"a" * 65536)
    assert transport.value() == b""
    assert harness.web.refusals.counts["http.max_body_bytes"] == 1


def test_a_body_within_the_bound_is_read_and_answered() -> None:
    harness = WebHarness(make_config("  max_body_bytes: 64\n"))
    form = b"csrf=x&accept=yes"
    raw, _ = harness.raw(post(PORTAL, len(form)) + form, via="site")
    # The forged token is refused by the form's own check, not by size.
    assert parse_replies(raw)[0].status == 403
    raw, _ = harness.raw(post(PORTAL, 65) + b"a" * 65, via="site")
    assert parse_replies(raw)[0].status == 413


@pytest.mark.parametrize("via", ["frontdoor", "site"])
def test_a_body_for_another_host_gets_the_511_and_the_connection_closes(via: str) -> None:
    harness = WebHarness()
    protocol, transport = harness.connect(via=via)
    protocol.dataReceived(post(ELSEWHERE, 200_000_000) + b"a" * 65536)
    (reply,) = parse_replies(transport.value())
    assert reply.status == 511 and transport.disconnecting
    assert "portal.example" in reply.body and reply.header("Cache-Control") == "no-store"
    transport.clear()
    protocol.dataReceived(b"a" * 65536)
    assert transport.value() == b""


def test_a_chunked_body_for_the_portal_is_refused() -> None:
    harness = WebHarness()
    raw, closed = harness.raw(
        b"POST /login HTTP/1.1\r\n" + PORTAL + b"Transfer-Encoding: chunked\r\n\r\n5\r\n"
    )
    (reply,) = parse_replies(raw)
    assert reply.status == 411 and closed


def test_a_head_dripped_a_byte_at_a_time_is_cut_off_at_the_request_timeout() -> None:
    harness = WebHarness()
    protocol, transport = harness.connect(via="site")
    head = b"GET / HTTP/1.1\r\n" + PORTAL + b"X-Slow: " + b"a" * 100
    for byte in head[:9]:
        protocol.dataReceived(bytes([byte]))
        harness.clock.advance(1)
    assert not transport.disconnecting
    protocol.dataReceived(head[9:10])
    harness.clock.advance(1)
    (reply,) = parse_replies(transport.value())
    assert reply.status == 408 and transport.disconnecting
    assert harness.web.refusals.counts["http.request_timeout"] == 1


def test_a_slow_body_is_cut_off_too_and_the_deadline_is_a_key() -> None:
    harness = WebHarness(make_config("  request_timeout: 3s\n"))
    protocol, transport = harness.connect(via="site")
    protocol.dataReceived(post(PORTAL, 100))
    for _ in range(2):
        protocol.dataReceived(b"a")
        harness.clock.advance(1)
    assert not transport.disconnecting
    harness.clock.advance(1)
    assert parse_replies(transport.value())[0].status == 408 and transport.disconnecting


def test_a_quiet_kept_alive_connection_closes_at_the_request_timeout() -> None:
    harness = WebHarness()
    protocol, transport = harness.connect(via="site")
    protocol.dataReceived(b"GET / HTTP/1.1\r\n" + PORTAL + b"\r\n")
    assert parse_replies(transport.value())[0].status == 200
    harness.clock.advance(9)
    protocol.dataReceived(b"GET / HTTP/1.1\r\n" + PORTAL + b"\r\n")
    harness.clock.advance(9)
    assert not transport.disconnecting and len(parse_replies(transport.value())) == 2
    transport.clear()
    harness.clock.advance(1)
    # Nothing was under way: closed without a word, and not counted.
    assert transport.disconnecting and transport.value() == b""
    assert harness.web.refusals.counts["http.request_timeout"] == 0


def test_twisted_webs_own_400_carries_the_security_headers() -> None:
    harness = WebHarness()
    raw, closed = harness.raw(b"GET / HTTP/1.1\r\n" + PORTAL + b"Bad header line\r\n\r\n", via="site")
    (reply,) = parse_replies(raw)
    assert reply.status == 400 and closed
    assert reply.header("X-Content-Type-Options") == "nosniff"
    assert "frame-ancestors 'none'" in reply.header("Content-Security-Policy")


def test_options_star_carries_the_security_headers_and_no_server_header() -> None:
    harness = WebHarness()
    raw, _ = harness.raw(b"OPTIONS * HTTP/1.1\r\n" + PORTAL + b"Connection: close\r\n\r\n")
    (reply,) = parse_replies(raw)
    assert reply.status == 200 and reply.header("X-Frame-Options") == "DENY"
    assert reply.header("Cache-Control") == "no-store" and reply.header("Server") is None


def test_portal_pages_say_no_server_and_post_only_to_the_portal() -> None:
    harness = WebHarness()
    for path in ("/", "/nowhere", "/static/portal.css"):
        reply = harness.request("GET", f"http://portal.example{path}")
        assert reply.header("Server") is None, path
    csp = harness.request("GET", "http://portal.example/").header("Content-Security-Policy")
    assert "form-action 'self' http: https:" in csp
    # And a request twisted.web answers for a foreign Host.
    raw, _ = harness.raw(b"GET / HTTP/1.0\r\n\r\n", client_ip=CLIENT_IP)
    assert b"Server:" not in raw

"""Interception: 511 for people, 302 for probes, the online page after sign-in."""

from __future__ import annotations

import re

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from portald.config import DEFAULT_PROBES
from portald.table import EndReason
from portald.web.intercept import Answer

from .web_support import CLIENT_IP, CLIENT_MAC, STRANGER_IP, WebHarness, make_config, parse_replies

BOTH_PATHS = pytest.mark.parametrize("via", ["frontdoor", "site"])


@pytest.fixture
def harness() -> WebHarness:
    return WebHarness()


@BOTH_PATHS
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "OPTIONS"])
def test_any_method_for_a_foreign_host_gets_511(harness: WebHarness, via: str, method: str) -> None:
    reply = harness.request(method, "http://example.com/some/page?q=1", via=via)
    assert reply.status_line == "HTTP/1.1 511 Network Authentication Required"
    assert reply.header("Cache-Control") == "no-store"
    assert reply.header("Content-Type") == "text/html; charset=utf-8"
    assert "<form" not in reply.body.lower()
    assert "Café &lt;Test&gt; &amp; Co" in reply.body
    links = re.findall(r'href="([^"]*)"', reply.body)
    assert len(links) == 1 and links[0].startswith("http://portal.example/?next=")
    refresh = re.search(r'<meta http-equiv="refresh" content="3; url=([^"]*)"', reply.body)
    assert refresh and refresh.group(1) == links[0]
    assert "example.com" not in reply.body.replace(links[0], "")  # it does not pose as the site


@BOTH_PATHS
def test_a_post_with_a_body_gets_511(harness: WebHarness, via: str) -> None:
    reply = harness.request("POST", "http://api.example/upload", form={"a": "b"}, via=via)
    assert reply.status == 511 and "<form" not in reply.body


@BOTH_PATHS
def test_head_gets_the_511_headers_without_a_body(harness: WebHarness, via: str) -> None:
    reply = harness.request("HEAD", "http://example.com/", via=via)
    assert reply.status_line == "HTTP/1.1 511 Network Authentication Required"
    assert reply.body == ""


@BOTH_PATHS
@pytest.mark.parametrize("rule", DEFAULT_PROBES, ids=str)
def test_every_default_probe_gets_302_to_the_portal(harness: WebHarness, via: str, rule) -> None:
    url = f"http://{rule.host}{rule.path or '/hotspot-detect.html'}"
    reply = harness.request("GET", url, via=via)
    assert reply.status_line == "HTTP/1.1 302 Found"
    assert reply.header("Cache-Control") == "no-store"
    location = reply.header("Location")
    assert location is not None and location.startswith("http://portal.example/?next=")
    # The portal carries it back: the landing page keeps the destination.
    landing = harness.request("GET", location)
    assert landing.status == 200 and harness.form_value(landing.body, "next")


@BOTH_PATHS
def test_a_probe_host_with_another_path_is_not_a_probe(harness: WebHarness, via: str) -> None:
    reply = harness.request("GET", "http://connectivitycheck.gstatic.com/something-else", via=via)
    assert reply.status == 511


def test_probes_come_from_the_configuration() -> None:

    harness = WebHarness(make_config("  probes: [probe.example/check]\n"))
    assert harness.request("GET", "http://probe.example/check").status == 302
    assert harness.request("GET", "http://connectivitycheck.gstatic.com/generate_204").status == 511


@BOTH_PATHS
def test_links_name_the_portal_port_when_it_is_not_80(via: str) -> None:
    harness = WebHarness(make_config(port=8080))
    reply = harness.request("GET", "http://connectivitycheck.gstatic.com/generate_204", via=via)
    assert reply.header("Location").startswith("http://portal.example:8080/?next=")


@BOTH_PATHS
def test_a_client_without_a_lease_is_intercepted_too(harness: WebHarness, via: str) -> None:
    assert harness.request("GET", "http://example.com/", client_ip=STRANGER_IP, via=via).status == 511
    probe = harness.request(
        "GET", "http://captive.apple.com/hotspot-detect.html", client_ip=STRANGER_IP, via=via
    )
    assert probe.status == 302


@BOTH_PATHS
def test_the_online_page_closes_a_kept_alive_connection(harness: WebHarness, via: str) -> None:
    # The browser's next try for the site must connect anew (and so, with
    # the DNS answer renewed, reach the site), on either path.
    harness.table.authorize(CLIENT_MAC, ip=CLIENT_IP, method="click-through", duration=3600)
    raw, closed = harness.raw(b"GET /news HTTP/1.1\r\nHost: example.com\r\n\r\n", via=via)
    assert b"You are online" in raw and b"\r\nConnection: close\r\n" in raw.split(b"\r\n\r\n")[0] + b"\r\n"
    assert closed
    # Before signing in, the same request keeps its connection.
    harness.table.deauthorize(CLIENT_MAC, EndReason.LOGOUT)
    raw, closed = harness.raw(b"GET /news HTTP/1.1\r\nHost: example.com\r\n\r\n", via=via)
    assert raw.startswith(b"HTTP/1.1 511 ") and not closed


@BOTH_PATHS
def test_an_authorized_client_landing_here_gets_the_online_page_not_a_loop(
    harness: WebHarness, via: str
) -> None:
    harness.table.authorize(CLIENT_MAC, ip=CLIENT_IP, method="click-through", duration=3600)
    for url in ("http://example.com/news?id=7", "http://connectivitycheck.gstatic.com/generate_204"):
        reply = harness.request("GET", url, via=via)
        assert reply.status == 200
        assert reply.header("Location") is None
        assert reply.header("Cache-Control") == "no-store"
        assert "You are online" in reply.body
        assert f'href="{url}"' in reply.body
        # It tries the site again by itself: the browser may keep the
        # portal's address for the site for a minute, whatever the TTL.
        assert f'<meta http-equiv="refresh" content="5; url={url}"' in reply.body
        assert 'href="http://portal.example/status"' in reply.body


@BOTH_PATHS
def test_reflected_markup_in_path_and_host_is_escaped(harness: WebHarness, via: str) -> None:
    harness.table.authorize(CLIENT_MAC, ip=CLIENT_IP, method="click-through", duration=3600)
    attacks = [
        b'GET /"><script>alert(1)</script> HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n',
        b"GET /x'onmouseover='alert(1) HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
        b'GET / HTTP/1.1\r\nHost: "><script>alert(1)</script>\r\nConnection: close\r\n\r\n',
        b"GET / HTTP/1.1\r\nHost: evil.example<svg/onload=alert(1)>\r\nConnection: close\r\n\r\n",
    ]
    for ip in (CLIENT_IP, STRANGER_IP):  # the online page and the 511 page
        for attack in attacks:
            raw, _ = harness.raw(attack, client_ip=ip, via=via)
            (reply,) = parse_replies(raw)
            assert reply.status in (200, 511)
            body = reply.body.lower()
            assert "<script" not in body and "<svg" not in body and "onmouseover='" not in body


@BOTH_PATHS
def test_intercepted_requests_are_counted_and_logged(harness: WebHarness, via: str) -> None:
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        harness.request("GET", "http://example.com/a", via=via)
        harness.request("GET", "http://example.com/b", via=via)
        harness.request("GET", "http://connectivitycheck.gstatic.com/generate_204", via=via)
        harness.request("GET", "http://example.com/", client_ip=STRANGER_IP, via=via)
        harness.clock.advance(10)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert harness.web.interception.counts == {Answer.NETWORK_AUTH: 3, Answer.PROBE_REDIRECT: 1}
    lines = [e for e in events if e.get("log_namespace") == "portald.web.intercept"]
    first = lines[0]
    assert (first["ip"], first["mac"], first["url"], first["answer"]) == (
        CLIENT_IP,
        CLIENT_MAC,
        "http://example.com/a",
        "511 Network Authentication Required",
    )
    assert any(e.get("ip") == STRANGER_IP and e.get("mac") == "no lease" for e in lines)
    # The rest of the window is summed up, per client, when it closes.
    summary = [e for e in lines if e.get("count")]
    assert (
        len(summary) == 1 and summary[0]["count"] == 2 and "http://connectivitycheck" in summary[0]["latest"]
    )
    assert harness.clock.getDelayedCalls() == []


def test_the_intercepted_requests_are_counted_for_the_log(harness: WebHarness) -> None:
    assert harness.web.interception.summary() == "no request intercepted"
    harness.request("GET", "http://example.com/")
    harness.request("GET", "http://example.com/other", via="site")
    harness.request("GET", "http://connectivitycheck.gstatic.com/generate_204")
    assert harness.web.interception.summary() == (
        "3 requests intercepted: 2× 511 Network Authentication Required, 1× 302 to the portal (probe)"
    )


@BOTH_PATHS
def test_answers_kept_for_the_second_are_per_client_and_end_at_sign_in(harness: WebHarness, via: str) -> None:
    # Within one second: each client its own signed link...
    mine = harness.request("GET", "http://example.com/", via=via)
    theirs = harness.request("GET", "http://example.com/", client_ip=STRANGER_IP, via=via)
    assert mine.status == theirs.status == 511
    link = re.compile(r'href="(http://portal\.example/\?next=[^"]+)"')
    assert link.search(mine.body).group(1) != link.search(theirs.body).group(1)
    # ...and signing in, still in the same second, gets the online page at once.
    harness.table.authorize(CLIENT_MAC, ip=CLIENT_IP, method="click-through", duration=3600)
    assert "You are online" in harness.request("GET", "http://example.com/", via=via).body
    harness.table.deauthorize(CLIENT_MAC, EndReason.LOGOUT)
    again = harness.request("GET", "http://example.com/", via=via)
    assert again.status == 511 and link.search(again.body).group(1) == link.search(mine.body).group(1)


@BOTH_PATHS
def test_the_log_keeps_no_query_string_and_no_forged_line(harness: WebHarness, via: str) -> None:
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        harness.request("GET", "http://example.com/cb?token=SECRET-OF-ANOTHER-SITE", via=via)
        harness.raw(
            b"GE\nT-FORGED /x?k=SECRET HTTP/1.1\r\nHost: example.com\r\n\r\n", client_ip=STRANGER_IP, via=via
        )
        harness.request("GET", "http://example.com/later?again=SECRET", via=via)
        harness.clock.advance(10)
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [formatEvent(e) for e in events if e.get("log_namespace") == "portald.web.intercept"]
    assert any("http://example.com/cb?…" in line for line in lines)
    assert all("SECRET" not in line and "\n" not in line for line in lines), lines

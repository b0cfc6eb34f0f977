"""
The Captive Portal API (RFC 8908) in every state a device goes through, on
a Clock, through the real front door and portal: before sign-in, the very
next request after it, near and after the end, after sign-out, with no
lease, after its lease moved; the Accept header parsed, the size bounded.
"""

from __future__ import annotations

import json

import attrs
import pytest

from portald.web.captive_api import MOST_BYTES, accepts_captive_json
from tests.web_support import CLIENT_IP, CLIENT_MAC, STRANGER_IP, WebHarness, make_config

TLS = """\
  tls: {certificate: /etc/portald/portal.crt, key: /etc/portald/portal.key}
"""
API = "http://portal.example/api/captive"
HTTPS_PORTAL = "https://portal.example/"


def harness(extra: str = "", sessions: str = "") -> WebHarness:
    text = TLS + extra
    if sessions:
        text += "sessions:\n" + sessions
    return WebHarness(make_config(text))


def ask(h: WebHarness, client_ip: str = CLIENT_IP, accept: str | None = "application/captive+json") -> dict:
    reply = h.request("GET", API, client_ip=client_ip, headers={"Accept": accept} if accept else {})
    assert reply.status == 200, reply.body
    assert reply.header("Content-Type") == "application/captive+json"
    assert reply.header("Cache-Control") == "private, no-store"
    assert len(reply.body.encode()) <= MOST_BYTES
    return json.loads(reply.body)


def sign_in(h: WebHarness) -> None:
    reply = h.request("POST", "http://portal.example/login", form={"csrf": h.csrf(), "accept": "yes"})
    assert reply.status == 200, reply.body


def test_before_and_right_after_sign_in_and_to_the_end(tmp_path) -> None:
    h = harness(sessions="  timeout: 1h\n  extendable: true\n")
    assert ask(h) == {"captive": True, "user-portal-url": HTTPS_PORTAL}
    sign_in(h)
    # The very next question knows.
    assert ask(h) == {"captive": False, "user-portal-url": HTTPS_PORTAL, "can-extend-session": True,
                      "seconds-remaining": 3600}  # fmt: skip
    h.clock.advance(3590)
    assert ask(h)["seconds-remaining"] == 10
    h.clock.advance(10)
    assert ask(h) == {"captive": True, "user-portal-url": HTTPS_PORTAL}


def test_sign_out_a_moved_lease_and_no_lease() -> None:
    h = harness()
    sign_in(h)
    assert ask(h)["captive"] is False
    # The device's lease moved: known by its MAC at its new address.
    h.neighbours.replace({"192.0.2.50": CLIENT_MAC})
    assert ask(h, client_ip="192.0.2.50")["captive"] is False
    assert ask(h, client_ip=CLIENT_IP)["captive"] is True  # nobody's address now
    page = h.request("GET", "http://portal.example/status", client_ip="192.0.2.50").body
    token = h.form_value(page, "csrf")
    assert (
        h.request("POST", "http://portal.example/logout", client_ip="192.0.2.50", form={"csrf": token}).status
        == 200
    )
    assert ask(h, client_ip="192.0.2.50")["captive"] is True
    assert ask(h, client_ip=STRANGER_IP) == {"captive": True, "user-portal-url": HTTPS_PORTAL}


def test_data_left_venue_page_and_always_allowed_devices() -> None:
    config = make_config(TLS)
    config = attrs.evolve(
        config,
        portal=attrs.evolve(config.portal, venue_info_url="https://cafe.example/menu"),
        sessions=attrs.evolve(config.sessions, quota=1_000_000),
    )
    h = WebHarness(config)
    sign_in(h)
    h.usage[CLIENT_MAC] = (100_000, 300_000)
    state = ask(h)
    assert state["venue-info-url"] == "https://cafe.example/menu"
    assert state["bytes-remaining"] == 600_000 and state["can-extend-session"] is False
    h.table.allow("02:00:00:00:00:0b", "staff")
    assert ask(h, client_ip="192.0.2.11") == {
        "captive": False, "user-portal-url": HTTPS_PORTAL, "venue-info-url": "https://cafe.example/menu"
    }  # fmt: skip


def test_without_tls_the_portal_is_plain_http() -> None:
    h = WebHarness(make_config())
    assert ask(h)["user-portal-url"] == "http://portal.example/"


@pytest.mark.parametrize(
    ("accept", "ok"),
    [
        (None, True),
        ("application/captive+json", True),
        ("Application/Captive+JSON; charset=utf-8", True),
        ("text/html, application/*;q=0.5", True),
        ("*/*", True),
        ("application/json", False),
        ("text/html", False),
        ("application/captive+json;q=0", False),
        ("application/captive+json;q=0, */*", False),  # the specific range wins
        ("*/*;q=0.1, application/captive+json;q=0.9", True),
        ("application/captive+json;q=nonsense", False),
    ],
)
def test_accept_is_parsed_not_compared(accept: str | None, ok: bool) -> None:
    assert accepts_captive_json(accept.encode() if accept else None) is ok


def test_an_unacceptable_accept_is_406_and_other_methods_are_refused() -> None:
    h = harness()
    reply = h.request("GET", API, headers={"Accept": "text/html"})
    assert reply.status == 406 and reply.header("Content-Type").startswith("text/plain")
    assert h.request("POST", API, form={}).status == 405
    # On another Host it is just an intercepted request.
    assert h.request("GET", "http://example.com/api/captive").status == 511

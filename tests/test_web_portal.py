"""The portal's pages: landing, sign-in, status, sign-out; tokens, limits, headers."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from urllib.parse import quote

import attrs
import pytest

from portald.table import EndReason

from .web_support import CLIENT_IP, CLIENT_MAC, OTHER_IP, STRANGER_IP, WebHarness, make_config

PORTAL = "http://portal.example"


@pytest.fixture
def harness() -> WebHarness:
    return WebHarness()


def intercepted_next(harness: WebHarness, url: str, client_ip: str = CLIENT_IP) -> str:
    """The portal link a 511 gave this client for C{url}, as a browser follows it."""
    reply = harness.request("GET", url, client_ip=client_ip)
    assert reply.status == 511
    (link,) = re.findall(r'href="([^"]*)"', reply.body)
    return link.replace("&amp;", "&")


def sign_in(harness: WebHarness, landing_url: str = PORTAL + "/", client_ip: str = CLIENT_IP, **fields: str):
    page = harness.request("GET", landing_url, client_ip=client_ip).body
    form = {"csrf": harness.form_value(page, "csrf") or "", **fields}
    next_token = harness.form_value(page, "next")
    if next_token:
        form["next"] = next_token
    return harness.request("POST", PORTAL + "/login", client_ip=client_ip, form=form)


# --- landing ---


def test_landing_shows_venue_terms_and_a_labelled_form(harness: WebHarness) -> None:
    reply = harness.request("GET", PORTAL + "/")
    assert reply.status == 200
    assert reply.header("Content-Type") == "text/html; charset=utf-8"
    assert reply.body.startswith("<!DOCTYPE html>")
    assert "Café &lt;Test&gt; &amp; Co" in reply.body and "<Test>" not in reply.body
    assert "Be &lt;b&gt;kind&lt;/b&gt; &amp; lawful." in reply.body
    assert '<form method="post" action="/login">' in reply.body
    assert re.search(r'<label for="field-accept" class="check"><input [^>]*id="field-accept"', reply.body)
    assert 'name="viewport"' in reply.body and "<script" not in reply.body
    assert harness.form_value(reply.body, "next") is None


def test_portal_pages_carry_the_security_headers(harness: WebHarness) -> None:
    for reply in (harness.request("GET", PORTAL + "/"), harness.request("GET", "http://example.com/")):
        assert "frame-ancestors 'none'" in reply.header("Content-Security-Policy")
        assert "script-src" not in reply.header("Content-Security-Policy")  # default-src 'none' covers it
        assert reply.header("X-Frame-Options") == "DENY"
        assert reply.header("Referrer-Policy") == "no-referrer"
        assert reply.header("X-Content-Type-Options") == "nosniff"
        assert reply.header("Cache-Control") == "no-store"


def test_a_client_without_a_lease_is_told_why_and_cannot_sign_in(harness: WebHarness) -> None:
    reply = harness.request("GET", PORTAL + "/", client_ip=STRANGER_IP)
    assert reply.status == 200 and "You cannot sign in yet" in reply.body and "DHCP" in reply.body
    assert "<form" not in reply.body
    # Even with a genuine form token (from a lease it had before), a login
    # without a lease changes nothing.
    harness.neighbours.replace({STRANGER_IP: "02:00:00:00:00:99"})
    token = harness.csrf(client_ip=STRANGER_IP)
    harness.neighbours.replace({CLIENT_IP: CLIENT_MAC})
    reply = harness.request(
        "POST", PORTAL + "/login", client_ip=STRANGER_IP, form={"csrf": token, "accept": "yes"}
    )
    assert reply.status == 403 and "You cannot sign in yet" in reply.body
    assert len(harness.table) == 0
    assert harness.request("GET", PORTAL + "/status", client_ip=STRANGER_IP).status == 200


# --- click-through and the way back ---


def test_click_through_returns_the_client_to_where_it_was_going(harness: WebHarness) -> None:
    link = intercepted_next(harness, "http://example.com/news?id=7&x=<y>")
    reply = sign_in(harness, link, accept="yes")
    assert reply.status == 303
    assert reply.header("Location") == "http://example.com/news?id=7&x=%3Cy%3E"
    session = harness.table.session(CLIENT_MAC)
    assert session is not None and session.ip == CLIENT_IP and session.method == "click-through"
    assert session.expires == harness.clock.seconds() + harness.config.session_timeout()


def test_a_probe_redirect_brings_the_probe_back_after_sign_in(harness: WebHarness) -> None:
    probe = harness.request("GET", "http://captive.apple.com/hotspot-detect.html")
    reply = sign_in(harness, probe.header("Location"), accept="yes")
    assert reply.status == 303 and reply.header("Location") == "http://captive.apple.com/hotspot-detect.html"


def test_without_a_destination_a_success_page(harness: WebHarness) -> None:
    reply = sign_in(harness, accept="yes")
    assert reply.status == 200 and "You are online" in reply.body and 'href="/status"' in reply.body
    assert harness.table.is_authorized(CLIENT_MAC)


def test_click_through_needs_the_box_ticked(harness: WebHarness) -> None:
    reply = sign_in(harness)
    assert reply.status == 403 and "tick the box" in reply.body and 'action="/login"' in reply.body
    assert not harness.table.is_authorized(CLIENT_MAC)


@pytest.mark.parametrize(
    "next_value",
    [
        "http://evil.example/",
        "//evil.example",
        "javascript:alert(1)",
        "https://evil.example",
        "/\\evil.example",
    ],
)
def test_no_open_redirect_from_the_query_string_or_the_form(harness: WebHarness, next_value: str) -> None:
    landing = harness.request("GET", f"{PORTAL}/?next={quote(next_value)}")
    assert harness.form_value(landing.body, "next") is None
    assert "evil" not in landing.body and "javascript" not in landing.body
    form = {"csrf": harness.form_value(landing.body, "csrf"), "accept": "yes", "next": next_value}
    reply = harness.request("POST", PORTAL + "/login", form=form)
    assert reply.status == 200 and reply.header("Location") is None
    assert harness.table.is_authorized(CLIENT_MAC)


def test_a_destination_token_is_only_good_for_the_client_it_was_issued_to(harness: WebHarness) -> None:
    link = intercepted_next(harness, "http://example.com/victim", client_ip=OTHER_IP)
    reply = sign_in(harness, link, accept="yes")  # CLIENT_IP follows OTHER_IP's link
    assert reply.status == 200 and reply.header("Location") is None


def test_a_tampered_or_stale_destination_token_is_ignored(harness: WebHarness) -> None:
    link = intercepted_next(harness, "http://example.com/page")
    token = link.split("next=", 1)[1]
    payload, issued, signature = token.split(".")

    evil = base64.urlsafe_b64encode(b"http://evil.example/").rstrip(b"=").decode()
    for forged in (
        f"{evil}.{issued}.{signature}",
        f"{payload}.{int(issued) + 1}.{signature}",
        # The same issue time spelled otherwise: refused, not read as equal.
        f"{payload}.0{issued}.{signature}",
        f"{payload}.{quote(issued.translate(ARABIC_INDIC))}.{signature}",
        "junk",
        "a.b.c",
        "a.%C2%B2.b",  # a digit to str.isdigit() that int() refuses
        "a.%D9%A1.b",
        "a.%ED%A0%80.b",  # not UTF-8 at all
    ):
        reply = harness.request("GET", f"{PORTAL}/?next={forged}")
        assert reply.status == 200 and harness.form_value(reply.body, "next") is None
    harness.clock.advance(3601)
    page = harness.request("GET", link).body
    assert harness.form_value(page, "next") is None


ARABIC_INDIC = str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")


# --- access codes and rate limiting ---


def access_code_harness() -> WebHarness:
    config = make_config()
    auth = attrs.evolve(
        config.auth, method="access-code", codes=("Room-101", "sesame"), max_attempts=3, attempt_window=60
    )
    return WebHarness(attrs.evolve(config, auth=auth))


def test_access_code_right_wrong_and_forgiving_of_case_and_spaces() -> None:
    harness = access_code_harness()
    page = harness.request("GET", PORTAL + "/").body
    assert re.search(r'<label for="field-code">Access code<input type="text" name="code"', page)
    wrong = sign_in(harness, code="room-102")
    assert wrong.status == 403 and "not valid" in wrong.body and 'name="code"' in wrong.body
    assert not harness.table.is_authorized(CLIENT_MAC)
    right = sign_in(harness, code="  ROOM-101 ")
    assert right.status == 200 and harness.table.session(CLIENT_MAC).method == "access-code"


def test_wrong_codes_are_rate_limited_per_device_and_the_limit_expires() -> None:
    harness = access_code_harness()
    for _ in range(3):
        assert sign_in(harness, code="guess").status == 403
        harness.clock.advance(1)
    blocked = sign_in(harness, code="sesame")  # even the right code waits
    assert blocked.status == 429 and "Too many attempts" in blocked.body
    assert int(blocked.header("Retry-After")) == 58
    assert not harness.table.is_authorized(CLIENT_MAC)
    # Another device is not affected.
    assert sign_in(harness, client_ip=OTHER_IP, code="sesame").status == 200
    harness.clock.advance(58)
    assert sign_in(harness, code="sesame").status == 200
    assert harness.table.is_authorized(CLIENT_MAC)


def test_wrong_codes_are_bounded_across_devices_and_a_right_code_still_gets_in() -> None:
    config = make_config()
    auth = attrs.evolve(config.auth, method="access-code", codes=("sesame",), max_attempts_total=30)
    harness = WebHarness(attrs.evolve(config, auth=auth))
    devices = {f"192.0.2.{100 + n}": f"02:00:00:00:01:{n:02x}" for n in range(30)}
    harness.neighbours.replace({**devices, CLIENT_IP: CLIENT_MAC})
    checked: list[float] = []
    got_in = None
    for second in range(0, 300, 2):
        for ip in devices:  # 30 leased MACs guessing, each as fast as its own limit allows
            status = sign_in(harness, client_ip=ip, code=f"guess{second}").status
            if status == 403:
                checked.append(harness.clock.seconds())
            else:
                assert status == 429
        if second >= 120 and got_in is None and second % 10 == 0:
            reply = sign_in(harness, code="sesame")
            if reply.status == 200:
                got_in = second - 120
            else:
                assert reply.status == 429 and int(reply.header("Retry-After")) >= 1
        harness.clock.advance(2)
    start = 1_800_000_000
    per_window = [sum(1 for t in checked if start + w <= t < start + w + 60) for w in range(0, 240, 2)]
    # 30 a minute for all of them together (the per-device limit alone let 150 through).
    assert max(per_window) <= 30
    assert got_in is not None and got_in <= 120
    assert harness.web.refusals.counts["auth.max_attempts_total"] > 0


def test_click_through_is_not_budgeted() -> None:
    config = make_config()
    harness = WebHarness(attrs.evolve(config, auth=attrs.evolve(config.auth, max_attempts_total=1)))
    assert sign_in(harness, accept="yes").status == 200
    assert sign_in(harness, client_ip=OTHER_IP, accept="yes").status == 200


# --- cross-site request forgery ---


def test_forms_without_a_valid_token_change_nothing(harness: WebHarness) -> None:
    other_token = harness.csrf(client_ip=OTHER_IP)
    for form in (
        {"accept": "yes"},
        {"accept": "yes", "csrf": "junk"},
        {"accept": "yes", "csrf": other_token},
        {"accept": "yes", "csrf": "a.\u00b2.b"},
        {"accept": "yes", "csrf": "a.\u0661\u0662.b"},
    ):
        reply = harness.request("POST", PORTAL + "/login", form=form)
        assert reply.status == 403 and "expired" in reply.body
    token = harness.csrf()
    cross_site = harness.request(
        "POST",
        PORTAL + "/login",
        form={"accept": "yes", "csrf": token},
        headers={"Origin": "http://evil.example"},
    )
    assert cross_site.status == 403
    harness.clock.advance(3601)
    assert harness.request("POST", PORTAL + "/login", form={"accept": "yes", "csrf": token}).status == 403
    assert len(harness.table) == 0
    # A browser that hides the origin (Referrer-Policy: no-referrer) sends "null".
    fresh = harness.csrf()
    ok = harness.request(
        "POST", PORTAL + "/login", form={"accept": "yes", "csrf": fresh}, headers={"Origin": "null"}
    )
    assert ok.status == 200 and harness.table.is_authorized(CLIENT_MAC)
    # A form on the portal opened by its address comes from that origin.
    harness.table.deauthorize(CLIENT_MAC, EndReason.LOGOUT)
    page = harness.request("GET", "http://192.0.2.1/").body
    by_address = harness.request(
        "POST",
        "http://192.0.2.1/login",
        form={"accept": "yes", "csrf": harness.form_value(page, "csrf")},
        headers={"Origin": "http://192.0.2.1"},
    )
    assert by_address.status == 200 and harness.table.is_authorized(CLIENT_MAC)
    # Signing out needs the token too.
    assert harness.request("POST", PORTAL + "/logout", form={}).status == 403
    assert harness.table.is_authorized(CLIENT_MAC)
    # Each refusal counted; the log says it once a minute per client.
    assert harness.web.refusals.counts["form token"] == 8


# --- status and sign-out ---


def test_status_shows_time_left_warns_near_the_end_and_signs_out(harness: WebHarness) -> None:
    harness.table.authorize(
        CLIENT_MAC, ip=CLIENT_IP, method="click-through", duration=3600, quota_bytes=500 * 10**6
    )
    assert harness.request("GET", PORTAL + "/").header("Location") == "/status"
    page = harness.request("GET", PORTAL + "/status")
    assert page.status == 200 and "1 h 00 min" in page.body and "Data allowance" in page.body
    harness.usage[CLIENT_MAC] = (120 * 10**6, 3 * 10**6)
    page = harness.request("GET", PORTAL + "/status")
    assert "Data used</dt><dd>123.0 MB of 500.0 MB" in page.body
    assert CLIENT_MAC in page.body and "ends in" not in page.body
    assert '<meta http-equiv="refresh" content="60"' in page.body
    harness.clock.advance(3600 - 240)
    page = harness.request("GET", PORTAL + "/status")
    assert "Your session ends in 4 min" in page.body
    ended: list = []
    harness.table.add_observer(type("O", (), {"session_ended": lambda s, x, r: ended.append(r)})())
    reply = harness.request("POST", PORTAL + "/logout", form={"csrf": harness.form_value(page.body, "csrf")})
    assert reply.status == 200 and "signed out" in reply.body
    assert not harness.table.is_authorized(CLIENT_MAC) and ended == [EndReason.LOGOUT]
    assert harness.request("GET", PORTAL + "/status").header("Location") == "/"


def test_pages_that_do_not_exist_and_wrong_methods(harness: WebHarness) -> None:
    assert harness.request("GET", PORTAL + "/nope").status == 404
    assert harness.request("GET", PORTAL + "/status/extra").status == 404
    reply = harness.request("GET", PORTAL + "/login")
    assert reply.status == 405 and reply.header("Allow") == "POST"


# --- static files and themes ---


def test_the_static_folder_itself_is_not_found_for_any_method(harness: WebHarness) -> None:
    for method in ("GET", "HEAD"):
        assert harness.request(method, PORTAL + "/static").status == 404, method
    # As for every static path: a form sent there is the wrong method.
    assert harness.request("POST", PORTAL + "/static").status == 405


def test_static_files_have_validators_and_caching(harness: WebHarness) -> None:
    reply = harness.request("GET", PORTAL + "/static/portal.css")
    assert reply.status == 200 and reply.header("Content-Type").startswith("text/css")
    assert reply.header("Cache-Control") == "public, max-age=3600"
    etag, modified = reply.header("ETag"), reply.header("Last-Modified")
    assert etag and modified
    assert (
        harness.request("GET", PORTAL + "/static/portal.css", headers={"If-None-Match": etag}).status == 304
    )
    assert (
        harness.request("GET", PORTAL + "/static/portal.css", headers={"If-Modified-Since": modified}).status
        == 304
    )
    for bad in (
        "/static/../intercept.py",
        "/static/%2e%2e/intercept.py",
        "/static/.hidden",
        "/static/",
        "/static/x/y",
    ):
        assert harness.request("GET", PORTAL + bad).status == 404, bad


def test_a_theme_overrides_templates_and_static_files(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "static").mkdir()
    builtin = Path(__file__).resolve().parent.parent / "portald" / "web" / "templates" / "landing.xhtml"
    (tmp_path / "templates" / "landing.xhtml").write_text(
        builtin.read_text().replace("please read the terms", "read our house rules")
    )
    (tmp_path / "static" / "portal.css").write_text("body { color: teal; }\n")
    (tmp_path / "static" / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>\n")
    theme_config = make_config(f"  theme: {tmp_path}\n")
    harness = WebHarness(theme_config)
    assert "read our house rules" in harness.request("GET", PORTAL + "/").body
    assert harness.request("GET", PORTAL + "/static/portal.css").body == "body { color: teal; }\n"
    assert harness.request("GET", PORTAL + "/static/logo.svg").status == 200
    # What the theme leaves out comes from the built-in set.
    harness.table.authorize(CLIENT_MAC, ip=CLIENT_IP, method="click-through", duration=60)
    assert "Time left" in harness.request("GET", PORTAL + "/status").body


def test_form_fields_with_bytes_that_are_not_utf8_are_read_not_a_500(harness: WebHarness) -> None:
    token = harness.csrf()
    body = f"csrf={quote(token)}&%ff%fe=%ff&accept=yes".encode()
    raw, _ = harness.raw(
        b"POST /login HTTP/1.1\r\nHost: portal.example\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    assert raw.split(b"\r\n")[0] in (b"HTTP/1.1 200 OK", b"HTTP/1.1 303 See Other"), raw[:300]
    assert harness.table.is_authorized(CLIENT_MAC)

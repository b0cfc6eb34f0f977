"""
The admin page, resource by resource: staff sign-in, the CSRF token and
origin on every form, escaping of what guests choose, each page and each
change, over the real twisted.web Site on a Clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.logger import globalLogPublisher

from portald.admin.chart import HOUR, day_chart, last_day
from portald.admin.layout import PAGE_POLICY, SHEET_POLICY
from portald.admin.site import WRONG_PASSWORD_DELAY
from portald.html import flatten_now
from portald.table import EndReason
from tests.admin_support import (
    GUEST_IP,
    GUEST_MAC,
    HOSTILE_NAME,
    NAME,
    OTHER_MAC,
    PASSWORD,
    TEST_COST,
    AdminHarness,
)

PAGES = ("/", "/vouchers", "/today", "/allowed", "/vouchers/sheet?batch=x")
COMMANDS = ("/sessions/end", "/sessions/extend", "/sessions/auth", "/vouchers/create", "/vouchers/revoke",
            "/allowed/add", "/allowed/remove", "/logout")  # fmt: skip


@pytest.fixture
def h(tmp_path: Path) -> Iterator[AdminHarness]:
    harness = AdminHarness(tmp_path)
    yield harness
    harness.store.close()


@pytest.fixture
def logged() -> Iterator[list[dict]]:
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def texts(events: list[dict]) -> list[str]:
    from twisted.logger import formatEvent

    return [formatEvent(event) for event in events]


# --- signing in ---


def test_every_page_needs_a_sign_in_and_no_command_is_taken_without_one(h: AdminHarness) -> None:
    browser = h.browser()
    for path in PAGES:
        reply = browser.get(path)
        assert (reply.status, reply.header("Location")) == (303, "/login"), path
    h.table.authorize(GUEST_MAC, ip=GUEST_IP, method="click-through", duration=HOUR)
    for path in COMMANDS:
        reply = browser.post(path, device=GUEST_MAC, mac=GUEST_MAC, count="3", duration="1d")
        assert reply.status == 403, path
    assert h.table.is_authorized(GUEST_MAC) and h.vouchers.row is not None
    assert h.book.listing() == []


def test_the_right_password_signs_in_with_a_strict_http_only_cookie(h: AdminHarness, logged) -> None:
    browser = h.browser()
    reply = browser.sign_in()
    assert (reply.status, reply.header("Location")) == (303, "/")
    (session_cookie,) = [c for c in browser.set_cookies if c.startswith("portald_admin=")]
    attributes = {part.strip().split("=")[0].lower() for part in session_cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "SameSite=Strict" in session_cookie or "samesite=strict" in session_cookie.lower()
    assert "secure" not in attributes  # plain HTTP: a Secure cookie would never come back
    page = browser.get("/")
    assert page.status == 200 and NAME in page.body
    assert any(f"staff {NAME} signed in to the admin page from 198.51.100.20" in t for t in texts(logged))


def test_over_https_the_cookie_is_secure(tmp_path: Path) -> None:
    harness = AdminHarness(tmp_path, secure=True)
    browser = harness.browser()
    browser.sign_in()
    assert all("Secure" in cookie for cookie in browser.set_cookies)
    harness.store.close()


def test_a_wrong_password_is_answered_a_second_later_and_logged(h: AdminHarness, logged) -> None:
    browser = h.browser()
    assert browser.sign_in(password="wrong horse") is None  # not yet
    h.clock.advance(WRONG_PASSWORD_DELAY - 0.01)
    assert h.pending() == b""
    h.clock.advance(0.01)
    reply = browser.later()
    assert reply.status == 403 and "do not match an account" in reply.body
    assert "portald_admin" not in browser.cookies
    assert any("wrong name or password for 'frontdesk' from 198.51.100.20" in t for t in texts(logged))
    # An unknown name is answered the same way, after the same check.
    assert browser.sign_in(name="nobody") is None
    h.clock.advance(WRONG_PASSWORD_DELAY)
    assert "do not match an account" in browser.later().body


def test_five_wrong_passwords_lock_the_address_and_the_name_for_a_while(h: AdminHarness) -> None:
    browser = h.browser()
    for _ in range(5):
        browser.sign_in(password="guess")
        h.clock.advance(WRONG_PASSWORD_DELAY)
        browser.later()
    locked = browser.sign_in()  # even the right password
    assert locked.status == 429 and "Try again in 15 minutes" in locked.body
    # The name is locked from another address too.
    assert h.browser("198.51.100.21").sign_in().status == 429
    h.clock.advance(15 * 60)
    assert browser.sign_in().status == 303


def test_a_sign_in_form_without_its_own_cookie_is_refused(h: AdminHarness) -> None:
    # A page elsewhere posting to /login (login CSRF) has no login cookie to match.
    reply = h.browser().post("/login", csrf="made-up", name=NAME, password=PASSWORD)
    assert reply.status == 403 and "out of date" in reply.body


def test_a_sign_in_ends_when_left_alone_and_at_sign_out(h: AdminHarness) -> None:
    browser = h.signed_in()
    h.clock.advance(3599)
    assert browser.get("/").status == 200
    h.clock.advance(3600)
    assert browser.get("/").status == 303
    browser = h.signed_in()
    assert browser.send("/logout").status == 303
    assert browser.get("/").status == 303


def test_a_removed_account_is_signed_out_at_its_next_click(h: AdminHarness) -> None:
    from portald.admin.accounts import remove_account

    browser = h.signed_in()
    remove_account(h.users, NAME)
    assert browser.get("/").status == 303


# --- forms ---


def test_a_form_without_the_token_or_from_another_site_changes_nothing(h: AdminHarness, logged) -> None:
    h.table.authorize(GUEST_MAC, ip=GUEST_IP, method="click-through", duration=HOUR)
    browser = h.signed_in()
    assert browser.post("/sessions/end", device=GUEST_MAC).status == 403
    assert browser.post("/sessions/end", device=GUEST_MAC, csrf="wrong").status == 403
    token = browser.csrf()
    foreign = browser.request(
        "POST", "/sessions/end", {"csrf": token, "device": GUEST_MAC}, {"Origin": "http://evil.example"}
    )
    assert foreign.status == 403
    assert h.table.is_authorized(GUEST_MAC)
    assert browser.get("/sessions/end").status == 405


def test_ending_a_session_waits_for_the_firewall_and_logs_who(h: AdminHarness, logged) -> None:
    h.table.authorize(GUEST_MAC, ip=GUEST_IP, method="click-through", duration=HOUR)
    browser = h.signed_in()
    token = browser.csrf()
    h.auto_apply = False
    assert browser.post("/sessions/end", csrf=token, device=GUEST_MAC) is None
    assert not h.table.is_authorized(GUEST_MAC)
    assert h.store.last_ending(GUEST_MAC)[0] is EndReason.ADMIN
    h.waiting[0].callback(None)
    reply = browser.later()
    assert (reply.status, reply.header("Location")) == (303, "/")
    assert "session has ended; it is cut off." in browser.get("/").body
    assert any(f"staff {NAME} ended the session of {GUEST_MAC} ({GUEST_IP})" in t for t in texts(logged))


def test_a_refused_change_is_shown_on_its_page(h: AdminHarness) -> None:
    browser = h.signed_in()
    reply = browser.send("/sessions/end", device=OTHER_MAC)
    assert reply.status == 303
    page = browser.get("/")
    assert "is not signed in" in page.body and 'role="alert"' in page.body
    # Shown once.
    assert "is not signed in" not in browser.get("/").body


def test_extend_and_let_in(h: AdminHarness) -> None:
    browser = h.signed_in()
    browser.send("/sessions/auth", device=OTHER_MAC)
    session = h.table.session(OTHER_MAC)
    assert session is not None and session.method == "staff" and session.note == f"let in by {NAME}"
    before = session.expires
    browser.send("/sessions/extend", device=OTHER_MAC, duration="4h")
    assert h.table.session(OTHER_MAC).expires == before + 4 * HOUR
    browser.send("/sessions/extend", device=OTHER_MAC, duration="soon")
    assert "Extend by: expected a duration" in browser.get("/").body
    assert h.table.session(OTHER_MAC).expires == before + 4 * HOUR


# --- what is shown ---


def test_every_answer_carries_the_policy_and_no_store(h: AdminHarness) -> None:
    browser = h.signed_in()
    for path in ("/", "/vouchers", "/today", "/allowed", "/login"):
        reply = browser.get(path)
        assert reply.header("Content-Security-Policy") == PAGE_POLICY.decode(), path
        assert reply.header("Cache-Control") == "no-store"
        assert reply.header("X-Frame-Options") == "DENY"
        assert "<script" not in reply.body


def test_what_guests_and_staff_typed_is_shown_as_text(h: AdminHarness) -> None:
    h.table.authorize(GUEST_MAC, ip=GUEST_IP, method="click-through", duration=HOUR)
    browser = h.signed_in()
    now = browser.get("/")
    assert HOSTILE_NAME not in now.body
    assert '&lt;script&gt;alert("x")&lt;/script&gt;' in now.body
    assert "Café &lt;Test&gt;" in now.body
    browser.send("/allowed/add", page="/allowed", mac="02:00:00:00:00:cc", note="<b>till</b>")
    assert "&lt;b&gt;till&lt;/b&gt;" in browser.get("/allowed").body
    browser.send("/vouchers/create", page="/vouchers", count="1", duration="1d", note="<img src=x>")
    listing = browser.get("/vouchers")
    assert "<img src=x>" not in listing.body and "&lt;img src=x&gt;" in listing.body


def test_now_lists_who_is_online_and_who_is_not_yet(h: AdminHarness) -> None:
    h.table.authorize(GUEST_MAC, ip=GUEST_IP, method="voucher", duration=HOUR)
    h.clock.advance(600)
    body = h.signed_in().get("/").body
    online, seen = body.split("Seen, not signed in")
    assert GUEST_MAC in online and "50m00s" in online and "voucher" in online
    assert OTHER_MAC in seen and "bobs-laptop" in seen and "Let in" in seen
    assert "1 signed in, 2 devices known" in body


def test_vouchers_made_are_shown_once_and_their_sheet_only_to_who_made_them(h: AdminHarness, logged) -> None:
    browser = h.signed_in()
    made = browser.send(
        "/vouchers/create",
        page="/vouchers",
        count="3",
        duration="1d",
        devices="2",
        quota="1GB",
        layout="80mm",
    )
    assert made.status == 200
    codes = re.findall(r'<code class="code">([A-Z0-9-]+)</code>', made.body)
    assert len(codes) == 3 and all(h.book.find(code) is not None for code in codes)
    batch = h.book.listing()[0].batch
    sheet = browser.get(f"/vouchers/sheet?batch={batch}")
    assert sheet.status == 200 and sheet.header("Content-Security-Policy") == SHEET_POLICY.decode()
    assert sorted(re.findall(r'data-code="([^"]+)"', sheet.body)) == sorted(codes)
    other = h.signed_in()
    assert other.get(f"/vouchers/sheet?batch={batch}").status == 404
    assert any(f"staff {NAME} made 3 voucher(s) in batch {batch}" in t for t in texts(logged))
    # The list shows ids, never the codes again.
    listing = browser.get("/vouchers")
    assert not any(code in listing.body for code in codes)
    assert "3 unused" in listing.body


def test_bad_voucher_forms_make_nothing(h: AdminHarness) -> None:
    browser = h.signed_in()
    for form, error in [
        ({"count": "0", "duration": "1d"}, "How many: expected a whole number from 1 to 500"),
        ({"count": "501", "duration": "1d"}, "How many"),
        ({"count": "2", "duration": "forever"}, "Each lasts: expected a duration"),
        ({"count": "2", "duration": "1d", "quota": "lots"}, "Data each: expected an amount"),
        (
            {"count": "2", "duration": "1d", "valid_until": "tomorrow"},
            "Usable until: 'tomorrow' is not a date",
        ),
        ({"count": "2", "duration": "1d", "layout": "poster"}, "Print as: expected one of"),
    ]:
        assert browser.send("/vouchers/create", page="/vouchers", **form).status == 303
        assert error in browser.get("/vouchers").body, form
    assert h.book.listing() == []


def test_revoking_a_batch_cuts_its_devices_off(h: AdminHarness) -> None:
    browser = h.signed_in()
    made = browser.send("/vouchers/create", page="/vouchers", count="2", duration="1d")
    code = re.findall(r'<code class="code">([A-Z0-9-]+)</code>', made.body)[0]
    redeemed = h.book.redeem(code, GUEST_MAC)
    h.table.authorize(GUEST_MAC, ip=GUEST_IP, method="voucher", user=redeemed.voucher.id, duration=HOUR)
    batch = redeemed.voucher.batch
    reply = browser.send("/vouchers/revoke", page="/vouchers", batch=batch)
    assert reply.header("Location") == f"/vouchers?batch={batch}"
    assert not h.table.is_authorized(GUEST_MAC)
    assert {v.state(h.clock.seconds()).value for v in h.book.listing()} == {"revoked"}
    assert "2 voucher(s) revoked" in browser.get("/vouchers").body


def test_allowed_devices_added_and_removed(h: AdminHarness) -> None:
    browser = h.signed_in()
    browser.send("/allowed/add", page="/allowed", mac="02:00:00:00:00:CC", note="till")
    assert h.table.may_pass("02:00:00:00:00:cc")
    assert "02:00:00:00:00:cc" in browser.get("/allowed").body
    browser.send("/allowed/add", page="/allowed", mac="not-a-mac")
    assert "not a MAC address" in browser.get("/allowed").body
    browser.send("/allowed/remove", page="/allowed", mac="02:00:00:00:00:cc")
    assert not h.table.may_pass("02:00:00:00:00:cc")


# --- the day ---


def test_the_last_day_counts_sign_ins_and_devices_per_hour() -> None:
    now = 1_800_000_000.0 + 1800  # half past the hour
    current = now - 1800
    sessions = [
        (current + 60, None, "a"),  # this hour, still on
        (current - HOUR + 10, current - HOUR + 20, "b"),  # an hour ago, briefly
        (current - 3 * HOUR, current - HOUR + 5, "c"),  # three hours, ended an hour ago
        (current - 30 * HOUR, current - 2 * HOUR, "d"),  # began before the day shown
        (current - 2 * HOUR + 1, current - 2 * HOUR + 2, "d"),  # the same device again
    ]
    hours = last_day(sessions, now)
    assert len(hours) == 24 and hours[-1].start == current and hours[0].start == current - 23 * HOUR
    assert [h.sign_ins for h in hours[-4:]] == [1, 1, 1, 1]
    assert [h.online for h in hours[-4:]] == [2, 2, 2, 1]
    assert hours[0].online == 1 and sum(h.sign_ins for h in hours) == 4


def test_the_chart_has_a_bar_per_hour_and_a_title(h: AdminHarness) -> None:
    hours = last_day([(h.clock.seconds() - 10, None, GUEST_MAC)], h.clock.seconds())
    svg = flatten_now(day_chart(hours)).decode()
    assert svg.count('class="bar"') == 24 and "<polyline" in svg and 'role="img"' in svg
    assert "<title" in svg


def test_today_is_drawn_from_the_store_and_the_counters(h: AdminHarness) -> None:
    h.table.authorize(GUEST_MAC, ip=GUEST_IP, method="voucher", duration=HOUR)
    h.clock.advance(HOUR)  # it ends, by its timeout
    h.clock.advance(HOUR)
    h.table.authorize(OTHER_MAC, ip="192.0.2.11", method="click-through", duration=HOUR)
    body = h.signed_in().get("/today").body
    assert "2 sign-ins; at most 1 device online" in body
    assert "<svg" in body and "511 Network Authentication Required</td><td>7" in body
    assert "<td>voucher</td><td>ok</td><td>2</td>" in body


# --- accounts ---


def test_accounts_file_round_trip_and_errors(tmp_path: Path) -> None:
    from portald.admin.accounts import AccountsError, read_accounts, remove_account, set_account

    path = tmp_path / "users"
    assert set_account(path, "alice", "a long password", cost=TEST_COST) is False
    assert set_account(path, "bob", "another password", cost=TEST_COST) is False
    assert set_account(path, "alice", "changed password", cost=TEST_COST) is True
    accounts = read_accounts(path)
    assert sorted(accounts.hashes) == ["alice", "bob"]
    assert accounts.hashes["alice"].matches("changed password")
    assert not accounts.hashes["alice"].matches("a long password")
    assert path.stat().st_mode & 0o777 == 0o640
    assert "changed password" not in path.read_text()
    assert remove_account(path, "bob") and not remove_account(path, "bob")
    for text, error in [
        ("alice\n", "line 1: expected name:hash"),
        ("# ok\nalice:md5$abc\n", "line 2: alice's hash is not usable"),
        (
            f"alice:{accounts.hashes['alice'].text()}\nalice:{accounts.hashes['alice'].text()}\n",
            "line 2: alice is listed twice",
        ),
    ]:
        path.write_text(text)
        with pytest.raises(AccountsError, match=re.escape(error)):
            read_accounts(path)
    with pytest.raises(AccountsError, match="a password needs 8"):
        set_account(tmp_path / "new", "carol", "short")
    with pytest.raises(AccountsError, match="not a usable name"):
        set_account(tmp_path / "new", "carol:x", "long enough")


def test_a_broken_accounts_file_keeps_the_last_good_one(h: AdminHarness) -> None:
    browser = h.signed_in()
    h.users.write_text("garbage\n")
    assert browser.get("/").status == 200  # still an account


def test_an_oversized_form_is_refused_before_it_is_read(h: AdminHarness) -> None:
    h.table.authorize(GUEST_MAC, ip=GUEST_IP, method="click-through", duration=HOUR)
    browser = h.signed_in()
    reply = browser.post("/sessions/end", csrf=browser.csrf(), device=GUEST_MAC, padding="x" * 70_000)
    assert reply.status == 413 and h.table.is_authorized(GUEST_MAC)

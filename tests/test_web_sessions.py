"""
The portal and the session store: why the last session ended, extending a
session, and sign-ins the store could not record.  A real SQLite store in a
temporary directory; the web part on a Clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from portald.config import load_config
from portald.limits import ActivityTracker
from portald.store import SessionStore
from portald.table import EndReason
from portald.tap import build_service
from portald.web.words import describe_allowance, describe_ending, describe_period
from tests.limits_support import observing_limits

from .dns_fakes import UDPMemoryReactor
from .test_restore import write_config
from .web_support import (
    CLIENT_IP,
    CLIENT_MAC,
    OTHER_IP,
    OTHER_MAC,
    STRANGER_IP,
    WebHarness,
    make_config,
    parse_replies,
)

PORTAL = "http://portal.example"
ENDED = "Your session ended"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SessionStore]:
    store = SessionStore.open(tmp_path / "sessions.sqlite3")
    yield store
    store.close()


def harness_with(store: SessionStore, **sessions: object) -> WebHarness:
    config = make_config()
    return WebHarness(attrs.evolve(config, sessions=attrs.evolve(config.sessions, **sessions)), store)


def sign_in(harness: WebHarness, client_ip: str = CLIENT_IP):
    form = {"csrf": harness.csrf(client_ip), "accept": "yes"}
    return harness.request("POST", PORTAL + "/login", client_ip=client_ip, form=form)


def ending_notice(page: str) -> str | None:
    match = re.search(r'<p class="notice" role="status">([^<]*)</p>', page)
    return match.group(1) if match else None


def landing(harness: WebHarness, client_ip: str = CLIENT_IP) -> str:
    reply = harness.request("GET", PORTAL + "/", client_ip=client_ip)
    assert reply.status == 200
    return reply.body


# --- why the last session ended ---


def test_an_idle_ending_is_explained_above_the_sign_in_form(store: SessionStore) -> None:
    harness = harness_with(store, idle_timeout=1800, sample_interval=60)
    activity = ActivityTracker()
    harness.table.add_observer(activity)
    limits = observing_limits(harness.table, activity, harness.clock, 60)
    limits.startService()
    try:
        assert sign_in(harness).status == 200
        assert ending_notice(landing(harness, OTHER_IP)) is None  # never signed in
        for _ in range(10):  # active for ten minutes
            activity.saw(CLIENT_MAC, 1000, 100)
            harness.clock.advance(60)
        assert harness.table.is_authorized(CLIENT_MAC)
        for _ in range(30):
            harness.clock.advance(60)
        assert not harness.table.is_authorized(CLIENT_MAC)
    finally:
        limits.stopService()
    harness.clock.advance(5 * 60)
    page = landing(harness)
    assert ending_notice(page) == ("Your session ended 5 min ago because you were inactive for 30 minutes.")
    assert page.index(ENDED) < page.index('<form method="post" action="/login">')
    # It is this device's ending, not anyone else's.
    assert ending_notice(landing(harness, OTHER_IP)) is None


def test_a_used_allowance_is_explained(store: SessionStore) -> None:
    harness = harness_with(store, quota=500 * 10**6)
    activity = ActivityTracker()
    harness.table.add_observer(activity)
    limits = observing_limits(harness.table, activity, harness.clock, 60)
    assert sign_in(harness).status == 200
    activity.saw(CLIENT_MAC, 450 * 10**6, 60 * 10**6)
    harness.clock.advance(60)
    limits.sample()
    assert not harness.table.is_authorized(CLIENT_MAC)
    assert ending_notice(landing(harness)) == (
        "Your session ended less than a minute ago because your data allowance of 500 MB was used."
    )


def test_expiry_is_explained_for_a_day_and_then_forgotten(store: SessionStore) -> None:
    harness = harness_with(store)
    assert sign_in(harness).status == 200
    harness.clock.advance(harness.config.session_timeout())
    harness.clock.advance(65 * 60)
    assert not harness.table.is_authorized(CLIENT_MAC)
    assert ending_notice(landing(harness)) == "Your session ended 1 h 05 min ago because its time was up."
    harness.clock.advance(24 * 3600 - 65 * 60)
    assert ending_notice(landing(harness)) is not None
    harness.clock.advance(1)
    page = landing(harness)
    assert ending_notice(page) is None and ENDED not in page


def test_signing_out_and_an_operator_ending_are_explained(store: SessionStore) -> None:
    harness = harness_with(store)
    assert sign_in(harness).status == 200
    status = harness.request("GET", PORTAL + "/status").body
    form = {"csrf": harness.form_value(status, "csrf")}
    assert harness.request("POST", PORTAL + "/logout", form=form).status == 200
    assert ending_notice(landing(harness)) == (
        "Your session ended less than a minute ago because you signed out."
    )
    assert sign_in(harness, OTHER_IP).status == 200
    harness.clock.advance(120)
    harness.table.deauthorize(OTHER_MAC, EndReason.ADMIN)
    assert ending_notice(landing(harness, OTHER_IP)) == (
        "Your session ended less than a minute ago because the network's staff ended it."
    )


def test_no_ending_is_shown_while_a_session_is_active(store: SessionStore) -> None:
    harness = harness_with(store)
    assert sign_in(harness).status == 200
    harness.table.deauthorize(CLIENT_MAC, EndReason.LOGOUT)
    assert ending_notice(landing(harness)) is not None
    # Signed in again: the landing page sends the device to its session,
    # and neither page speaks of the old ending.
    assert sign_in(harness).status == 200
    assert harness.request("GET", PORTAL + "/").header("Location") == "/status"
    assert ENDED not in harness.request("GET", PORTAL + "/status").body
    # Replaced by a new sign-in (a second login of the same device) is no news either.
    harness.table.authorize(CLIENT_MAC, ip=CLIENT_IP, method="click-through", duration=60)
    assert ENDED not in harness.request("GET", PORTAL + "/status").body


def test_a_store_that_cannot_be_read_still_shows_the_sign_in_form(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "sessions.sqlite3")
    harness = WebHarness(make_config(), store)
    store.close()  # every read now fails
    page = landing(harness)
    assert '<form method="post" action="/login">' in page and ENDED not in page


@pytest.mark.parametrize(
    ("reason", "idle", "quota", "expected"),
    [
        (EndReason.LOGOUT, 0, 0, "because you signed out"),
        (EndReason.EXPIRED, 0, 0, "because its time was up"),
        (EndReason.IDLE, 1800, 0, "because you were inactive for 30 minutes"),
        (EndReason.IDLE, 5400, 0, "because you were inactive for 1 hour 30 minutes"),
        (EndReason.IDLE, 45, 0, "because you were inactive for 45 seconds"),
        (EndReason.IDLE, 0, 0, "because you were inactive for too long"),
        (EndReason.QUOTA, 0, 500 * 10**6, "because your data allowance of 500 MB was used"),
        (EndReason.QUOTA, 0, 1_500_000_000, "because your data allowance of 1.5 GB was used"),
        (EndReason.QUOTA, 0, 0, "because your data allowance was used"),
        (EndReason.ADMIN, 0, 0, "because the network's staff ended it"),
        (EndReason.REPLACED, 0, 0, None),
    ],
)
def test_every_reason_in_plain_words(
    reason: EndReason, idle: float, quota: int, expected: str | None
) -> None:
    assert describe_ending(reason, idle_timeout=idle, quota=quota) == expected


def test_periods_and_allowances_in_words() -> None:
    assert describe_period(1) == "1 second"
    assert describe_period(3600) == "1 hour"
    assert describe_period(4 * 3600 + 60) == "4 hours 1 minute"
    assert describe_period(86400) == "1 day" and describe_period(2 * 86400 + 3600) == "2 days 1 hour"
    assert describe_allowance(999) == "999 bytes"
    assert describe_allowance(2 * 10**9) == "2 GB"
    assert describe_allowance(123_456_789) == "123.5 MB"


# --- extending a session ---


def extend_form(page: str) -> str | None:
    match = re.search(r'<form method="post" action="/extend">(.*?)</form>', page, re.S)
    return match.group(1) if match else None


def test_extending_adds_a_session_length_once_and_is_stored(store: SessionStore) -> None:
    harness = harness_with(store, extendable=True)
    assert sign_in(harness).status == 200
    started = harness.table.session(CLIENT_MAC)
    harness.clock.advance(600)
    status = harness.request("GET", PORTAL + "/status").body
    form = extend_form(status)
    assert form is not None and "Add 4 hours to your session</button>" in form
    token = harness.form_value(form, "csrf")
    reply = harness.request("POST", PORTAL + "/extend", form={"csrf": token})
    assert reply.status == 200 and "Your session was extended" in reply.body
    assert "7 h 50 min left" in reply.body
    extended = harness.table.session(CLIENT_MAC)
    assert extended.expires == started.expires + harness.config.session_timeout()
    (stored,) = store.open_sessions()
    assert stored.expires == extended.expires
    # More than a session's length left: no button, and a second press is refused.
    assert extend_form(harness.request("GET", PORTAL + "/status").body) is None
    again = harness.request("POST", PORTAL + "/extend", form={"csrf": token})
    assert again.status == 403 and "plenty of time left" in again.body
    assert harness.table.session(CLIENT_MAC).expires == extended.expires
    # Once it is within one length of its end again, it can be extended again.
    harness.clock.advance(4 * 3600)
    assert extend_form(harness.request("GET", PORTAL + "/status").body) is not None


def test_no_extension_where_the_configuration_does_not_allow_it(store: SessionStore) -> None:
    harness = harness_with(store)
    assert sign_in(harness).status == 200
    expires = harness.table.session(CLIENT_MAC).expires
    status = harness.request("GET", PORTAL + "/status").body
    assert extend_form(status) is None and "/extend" not in status
    reply = harness.request("POST", PORTAL + "/extend", form={"csrf": harness.form_value(status, "csrf")})
    assert reply.status == 403 and "cannot be extended" in reply.body
    assert harness.table.session(CLIENT_MAC).expires == expires
    assert store.open_sessions()[0].expires == expires


def test_a_session_without_an_end_has_nothing_to_extend(store: SessionStore) -> None:
    harness = harness_with(store, extendable=True)
    harness.table.authorize(CLIENT_MAC, ip=CLIENT_IP, method="click-through", duration=None)
    status = harness.request("GET", PORTAL + "/status").body
    assert "no time limit" in status and extend_form(status) is None
    reply = harness.request("POST", PORTAL + "/extend", form={"csrf": harness.form_value(status, "csrf")})
    assert reply.status == 403 and harness.table.session(CLIENT_MAC).expires is None


def test_a_forged_extension_changes_nothing(store: SessionStore) -> None:
    harness = harness_with(store, extendable=True)
    assert sign_in(harness).status == 200
    expires = harness.table.session(CLIENT_MAC).expires
    other_token = harness.csrf(client_ip=OTHER_IP)
    for form in ({}, {"csrf": "junk"}, {"csrf": other_token}):
        reply = harness.request("POST", PORTAL + "/extend", form=form)
        assert reply.status == 403 and "did not come from this portal" in reply.body
    token = harness.form_value(harness.request("GET", PORTAL + "/status").body, "csrf")
    cross_site = harness.request(
        "POST", PORTAL + "/extend", form={"csrf": token}, headers={"Origin": "http://evil.example"}
    )
    assert cross_site.status == 403
    assert harness.table.session(CLIENT_MAC).expires == expires
    assert store.open_sessions()[0].expires == expires
    assert harness.request("GET", PORTAL + "/extend").status == 405


def test_extending_without_a_session_or_a_lease(store: SessionStore) -> None:
    harness = harness_with(store, extendable=True)
    reply = harness.request("POST", PORTAL + "/extend", form={"csrf": harness.csrf()})
    assert reply.status == 409 and "Sign in again" in reply.body and len(harness.table) == 0
    harness.neighbours.replace({STRANGER_IP: "02:00:00:00:00:99"})
    token = harness.csrf(client_ip=STRANGER_IP)
    harness.neighbours.replace({})
    reply = harness.request("POST", PORTAL + "/extend", client_ip=STRANGER_IP, form={"csrf": token})
    assert reply.status == 403 and "You cannot sign in yet" in reply.body


def test_an_extension_the_store_cannot_record_is_not_claimed(store: SessionStore) -> None:
    harness = harness_with(store, extendable=True)
    assert sign_in(harness).status == 200
    expires = harness.table.session(CLIENT_MAC).expires
    token = harness.form_value(harness.request("GET", PORTAL + "/status").body, "csrf")
    store._db.execute("PRAGMA query_only = ON")  # every write fails, as on a full disk
    reply = harness.request("POST", PORTAL + "/extend", form={"csrf": token})
    assert reply.status == 503 and "could not extend your session" in reply.body
    assert "was extended" not in reply.body and "Traceback" not in reply.body
    assert harness.table.session(CLIENT_MAC).expires == expires
    store._db.execute("PRAGMA query_only = OFF")
    assert store.open_sessions()[0].expires == expires
    assert harness.request("POST", PORTAL + "/extend", form={"csrf": token}).status == 200


# --- a sign-in the store cannot record ---


def test_a_sign_in_the_store_cannot_record_is_refused_with_a_clear_page(store: SessionStore) -> None:
    harness = harness_with(store)
    token = harness.csrf()
    store._db.execute("PRAGMA query_only = ON")
    reply = harness.request("POST", PORTAL + "/login", form={"csrf": token, "accept": "yes"})
    assert reply.status == 503
    assert "could not sign you in" in reply.body and "try again" in reply.body.lower()
    assert "You are online" not in reply.body and "Traceback" not in reply.body
    assert not harness.table.is_authorized(CLIENT_MAC)
    store._db.execute("PRAGMA query_only = OFF")
    assert store.open_sessions() == []
    # Once the disk is back, the same device signs in.
    assert sign_in(harness).status == 200 and harness.table.is_authorized(CLIENT_MAC)


# --- wiring in portald ---


def test_portald_shows_the_stores_ending_on_its_portal(tmp_path: Path) -> None:
    reactor = UDPMemoryReactor()
    reactor.advance(1_800_000_000)
    service = build_service(load_config(write_config(tmp_path)), reactor)
    service.neighbours.replace({CLIENT_IP: CLIENT_MAC})
    service.table.authorize(CLIENT_MAC, ip=CLIENT_IP, method="click-through", duration=3600)
    reactor.advance(3600)
    assert not service.table.is_authorized(CLIENT_MAC)
    web = service.getServiceNamed("http").web
    harness = WebHarness()
    harness.web = web  # the same in-memory connection, to portald's own web part
    raw, _ = harness.raw(b"GET / HTTP/1.1\r\nHost: 192.0.2.1\r\nConnection: close\r\n\r\n")
    (reply,) = parse_replies(raw)
    assert ending_notice(reply.body) == "Your session ended less than a minute ago because its time was up."
    service.store.close()

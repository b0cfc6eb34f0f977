"""
Vouchers: the codes, the key, every state on a Clock, device limits both
ways, the store across a reopen, and redemption through the real portal.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import stat
from pathlib import Path

import attrs
import pytest
from twisted.internet.task import Clock

from portald.config import WayIn
from portald.control.vouchers import ROWS_PER_TURN, VoucherOperations
from portald.limits import ActivityTracker, SessionLimits, UsageLedger
from portald.store import SessionStore
from portald.table import AuthorizationTable, EndReason
from portald.vouchers.book import PRUNE_AFTER, Redeemed, Refused, State, VoucherBook, VoucherError
from portald.vouchers.codes import ALPHABET, LENGTH, KeyFileError, VoucherKey, new_code, read_typed, shown
from portald.vouchers.method import VoucherMethod
from portald.vouchers.sheet import Slip

from .web_support import CLIENT_IP, CLIENT_MAC, OTHER_IP, OTHER_MAC, WebHarness, make_config

MAC1, MAC2, MAC3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
DAY = 86400.0
PORTAL = "http://portal.example"


# --- codes ---


def test_codes_have_no_look_alikes_and_at_least_40_bits() -> None:
    assert not set("0O1IL") & set(ALPHABET)
    assert len(set(ALPHABET)) == len(ALPHABET) == 31
    assert math.log2(len(ALPHABET)) * LENGTH >= 40
    codes = {new_code() for _ in range(10_000)}
    assert len(codes) == 10_000
    assert all(len(code) == LENGTH and set(code) <= set(ALPHABET) for code in codes)
    # Every letter turns up (a draw over the whole alphabet, not a part of it).
    assert set("".join(codes)) == set(ALPHABET)


def test_typed_codes_ignore_case_spaces_and_dashes_and_nothing_else_is_a_code() -> None:
    code = "K7QDM4XPR2"
    assert shown(code) == "K7QD-M4XP-R2"
    for typed in ("K7QD-M4XP-R2", "k7qd m4xp r2", " k7QdM4xpR2 ", "K7QD-M4XP-R2\t"):
        assert read_typed(typed) == code, typed
    for typed in (
        "",
        "K7QD-M4XP-R",
        "K7QD-M4XP-R22",
        "K7QD-M4XP-R0",
        "K7QD/M4XP/R2",
        "K" * 10_000,
        "Ķ7QDM4XPR2",
    ):
        assert read_typed(typed) is None, typed


def test_the_key_is_made_once_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "vouchers.key"
    key = VoucherKey.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert VoucherKey.load_or_create(path).digest("K7QDM4XPR2") == key.digest("K7QDM4XPR2")
    assert VoucherKey(b"x" * 32).digest("K7QDM4XPR2") != key.digest("K7QDM4XPR2")
    path.write_bytes(b"short")
    with pytest.raises(KeyFileError, match="not a key"):
        VoucherKey.load_or_create(path)


# --- the book ---


class Desk:
    """A voucher book on a Clock, with its store and table."""

    def __init__(
        self,
        tmp: Path,
        when_full: str = "refuse",
        clock: Clock | None = None,
        table: AuthorizationTable | None = None,
    ) -> None:
        self.tmp = tmp
        self.when_full = when_full
        if clock is None:
            clock = Clock()
            clock.advance(1_800_000_000)
        self.clock = clock
        self.open(table)

    def open(self, table: AuthorizationTable | None = None) -> None:
        self.store = SessionStore.open(self.tmp / "sessions.sqlite3")
        if table is None:
            table = AuthorizationTable(self.clock, journal=self.store)
            for session in self.store.restorable(self.clock.seconds()):
                table.restore(session)
        self.table = table
        key = VoucherKey.load_or_create(self.tmp / "vouchers.key")
        self.book = VoucherBook(self.store, self.table, self.clock, key, self.when_full)

    def create(self, count: int = 1, duration: float = DAY, **kwargs) -> list[str]:
        made: list = []
        self.book.create(count, duration, **kwargs).addBoth(made.append)
        while not made:
            self.clock.advance(0)
        (batch,) = made
        return list(batch.codes)

    def sign_in(self, code: str, mac: str) -> Redeemed | Refused:
        outcome = self.book.redeem(code, mac)
        if isinstance(outcome, Redeemed):
            self.table.authorize(mac, ip="192.0.2.10", method="voucher", user=outcome.voucher.id,
                                 duration=outcome.remaining)  # fmt: skip
            for other in outcome.replaces:
                self.table.deauthorize(other, EndReason.VOUCHER_ELSEWHERE)
        return outcome

    def state(self, code: str) -> State:
        voucher = self.book.find(code)
        assert voucher is not None
        return voucher.state(self.clock.seconds())


def test_a_vouchers_time_starts_at_first_use_and_it_is_used_up_after(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    (code,) = desk.create(duration=2 * 3600)
    assert desk.state(code) is State.UNUSED
    desk.clock.advance(DAY)  # on the desk for a day: its time has not started
    first = desk.sign_in(code, MAC1)
    assert isinstance(first, Redeemed) and first.remaining == 2 * 3600
    assert desk.state(code) is State.ACTIVE
    desk.clock.advance(3600)
    # The same device again (its session lost): the time left, not a new start.
    again = desk.sign_in(code, MAC1)
    assert isinstance(again, Redeemed) and again.remaining == 3600
    desk.clock.advance(3600)
    assert desk.state(code) is State.USED_UP
    refused = desk.sign_in(code, MAC1)
    assert isinstance(refused, Refused) and "used up" in refused.message and not refused.counts


def test_a_deadline_comes_first_whichever_is_sooner(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    now = desk.clock.seconds()
    late, early = desk.create(2, duration=DAY, valid_until=now + 3 * 3600)
    desk.clock.advance(2 * 3600)
    redeemed = desk.sign_in(late, MAC1)
    assert isinstance(redeemed, Redeemed) and redeemed.remaining == 3600  # the deadline, not a day
    desk.clock.advance(3600)
    assert desk.state(late) is State.EXPIRED and desk.state(early) is State.EXPIRED
    refused = desk.sign_in(early, MAC2)
    assert isinstance(refused, Refused) and "expired" in refused.message


def test_devices_at_once_refused_when_full(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    (code,) = desk.create(devices=2)
    assert isinstance(desk.sign_in(code, MAC1), Redeemed)
    desk.clock.advance(60)
    assert isinstance(desk.sign_in(code, MAC2), Redeemed)
    third = desk.sign_in(code, MAC3)
    assert isinstance(third, Refused) and third.message == (
        "This code is in use on 2 devices already, as many as it allows."
    )
    assert not desk.table.is_authorized(MAC3)
    desk.table.deauthorize(MAC1, EndReason.LOGOUT)  # one signs out: room again
    assert isinstance(desk.sign_in(code, MAC3), Redeemed)


def test_replace_oldest_ends_the_oldest_session_and_keeps_the_time(tmp_path: Path) -> None:
    desk = Desk(tmp_path, when_full="replace-oldest")
    (code,) = desk.create(devices=1, duration=3600)
    desk.sign_in(code, MAC1)
    desk.clock.advance(600)
    # The phone came back with a new random MAC.
    second = desk.sign_in(code, MAC2)
    assert isinstance(second, Redeemed) and second.replaces == (MAC1,) and second.remaining == 3000
    assert not desk.table.is_authorized(MAC1) and desk.table.is_authorized(MAC2)


def metered_desk(tmp_path: Path, clock: Clock):
    """A desk whose sessions are metered: (desk, table, store, activity, limits), the limits asking the book for pools."""
    ledger = UsageLedger(clock)
    store = SessionStore.open(tmp_path / "sessions.sqlite3", usage=ledger.usage)
    table = AuthorizationTable(clock, journal=store)
    desk = Desk(tmp_path, clock=clock, table=table)
    desk.store, desk.book = store, VoucherBook(store, table, clock, desk.book._key)
    activity = ActivityTracker()
    limits = SessionLimits(table, activity, clock, 60, ledger, pools=desk.book)
    for observer in (activity, ledger, desk.book):
        table.add_observer(observer)
    return desk, table, store, activity, limits


def test_a_vouchers_quota_is_shared_by_its_devices_and_outlives_their_sessions(tmp_path: Path) -> None:
    clock = Clock()
    clock.advance(1_800_000_000)
    desk, table, store, activity, limits = metered_desk(tmp_path, clock)
    code, alone = desk.create(2, devices=3, quota=1000)
    desk.sign_in(code, MAC1)
    desk.sign_in(code, MAC2)
    desk.sign_in(alone, MAC3)
    activity.saw(MAC1, received=300, sent=100)
    activity.saw(MAC3, received=900)
    limits.sample()
    assert table.is_authorized(MAC1) and table.is_authorized(MAC2)
    # The first device leaves with 400 bytes used; they stay the voucher's.
    table.deauthorize(MAC1, EndReason.LOGOUT)
    activity.saw(MAC2, received=500)
    limits.sample()
    assert table.is_authorized(MAC2)  # 900 of 1000
    activity.saw(MAC2, sent=100)
    limits.sample()
    assert not table.is_authorized(MAC2)
    assert store.last_ending(MAC2) == (EndReason.QUOTA, clock.seconds())
    assert table.is_authorized(MAC3)  # another voucher's 900 bytes are its own
    refused = desk.sign_in(code, MAC1)
    assert isinstance(refused, Refused) and "data allowance is used up" in refused.message
    # Known again after a restart, from what the store wrote.
    reopened = VoucherBook(store, table, clock, desk.book._key)
    voucher = reopened.find(code)
    assert voucher is not None and reopened.spent(voucher) == 1000


def test_two_devices_at_once_use_one_allowance(tmp_path: Path) -> None:
    clock = Clock()
    desk, table, store, activity, limits = metered_desk(tmp_path, clock)
    (code,) = desk.create(devices=2, quota=1000)
    desk.sign_in(code, MAC1)
    desk.sign_in(code, MAC2)
    activity.saw(MAC1, received=600)
    activity.saw(MAC2, received=600)  # each under 1000, together over it
    limits.sample()
    assert not table.is_authorized(MAC1) and not table.is_authorized(MAC2)


def test_revoking_ends_its_sessions_and_refuses_it(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    code, other = desk.create(2, devices=2)
    desk.sign_in(code, MAC1)
    desk.sign_in(code, MAC2)
    desk.sign_in(other, MAC3)
    voucher = desk.book.find(code)
    assert voucher is not None
    (revoked,) = desk.book.revoke([voucher])
    assert revoked.state(desk.clock.seconds()) is State.REVOKED
    assert not desk.table.is_authorized(MAC1) and not desk.table.is_authorized(MAC2)
    assert desk.table.is_authorized(MAC3)  # another voucher's guest stays
    refused = desk.sign_in(code, MAC1)
    assert isinstance(refused, Refused) and "withdrawn" in refused.message
    assert desk.book.revoke([revoked]) == []  # twice: nothing more


def test_wrong_and_malformed_codes_are_refused_alike_and_count_as_guesses(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    desk.create(3)
    for typed in ("K7QD-M4XP-R2", "not a code", "K" * 10_000, ""):
        refused = desk.sign_in(typed, MAC1)
        assert (
            isinstance(refused, Refused)
            and refused.counts
            and refused.message.startswith("That code is not valid")
        )
    assert not list(desk.table.sessions())


def test_bad_requests_make_nothing(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    now = desk.clock.seconds()
    for kwargs, key in (
        ({"count": 0, "duration": DAY}, "count"),
        ({"count": 10_001, "duration": DAY}, "count"),
        ({"count": 1, "duration": -3600}, "duration"),
        ({"count": 1, "duration": DAY, "devices": 0}, "devices"),
        ({"count": 1, "duration": DAY, "valid_until": now - 1}, "valid-until"),
        ({"count": 1, "duration": DAY, "quota": 0}, "quota"),
    ):
        with pytest.raises(VoucherError, match=f"^{key}:"):
            desk.book.create(**kwargs)
    assert desk.book.listing() == [] and desk.store.vouchers() == []


def test_vouchers_and_their_use_survive_a_restart_and_no_code_is_stored(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    codes = desk.create(5, duration=3600, devices=2, note="front desk", batch="december")
    desk.sign_in(codes[0], MAC1)
    desk.clock.advance(600)
    desk.store.close()
    desk.open()
    assert desk.state(codes[0]) is State.ACTIVE and desk.table.is_authorized(MAC1)
    again = desk.sign_in(codes[0], MAC2)
    assert isinstance(again, Redeemed) and again.remaining == 3000  # its time kept
    listed = desk.book.listing(batch="december")
    assert len(listed) == 5 and {v.note for v in listed} == {"front desk"}
    assert [v.state(desk.clock.seconds()) for v in desk.book.listing(state=State.UNUSED)] == [
        State.UNUSED
    ] * 4
    raw = (tmp_path / "sessions.sqlite3").read_bytes()
    for code in codes:
        assert code.replace("-", "").encode() not in raw and code.encode() not in raw
    rows = sqlite3.connect(tmp_path / "sessions.sqlite3").execute("SELECT digest FROM vouchers").fetchall()
    assert len(rows) == 5 and all(len(digest) == 64 for (digest,) in rows)


def test_prune_forgets_only_vouchers_over_for_a_month(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    used, fresh = desk.create(2, duration=3600)
    desk.sign_in(used, MAC1)
    desk.clock.advance(3600 + PRUNE_AFTER - 1)
    assert desk.book.prune() == 0
    desk.clock.advance(2)
    assert desk.book.prune() == 1
    assert desk.book.find(used) is None and desk.book.find(fresh) is not None
    assert len(desk.store.vouchers()) == 1


def turns_until(clock: Clock, done: list) -> int:
    """Run C{clock}'s due calls one at a time (a turn of the reactor each) until C{done} has something."""
    turns = 0
    while not done:
        # One call due at a time: the work never holds the reactor for all of it.
        due = [call for call in clock.getDelayedCalls() if call.getTime() <= clock.seconds()]
        assert len(due) == 1
        due[0].func(*due[0].args, **due[0].kw)
        clock.calls.remove(due[0])
        turns += 1
    return turns


def test_ten_thousand_vouchers_are_made_a_chunk_per_turn(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    made: list = []
    desk.book.create(10_000, DAY).addBoth(made.append)
    turns = turns_until(desk.clock, made)
    assert turns >= 100 and len(made[0].codes) == 10_000 and len(set(made[0].codes)) == 10_000
    assert len(desk.store.vouchers()) == 10_000


# --- through the portal ---


def voucher_harness(
    tmp_path: Path, ways: tuple[WayIn, ...] | None = None, **auth: object
) -> tuple[WebHarness, Desk]:
    config = make_config()
    ways = ways or (WayIn("click-through", timeout=1800.0), WayIn("voucher"))
    config = attrs.evolve(config, auth=attrs.evolve(config.auth, methods=ways, **auth))
    desks: list[Desk] = []

    def method(table: AuthorizationTable, clock: Clock) -> VoucherMethod:
        # The book on the harness's own table and clock.
        desks.append(Desk(tmp_path, clock=clock, table=table))
        return VoucherMethod(desks[0].book)

    harness = WebHarness(config, vouchers=method)
    return harness, desks[0]


def post_login(harness: WebHarness, client_ip: str, **fields: str):
    page = harness.request("GET", PORTAL + "/", client_ip=client_ip).body
    form = {"csrf": harness.form_value(page, "csrf") or "", **fields}
    return harness.request("POST", PORTAL + "/login", client_ip=client_ip, form=form)


def test_the_portal_offers_both_ways_and_the_slip_fills_the_code(tmp_path: Path) -> None:
    harness, desk = voucher_harness(tmp_path)
    page = harness.request("GET", PORTAL + "/?voucher=k7qd-m4xp-r2").body
    assert page.count('<form method="post" action="/login"') == 2
    assert '<input type="hidden" name="method" value="click-through"' in page
    assert '<input type="hidden" name="method" value="voucher"' in page
    assert "<h2>Free access</h2>" in page and "<h2>With a voucher</h2>" in page
    assert 'name="voucher"' in page and 'value="k7qd-m4xp-r2"' in page


def test_a_guest_signs_in_with_a_voucher_and_another_with_a_click(tmp_path: Path) -> None:
    harness, desk = voucher_harness(tmp_path)
    (code,) = desk.create(duration=DAY, devices=1)
    wrong = post_login(harness, CLIENT_IP, method="voucher", voucher="K7QD-M4XP-R2")
    assert wrong.status == 403 and "not valid" in wrong.body
    right = post_login(harness, CLIENT_IP, method="voucher", voucher=code.lower().replace("-", " "))
    assert right.status == 200, right.body
    session = harness.table.session(CLIENT_MAC)
    assert (
        session is not None
        and session.method == "voucher"
        and session.remaining(harness.clock.seconds()) == DAY
    )
    # The voucher is on its one device: a second is told so.
    full = post_login(harness, OTHER_IP, method="voucher", voucher=code)
    assert full.status == 403 and "in use on 1 device already" in full.body
    empty = post_login(harness, OTHER_IP, method="voucher", voucher="  ")
    assert empty.status == 403 and "Please type the voucher code" in empty.body
    clicked = post_login(harness, OTHER_IP, method="click-through", accept="yes")
    assert clicked.status == 200
    other = harness.table.session(OTHER_MAC)
    assert (
        other is not None
        and other.method == "click-through"
        and other.remaining(harness.clock.seconds()) == 1800
    )
    logins = harness.web.portal.logins
    # The wrong code is a guess; the full voucher is not (a right code, no room).
    assert logins[("voucher", "ok")] == 1 and logins[("voucher", "refused")] == 1
    assert logins[("voucher", "declined")] == 1 and logins[("voucher", "incomplete")] == 1


def test_guessed_vouchers_are_limited_per_device_and_for_all_devices(tmp_path: Path) -> None:
    harness, desk = voucher_harness(tmp_path, max_attempts=3, max_attempts_total=4, attempt_window=60.0)
    (code,) = desk.create()
    for guess in ("AAAA-AAAA-AA", "BBBB-BBBB-BB", "CCCC-CCCC-CC"):
        assert post_login(harness, CLIENT_IP, method="voucher", voucher=guess).status == 403
    # This device has had its three: even the right code waits.
    blocked = post_login(harness, CLIENT_IP, method="voucher", voucher=code)
    assert blocked.status == 429 and "Too many attempts" in blocked.body
    # Another device (a guesser's next MAC) has the one guess left of all devices' four...
    assert post_login(harness, OTHER_IP, method="voucher", voucher="DDDD-DDDD-DD").status == 403
    slowed = post_login(harness, OTHER_IP, method="voucher", voucher="EEEE-EEEE-EE")
    assert slowed.status == 429
    # ... and once the window has gone by, the guest with the right code is in.
    harness.clock.advance(61)
    assert post_login(harness, CLIENT_IP, method="voucher", voucher=code).status == 200
    assert harness.table.session(CLIENT_MAC).method == "voucher"


def test_a_form_that_names_no_way_in_is_refused_when_there_are_several(tmp_path: Path) -> None:
    harness, _ = voucher_harness(tmp_path)
    refused = post_login(harness, CLIENT_IP, accept="yes")
    assert refused.status == 400 and "choose a way" in refused.body
    unknown = post_login(harness, CLIENT_IP, method="radius", accept="yes")
    assert unknown.status == 400 and not harness.table.is_authorized(CLIENT_MAC)


def test_listing_many_vouchers_is_encoded_a_chunk_per_turn(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    desk.create(1200, devices=2)
    operations = VoucherOperations(desk.book, desk.clock, Slip("Venue", "http://portal.example/"))
    listed: list = []
    operations.listing(state="unused").addCallback(listed.append)
    assert turns_until(desk.clock, listed) == math.ceil(1200 / ROWS_PER_TURN) + 1
    rows = json.loads(listed[0].data)
    assert len(rows) == 1200 and {row["state"] for row in rows} == {"unused"}
    assert set(rows[0]) == {"id", "batch", "note", "state", "duration", "devices", "devices_now", "quota",
                            "rate_down", "rate_up", "valid_until", "created", "first_used", "ends"}  # fmt: skip
    assert "code" not in rows[0]  # never again after create


def test_a_vouchers_rates_go_with_it_to_its_sessions_and_survive_a_restart(tmp_path: Path) -> None:
    from portald.auth.interface import Credentials
    from portald.control.operations import Refused as NotDone

    desk = Desk(tmp_path)
    slip = Slip("Venue", "http://portal.example/")
    with pytest.raises(NotDone, match="portald does not shape"):
        VoucherOperations(desk.book, desk.clock, slip).create(1, DAY, rate_down=4_000_000)
    made: list = []
    VoucherOperations(desk.book, desk.clock, slip, shapes=True).create(
        1, DAY, rate_down=4_000_000, rate_up=1_000_000
    ).addCallback(made.append)
    turns_until(desk.clock, made)
    answer = json.loads(made[0].data)
    (row,) = answer["vouchers"]
    assert (row["rate_down"], row["rate_up"]) == (4_000_000, 1_000_000)
    desk.store.close()
    desk.open()  # a restart: the book is read again
    result: list = []
    VoucherMethod(desk.book).authenticate(
        Credentials(mac=CLIENT_MAC, ip=CLIENT_IP, fields={"voucher": row["code"]})
    ).addCallback(result.append)
    assert result[0].ok and (result[0].rate_down, result[0].rate_up) == (4_000_000, 1_000_000)
    with pytest.raises(VoucherError, match="rate-down: expected a rate"):
        desk.book.create(1, DAY, rate_down=3)

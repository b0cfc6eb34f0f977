"""The authorization table, the neighbour map and MAC normalisation."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from portald.addresses import InvalidMAC, normalise_ip, normalise_mac
from portald.neighbours import Neighbours
from portald.table import AuthorizationTable, EndReason, IAuthorizationObserver, Session, SessionLog

MAC = "02:00:00:aa:bb:cc"
OTHER = "02:00:00:dd:ee:ff"


@implementer(IAuthorizationObserver)
class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def session_started(self, session: Session) -> None:
        self.events.append(("started", session))

    def session_extended(self, session: Session) -> None:
        self.events.append(("extended", session))

    def session_ended(self, session: Session, reason: EndReason) -> None:
        self.events.append(("ended", session, reason))


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(1000)
    return clock


@pytest.fixture
def table(clock: Clock) -> AuthorizationTable:
    return AuthorizationTable(clock)


@pytest.fixture
def recorder(table: AuthorizationTable) -> Recorder:
    recorder = Recorder()
    table.add_observer(recorder)
    return recorder


# --- MAC and IP normalisation ---


@pytest.mark.parametrize(
    "text",
    ["02:00:00:AA:BB:CC", "02-00-00-aa-bb-cc", " 02:00:00:aa:bb:cc\n", "02-00-00-AA-BB-CC"],
)
def test_mac_spellings_normalise_to_one(text: str) -> None:
    assert normalise_mac(text) == MAC


@pytest.mark.parametrize(
    "text",
    [
        "",
        "02:00:00:aa:bb",
        "02:00:00:aa:bb:cc:dd",
        "02:00:00-aa:bb:cc",
        "0200.00aa.bbcc",
        "020000aabbcc",
        "02:00:00:aa:bb:cg",
        "2:0:0:aa:bb:cc",
        "02:00:00:aa:bb:cc ; rm",
    ],
)
def test_anything_else_is_not_a_mac(text: str) -> None:
    with pytest.raises(InvalidMAC):
        normalise_mac(text)


def test_ip_normalisation_unmaps_ipv4_in_ipv6() -> None:
    assert normalise_ip("::ffff:192.0.2.7") == "192.0.2.7"
    assert normalise_ip("2001:DB8::1") == "2001:db8::1"
    with pytest.raises(ValueError):
        normalise_ip("192.0.2.300")


# --- the table ---


def test_observers_are_interfaces(recorder: Recorder) -> None:
    verifyObject(IAuthorizationObserver, recorder)
    verifyObject(IAuthorizationObserver, SessionLog())


def test_authorize_notifies_and_answers(table: AuthorizationTable, recorder: Recorder, clock: Clock) -> None:
    session = table.authorize(MAC.upper(), ip="192.0.2.10", method="click-through", duration=60)
    assert session.mac == MAC
    assert session.started == 1000
    assert session.expires == 1060
    assert table.is_authorized(MAC)
    assert table.session(MAC) == session
    assert not table.is_authorized(OTHER)
    assert not table.is_authorized(None)
    assert recorder.events == [("started", session)]


def test_expiry_happens_at_the_exact_tick(
    table: AuthorizationTable, recorder: Recorder, clock: Clock
) -> None:
    session = table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=60)
    clock.advance(59.999)
    assert table.is_authorized(MAC)
    clock.advance(0.001)
    assert not table.is_authorized(MAC)
    assert recorder.events[-1] == ("ended", session, EndReason.EXPIRED)
    assert clock.getDelayedCalls() == []


def test_extend_moves_expiry(table: AuthorizationTable, recorder: Recorder, clock: Clock) -> None:
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=60)
    clock.advance(30)
    extended = table.extend(MAC, 60)
    assert extended is not None and extended.expires == 1120
    assert recorder.events[-1] == ("extended", extended)
    clock.advance(31)  # past the old end
    assert table.is_authorized(MAC)
    clock.advance(59)
    assert not table.is_authorized(MAC)
    assert len(clock.getDelayedCalls()) == 0


def test_extend_of_unknown_mac_does_nothing(table: AuthorizationTable, recorder: Recorder) -> None:
    assert table.extend(MAC, 60) is None
    assert recorder.events == []


def test_deauthorize_cancels_expiry(table: AuthorizationTable, recorder: Recorder, clock: Clock) -> None:
    session = table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=60)
    ended = table.deauthorize(MAC, EndReason.LOGOUT)
    assert ended == session
    assert clock.getDelayedCalls() == []
    assert recorder.events[-1] == ("ended", session, EndReason.LOGOUT)
    clock.advance(120)
    assert [e[0] for e in recorder.events] == ["started", "ended"]
    assert table.deauthorize(MAC, EndReason.LOGOUT) is None


def test_reauthorize_replaces(table: AuthorizationTable, recorder: Recorder, clock: Clock) -> None:
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=60)
    clock.advance(50)
    second = table.authorize(MAC, ip="192.0.2.11", method="access-code", duration=60)
    assert table.session(MAC) == second
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(20)  # the first session's end passes without effect
    assert table.is_authorized(MAC)
    clock.advance(40)
    assert not table.is_authorized(MAC)


def test_session_without_end(table: AuthorizationTable, clock: Clock) -> None:
    session = table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=None)
    assert session.remaining(clock.seconds()) is None
    assert clock.getDelayedCalls() == []
    assert table.extend(MAC, 60) == session


def test_restore_drops_expired_sessions(table: AuthorizationTable, recorder: Recorder, clock: Clock) -> None:
    old = Session(MAC, "192.0.2.10", "click-through", started=0, expires=999)
    live = Session(OTHER, "192.0.2.11", "click-through", started=900, expires=1100)
    assert not table.restore(old)
    assert table.restore(live)
    assert [s.mac for s in table.sessions()] == [OTHER]
    clock.advance(100)
    assert len(table) == 0


def test_a_failing_observer_does_not_stop_the_others(table: AuthorizationTable, recorder: Recorder) -> None:
    @implementer(IAuthorizationObserver)
    class Broken(Recorder):
        def session_started(self, session: Session) -> None:
            raise RuntimeError("boom")

    table.remove_observer(recorder)
    table.add_observer(Broken())
    table.add_observer(recorder)
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=60)
    assert table.is_authorized(MAC)
    assert [e[0] for e in recorder.events] == ["started"]


# --- neighbours ---


def test_neighbours_both_ways() -> None:
    neighbours = Neighbours()
    neighbours.replace({"192.0.2.10": MAC, "2001:db8::10": MAC, "192.0.2.11": OTHER})
    assert neighbours.mac_for("192.0.2.10") == MAC
    assert neighbours.ips_for(MAC) == {"192.0.2.10", "2001:db8::10"}
    assert neighbours.mac_for("192.0.2.99") is None
    assert neighbours.ips_for("02:00:00:00:00:99") == frozenset()


def test_neighbours_replace_is_whole() -> None:
    neighbours = Neighbours()
    neighbours.replace({"192.0.2.10": MAC})
    neighbours.replace({"192.0.2.10": OTHER})
    assert neighbours.mac_for("192.0.2.10") == OTHER
    assert neighbours.ips_for(MAC) == frozenset()
    assert len(neighbours) == 1

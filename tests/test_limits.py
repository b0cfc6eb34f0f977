"""Idle timeouts and quotas, sampled on a Clock from a traffic source."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from zope.interface import implementer
from zope.interface.verify import verifyObject

from portald.limits import ActivityTracker, CountersUnavailable, ITrafficSource, SessionLimits
from portald.table import AuthorizationTable, EndReason, IAuthorizationObserver, Session
from tests.limits_support import observing_limits

MAC = "02:00:00:aa:bb:cc"
OTHER = "02:00:00:dd:ee:ff"


@implementer(ITrafficSource)
class KernelCounters:
    """Stands in for the firewall's per-MAC counters: the test sets them."""

    def __init__(self) -> None:
        self.counters: dict[str, tuple[int, int]] = {}

    def read_counters(self) -> defer.Deferred:
        return defer.succeed(dict(self.counters))


@implementer(IAuthorizationObserver)
class Endings:
    def __init__(self) -> None:
        self.reasons: dict[str, EndReason] = {}

    def session_started(self, session: Session) -> None:
        pass

    def session_extended(self, session: Session) -> None:
        pass

    def session_ended(self, session: Session, reason: EndReason) -> None:
        self.reasons[session.mac] = reason


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def table(clock: Clock) -> AuthorizationTable:
    return AuthorizationTable(clock)


@pytest.fixture
def endings(table: AuthorizationTable) -> Endings:
    endings = Endings()
    table.add_observer(endings)
    return endings


@pytest.fixture
def kernel() -> KernelCounters:
    return KernelCounters()


@pytest.fixture
def limits(table: AuthorizationTable, kernel: KernelCounters, clock: Clock):
    limits = observing_limits(table, kernel, clock, interval=10)
    limits.startService()
    yield limits
    limits.stopService()


def test_idle_session_ends_and_active_one_does_not(
    table: AuthorizationTable, kernel: KernelCounters, clock: Clock, limits: SessionLimits, endings: Endings
) -> None:
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=3600, idle_timeout=60)
    table.authorize(OTHER, ip="192.0.2.11", method="click-through", duration=3600, idle_timeout=60)
    kernel.counters[MAC] = (0, 0)  # in the kernel's set, and silent
    for tick in range(1, 7):
        kernel.counters[OTHER] = (tick * 100, tick * 1000)  # OTHER keeps browsing
        clock.advance(10)
    assert not table.is_authorized(MAC)
    assert endings.reasons == {MAC: EndReason.IDLE}
    assert table.is_authorized(OTHER)
    assert limits.usage(OTHER) == (600, 6000)


def test_traffic_resets_the_idle_clock(
    table: AuthorizationTable, kernel: KernelCounters, clock: Clock, limits: SessionLimits
) -> None:
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=3600, idle_timeout=60)
    clock.pump([10] * 5)
    kernel.counters[MAC] = (1, 1)
    clock.pump([10] * 6)  # 110 s since login, 60 since traffic was first seen
    assert table.is_authorized(MAC)
    clock.advance(10)
    assert not table.is_authorized(MAC)


def test_quota_counts_both_directions(
    table: AuthorizationTable, kernel: KernelCounters, clock: Clock, limits: SessionLimits, endings: Endings
) -> None:
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=3600, quota_bytes=1000)
    kernel.counters[MAC] = (400, 599)
    clock.advance(10)
    assert table.is_authorized(MAC)
    kernel.counters[MAC] = (400, 600)
    clock.advance(10)
    assert endings.reasons == {MAC: EndReason.QUOTA}


def test_quota_counts_from_the_login_not_before(
    table: AuthorizationTable, kernel: KernelCounters, clock: Clock, limits: SessionLimits
) -> None:
    kernel.counters[MAC] = (5000, 5000)  # traffic of an earlier session
    clock.advance(10)
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=3600, quota_bytes=1000)
    kernel.counters[MAC] = (5100, 5100)
    clock.advance(10)
    assert table.is_authorized(MAC)
    assert limits.usage(MAC) == (100, 100)
    kernel.counters[MAC] = (300, 800)  # the firewall re-added the MAC: counter restarted
    clock.advance(10)
    assert not table.is_authorized(MAC)


def test_sessions_without_limits_are_left_alone(
    table: AuthorizationTable, clock: Clock, limits: SessionLimits
) -> None:
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=None)
    clock.advance(10_000)
    assert table.is_authorized(MAC)


def test_a_failed_read_ends_nobody_and_sampling_goes_on(table: AuthorizationTable, clock: Clock) -> None:
    @implementer(ITrafficSource)
    class Flaky:
        calls = 0
        counters = {MAC: (500, 500)}

        def read_counters(self) -> defer.Deferred:
            self.calls += 1
            if self.calls <= 3:
                return defer.fail(CountersUnavailable("nft failed"))
            return defer.succeed(dict(self.counters))

    source = Flaky()
    limits = observing_limits(table, source, clock, interval=10)
    limits.startService()
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=3600, idle_timeout=15)
    with capturedLogs() as logged:
        clock.advance(10)
        clock.advance(10)
        clock.advance(10)
    # 30 s of failed reads, longer than the idle timeout: still signed in.
    assert source.calls == 3 and table.is_authorized(MAC)
    assert any("traffic counters unavailable" in formatEvent(event) for event in logged)
    clock.advance(10)  # a good read: the counters moved, so it was active
    assert table.is_authorized(MAC)
    clock.advance(10)
    clock.advance(10)  # 20 s with the counters unchanged: idle
    assert source.calls == 6 and not table.is_authorized(MAC)
    limits.stopService()
    assert clock.getDelayedCalls() == []


def test_a_mac_missing_from_the_counters_is_unknown_not_idle(
    table: AuthorizationTable, clock: Clock, kernel: KernelCounters, limits: SessionLimits
) -> None:
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=3600, idle_timeout=15)
    for _ in range(5):
        clock.advance(10)  # the firewall has not counted it yet
    assert table.is_authorized(MAC)
    kernel.counters[MAC] = (0, 0)
    clock.advance(10)
    clock.advance(10)
    assert not table.is_authorized(MAC)


def test_activity_tracker_counts_portald_own_traffic(
    table: AuthorizationTable, clock: Clock, endings: Endings
) -> None:
    tracker = ActivityTracker()
    verifyObject(ITrafficSource, tracker)
    table.add_observer(tracker)
    limits = observing_limits(table, tracker, clock, interval=10)
    limits.startService()
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=3600, idle_timeout=30)
    for _ in range(5):
        tracker.saw(MAC, received=60, sent=200)  # a DNS query and its answer
        tracker.saw(None, received=60)  # a client with no known MAC counts for nobody
        clock.advance(10)
    assert table.is_authorized(MAC)
    clock.advance(30)
    assert endings.reasons == {MAC: EndReason.IDLE}
    limits.stopService()


def test_a_counter_reset_carries_the_usage_over_per_direction(
    table: AuthorizationTable, kernel: KernelCounters, clock: Clock, limits: SessionLimits
) -> None:
    table.authorize(MAC, ip="192.0.2.10", method="click-through", duration=3600, quota_bytes=10_000)
    kernel.counters[MAC] = (1000, 4000)
    clock.advance(10)
    assert limits.usage(MAC) == (1000, 4000)
    kernel.counters[MAC] = (1500, 300)  # only the download counter was re-created
    clock.advance(10)
    assert limits.usage(MAC) == (1500, 4300)
    kernel.counters[MAC] = (1600, 900)
    clock.advance(10)
    assert limits.usage(MAC) == (1600, 4900)
    assert table.is_authorized(MAC)
    kernel.counters[MAC] = (1600, 9000)
    clock.advance(10)
    assert not table.is_authorized(MAC)  # 1600 + 4000 + 9000 over 10 000

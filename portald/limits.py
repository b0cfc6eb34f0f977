"""
Idle timeouts and data quotas: sessions that end because of what the client
did (or did not do), not because of the clock alone.

A L{SessionLimits} service samples an L{ITrafficSource} on an interval, keeps
per-session usage, and deauthorizes a session that has been idle too long or
used up its quota.  With the nftables backend the source is the kernel's
per-MAC counters; without a firewall it is L{ActivityTracker}, which DNS and
the web report to.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from portald.periodic import Periodic
from portald.table import AuthorizationTable, EndReason, IAuthorizationObserver, Session

log = Logger()

Counters = Mapping[str, tuple[int, int]]


class CountersUnavailable(Exception):
    """The traffic counters could not be read this time (say, nft failed)."""


@attrs.frozen
class Pool:
    """
    An allowance several sessions share (a voucher's quota, whichever of its
    devices uses it): C{spent} is what its ended sessions used.
    """

    key: str
    quota: int
    spent: int


class IQuotaPools(Interface):
    """Who knows which sessions share an allowance (the voucher book)."""

    def pool_of(session: Session) -> Pool | None:
        """The allowance C{session} shares, or C{None} if its quota is its own."""


class ITrafficSource(Interface):
    """Where traffic counters come from (the firewall, or DNS/web activity)."""

    def read_counters() -> defer.Deferred[Counters]:
        """
        Bytes (from the client, to the client) per MAC, cumulative.  A
        counter that goes down has been reset (the MAC left the firewall's
        set and came back).  A signed-in MAC missing from the mapping is
        unknown this time, not idle.  Fails with L{CountersUnavailable}
        when nothing could be read.
        """


@implementer(ITrafficSource, IAuthorizationObserver)
class ActivityTracker:
    """
    Traffic as seen by portald's own services, for deployments without a
    firewall: each DNS query or HTTP request a client makes counts.
    """

    def __init__(self) -> None:
        self._counters: dict[str, tuple[int, int]] = {}

    def saw(self, mac: str | None, received: int = 0, sent: int = 0) -> None:
        if mac is None:
            return
        old_in, old_out = self._counters.get(mac, (0, 0))
        self._counters[mac] = (old_in + received, old_out + sent)

    def read_counters(self) -> defer.Deferred[Counters]:
        return defer.succeed(dict(self._counters))

    def session_started(self, session: Session) -> None:
        # Present from the start, so that no activity reads as idle.
        self._counters[session.mac] = (0, 0)

    def session_extended(self, session: Session) -> None:
        pass

    def session_ended(self, session: Session, reason: EndReason) -> None:
        self._counters.pop(session.mac, None)


@attrs.define
class Usage:
    """
    One session's traffic, as far as the samples tell: the counters since
    C{baseline}, plus what was C{carried} over from before a counter reset.
    """

    baseline: tuple[int, int]
    last_seen: tuple[int, int]
    last_active: float
    carried: tuple[int, int] = (0, 0)

    @property
    def bytes(self) -> tuple[int, int]:
        return (
            self.carried[0] + self.last_seen[0] - self.baseline[0],
            self.carried[1] + self.last_seen[1] - self.baseline[1],
        )

    def follow(self, seen: tuple[int, int]) -> None:
        """
        Take a new reading.  A counter lower than last time was reset (the
        firewall re-created its element): what it had counted is carried
        over, so a reset never hands out a fresh quota.
        """
        carried = list(self.carried)
        baseline = list(self.baseline)
        for i in (0, 1):
            if seen[i] < self.last_seen[i]:
                carried[i] += self.last_seen[i] - self.baseline[i]
                baseline[i] = 0
        self.carried = (carried[0], carried[1])
        self.baseline = (baseline[0], baseline[1])
        self.last_seen = seen


@implementer(IAuthorizationObserver)
class UsageLedger:
    """
    Each session's traffic so far, from the samples: what the store writes
    when a session ends and what the limits judge by.  No I/O: it is told
    each reading.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._usage: dict[str, Usage] = {}
        self._latest: dict[str, tuple[int, int]] = {}

    def usage(self, mac: str) -> tuple[int, int] | None:
        """Bytes (from, to) the client in its current session, if known."""
        usage = self._usage.get(mac)
        return usage.bytes if usage is not None else None

    def of(self, mac: str) -> Usage | None:
        """The current session's usage record of C{mac}, if it has one."""
        return self._usage.get(mac)

    def read(self, counters: Counters) -> None:
        """Take a reading of the counters: the baseline of sessions that start next."""
        self._latest = dict(counters)

    # --- IAuthorizationObserver ---

    def session_started(self, session: Session) -> None:
        last = self._latest.get(session.mac, (0, 0))
        self._usage[session.mac] = Usage(last, last, self._clock.seconds())

    def session_extended(self, session: Session) -> None:
        pass

    def session_ended(self, session: Session, reason: EndReason) -> None:
        self._usage.pop(session.mac, None)


class SessionLimits(Service):
    """
    Ends sessions that are idle too long or over their quota, sampling
    C{source} every C{interval} seconds into C{ledger}.  The ledger must
    observe the table (the build function subscribes it).
    """

    name = "session-limits"

    def __init__(
        self,
        table: AuthorizationTable,
        source: ITrafficSource,
        clock: IReactorTime,
        interval: float,
        ledger: UsageLedger,
        pools: IQuotaPools | None = None,
    ) -> None:
        self._table = table
        self._pools = pools
        self._source = source
        self._clock = clock
        self._ledger = ledger
        self._sampler = Periodic(clock, interval, self.sample)

    def usage(self, mac: str) -> tuple[int, int] | None:
        """Bytes (from, to) the client in its current session, if known."""
        return self._ledger.usage(mac)

    # --- sampling ---

    def startService(self) -> None:
        super().startService()
        self._sampler.start()

    def stopService(self) -> None:
        self._sampler.stop()
        return super().stopService()

    def sample(self) -> defer.Deferred[None]:
        """Read the counters once and end the sessions that are over a limit."""
        d = self._source.read_counters()
        d.addCallbacks(self._apply, self._unavailable)
        d.addErrback(lambda failure: log.failure("could not apply traffic counters", failure))
        return d

    def _unavailable(self, failure: Failure) -> None:
        # Not knowing is not idleness: nobody is cut off on a failed read.
        failure.trap(CountersUnavailable)
        log.warn(
            "traffic counters unavailable ({why}): idle and quota checks skipped this time",
            why=failure.getErrorMessage(),
        )

    def _apply(self, counters: Counters) -> None:
        now = self._clock.seconds()
        self._ledger.read(counters)
        shared: dict[str, tuple[Pool, list[tuple[Session, Usage]]]] = {}
        for session in self._table.sessions():
            usage = self._ledger.of(session.mac)
            if usage is None:
                continue
            seen = counters.get(session.mac)
            if seen is None:
                # Unknown this time (not in the kernel yet): nothing to judge
                # by; the next reading, cumulative, tells what happened.
                continue
            if seen != usage.last_seen:
                usage.last_active = now
                usage.follow(seen)
            pool = self._pools.pool_of(session) if self._pools is not None else None
            if pool is not None:
                shared.setdefault(pool.key, (pool, []))[1].append((session, usage))
            self._enforce(session, usage, now, own_quota=pool is None)
        for pool, members in shared.values():
            self._enforce_shared(pool, members)

    def _enforce_shared(self, pool: Pool, members: list[tuple[Session, Usage]]) -> None:
        """A shared allowance used up ends every session that shares it."""
        used = pool.spent + sum(sum(usage.bytes) for _, usage in members)
        if used < pool.quota:
            return
        log.info(
            "{devices} device(s) used {used} bytes of a shared {quota}-byte allowance ({pool})",
            devices=len(members),
            used=used,
            quota=pool.quota,
            pool=pool.key,
        )
        for session, _ in members:
            if self._table.session(session.mac) == session:
                self._table.deauthorize(session.mac, EndReason.QUOTA)

    def _enforce(self, session: Session, usage: Usage, now: float, own_quota: bool = True) -> None:
        used = sum(usage.bytes)
        if own_quota and session.quota_bytes and used >= session.quota_bytes:
            log.info(
                "{mac} used {used} bytes of its {quota}-byte quota",
                mac=session.mac,
                used=used,
                quota=session.quota_bytes,
            )
            self._table.deauthorize(session.mac, EndReason.QUOTA)
        elif session.idle_timeout and now - usage.last_active >= session.idle_timeout:
            log.info(
                "{mac} idle for {idle:.0f}s (limit {limit:.0f}s)",
                mac=session.mac,
                idle=now - usage.last_active,
                limit=session.idle_timeout,
            )
            self._table.deauthorize(session.mac, EndReason.IDLE)

"""
The nftables backend: portald's own table, kept in step with the
authorization table.

Every change to the table becomes a few ``nft`` commands (see
L{portald.firewall.ruleset}).  Changes are queued and sent in batches: at most
one ``nft`` runs at a time, and whatever arrives meanwhile goes in the next
one, in order.  A failed batch is logged with nft's own message, counted, and
retried with a growing delay; after a few failures in a row the whole table
is rebuilt from the authorization table instead (that also repairs a table
someone deleted).  At start the same rebuild reconciles the kernel with the
table: the table wins, and traffic counters of sessions that carry on survive.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredSemaphore, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from portald.config import Config, IPAddress
from portald.firewall import ruleset
from portald.firewall.interface import IFirewall
from portald.firewall.kernelstate import KernelState, UnreadableState, parse_kernel_state
from portald.firewall.process import IProcessRunner, ProcessResult
from portald.limits import Counters, CountersUnavailable, ITrafficSource
from portald.table import AuthorizationTable, EndReason, Session

log = Logger()


@attrs.define
class FirewallStats:
    """What the backend has done, for operators and tests."""

    batches: int = 0
    changes: int = 0
    reloads: int = 0
    failures: int = 0
    conntrack_failures: int = 0


@attrs.frozen
class _Change:
    """Some nft commands, and the client addresses whose connections to flush once they apply."""

    lines: tuple[str, ...]
    flush: tuple[str, ...] = ()


def _ip(text: str | None) -> IPAddress | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@implementer(IFirewall, ITrafficSource)
class NftablesFirewall(Service):
    counts_traffic = True
    name = "firewall"
    backend = "nftables"

    def __init__(
        self,
        config: Config,
        table: AuthorizationTable,
        clock: Any,
        runner: IProcessRunner,
        *,
        batch_delay: float = 0.0,
        first_retry: float = 0.5,
        longest_retry: float = 30.0,
        rebuild_after_failures: int = 3,
        shortest_garden_timeout: float = 60.0,
        longest_garden_timeout: float = 86400.0,
    ) -> None:
        self.plan = ruleset.FirewallPlan.from_config(config)
        self._nft = str(config.firewall.nft)
        self._conntrack = str(config.firewall.conntrack)
        self._on_stop = config.firewall.on_stop
        self._table = table
        self._clock = clock
        self._runner = runner
        self._batch_delay = batch_delay
        self._first_retry = first_retry
        self._longest_retry = longest_retry
        self._rebuild_after = rebuild_after_failures
        self._garden_timeouts = (shortest_garden_timeout, longest_garden_timeout)
        self.stats = FirewallStats()
        # What the kernel has been told, by MAC (for a client that comes back
        # with another address, and to name counters read by address).
        self._installed: dict[str, Session] = {}
        # MAC -> the address its downloads are counted at, when that is no
        # longer its sign-in address (the lease moved).
        self._moved: dict[str, str] = {}
        # Address -> the signed-in MAC whose downloads its counter holds.
        self._owner: dict[str, str] = {}
        # MAC -> its download counter as last read (carried to a new address).
        self._downloaded: dict[str, ruleset.Counter] = {}
        # Learned walled-garden address -> when (clock) its kernel timeout ends.
        self._learned: dict[IPAddress, float] = {}
        self._pending: list[_Change] = []
        self._busy = False
        self._timer: IDelayedCall | None = None
        self._needs_rebuild = True
        self._failures_in_a_row = 0
        # Waiters for "my change is in the kernel": (changes queued when it
        # asked, its Deferred).  A waiter fires as soon as the batch or load
        # carrying its change succeeds, not when the whole queue is empty,
        # which under steady load it may never be.
        self._queued = 0
        self._change_waiters: list[tuple[int, Deferred[None]]] = []
        self._idle_waiters: list[Deferred[None]] = []
        self._not_busy_waiters: list[Deferred[None]] = []
        self._stopping = False
        self._started_at: float | None = None
        # conntrack scans the whole table for each flush: a few at a time.
        self._flushes = DeferredSemaphore(4)

    # --- service ---

    def startService(self) -> None:
        super().startService()
        self._started_at = self._clock.seconds()
        self._stopping = False
        self._needs_rebuild = True
        # Not now: services started after this one (the store restoring
        # sessions) fill the table first, so the first load already has them.
        self._kick(0)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._stopping = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        done = self._when_not_busy()
        done.addCallback(lambda _: self._final_step())
        return done

    def _final_step(self) -> Deferred[None]:
        if self._on_stop == "remove":
            self._pending.clear()
            log.info(
                "removing nftables table {table} (firewall.on_stop: remove)", table=self.plan.qualified_table
            )
            text = ruleset.remove_table(self.plan)
        else:
            log.info(
                "leaving nftables table {table} in place (firewall.on_stop: keep)",
                table=self.plan.qualified_table,
            )
            if not self._pending or self._needs_rebuild:
                return succeed(None)
            # One last try, so the kernel does not keep a client the table dropped.
            text = self._batch_text(self._pending)
            self._pending.clear()
        d = self._nft_apply(text)

        def report(result: ProcessResult) -> None:
            if not result.succeeded:
                self.stats.failures += 1
                log.error("nft failed while stopping: {message}", message=result.message())

        return d.addCallback(report)

    # --- IAuthorizationObserver ---

    def session_started(self, session: Session) -> None:
        previous = self._installed.get(session.mac)
        counted_before = self._counted_at(previous) if previous is not None else None
        if counted_before is not None:
            self._let_go(counted_before, session.mac)
        self._moved.pop(session.mac, None)
        self._downloaded.pop(session.mac, None)
        self._installed[session.mac] = session
        lines: list[str] = []
        if counted_before is not None and counted_before != session.ip:
            old_ip = _ip(counted_before)
            if old_ip is not None and counted_before not in self._owner:
                lines += ruleset.forget_counter(self.plan, old_ip)
        new_ip = _ip(session.ip)
        if new_ip is not None:
            self._owner[session.ip] = session.mac
        lines += ruleset.grant(self.plan, session.mac, new_ip, self._timeout(session))
        # A new login's connections were intercepted before it: flush them.
        # A session restored at start (older than this run) keeps its own.
        is_new = self._started_at is not None and session.started >= self._started_at
        self._enqueue(_Change(tuple(lines), flush=(session.ip,) if new_ip and is_new else ()))

    def session_extended(self, session: Session) -> None:
        self._installed[session.mac] = session
        self._enqueue(_Change(tuple(ruleset.extend(self.plan, session.mac, self._timeout(session)))))

    def session_ended(self, session: Session, reason: EndReason) -> None:
        self._installed.pop(session.mac, None)
        self._downloaded.pop(session.mac, None)
        address = self._moved.pop(session.mac, session.ip)
        ip = _ip(address) if self._let_go(address, session.mac) else None
        # An address that another signed-in device has now keeps its counter
        # and connections.  Flushing after the revoke makes this device's
        # open connections fail at once (reset by the portal), not hang.
        self._enqueue(
            _Change(tuple(ruleset.revoke(self.plan, session.mac, ip)), flush=(address,) if ip else ())
        )

    def _counted_at(self, session: Session) -> str:
        """The address a signed-in device's downloads are counted at."""
        return self._moved.get(session.mac, session.ip)

    def _claim_unowned(self, sessions: Sequence[Session] | None = None) -> None:
        """Give each address without a signed-in owner to the latest session counted there."""
        live = {s.mac for s in (sessions if sessions is not None else self._installed.values())}
        self._owner = {address: mac for address, mac in self._owner.items() if mac in live}
        latest_first = sorted(
            sessions if sessions is not None else self._installed.values(),
            key=lambda s: s.started,
            reverse=True,
        )
        for session in latest_first:
            self._owner.setdefault(self._counted_at(session), session.mac)

    def _let_go(self, address: str, mac: str) -> bool:
        """C{mac} stops counting at C{address}; whether that address was its own."""
        if self._owner.get(address) != mac:
            return False
        del self._owner[address]
        return True

    # --- devices that move ---

    def addresses_changed(self, ips_for: Callable[[str], frozenset[str]]) -> None:
        lines: list[str] = []
        for mac, session in self._installed.items():
            counted = self._counted_at(session)
            now_at = ips_for(mac)
            if not now_at or (counted in now_at and self._owner.get(counted) == mac):
                continue  # still there, or nowhere (its lease ended): left as it is
            new = self._new_address(session, counted, now_at)
            new_ip = _ip(new)
            if new_ip is None:
                continue
            if new == counted:
                log.info("{mac} is at {new} again: its downloads are counted there", mac=mac, new=new)
            else:
                log.info(
                    "{mac} moved from {old} to {new}: its downloads are counted there",
                    mac=mac,
                    old=counted,
                    new=new,
                )
            old_ip = _ip(counted)
            if self._let_go(counted, mac) and old_ip is not None:
                lines += ruleset.forget_counter(self.plan, old_ip)
            # The new counter starts where the old one was last read, so the
            # quota sees no reset (what came in since that reading is lost).
            lines += ruleset.count_to(self.plan, new_ip, self._downloaded.get(mac))
            self._owner[new] = mac
            if new == session.ip:
                self._moved.pop(mac, None)
            else:
                self._moved[mac] = new
        if lines:
            self._enqueue(_Change(tuple(lines)))

    @staticmethod
    def _new_address(session: Session, counted: str, now_at: frozenset[str]) -> str:
        """Back to its sign-in address if it has it, else one of the same family."""
        if session.ip in now_at:
            return session.ip
        v6 = ":" in counted
        return min(now_at, key=lambda address: ((":" in address) != v6, address))

    def _timeout(self, session: Session) -> float | None:
        return session.remaining(self._clock.seconds())

    # --- walled garden learned from DNS ---

    def on_walled_garden_answer(self, addresses: Sequence[str], ttl: float) -> None:
        shortest, longest = self._garden_timeouts
        timeout = min(max(float(ttl), shortest), longest)
        now = self._clock.seconds()
        lines: list[str] = []
        for text in addresses:
            address = _ip(str(text))
            if address is None:
                log.warn("walled garden: ignoring {text!r}, not an IP address", text=text)
                continue
            if any(address in network for network in self.plan.walled_garden):
                continue  # Already open through firewall.walled_garden.
            # A renewal within a second of the current end is not worth a change.
            if self._learned.get(address, 0.0) >= now + timeout - 1.0:
                continue
            self._learned[address] = now + timeout
            lines += ruleset.learn(self.plan, address, timeout)
        if len(self._learned) > 4096:
            self._forget_expired_learned(now)
        if lines:
            self._enqueue(_Change(tuple(lines)))

    def _forget_expired_learned(self, now: float) -> None:
        self._learned = {a: end for a, end in self._learned.items() if end > now}

    # --- reading ---

    def read_counters(self) -> Deferred[Counters]:
        d = self._read_kernel()

        def counters(state: KernelState | None) -> Counters:
            if state is None:
                raise CountersUnavailable(f"cannot read {self.plan.qualified_table}")
            result = {}
            for mac, session in self._installed.items():
                sent = state.from_client.get(mac)
                if sent is None:
                    continue  # Not in the kernel yet.
                at = self._counted_at(session)
                # An address's counter is its owner's alone.
                received = state.to_client.get(at) if self._owner.get(at) == mac else None
                if received is None:
                    # Not counted anywhere right now (its address taken, or
                    # its new counter not in the kernel yet): its last
                    # reading, so that the reading never goes down (which
                    # the limits would take for a reset, and count twice).
                    received = self._downloaded.get(mac)
                else:
                    self._downloaded[mac] = received
                result[mac] = (sent.bytes, received.bytes if received else 0)
            return result

        return d.addCallback(counters)

    def _read_kernel(self) -> Deferred[KernelState | None]:
        d = self._runner.run(self._nft, ["-j", "list", "table", "inet", self.plan.table])

        def parse(result: ProcessResult) -> KernelState | None:
            if not result.succeeded:
                log.debug(
                    "cannot read {table}: {message}",
                    table=self.plan.qualified_table,
                    message=result.message(),
                )
                return None
            try:
                return parse_kernel_state(result.stdout)
            except UnreadableState as e:
                log.warn("cannot read {table}: {error}", table=self.plan.qualified_table, error=str(e))
                return None

        return d.addCallback(parse)

    # --- applying ---

    def reload(self) -> Deferred[None]:
        self._needs_rebuild = True
        waiter = self.applied()
        self._kick(0)
        return waiter

    def applied(self) -> Deferred[None]:
        """Fires once every change made so far is in the kernel."""
        if not self._busy and not self._pending and not self._needs_rebuild:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._change_waiters.append((self._queued, waiter))
        return waiter

    def _applied_up_to(self, count: int) -> None:
        """The first C{count} changes ever queued are in the kernel."""
        if self._needs_rebuild:
            return  # a whole load is due: it is what waiters wait for
        ready = [waiter for target, waiter in self._change_waiters if target <= count]
        self._change_waiters = [(t, w) for t, w in self._change_waiters if t > count]
        for waiter in ready:
            waiter.callback(None)

    def _enqueue(self, change: _Change) -> None:
        self._pending.append(change)
        self._queued += 1
        self._kick(self._batch_delay)

    def _kick(self, delay: float) -> None:
        if not self.running or self._busy or self._timer is not None:
            return
        self._timer = self._clock.callLater(delay, self._work)

    def _work(self) -> None:
        self._timer = None
        if self._busy or self._stopping:
            return
        if self._needs_rebuild:
            self._rebuild()
        elif self._pending:
            self._send_batch()
        else:
            self._applied_up_to(self._queued)
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _settle(self, retry: bool = False) -> None:
        """The running nft ended: go on with the queue, now or after a backoff delay."""
        self._busy = False
        waiters, self._not_busy_waiters = self._not_busy_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        if self._stopping or not self.running:
            return
        if retry:
            delay = min(self._first_retry * 2 ** (self._failures_in_a_row - 1), self._longest_retry)
            log.info("retrying nft in {delay:.1f}s", delay=delay)
            self._timer = self._clock.callLater(delay, self._work)
        else:
            self._kick(0)

    def _when_not_busy(self) -> Deferred[None]:
        if not self._busy:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._not_busy_waiters.append(waiter)
        return waiter

    def _nft_apply(self, text: str) -> Deferred[ProcessResult]:
        return self._runner.run(self._nft, ["-f", "-"], text.encode("utf-8"))

    @staticmethod
    def _batch_text(changes: Sequence[_Change]) -> str:
        return "".join(line + "\n" for change in changes for line in change.lines)

    def _send_batch(self) -> None:
        self._busy = True
        batch, self._pending = self._pending, []
        covers = self._queued  # the batch holds every change queued so far
        d = self._nft_apply(self._batch_text(batch))

        def done(result: ProcessResult) -> None:
            if result.succeeded:
                self._failures_in_a_row = 0
                self.stats.batches += 1
                self.stats.changes += len(batch)
                self._flush_connections(ip for change in batch for ip in change.flush)
                self._applied_up_to(covers)
                self._settle()
                return
            self._failed(f"applying {len(batch)} changes", result)
            self._pending[:0] = batch
            if self._failures_in_a_row >= self._rebuild_after:
                self._needs_rebuild = True
            self._settle(retry=True)

        d.addCallback(done)
        d.addErrback(self._bug, "applying changes")

    def _bug(self, failure: Any, what: str) -> None:
        # A bug of ours, not nft's: log it, and rebuild from the table later
        # rather than stall the queue or lose the reactor.
        log.failure("firewall: unexpected error {what}", failure, what=what)
        self.stats.failures += 1
        self._failures_in_a_row += 1
        self._needs_rebuild = True
        self._settle(retry=True)

    def _failed(self, what: str, result: ProcessResult) -> None:
        self._failures_in_a_row += 1
        self.stats.failures += 1
        log.error(
            "nft failed {what} in {table} (failure {count}): {message}",
            what=what,
            table=self.plan.qualified_table,
            count=self.stats.failures,
            message=result.message(),
        )

    def _rebuild(self) -> None:
        self._busy = True
        d = self._read_kernel()
        d.addCallback(self._load)
        d.addErrback(self._bug, "loading the table")

    def _load(self, before: KernelState | None) -> Deferred[None]:
        now = self._clock.seconds()
        sessions = list(self._table.sessions())
        # The snapshot below includes every queued change: they are
        # superseded, except for the connection flushes they asked for.
        superseded, self._pending = self._pending, []
        covers = self._queued  # the snapshot includes every change queued so far
        before = before or KernelState()
        for address, remaining in before.learned.items():
            if remaining > 0 and self._learned.get(address, 0.0) < now + remaining:
                self._learned[address] = now + remaining
        self._forget_expired_learned(now)
        clients = []
        self._claim_unowned(sessions)
        for session in sessions:
            at = self._counted_at(session)
            # One counter per address, its owner's (a set holds it once).
            ip = _ip(at) if self._owner.get(at) == session.mac else None
            clients.append(
                ruleset.AuthorizedClient(
                    mac=session.mac,
                    ip=ip,
                    timeout=session.remaining(now),
                    from_client=before.from_client.get(session.mac, ruleset.Counter()),
                    to_client=before.to_client.get(str(ip), ruleset.Counter()) if ip else ruleset.Counter(),
                )
            )
        learned = [ruleset.LearnedAddress(a, end - now) for a, end in self._learned.items()]
        text = ruleset.ruleset(self.plan, clients, learned)
        d = self._nft_apply(text)

        def done(result: ProcessResult) -> None:
            if result.succeeded:
                macs = {s.mac for s in sessions}
                log.info(
                    "nftables table {table} loaded: {count} authorized ({kept} kept, {added} added, "
                    "{removed} removed), {learned} walled-garden addresses",
                    table=self.plan.qualified_table,
                    count=len(macs),
                    kept=len(macs & before.authorized),
                    added=len(macs - before.authorized),
                    removed=len(before.authorized - macs),
                    learned=len(learned),
                )
                # The live table, not the snapshot: it also covers sessions
                # made before this backend observed the table, and a login
                # made while nft ran (in the queue) is read like the others.
                self._installed = {s.mac: s for s in self._table.sessions()}
                self._moved = {mac: ip for mac, ip in self._moved.items() if mac in self._installed}
                self._claim_unowned()
                self._needs_rebuild = False
                self._failures_in_a_row = 0
                self.stats.reloads += 1
                self._flush_connections(ip for change in superseded for ip in change.flush)
                self._applied_up_to(covers)
                self._settle()
                return
            self._failed("loading the table", result)
            self._pending[:0] = superseded
            self._settle(retry=True)

        return d.addCallback(done)

    # --- connection tracking ---

    def _flush_connections(self, ips: Any) -> None:
        for ip in dict.fromkeys(ips):
            d = self._flushes.run(self._runner.run, self._conntrack, ["-D", "-s", ip])
            d.addCallback(self._flushed, ip)

    def _flushed(self, result: ProcessResult, ip: str) -> None:
        # conntrack exits 1 when there was nothing to delete.
        if result.succeeded or b"flow entries have been deleted" in result.stderr:
            return
        self.stats.conntrack_failures += 1
        log.warn("conntrack could not flush {ip}'s connections: {message}", ip=ip, message=result.message())

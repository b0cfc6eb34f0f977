"""
The nftables backend: portald's own table, kept in step with the
authorization table.

Every change to the table becomes a few ``nft`` commands (see
L{portald.firewall.ruleset}), queued and sent in batches by the
L{portald.firewall.applyqueue.ApplyQueue}: at most one ``nft`` at a time,
failed batches retried, and after a few failures in a row the whole table
rebuilt from the authorization table instead (that also repairs a table
someone deleted).  At start the same rebuild reconciles the kernel with the
table: the table wins, and traffic counters of sessions that carry on survive.

Whose downloads each address counts is L{portald.firewall.counters}'s
business, the walled-garden addresses learned from DNS are
L{portald.firewall.garden}'s; this module turns their answers into nft
commands and runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from portald.config import Config
from portald.firewall import ruleset
from portald.firewall.applyqueue import ApplyQueue, FirewallStats, IQueueWork, Timing
from portald.firewall.closing import BlockingRunner, TableLoadFailed, close_if_open, run_blocking
from portald.firewall.counters import CounterOwnership
from portald.firewall.garden import LearnedGarden
from portald.firewall.interface import IFirewall
from portald.firewall.kernelstate import KernelState, UnreadableState, parse_kernel_state, parse_seen6
from portald.firewall.process import IProcessRunner, ProcessResult
from portald.limits import Counters, CountersUnavailable, ITrafficSource
from portald.table import AuthorizationTable, EndReason, IAllowListObserver, Session
from portald.threads import Offload

log = Logger()

__all__ = ["FirewallStats", "NftablesFirewall"]


class CannotList(Exception):
    """nft could not list a set (its message says why)."""


@attrs.frozen
class _Change:
    """Some nft commands, and the client addresses whose connections to flush once they apply."""

    lines: tuple[str, ...]
    # Every connection from these addresses ends (a sign-out, a pass withdrawn).
    flush: tuple[str, ...] = ()
    # Only the connections redirected to portald end (a sign-in): one opened
    # between the grant and the flush already goes out and must not be cut.
    flush_redirected: tuple[str, ...] = ()
    # Devices whose IPv6 connections to flush too (every address the kernel saw them use).
    flush_devices: tuple[str, ...] = ()


def _batch_text(changes: Iterable[_Change]) -> str:
    return "".join(line + "\n" for change in changes for line in change.lines)


@implementer(IFirewall, IAllowListObserver, ITrafficSource, IQueueWork)
class NftablesFirewall(Service):
    name = "firewall"
    backend = "nftables"
    counts_traffic = True

    def __init__(
        self,
        config: Config,
        table: AuthorizationTable,
        clock: IReactorTime,
        runner: IProcessRunner,
        *,
        batch_delay: float = 0.0,
        first_retry: float = 0.5,
        longest_retry: float = 30.0,
        rebuild_after_failures: int = 3,
        shortest_garden_timeout: float = 60.0,
        longest_garden_timeout: float = 86400.0,
        run_before_reactor: BlockingRunner = run_blocking,
        offload: Offload | None = None,
    ) -> None:
        self.plan = ruleset.FirewallPlan.from_config(config)
        self._nft = str(config.firewall.nft)
        self._conntrack = str(config.firewall.conntrack)
        self._on_stop = config.firewall.on_stop
        self._table = table
        self._clock = clock
        self._runner = runner
        self.stats = FirewallStats()
        timing = Timing(batch_delay, first_retry, longest_retry, rebuild_after_failures)
        self.queue: ApplyQueue[_Change] = ApplyQueue(
            clock, self, self.stats, table=self.plan.qualified_table, timing=timing
        )
        self._counters = CounterOwnership()
        self._garden = LearnedGarden(self.plan.walled_garden, shortest_garden_timeout, longest_garden_timeout)
        self._started_at: float | None = None
        # Each leased IPv4 address and its MAC, as last sent to the kernel.
        self._leased: dict[str, str] = {}
        # conntrack scans the whole table for each flush: a few at a time.
        self._flushes = DeferredSemaphore(4)
        # The connection flushes of applied changes that are not done yet.
        self._ending: set[Deferred[object]] = set()
        self._run_before_reactor = run_before_reactor
        # Where the kernel's listing is decoded: off the reactor when given (a
        # thread; 50 000 sessions' listing takes 0.4 s, in slices the reactor
        # shares); judged on it.
        self._offload = offload

    # --- service ---

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        # Before any listener opens, and before the reactor runs: with no
        # table in the kernel (a first start, or on_stop: remove) the LAN
        # would be forwarded freely until the first load.  The sessions
        # restored from the store are in the table already.
        try:
            loaded = close_if_open(
                self._nft,
                self.plan,
                self._table.sessions(),
                self._clock.seconds(),
                self._run_before_reactor,
                allowed=[device.mac for device in self._table.allowed()],
            )
        except TableLoadFailed as e:
            log.error(
                "cannot load {table} before start: {message}", table=self.plan.qualified_table, message=str(e)
            )
            return
        if loaded:
            log.info(
                "nftables table {table} loaded closed before the listeners open",
                table=self.plan.qualified_table,
            )

    def startService(self) -> None:
        super().startService()
        self._started_at = self._clock.seconds()
        # Not now: services started after this one (the store restoring
        # sessions) fill the table first, so the first load already has them.
        self.queue.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        done = self.queue.stop()
        done.addCallback(lambda _: self._final_step())
        return done

    def _final_step(self) -> Deferred[None]:
        if self._on_stop == "remove":
            self.queue.discard_pending()
            log.info(
                "removing nftables table {table} (firewall.on_stop: remove)", table=self.plan.qualified_table
            )
            text = ruleset.remove_table(self.plan)
        else:
            log.info(
                "leaving nftables table {table} in place (firewall.on_stop: keep)",
                table=self.plan.qualified_table,
            )
            # One last try, so the kernel does not keep a client the table dropped.
            leftovers = self.queue.take_leftovers()
            if not leftovers:
                return succeed(None)
            text = _batch_text(leftovers)
        d = self._nft_apply(text)

        def report(result: ProcessResult) -> None:
            if not result.succeeded:
                self.stats.failures += 1
                log.error("nft failed while stopping: {message}", message=result.message())

        return d.addCallback(report)

    # --- IAuthorizationObserver ---

    def session_started(self, session: Session) -> None:
        sign_in = self._counters.signed_in(session)

        def lines() -> list[str]:
            forget = ruleset.forget_counter(self.plan, sign_in.forget) if sign_in.forget is not None else []
            return forget + ruleset.grant(self.plan, session.mac, sign_in.counted, self._timeout(session))

        # A new login's connections were intercepted before it: flush them.
        # A session restored at start (older than this run) keeps its own.
        is_new = self._started_at is not None and session.started >= self._started_at
        redirected = (session.ip,) if sign_in.counted is not None and is_new else ()
        self._change(lines, redirected=redirected)

    def session_extended(self, session: Session) -> None:
        self._counters.extended(session)
        self._change(lambda: ruleset.extend(self.plan, session.mac, self._timeout(session)))

    def session_ended(self, session: Session, reason: EndReason) -> None:
        sign_out = self._counters.signed_out(session)
        # An address that another signed-in device has now keeps its counter
        # and connections.  Flushing after the revoke makes this device's
        # open connections fail at once (reset by the portal), not hang.
        flush = (sign_out.address,) if sign_out.counter is not None else ()
        self._change(lambda: ruleset.revoke(self.plan, session.mac, sign_out.counter), flush, (session.mac,))

    def _timeout(self, session: Session) -> float | None:
        return session.remaining(self._clock.seconds())

    def _change(
        self,
        lines: Callable[[], Iterable[str]],
        flush: tuple[str, ...] = (),
        devices: tuple[str, ...] = (),
        redirected: tuple[str, ...] = (),
    ) -> None:
        """Queue C{lines()}, unless the whole load that is due will write the same from the table.

        The load writes everything from portald's own state, except the IPv6
        counters it forgets (it keeps every one it reads back).
        """
        # At start, 50 000 restored sessions' commands (80 MB, held until the
        # load) would otherwise be made only to be dropped, and the long-lived
        # objects made between them would pin that memory's arenas for good.
        commands = () if self.queue.next_load_supersedes else tuple(lines())
        if commands or flush or devices or redirected:
            self.queue.add(_Change(commands, flush, flush_redirected=redirected, flush_devices=devices))

    # --- IAllowListObserver ---

    def allowed_changed(self, mac: str, allowed: bool) -> None:
        if allowed:
            self._change(lambda: ruleset.allow(self.plan, mac))
            return
        # Its open connections end with its pass, unless it is signed in.
        signed_in = self._table.is_authorized(mac)
        flush = () if signed_in else tuple(ip for ip, owner in self._leased.items() if owner == mac)
        self._change(lambda: ruleset.disallow(self.plan, mac), flush)

    # --- devices that move ---

    def addresses_changed(self, ips_for: Callable[[str], frozenset[str]]) -> None:
        lines: list[str] = []
        for move in self._counters.moved(ips_for):
            if move.new == move.old:
                log.info(
                    "{mac} is at {new} again: its downloads are counted there", mac=move.mac, new=move.new
                )
            else:
                log.info(
                    "{mac} moved from {old} to {new}: its downloads are counted there",
                    mac=move.mac,
                    old=move.old,
                    new=move.new,
                )
            if move.forget is not None:
                lines += ruleset.forget_counter(self.plan, move.forget)
            # The new counter starts where the old one was last read, so the
            # quota sees no reset (what came in since that reading is lost).
            lines += ruleset.count_to(self.plan, move.counter, move.start)
        self._change(lambda: lines)

    def leases_changed(self, mac_by_ip: Mapping[str, str]) -> None:
        wanted = {ip: mac for ip, mac in mac_by_ip.items() if ":" not in ip}
        lines: list[str] = []
        for ip, mac in self._leased.items():
            if wanted.get(ip) != mac:
                lines += ruleset.unlease(self.plan, ip, mac)
        for ip, mac in wanted.items():
            if self._leased.get(ip) != mac:
                lines += ruleset.lease(self.plan, ip, mac)
        self._leased = wanted
        self._change(lambda: lines)

    # --- walled garden learned from DNS ---

    def on_walled_garden_answer(self, addresses: Sequence[str], ttl: float) -> None:
        lines: list[str] = []
        for learned in self._garden.learn(addresses, ttl, self._clock.seconds()):
            lines += ruleset.learn(self.plan, learned.address, learned.timeout)
        self._change(lambda: lines)

    # --- reading ---

    def read_counters(self) -> Deferred[Counters]:
        d = self.read_kernel()

        def counters(state: KernelState | None) -> Counters:
            if state is None:
                raise CountersUnavailable(f"cannot read {self.plan.qualified_table}")
            return self._counters.readings(state.from_client, state.to_client, state.seen6)

        return d.addCallback(counters)

    def ipv6_devices(self) -> Deferred[Mapping[str, str]]:
        d = self._runner.run(self._nft, ruleset.list_seen6(self.plan))

        def parse(result: ProcessResult) -> Mapping[str, str]:
            if not result.succeeded:
                raise CannotList(result.message())
            try:
                return parse_seen6(result.stdout)
            except UnreadableState as e:
                raise CannotList(str(e)) from None

        return d.addCallback(parse)

    def read_kernel(self) -> Deferred[KernelState | None]:
        """What the kernel's table holds now; C{None} if it cannot be read."""
        d = self._runner.run(self._nft, ["-j", "list", "table", "inet", self.plan.table])

        def parse(result: ProcessResult) -> Deferred[KernelState] | KernelState | None:
            if not result.succeeded:
                log.debug(
                    "cannot read {table}: {message}",
                    table=self.plan.qualified_table,
                    message=result.message(),
                )
                return None
            if self._offload is None:
                return parse_kernel_state(result.stdout)
            return self._offload(lambda: parse_kernel_state(result.stdout))

        def unreadable(failure: Failure) -> None:
            failure.trap(UnreadableState)
            log.warn(
                "cannot read {table}: {error}",
                table=self.plan.qualified_table,
                error=failure.getErrorMessage(),
            )
            return None

        return d.addCallback(parse).addErrback(unreadable)

    # --- applying (IFirewall) ---

    def reload(self) -> Deferred[None]:
        return self.queue.rebuild()

    def reconfigure(self, config: Config) -> None:
        plan = ruleset.FirewallPlan.from_config(config)
        if plan.walled_garden == self.plan.walled_garden:
            self.plan = plan
            return
        self.plan = plan
        self._garden.configured = plan.walled_garden
        # One transaction, in the queue's order: the sets change, nothing is rebuilt.
        self._change(lambda: ruleset.replace_walled_garden(plan))

    def health(self) -> dict[str, object]:
        stats = self.stats
        return {
            "backend": self.backend,
            "table": self.plan.qualified_table,
            "last_apply": stats.last_run,
            "last_result": "never run" if stats.last_run is None else (stats.last_error or "ok"),
            "batches": stats.batches,
            "reloads": stats.reloads,
            "failures": stats.failures,
        }

    def applied(self) -> Deferred[None]:
        """Fires once every change made so far is in the kernel, and the connections it ends are ended."""
        # A guest told "signed out" (or "signed in") opens its next
        # connection at once: the flush must not come after it and cut it.
        return self.queue.applied().addCallback(lambda _: self._connections_ended())

    def _connections_ended(self) -> Deferred[None]:
        """Fires once the flushes begun so far are done (not those begun later: no waiting on churn)."""
        if not self._ending:
            return succeed(None)
        return DeferredList(list(self._ending)).addCallback(lambda _: None)

    # --- the queue's work (IQueueWork) ---

    def send_batch(self, changes: Sequence[_Change]) -> Deferred[ProcessResult]:
        return self._nft_apply(_batch_text(changes))

    def load_table(self, before: KernelState | None) -> Deferred[ProcessResult]:
        now = self._clock.seconds()
        sessions = list(self._table.sessions())
        before = before or KernelState()
        self._garden.kernel_had(before.learned, now)
        clients = [
            ruleset.AuthorizedClient(
                mac=session.mac,
                ip=ip,
                timeout=session.remaining(now),
                from_client=before.from_client.get(session.mac, ruleset.Counter()),
                to_client=before.to_client.get(str(ip), ruleset.Counter()) if ip else ruleset.Counter(),
            )
            for session, ip in self._counters.counted_for_load(sessions)
        ]
        learned = self._garden.remaining(now)
        allowed = [device.mac for device in self._table.allowed()]
        to_client6 = {address: c for address, c in before.to_client.items() if ":" in address}
        macs = {session.mac for session in sessions}
        signed_in6 = [address for address, mac in before.seen6.items() if mac in macs]
        table = ruleset.ruleset(
            self.plan, clients, learned, self._leased, allowed, before.seen6, to_client6, signed_in6
        )
        d = self._nft_apply(table)

        def loaded(result: ProcessResult) -> ProcessResult:
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
                self._counters.loaded(self._table.sessions())
            return result

        return d.addCallback(loaded)

    def took_effect(self, changes: Sequence[_Change]) -> None:
        everything = dict.fromkeys(ip for change in changes for ip in change.flush)
        redirected = (ip for change in changes for ip in change.flush_redirected if ip not in everything)
        ending = [self._flush_connections(everything), self._flush_connections(redirected, ("--dst-nat",))]
        devices = {mac for change in changes for mac in change.flush_devices}
        if devices:
            ending.append(self._flush_ipv6_of(devices))
        if any(ending):
            self._track_ending(DeferredList([d for d in ending if d is not None]))

    def _track_ending(self, ending: Deferred[object]) -> None:
        self._ending.add(ending)

        def ended(result: object) -> object:
            self._ending.discard(ending)
            return result

        ending.addBoth(ended)

    def _flush_ipv6_of(self, devices: set[str]) -> Deferred[object]:
        """Signed out: each IPv6 address the kernel saw C{devices} send from ends its connections too."""

        def flush(seen: Mapping[str, str]) -> Deferred[object] | None:
            addresses = sorted(
                ip for ip, mac in seen.items() if mac in devices and not self._table.is_authorized(mac)
            )
            # Counted afresh from the device's next sign-in.  Not through
            # _change: a whole load keeps every IPv6 counter it reads back.
            if addresses:
                self.queue.add(_Change(tuple(ruleset.forget_ipv6(self.plan, addresses))))
            return self._flush_connections(addresses)

        def failed(failure: Failure) -> None:
            log.warn("cannot flush IPv6 connections: {error}", error=failure.getErrorMessage())

        return self.ipv6_devices().addCallbacks(flush, failed)

    def _nft_apply(self, text: str) -> Deferred[ProcessResult]:
        return self._runner.run(self._nft, ["-f", "-"], text.encode("utf-8"))

    # --- connection tracking ---

    def _flush_connections(self, ips: Iterable[str], only: tuple[str, ...] = ()) -> Deferred[object] | None:
        """Ends the connections from each of C{ips}; what fires once all are done (None if no address)."""
        flushes = []
        for ip in dict.fromkeys(ips):
            d = self._flushes.run(self._runner.run, self._conntrack, ["-D", "-s", ip, *only])
            flushes.append(d.addCallback(self._flushed, ip))
        return DeferredList(flushes) if flushes else None

    def _flushed(self, result: ProcessResult, ip: str) -> None:
        # conntrack exits 1 when there was nothing to delete.
        if result.succeeded or b"flow entries have been deleted" in result.stderr:
            return
        self.stats.conntrack_failures += 1
        log.warn("conntrack could not flush {ip}'s connections: {message}", ip=ip, message=result.message())

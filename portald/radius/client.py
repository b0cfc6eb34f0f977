"""
Asking RADIUS servers, over Twisted UDP: retransmission as RFC 5080 asks
(the same id and bytes, 2 s then doubling, bounded in count and total),
failover to the next server, a server that did not answer skipped for a
while, and Status-Server (RFC 5997) to find it alive again sooner.
"""

from __future__ import annotations

import collections
import ipaddress
from collections.abc import Callable, Sequence

import attrs
from pyrad import packet as radius
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from portald.radius.packets import LONGEST_PACKET, status_server, valid_reply

log = Logger()

# Requests in flight to one server at most (ids are one octet).
IDS = 256


class NoAnswer(Exception):
    """No server answered in time; the message says which were tried."""


@attrs.define(eq=False)
class Target:
    """One server's port (authentication or accounting), and what portald knows of its health."""

    host: str
    port: int
    secret: bytes
    dead_until: float = 0.0
    in_flight: dict[int, Pending] = attrs.field(factory=dict)
    next_id: int = 0
    probe: IDelayedCall | None = None
    answered: int = 0
    timeouts: int = 0

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def free_id(self) -> int | None:
        for _ in range(IDS):
            candidate, self.next_id = self.next_id, (self.next_id + 1) % IDS
            if candidate not in self.in_flight:
                return candidate
        return None


@attrs.define(eq=False)
class Pending:
    """A request on its way: which server, its bytes, when to send it again."""

    build: Callable[[bytes], radius.Packet]
    done: Deferred[radius.Packet]
    started: float
    target: Target | None = None
    packet: radius.Packet | None = None
    data: bytes = b""
    sends: int = 0
    # When this server's share of the whole wait is over (the rest is the next servers').
    server_deadline: float = 0.0
    timer: IDelayedCall | None = None
    tried: list[str] = attrs.field(factory=list)


@attrs.frozen
class Timing:
    """How long to wait: first retransmission, retransmissions per server, the whole, a dead server's rest."""

    timeout: float = 2.0
    retries: int = 2
    give_up_after: float = 10.0
    dead_time: float = 30.0


class RadiusClient(DatagramProtocol):
    """
    Sends requests to C{servers} (tried in order) from one UDP port and
    answers each with the genuine reply, or fails it with L{NoAnswer}.

    A request is a function of the server's secret, so that failing over
    to another server re-signs it.
    """

    def __init__(
        self,
        clock: IReactorTime,
        servers: Sequence[tuple[str, int, bytes]],
        timing: Timing,
        *,
        what: str,
        nas_identifier: str,
    ) -> None:
        self._clock = clock
        self.targets = [Target(host, port, secret) for host, port, secret in servers]
        self._by_address = {(str(ipaddress.ip_address(t.host)), t.port): t for t in self.targets}
        self._timing = timing
        self._what = what
        self._nas_identifier = nas_identifier
        # Requests waiting for an id (more than 256 in flight to one server).
        self._queued: collections.deque[Pending] = collections.deque()
        self.discarded = 0

    def request(self, build: Callable[[bytes], radius.Packet]) -> Deferred[radius.Packet]:
        """Send the packet C{build(secret)} makes; the reply, once one answers."""
        pending = Pending(build, Deferred(), self._clock.seconds())
        self._dispatch(pending)
        return pending.done

    # --- choosing a server ---

    def _alive(self, now: float) -> list[Target]:
        alive = [t for t in self.targets if t.dead_until <= now]
        # When all rest, ask them anyway, in order: better a slow answer than none.
        return alive or list(self.targets)

    def _dispatch(self, pending: Pending) -> None:
        now = self._clock.seconds()
        left = self._timing.give_up_after - (now - pending.started)
        untried = [t for t in self._alive(now) if str(t) not in pending.tried]
        if left <= 0 or not untried:
            self._give_up(pending)
            return
        target = untried[0]
        ident = target.free_id()
        if ident is None:
            self._queued.append(pending)
            return
        packet = pending.build(target.secret)
        packet.id = ident
        pending.target, pending.packet = target, packet
        pending.data = packet.RequestPacket()
        pending.sends = 0
        pending.server_deadline = now + left / len(untried)
        pending.tried.append(str(target))
        target.in_flight[ident] = pending
        self._send(pending)

    def _send(self, pending: Pending) -> None:
        target = pending.target
        assert target is not None and self.transport is not None
        self.transport.write(pending.data, (target.host, target.port))
        pending.sends += 1
        # 2 s, then 4 s, 8 s...; never past this server's share of the bound.
        wait = self._timing.timeout * 2 ** (pending.sends - 1)
        left = pending.server_deadline - self._clock.seconds()
        pending.timer = self._clock.callLater(max(0.0, min(wait, left)), self._waited, pending)

    def _waited(self, pending: Pending) -> None:
        pending.timer = None
        target = pending.target
        assert target is not None
        if pending.sends <= self._timing.retries and self._clock.seconds() < pending.server_deadline:
            self._send(pending)  # the same id and bytes: the server may have answered a copy
            return
        self._release(pending)
        target.timeouts += 1
        if target.dead_until <= self._clock.seconds():
            log.warn(
                "RADIUS {what} server {server} did not answer: skipped for {rest:.0f}s",
                what=self._what, server=str(target), rest=self._timing.dead_time,
            )  # fmt: skip
            self._rest(target)
        self._dispatch(pending)

    def _give_up(self, pending: Pending) -> None:
        tried = ", ".join(pending.tried) or "none free"
        pending.done.errback(NoAnswer(f"no RADIUS {self._what} server answered (tried {tried})"))

    def _release(self, pending: Pending) -> None:
        target = pending.target
        if target is not None and pending.packet is not None:
            target.in_flight.pop(pending.packet.id, None)
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        if self._queued:
            self._dispatch(self._queued.popleft())

    # --- a dead server, and finding it alive again ---

    def _rest(self, target: Target) -> None:
        target.dead_until = self._clock.seconds() + self._timing.dead_time
        self._schedule_probe(target)

    def _schedule_probe(self, target: Target) -> None:
        if target.probe is None or not target.probe.active():
            every = max(1.0, self._timing.dead_time / 3)
            target.probe = self._clock.callLater(every, self._probe, target)

    def _probe(self, target: Target) -> None:
        target.probe = None
        if target.dead_until <= self._clock.seconds() or self.transport is None:
            return
        ident = target.free_id()
        if ident is None:
            return
        probe = status_server(target.secret, {"NAS-Identifier": self._nas_identifier})
        probe.id = ident
        pending = Pending(lambda _secret: probe, Deferred(), self._clock.seconds(), target, probe)
        pending.done.addCallbacks(lambda _: self._came_back(target), lambda _: None)
        target.in_flight[ident] = pending
        self.transport.write(probe.RequestPacket(), (target.host, target.port))
        # An unanswered probe frees its id by the next one.
        pending.timer = self._clock.callLater(self._timing.timeout * 2, self._drop_probe, target, ident)
        self._schedule_probe(target)

    def _drop_probe(self, target: Target, ident: int) -> None:
        pending = target.in_flight.get(ident)
        if pending is not None and pending.packet is not None and pending.packet.code == radius.StatusServer:
            del target.in_flight[ident]

    def _came_back(self, target: Target) -> None:
        if target.dead_until > self._clock.seconds():
            log.info("RADIUS {what} server {server} answers again", what=self._what, server=str(target))
        target.dead_until = 0.0

    # --- replies ---

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        target = self._by_address.get((addr[0], addr[1]))
        if target is None or len(data) < 20 or len(data) > LONGEST_PACKET:
            self.discarded += 1
            return
        pending = target.in_flight.get(data[1])
        if pending is None or pending.packet is None:
            self.discarded += 1  # late, or answered already
            return
        reply = valid_reply(pending.packet, data)
        if reply is None:
            self.discarded += 1
            log.warn(
                "discarded a reply from RADIUS server {server}: not signed with the secret "
                "and a valid Message-Authenticator", server=str(target),
            )  # fmt: skip
            return
        target.answered += 1
        target.dead_until = 0.0
        self._release(pending)
        pending.done.callback(reply)

    def stop(self) -> None:
        """Stop every timer (the port is closing): requests in flight fail."""
        for target in self.targets:
            if target.probe is not None and target.probe.active():
                target.probe.cancel()
            for pending in list(target.in_flight.values()):
                if pending.timer is not None and pending.timer.active():
                    pending.timer.cancel()
                target.in_flight.pop(pending.packet.id if pending.packet is not None else -1, None)
                if not pending.done.called:
                    pending.done.errback(NoAnswer(f"portald stopped before RADIUS {self._what} answered"))
        while self._queued:
            self._queued.popleft().done.errback(NoAnswer("portald stopped"))

    def health(self) -> list[dict[str, object]]:
        now = self._clock.seconds()
        return [
            {
                "server": str(t),
                "alive": t.dead_until <= now,
                "answered": t.answered,
                "timeouts": t.timeouts,
                "in_flight": len(t.in_flight),
            }
            for t in self.targets
        ]


def listen(reactor: IReactorUDP, client: RadiusClient) -> object:
    """Open C{client}'s UDP port (an ephemeral one, on every address)."""
    return reactor.listenUDP(0, client, maxPacketSize=LONGEST_PACKET)

"""
Forwarding to the upstream resolvers: tried in order, each for at most the
configured timeout, over UDP (and TCP when the UDP answer is truncated);
answers go into the L{AnswerCache}; identical questions in flight share one
upstream query.  When every upstream fails the caller gets L{UpstreamFailed}
after at most (number of upstreams) x (timeout) x 2, never a hang.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTCP, IReactorTime, IReactorUDP
from twisted.internet.protocol import ClientFactory, DatagramProtocol
from twisted.logger import Logger
from twisted.names import dns
from twisted.python.failure import Failure

from portald.config import Endpoint
from portald.dns.cache import AnswerCache, CachedAnswer, CacheKey
from portald.dns.casing import as_asked
from portald.dns.edns import opt_header
from portald.dns.wire import HEADER, RCODE_NOERROR, RCODE_NXDOMAIN

log = Logger()


# Upstream failures are logged at most this often (seconds).
WARNING_INTERVAL = 10.0


class UpstreamFailed(Exception):
    """No upstream resolver gave a usable answer in time."""


class UpstreamTimeout(UpstreamFailed):
    """One upstream did not answer within the timeout."""


def _question(key: CacheKey) -> dns.Query:
    name, qtype, qclass = key
    return dns.Query(name, qtype, qclass)


def _matches(message: dns.Message, key: CacheKey) -> bool:
    """Whether C{message} answers exactly the question C{key} asked."""
    if len(message.queries) != 1:
        return False
    query = message.queries[0]
    return (query.name.name.lower(), query.type, query.cls) == key


# How a name is spelled in the question sent upstream (see portald.dns.casing).
Speller = Callable[[bytes], bytes]


class _Pending:
    __slots__ = ("key", "sent_name", "address", "deferred", "timeout_call")

    def __init__(
        self,
        key: CacheKey,
        sent_name: bytes,
        address: tuple[str, int],
        deferred: defer.Deferred,
        timeout_call: IDelayedCall,
    ):
        self.key = key
        self.sent_name = sent_name
        self.address = address
        self.deferred = deferred
        self.timeout_call = timeout_call


def _as_asked(message: dns.Message, sent_name: bytes, name: bytes) -> None:
    """Records owned by the name as spelled upstream go back to the name as cached."""
    if sent_name == name:
        return
    for section in (message.queries, message.answers, message.authority, message.additional):
        for record in section:
            if record.name.name == sent_name:
                record.name = dns.Name(name)


class UpstreamDatagramProtocol(DatagramProtocol):
    """
    One UDP socket of portald's own towards the upstreams.  A response
    counts only if it comes from the address asked, carries a live query
    ID, and repeats the question exactly as sent, letter case included
    (C{spell} chose it): anything else is dropped.
    """

    noisy = False

    def __init__(self, clock: IReactorTime, spell: Speller = as_asked) -> None:
        self._clock = clock
        self._spell = spell
        self._pending: dict[int, _Pending] = {}

    def query(self, address: tuple[str, int], key: CacheKey, timeout: float) -> defer.Deferred:
        query_id = secrets.randbelow(0x10000)
        while query_id in self._pending:
            query_id = secrets.randbelow(0x10000)
        name, qtype, qclass = key
        sent_name = self._spell(name)
        message = dns.Message(id=query_id, recDes=1, maxSize=0)
        message.queries = [dns.Query(sent_name, qtype, qclass)]
        message.additional = [opt_header()]
        try:
            self.transport.write(message.toStr(), address)
        except Exception as e:
            return defer.fail(UpstreamFailed(f"cannot send to {address[0]}: {e}"))
        deferred: defer.Deferred = defer.Deferred()
        call = self._clock.callLater(timeout, self._timed_out, query_id)
        self._pending[query_id] = _Pending(key, sent_name, address, deferred, call)
        return deferred

    def _timed_out(self, query_id: int) -> None:
        pending = self._pending.pop(query_id)
        pending.deferred.errback(UpstreamTimeout(f"{pending.address[0]} did not answer in time"))

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if len(data) < HEADER.size:
            return
        query_id = int.from_bytes(data[:2], "big")
        pending = self._pending.get(query_id)
        if pending is None or tuple(addr[:2]) != pending.address:
            return
        message = dns.Message()
        try:
            message.fromStr(data)
        except Exception:
            log.debug("unreadable answer from {address}", address=addr[0])
            return
        if not message.answer or not _matches(message, pending.key):
            return
        if message.queries[0].name.name != pending.sent_name:
            # The right question in the wrong case: a forger's guess, not the answer.
            log.debug("answer from {address} with the question's case changed", address=addr[0])
            return
        _as_asked(message, pending.sent_name, pending.key[0])
        del self._pending[query_id]
        pending.timeout_call.cancel()
        pending.deferred.callback(message)

    def busy(self) -> bool:
        """Whether a query is still waiting for its answer."""
        return bool(self._pending)

    def stop(self) -> None:
        """Fail every query still in flight (the service is stopping)."""
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            entry.timeout_call.cancel()
            entry.deferred.errback(UpstreamFailed("stopping"))


class _TCPQueryFactory(ClientFactory):
    """One question over one TCP connection, for answers too big for UDP."""

    noisy = False

    def __init__(self, key: CacheKey, timeout: float, clock: IReactorTime) -> None:
        self._key = key
        self._timeout = timeout
        self._clock = clock
        self.deferred: defer.Deferred = defer.Deferred()

    def buildProtocol(self, addr: Any) -> dns.DNSProtocol:
        protocol = dns.DNSProtocol(self, reactor=self._clock)
        protocol.factory = self
        return protocol

    # The DNSProtocol's controller interface:
    def connectionMade(self, protocol: dns.DNSProtocol) -> None:
        protocol.query([_question(self._key)], timeout=self._timeout).addBoth(self._done, protocol)

    def connectionLost(self, protocol: dns.DNSProtocol) -> None:
        if not self.deferred.called:
            self.deferred.errback(UpstreamFailed("TCP connection lost"))

    def messageReceived(self, message: dns.Message, protocol: Any, address: Any = None) -> None:
        """An unsolicited message: ignored."""

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if not self.deferred.called:
            self.deferred.errback(UpstreamFailed(f"TCP connection failed: {reason.getErrorMessage()}"))

    def _done(self, result: Any, protocol: dns.DNSProtocol) -> None:
        protocol.transport.loseConnection()
        if self.deferred.called:
            return
        if isinstance(result, Failure):
            self.deferred.errback(UpstreamFailed(f"TCP query failed: {result.getErrorMessage()}"))
        elif not _matches(result, self._key):
            self.deferred.errback(UpstreamFailed("TCP answer for another question"))
        else:
            self.deferred.callback(result)


@attrs.define
class UpstreamHealth:
    """What one upstream resolver has done lately (for portald-ctl status)."""

    address: str
    answers: int = 0
    failures: int = 0
    last_answer: float | None = None
    last_failure: float | None = None

    def as_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


class Forwarder:
    """
    Answers questions from the cache, or from the upstreams in order.
    """

    # Sockets per address family, and queries each sends before it is retired.
    pool_size = 8
    queries_per_socket = 100

    def __init__(
        self,
        reactor: IReactorTime | IReactorUDP | IReactorTCP,  # all three: typing has no intersection
        upstreams: Sequence[Endpoint],
        timeout: float,
        cache: AnswerCache,
        spell: Speller = as_asked,
        on_upstream_answer: Callable[[float], None] | None = None,
    ) -> None:
        self._reactor = reactor
        self._spell = spell
        self._upstreams = tuple(upstreams)
        self.health = [UpstreamHealth(str(upstream)) for upstream in self._upstreams]
        # Told how long each answer took, in seconds (the metrics' histogram).
        self._on_upstream_answer = on_upstream_answer
        self._timeout = timeout
        self.cache = cache
        # Sockets towards the upstreams, per address family: a pool on
        # ports the kernel picks at random, each retired after a number of
        # queries, so that a spoofed answer must guess a moving port as well
        # as the ID.  (Not one socket per query: Twisted logs every UDP
        # port it opens and closes.)
        self._pools: dict[int, list[UpstreamDatagramProtocol]] = {}
        self._ports: dict[UpstreamDatagramProtocol, Any] = {}
        self._uses: dict[UpstreamDatagramProtocol, int] = {}
        self._retired: set[UpstreamDatagramProtocol] = set()
        self._in_flight: dict[CacheKey, list[defer.Deferred]] = {}
        self._stopped = False
        self._last_warning = float("-inf")
        self._unlogged_failures = 0

    def set_upstreams(self, upstreams: Sequence[Endpoint], timeout: float) -> None:
        """Ask these from the next question on (a reload); questions under way finish as they were."""
        self._upstreams = tuple(upstreams)
        self._timeout = timeout
        self.health = [UpstreamHealth(str(upstream)) for upstream in self._upstreams]

    def resolve(
        self, key: CacheKey, on_fresh: Callable[[CachedAnswer], None] | None = None
    ) -> defer.Deferred:
        """
        A Deferred firing with the L{CachedAnswer} for C{key}, or failing
        with L{UpstreamFailed}.  C{on_fresh} is called with every answer
        that came from an upstream (not from the cache).
        """
        now = self._reactor.seconds()
        cached = self.cache.get(key, now)
        if cached is not None:
            return defer.succeed(cached)
        waiting = self._in_flight.get(key)
        result: defer.Deferred = defer.Deferred()
        if waiting is not None:
            waiting.append(result)
            return result
        self._in_flight[key] = [result]
        self._ask(key, 0).addBoth(self._finished, key, on_fresh)
        return result

    def _finished(self, outcome: Any, key: CacheKey, on_fresh: Callable[[CachedAnswer], None] | None) -> None:
        waiting = self._in_flight.pop(key, [])
        if isinstance(outcome, Failure):
            error = outcome.value if outcome.check(UpstreamFailed) else UpstreamFailed(str(outcome.value))
            self._warn_failure(key, error)
            for deferred in waiting:
                deferred.errback(UpstreamFailed(str(error)))
            return
        entry = self.cache.make_entry(key, outcome, self._reactor.seconds())
        self.cache.store(key, entry)
        if on_fresh is not None:
            try:
                on_fresh(entry)
            except Exception:
                log.failure("the fresh-answer callback failed for {name}", name=key[0])
        for deferred in waiting:
            deferred.callback(entry)

    def _warn_failure(self, key: CacheKey, error: Exception) -> None:
        """Say that a name got SERVFAIL, at most once per L{WARNING_INTERVAL} (an outage is not a flood)."""
        now = self._reactor.seconds()
        if now - self._last_warning < WARNING_INTERVAL:
            self._unlogged_failures += 1
            return
        log.warn(
            "no upstream answered {name} ({error}); {more} more failed since the last warning",
            name=key[0].decode("ascii", "replace"),
            error=error,
            more=self._unlogged_failures,
        )
        self._last_warning = now
        self._unlogged_failures = 0

    def _ask(self, key: CacheKey, index: int) -> defer.Deferred:
        """Ask upstream C{index}, then the next ones, until one answers."""
        if index >= len(self._upstreams):
            return defer.fail(UpstreamFailed(f"all {len(self._upstreams)} upstream(s) failed"))
        upstream = self._upstreams[index]
        address = (str(upstream.host), upstream.port)
        try:
            udp = self._socket(upstream.host.version)
        except Exception as e:
            return defer.fail(UpstreamFailed(f"cannot open a socket towards {upstream}: {e}"))
        health = self.health[index]
        sent = self._reactor.seconds()
        attempt = udp.query(address, key, self._timeout)
        attempt.addBoth(self._close_socket, udp)
        attempt.addCallback(self._checked, key, address)

        def answered(message: dns.Message) -> dns.Message:
            now = self._reactor.seconds()
            health.answers += 1
            health.last_answer = now
            if self._on_upstream_answer is not None:
                self._on_upstream_answer(now - sent)
            return message

        def next_upstream(failure: Failure) -> Any:
            health.failures += 1
            health.last_failure = self._reactor.seconds()
            if self._stopped:
                return failure
            log.debug(
                "upstream {upstream} failed for {name}: {why}",
                upstream=str(upstream),
                name=key[0].decode("ascii", "replace"),
                why=failure.getErrorMessage(),
            )
            return self._ask(key, index + 1)

        return attempt.addCallbacks(answered, next_upstream)

    def _checked(self, message: dns.Message, key: CacheKey, address: tuple[str, int]) -> Any:
        if message.rCode not in (RCODE_NOERROR, RCODE_NXDOMAIN):
            raise UpstreamFailed(f"answered rcode {message.rCode}")
        if message.trunc:
            return self._ask_tcp(key, address).addCallback(self._checked_tcp)
        return message

    def _checked_tcp(self, message: dns.Message) -> dns.Message:
        if message.rCode not in (RCODE_NOERROR, RCODE_NXDOMAIN):
            raise UpstreamFailed(f"answered rcode {message.rCode} over TCP")
        return message

    def _ask_tcp(self, key: CacheKey, address: tuple[str, int]) -> defer.Deferred:
        factory = _TCPQueryFactory(key, self._timeout, self._reactor)
        self._reactor.connectTCP(address[0], address[1], factory, timeout=self._timeout)
        return factory.deferred

    def _socket(self, version: int) -> UpstreamDatagramProtocol:
        """A socket of the pool for C{version}, chosen at random (a new one while the pool grows)."""
        pool = self._pools.setdefault(version, [])
        if len(pool) < self.pool_size:
            udp = UpstreamDatagramProtocol(self._reactor, self._spell)
            interface = "::" if version == 6 else ""
            self._ports[udp] = self._reactor.listenUDP(0, udp, interface=interface, maxPacketSize=65535)
            self._uses[udp] = 0
            pool.append(udp)
        else:
            udp = pool[secrets.randbelow(len(pool))]
        self._uses[udp] += 1
        if self._uses[udp] >= self.queries_per_socket:
            # Retired: no new queries; closed once its last answer is in.
            pool.remove(udp)
            self._retired.add(udp)
        return udp

    def _close_socket(self, result: Any, udp: UpstreamDatagramProtocol) -> Any:
        if udp in self._retired and not udp.busy():
            self._retired.discard(udp)
            self._uses.pop(udp, None)
            port = self._ports.pop(udp, None)
            if port is not None:
                port.stopListening()
        return result

    def stop(self) -> defer.Deferred:
        """Fail queries in flight and close the sockets."""
        self._stopped = True
        ports, self._ports = self._ports, {}
        self._pools, self._uses, self._retired = {}, {}, set()
        for udp in ports:
            udp.stop()
        return defer.gatherResults([defer.maybeDeferred(port.stopListening) for port in ports.values()])

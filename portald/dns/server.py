"""
The DNS protocols, and the full path every query takes that the fast path
does not.

Twisted's resolvers never see the client's address, so the policy is asked
in L{PortalDNSFactory.queryReceived}, which gets the address from the
protocol for each query.  Over UDP the common cases (redirect, and a
forwarded answer already in the cache) take L{FastPath} first; everything
else, and everything over TCP, is read and answered with twisted.names
here.  Both give the same answers (tests/test_dns_properties.py).
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import attrs
from twisted.internet.interfaces import IAddress, IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import DatagramProtocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.names import dns
from twisted.protocols.basic import Int16StringReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from portald.config import Config
from portald.connections import ConnectionCounts
from portald.dns.cache import CachedAnswer
from portald.dns.edns import opt_header
from portald.dns.fastpath import FastPath
from portald.dns.policy import ActivityCallback, LocalAnswers, Policy, Verdict
from portald.dns.request import Malformed, Request, Unanswerable, decode_query
from portald.dns.upstream import Forwarder
from portald.dns.wire import (
    EDNS_FLAG_DO,
    FLAG_TC,
    RCODE_FORMERR,
    RCODE_NOERROR,
    RCODE_NOTIMP,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    response_flags,
    udp_limit,
    with_flags,
)
from portald.neighbours import Neighbours
from portald.refusals import Refusals
from portald.table import AuthorizationTable

log = Logger()

# BADVERS (RFC 6891): extended rcode 16, carried as 1 in the OPT's upper bits.
BADVERS_EXTENDED = 1

WalledGardenCallback = Callable[[Sequence[str], float], None]


@attrs.frozen
class TCPLimits:
    """The bounds on DNS over TCP (the C{dns} keys of the same names)."""

    max_tcp_connections: int = 256
    max_tcp_connections_per_client: int = 8
    tcp_timeout: float = 10.0
    max_tcp_pending: int = 16

    @classmethod
    def from_config(cls, config: Config) -> TCPLimits:
        dns = config.dns
        return cls(
            dns.max_tcp_connections, dns.max_tcp_connections_per_client, dns.tcp_timeout, dns.max_tcp_pending
        )


class IReplyWriter(Interface):
    """Where the full path sends a response: the protocol the query came in on."""

    def writeReply(reply: bytes, address: Any) -> None:
        """Send C{reply} to C{address} (UDP), or down the connection (TCP, C{address} is C{None})."""


@implementer(IReplyWriter)
class PortalDatagramProtocol(DatagramProtocol):
    """DNS over UDP: the fast path first, then the factory's full path."""

    def __init__(self, factory: PortalDNSFactory) -> None:
        self.factory = factory
        self._fast = factory.fast_path.answer
        self._sendto: Callable[[bytes, Any], Any] | None = None

    def startProtocol(self) -> None:
        # Straight to the socket: Port.write checks the address's syntax
        # three times per datagram, which costs the fast path a tenth of
        # its rate, and the address came from recvfrom anyway.
        sock = getattr(self.transport, "socket", None)
        self._sendto = sock.sendto if sock is not None else None

    def stopProtocol(self) -> None:
        self._sendto = None

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        try:
            reply = self._fast(data, addr[0])
            if reply is not None:
                self.writeReply(reply, addr)
                return
            self._full_path(data, addr)
        except Exception:
            # Whatever went wrong, the next datagram is answered.
            log.failure("unexpected error on a query from {source}", source=addr[0])

    def _full_path(self, data: bytes, addr: Any) -> None:
        try:
            request = decode_query(data)
        except Unanswerable:
            return
        except Malformed as malformed:
            if self.factory.policy.client(addr[0]) is not None:
                self.factory.answers["formerr"] += 1
                self.transport.write(malformed.formerr(), addr)
            return
        self.factory.queryReceived(request, self, addr)

    def writeReply(self, reply: bytes, address: Any) -> None:
        if self._sendto is None:
            if self.transport is not None:
                self.transport.write(reply, address)
            return
        try:
            self._sendto(reply, address)
        except BlockingIOError:
            pass  # the socket's buffer is full: a lost UDP answer, the client retries
        except InterruptedError:
            self._sendto(reply, address)
        except OSError as e:
            if e.errno not in (errno.ECONNREFUSED, errno.ENOBUFS, errno.EHOSTUNREACH, errno.ENETUNREACH):
                raise


@implementer(IReplyWriter, IPushProducer)
class PortalStreamProtocol(Int16StringReceiver, TimeoutMixin):
    """
    DNS over TCP: always the full path; garbage closes this connection only.
    Bounded: a connection quiet for C{dns.tcp_timeout} is closed; one with
    C{dns.max_tcp_pending} queries unanswered, or whose client does not read
    its answers, is not read until that changes.
    """

    def __init__(self, factory: PortalDNSFactory, clock: IReactorTime, client_ip: str) -> None:
        self.factory = factory
        self.client_ip = client_ip
        self._clock = clock
        self._open = False
        self._pending = 0
        # The transport's buffer is full: the client is not reading.
        self._output_full = False

    def callLater(self, period: float, func: Callable[..., Any], *args: Any) -> IDelayedCall:
        # TimeoutMixin's timer runs on the injected clock.
        return self._clock.callLater(period, func, *args)

    def connectionMade(self) -> None:
        self._open = True
        self.factory.connections.opened(self.client_ip)
        self.setTimeout(self.factory.limits.tcp_timeout)
        self.transport.registerProducer(self, True)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._open = False
        self.factory.connections.closed(self.client_ip)
        self.setTimeout(None)

    def timeoutConnection(self) -> None:
        if self._output_full:
            # Answers it never takes would keep a graceful close open forever.
            self.factory.refusals.refuse("dns.tcp_timeout", self.client_ip, "answers not read")
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    # IPushProducer, for the transport: its buffer is full, then empty again.

    def pauseProducing(self) -> None:
        self._output_full = True
        self._hold()

    def resumeProducing(self) -> None:
        self._output_full = False
        self._release()

    def stopProducing(self) -> None:
        self.paused = True

    def _hold(self) -> None:
        if not self.paused:
            # No further query is taken from the buffer, nor read from the socket.
            super().pauseProducing()

    def _release(self) -> None:
        if self.paused and self._open and not self._output_full and self._pending < self._max_pending:
            super().resumeProducing()

    @property
    def _max_pending(self) -> int:
        return self.factory.limits.max_tcp_pending

    def stringReceived(self, data: bytes) -> None:
        self.resetTimeout()
        try:
            request = decode_query(data)
        except Unanswerable:
            self.transport.loseConnection()
            return
        except Malformed as malformed:
            if self.factory.policy.client(self.client_ip) is not None:
                self.sendString(malformed.formerr())
            else:
                self.transport.loseConnection()  # as over UDP: no answer outside the LAN
            return
        self._pending += 1
        if self._pending >= self._max_pending:
            self.factory.refusals.refuse("dns.max_tcp_pending", self.client_ip)
            self._hold()
        try:
            self.factory.queryReceived(request, self, None)
        except Exception:
            log.failure("unexpected error on a TCP query")
            self.transport.loseConnection()

    def writeReply(self, reply: bytes, address: Any) -> None:
        # A forwarded answer may come back after the client has gone.
        if not self._open:
            return
        self.sendString(reply)
        self._pending = max(0, self._pending - 1)
        self._release()


class PortalDNSFactory(ServerFactory):
    """
    The full path: every query the fast path does not take, over UDP and
    TCP, with the policy applied per query from the client's own address.
    """

    def __init__(
        self,
        config: Config,
        neighbours: Neighbours,
        table: AuthorizationTable,
        forwarder: Forwarder,
        clock: IReactorTime,
        on_walled_garden_answer: WalledGardenCallback | None = None,
        on_activity: ActivityCallback | None = None,
        refusals: Refusals | None = None,
    ) -> None:
        self.refusals = refusals if refusals is not None else Refusals(clock)
        self.policy = Policy(config, neighbours, table, on_activity)
        self.local = LocalAnswers(config)
        self.forwarder = forwarder
        self._clock = clock
        self._on_walled_garden_answer = on_walled_garden_answer
        self.fast_path = FastPath(self.policy, self.local, forwarder.cache, clock)
        # What the full path answered, by kind (the fast path counts its own).
        self.answers: Counter[str] = Counter()
        self.limits = TCPLimits.from_config(config)
        self.connections = ConnectionCounts(
            ("dns.max_tcp_connections", self.limits.max_tcp_connections),
            ("dns.max_tcp_connections_per_client", self.limits.max_tcp_connections_per_client),
        )

    def buildProtocol(self, addr: IAddress) -> PortalStreamProtocol | None:  # type: ignore[override]
        client_ip: str = addr.host  # type: ignore[attr-defined]
        refused = self.connections.refusal(client_ip)
        if refused is not None:
            # None: the listener closes the new socket at once.
            self.refusals.refuse(refused, client_ip)
            return None
        return PortalStreamProtocol(self, self._clock, client_ip)

    def datagram_protocol(self) -> PortalDatagramProtocol:
        return PortalDatagramProtocol(self)

    def queryReceived(self, request: Request, protocol: IReplyWriter, address: Any) -> None:
        """
        Answer C{request}, from C{address} over UDP, or (C{address} is
        C{None}) from the peer of the TCP C{protocol}.
        """
        source = address[0] if address is not None else protocol.transport.getPeer().host
        client = self.policy.client(source)
        answers = self.answers
        if client is None:
            # Outside the LAN, whatever it asks: never an open resolver.
            answers["refused"] += 1
            self._reply(protocol, address, request, RCODE_REFUSED)
            return
        message = request.message
        if message.opCode != dns.OP_QUERY:
            answers["notimp"] += 1
            self._reply(protocol, address, request, RCODE_NOTIMP)
            return
        options = request.options
        if len(message.queries) != 1 or len(options) > 1 or any(o.name.name for o in options):
            answers["formerr"] += 1
            self._reply(protocol, address, request, RCODE_FORMERR)
            return
        if options and (options[0].ttl >> 16) & 0xFF != 0:
            answers["badvers"] += 1
            self._reply(protocol, address, request, RCODE_NOERROR, extended_rcode=BADVERS_EXTENDED)
            return
        query = message.queries[0]
        name = query.name.name.lower()
        verdict = self.policy.classify(client, name)
        if verdict is Verdict.CANARY:
            answers["canary"] += 1
            self._reply(protocol, address, request, RCODE_NXDOMAIN, authoritative=True)
        elif verdict is Verdict.PORTAL or verdict is Verdict.REDIRECT:
            answers["portal" if verdict is Verdict.PORTAL else "redirect"] += 1
            records = self.local.records(query)
            self._reply(protocol, address, request, RCODE_NOERROR, records, authoritative=True)
        else:
            on_fresh = partial(self._walled_garden_answer, name) if verdict is Verdict.WALLED_GARDEN else None
            signed_in = client if verdict is Verdict.FORWARD else None
            self.forwarder.resolve((name, query.type, query.cls), on_fresh).addCallbacks(
                self._forwarded,
                self._forward_failed,
                (protocol, address, request, signed_in),
                None,
                (protocol, address, request),
            ).addErrback(lambda failure: log.failure("cannot answer a forwarded query", failure))

    def _walled_garden_answer(self, name: bytes, entry: CachedAnswer) -> None:
        # Only what answers the name asked: a record for another name in the
        # same answer would open an unrelated address to everyone.
        addresses = entry.addresses(name)
        if addresses and self._on_walled_garden_answer is not None:
            self._on_walled_garden_answer(addresses, float(entry.lifetime))

    def _forwarded(
        self,
        entry: CachedAnswer,
        protocol: IReplyWriter,
        address: Any,
        request: Request,
        signed_in: str | None,
    ) -> None:
        answers, authority, additional = entry.records(self._clock.seconds())
        # Records owned by the name asked carry the client's spelling of it,
        # as the fast path's (whose owners point at the question) do: the
        # same answer, of the same size, on both paths.
        asked = request.message.queries[0].name.name
        for record in (*answers, *authority, *additional):
            if record.name.name != asked and record.name.name.lower() == asked.lower():
                record.name = dns.Name(asked)
        self.answers["forwarded"] += 1
        sent = self._reply(protocol, address, request, entry.rcode, answers, authority, additional)
        if signed_in is not None:
            self.policy.saw(signed_in, request.size, sent)

    def _forward_failed(
        self, failure: Failure, protocol: IReplyWriter, address: Any, request: Request
    ) -> None:
        self.answers["servfail"] += 1
        self._reply(protocol, address, request, RCODE_SERVFAIL)

    def _reply(
        self,
        protocol: IReplyWriter,
        address: Any,
        request: Request,
        rcode: int,
        answers: Sequence[dns.RRHeader] = (),
        authority: Sequence[dns.RRHeader] = (),
        additional: Sequence[dns.RRHeader] = (),
        *,
        authoritative: bool = False,
        extended_rcode: int = 0,
    ) -> int:
        """
        Send the response to C{request}: its question echoed, its flags as
        the fast path's, portald's OPT if the query had EDNS; over UDP, a
        response larger than the client accepts goes out with TC and no
        records.  Returns the size sent.
        """
        options = request.options
        message = request.message
        response = dns.Message(id=message.id, maxSize=0)
        response.queries = list(message.queries)
        # RFC 3225: DO is copied from the query.
        opt = (
            [opt_header(extended_rcode=extended_rcode, dnssec_ok=bool(options[0].ttl & EDNS_FLAG_DO))]
            if options
            else []
        )
        response.answers = list(answers)
        response.authority = list(authority)
        response.additional = list(additional) + opt
        flags = response_flags(request.flags, authoritative=authoritative, rcode=rcode)
        reply = with_flags(response.toStr(), flags)
        if address is not None:
            limit = udp_limit(options[0].cls if options else None)
            if len(reply) > limit:
                response.answers, response.authority, response.additional = [], [], opt
                reply = with_flags(response.toStr(), flags | FLAG_TC)
        protocol.writeReply(reply, address)
        return len(reply)

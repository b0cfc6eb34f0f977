"""
portald's DNS server: answers that depend on who is asking.

* A source outside the LAN subnets gets REFUSED (never an open resolver).
* ``use-application-dns.net`` (Firefox's DNS-over-HTTPS canary) and its
  subdomains get NXDOMAIN, for everyone.
* The portal's own hostname gets the portal's address, for everyone.
* Walled-garden names (and their subdomains) are forwarded, for everyone.
* An authorized client (source IP -> MAC via L{Neighbours} -> the
  L{AuthorizationTable}) is forwarded to the upstreams, through the cache.
* Everyone else gets the portal's address for A (the portal's IPv6 address
  for AAAA if it has one), an empty answer for other types, with the short
  redirect TTL.

Twisted's resolvers never see the client's address, so the policy lives in
L{PortalDNSFactory.handleQuery}, which gets it from the protocol for each
query.  The common UDP cases (redirect, and a forwarded answer already in the
cache) take L{FastPath}, which reads and writes the wire format directly;
everything else takes the full twisted.names path.  Both give the same
answers (tests/test_dns_properties.py).
"""

from __future__ import annotations

import enum
import errno
import ipaddress
import socket
from collections.abc import Callable, Sequence
from io import BytesIO
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.names import dns
from twisted.names.server import DNSServerFactory
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from portald.addresses import normalise_ip
from portald.config import Config
from portald.dns.cache import AnswerCache, CachedAnswer
from portald.dns.upstream import Forwarder
from portald.dns.wire import (
    EDNS_FLAG_DO,
    EDNS_UDP_SIZE,
    FLAG_QR,
    FLAG_RA,
    FLAG_RD,
    HEADER,
    OPCODE_MASK,
    RCODE_FORMERR,
    RCODE_NOERROR,
    RCODE_NOTIMP,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    TYPE_A,
    TYPE_AAAA,
    SimpleQuery,
    address_record,
    build_answer,
    first_name_has_dotted_label,
    parse_simple_query,
    response_flags,
    udp_limit,
)
from portald.neighbours import Neighbours
from portald.table import AuthorizationTable

log = Logger()

CANARY = b"use-application-dns.net"
CANARY_SUBDOMAINS = b"." + CANARY
# BADVERS (RFC 6891): extended rcode 16, carried as 1 in the OPT's upper bits.
BADVERS_EXTENDED = 1
# A TCP client that sends nothing for this long is disconnected.
TCP_IDLE_TIMEOUT = 30.0
# The memo of which source addresses are inside the LAN stays this small.
_SOURCE_MEMO_SIZE = 4096

WalledGardenCallback = Callable[[Sequence[str], float], None]
# (mac, bytes received from the client, bytes sent to it)
ActivityCallback = Callable[[str | None, int, int], None]


class Verdict(enum.Enum):
    CANARY = "nxdomain"
    PORTAL = "portal"
    WALLED_GARDEN = "walled-garden"
    FORWARD = "forward"
    REDIRECT = "redirect"


class Policy:
    """Who gets which answer: the one place both paths ask."""

    def __init__(
        self,
        config: Config,
        neighbours: Neighbours,
        table: AuthorizationTable,
        on_activity: ActivityCallback | None = None,
    ) -> None:
        self.on_activity = on_activity
        self._subnets = config.portal.subnets
        self._neighbours = neighbours
        self._table = table
        self._portal = config.portal.hostname.encode("ascii")
        self._walled = frozenset(name.encode("ascii") for name in config.dns.walled_garden)
        # For one C-level test per query: ".zone" matches any subdomain.
        self._walled_subdomains = tuple(b"." + name for name in self._walled)
        self._sources: dict[str, str | None] = {}

    def client(self, source: str) -> str | None:
        """C{source} normalised, or C{None} if it is outside the LAN subnets."""
        try:
            return self._sources[source]
        except KeyError:
            pass
        try:
            address = ipaddress.ip_address(normalise_ip(source))
        except ValueError:
            normalised = None
        else:
            inside = any(address in subnet for subnet in self._subnets)
            normalised = str(address) if inside else None
        if len(self._sources) >= _SOURCE_MEMO_SIZE:
            self._sources.clear()
        self._sources[source] = normalised
        return normalised

    def classify(self, client: str, name: bytes) -> Verdict:
        """What C{client} (normalised, inside the LAN) gets for C{name} (lower case)."""
        if name == CANARY or name.endswith(CANARY_SUBDOMAINS):
            return Verdict.CANARY
        if name == self._portal:
            return Verdict.PORTAL
        if name in self._walled or (self._walled_subdomains and name.endswith(self._walled_subdomains)):
            return Verdict.WALLED_GARDEN
        if self._table.is_authorized(self._neighbours.mac_for(client)):
            return Verdict.FORWARD
        return Verdict.REDIRECT

    def saw(self, client: str, received: int, sent: int) -> None:
        """A signed-in client's query was answered: tell C{on_activity}, if any."""
        if self.on_activity is None:
            return
        try:
            self.on_activity(self._neighbours.mac_for(client), received, sent)
        except Exception:
            log.failure("the activity callback failed for {client}", client=client)


class LocalAnswers:
    """portald's own answers: the portal's addresses, with the redirect TTL."""

    def __init__(self, config: Config) -> None:
        self.ttl = int(config.dns.redirect_ttl)
        self.address = str(config.portal.address)
        self.address6 = str(config.portal.address6) if config.portal.address6 else None

    def records(self, query: dns.Query) -> list[dns.RRHeader]:
        if query.cls != dns.IN:
            return []
        if query.type == dns.A:
            payload: Any = dns.Record_A(self.address, self.ttl)
        elif query.type == dns.AAAA and self.address6:
            payload = dns.Record_AAAA(self.address6, self.ttl)
        else:
            return []
        return [dns.RRHeader(query.name.name, query.type, dns.IN, self.ttl, payload, auth=True)]


# How many distinct queries the fast path keeps parsed (about 200 bytes each).
PARSED_MEMO_SIZE = 4096
_NO_RECORDS = (0, 0, 0)
_ONE_ANSWER = (1, 0, 0)


class FastPath:
    """
    The common UDP queries answered straight from bytes: a redirect, or a
    forwarded answer already in the cache.  Returns C{None} for anything
    else, which then takes the full path.
    """

    def __init__(self, policy: Policy, local: LocalAnswers, cache: AnswerCache, clock: Any) -> None:
        self._policy = policy
        self._cache = cache
        self._clock = clock
        self._parsed: dict[bytes, SimpleQuery] = {}
        self._redirect = {
            TYPE_A: address_record(TYPE_A, local.ttl, socket.inet_pton(socket.AF_INET, local.address))
        }
        if local.address6:
            self._redirect[TYPE_AAAA] = address_record(
                TYPE_AAAA, local.ttl, socket.inet_pton(socket.AF_INET6, local.address6)
            )

    def answer(self, data: bytes, source: str) -> bytes | None:
        # Clients ask the same few names over and over: the parse of the
        # bytes after the ID is kept (and, in it, the redirect answer).
        after_id = data[2:]
        query = self._parsed.get(after_id)
        if query is None:
            query = parse_simple_query(data)
            if query is None:
                return None
            if len(self._parsed) >= PARSED_MEMO_SIZE:
                self._parsed.clear()
            self._parsed[after_id] = query
        client = self._policy.client(source)
        if client is None:
            return None
        verdict = self._policy.classify(client, query.name)
        if verdict is Verdict.REDIRECT:
            reply = query.redirect
            if reply is None:
                reply = query.redirect = self._redirect_answer(query)
        elif verdict is Verdict.FORWARD or verdict is Verdict.WALLED_GARDEN:
            now = self._clock.seconds()
            entry = self._cache.get(query.key, now)
            if entry is None:
                return None
            elapsed = int(now - entry.stored)  # as CachedAnswer.elapsed, without the call
            # The same query answered from the same entry in the same second
            # gets the same bytes.
            memo = query.forwarded
            if memo is not None and memo[0] is entry and memo[1] == elapsed:
                reply = memo[2]
            else:
                wire = entry.wire
                flags = response_flags(query.flags, authoritative=False, rcode=entry.rcode)
                reply = build_answer(query, flags, wire.counts, wire.aged(elapsed if elapsed > 0 else 0))
                query.forwarded = (entry, elapsed, reply)
        else:
            return None
        # Too big for this client: the full path sets TC.
        if len(reply) + 2 > udp_limit(query.edns_size):
            return None
        if verdict is Verdict.FORWARD and self._policy.on_activity is not None:
            self._policy.saw(client, len(data), len(reply) + 2)
        return data[:2] + reply

    def _redirect_answer(self, query: SimpleQuery) -> bytes:
        record = self._redirect.get(query.qtype)
        flags = response_flags(query.flags, authoritative=True, rcode=RCODE_NOERROR)
        if record is None:
            return build_answer(query, flags, _NO_RECORDS, b"")
        return build_answer(query, flags, _ONE_ANSWER, record)


class Unanswerable(Exception):
    """Not a DNS query at all, or not one that deserves an answer: dropped."""


class Malformed(Exception):
    """A query whose header can be read but not the rest: FORMERR."""

    def __init__(self, query_id: int, flags: int) -> None:
        super().__init__(query_id, flags)
        self.query_id = query_id
        self.flags = flags

    def formerr(self) -> bytes:
        flags = FLAG_QR | FLAG_RA | (self.flags & (OPCODE_MASK | FLAG_RD)) | RCODE_FORMERR
        return HEADER.pack(self.query_id, flags, 0, 0, 0, 0)


def decode_query(data: bytes) -> dns.Message:
    """
    Parse a query strictly (twisted.names alone would accept a message
    shorter than its header's counts, or with bytes after its end).

    @raise Unanswerable: for less than a header, or a response.
    @raise Malformed: for a query that cannot be read.
    """
    if len(data) < HEADER.size:
        raise Unanswerable("shorter than a DNS header")
    query_id, flags, *counts = HEADER.unpack_from(data)
    if flags & FLAG_QR:
        raise Unanswerable("a response, not a query")
    message = dns.Message()
    stream = BytesIO(data)
    try:
        message.decode(stream)
    except Exception:
        raise Malformed(query_id, flags) from None
    parsed = [len(message.queries), len(message.answers), len(message.authority), len(message.additional)]
    if parsed != counts or stream.tell() != len(data):
        raise Malformed(query_id, flags)
    if message.queries and first_name_has_dotted_label(data):
        # Answered under another name (twisted.names joins labels with
        # dots) it would be dropped by the client, or worse, be cached as
        # that other name's answer: FORMERR.
        raise Malformed(query_id, flags)
    return message


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
            message = decode_query(data)
        except Unanswerable:
            return
        except Malformed as malformed:
            if self.factory.policy.client(addr[0]) is not None:
                self.transport.write(malformed.formerr(), addr)
            return
        message.size = len(data)
        self.factory.messageReceived(message, self, addr)

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


class PortalStreamProtocol(dns.DNSProtocol, TimeoutMixin):
    """DNS over TCP: always the full path; garbage closes this connection only."""

    def __init__(self, factory: PortalDNSFactory, clock: Any) -> None:
        super().__init__(factory, reactor=clock)
        self._clock = clock
        self._open = False

    def callLater(self, period: float, func: Callable[..., Any], *args: Any) -> Any:
        # TimeoutMixin's timer runs on the injected clock too.
        return self._clock.callLater(period, func, *args)

    def connectionMade(self) -> None:
        self._open = True
        super().connectionMade()
        self.setTimeout(TCP_IDLE_TIMEOUT)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._open = False
        self.setTimeout(None)
        super().connectionLost(reason)

    def stringReceived(self, data: bytes) -> None:
        self.resetTimeout()
        try:
            message = decode_query(data)
        except Unanswerable:
            self.transport.loseConnection()
            return
        except Malformed as malformed:
            if self.factory.policy.client(self.transport.getPeer().host) is not None:
                self.sendString(malformed.formerr())
            else:
                self.transport.loseConnection()  # as over UDP: no answer outside the LAN
            return
        message.size = len(data)
        try:
            self.controller.messageReceived(message, self, None)
        except Exception:
            log.failure("unexpected error on a TCP query")
            self.transport.loseConnection()

    def writeReply(self, reply: bytes, address: Any) -> None:
        # A forwarded answer may come back after the client has gone.
        if self._open:
            self.sendString(reply)


class PortalDNSFactory(DNSServerFactory):
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
        clock: Any,
        on_walled_garden_answer: WalledGardenCallback | None = None,
        on_activity: ActivityCallback | None = None,
    ) -> None:
        super().__init__()
        self.canRecurse = True
        self.policy = Policy(config, neighbours, table, on_activity)
        self.local = LocalAnswers(config)
        self.forwarder = forwarder
        self._clock = clock
        self._on_walled_garden_answer = on_walled_garden_answer
        self.fast_path = FastPath(self.policy, self.local, forwarder.cache, clock)

    def buildProtocol(self, addr: Any) -> PortalStreamProtocol:
        protocol = PortalStreamProtocol(self, self._clock)
        protocol.factory = self
        return protocol

    def datagram_protocol(self) -> PortalDatagramProtocol:
        return PortalDatagramProtocol(self)

    def messageReceived(self, message: dns.Message, proto: Any, address: Any = None) -> None:
        if message.answer:
            return
        source = address[0] if address is not None else proto.transport.getPeer().host
        if self.policy.client(source) is None:
            # Outside the LAN, whatever it asks: never an open resolver.
            self._reply(proto, address, message, RCODE_REFUSED)
            return
        if message.opCode != dns.OP_QUERY:
            self._reply(proto, address, message, RCODE_NOTIMP)
            return
        self.handleQuery(message, proto, address)

    def handleQuery(self, message: dns.Message, protocol: Any, address: Any) -> None:
        source = address[0] if address is not None else protocol.transport.getPeer().host
        client = self.policy.client(source)
        if client is None:
            self._reply(protocol, address, message, RCODE_REFUSED)
            return
        options = [record for record in message.additional if record.type == dns.OPT]
        if len(message.queries) != 1 or len(options) > 1 or any(o.name.name for o in options):
            self._reply(protocol, address, message, RCODE_FORMERR)
            return
        if options and (options[0].ttl >> 16) & 0xFF != 0:
            self._reply(protocol, address, message, RCODE_NOERROR, extended_rcode=BADVERS_EXTENDED)
            return
        query = message.queries[0]
        name = query.name.name.lower()
        verdict = self.policy.classify(client, name)
        if verdict is Verdict.CANARY:
            self._reply(protocol, address, message, RCODE_NXDOMAIN, authoritative=True)
        elif verdict is Verdict.PORTAL or verdict is Verdict.REDIRECT:
            records = self.local.records(query)
            self._reply(protocol, address, message, RCODE_NOERROR, records, authoritative=True)
        else:
            on_fresh = self._walled_garden_answer if verdict is Verdict.WALLED_GARDEN else None
            signed_in = client if verdict is Verdict.FORWARD else None
            self.forwarder.resolve((name, query.type, query.cls), on_fresh).addCallbacks(
                self._forwarded,
                self._forward_failed,
                (protocol, address, message, signed_in),
                None,
                (protocol, address, message),
            ).addErrback(lambda failure: log.failure("cannot answer a forwarded query", failure))

    def _walled_garden_answer(self, entry: CachedAnswer) -> None:
        addresses = entry.addresses()
        if addresses and self._on_walled_garden_answer is not None:
            self._on_walled_garden_answer(addresses, float(entry.lifetime))

    def _forwarded(
        self, entry: CachedAnswer, protocol: Any, address: Any, message: dns.Message, signed_in: str | None
    ) -> None:
        answers, authority, additional = entry.records(self._clock.seconds())
        sent = self._reply(protocol, address, message, entry.rcode, answers, authority, additional)
        if signed_in is not None:
            # The query's size as it arrived (set by the protocols).
            self.policy.saw(signed_in, getattr(message, "size", 0), sent)

    def _forward_failed(self, failure: Failure, protocol: Any, address: Any, message: dns.Message) -> None:
        self._reply(protocol, address, message, RCODE_SERVFAIL)

    def _reply(
        self,
        protocol: Any,
        address: Any,
        message: dns.Message,
        rcode: int,
        answers: Sequence[dns.RRHeader] = (),
        authority: Sequence[dns.RRHeader] = (),
        additional: Sequence[dns.RRHeader] = (),
        *,
        authoritative: bool = False,
        extended_rcode: int = 0,
    ) -> int:
        """
        Send the response to C{message}: its question echoed, RD and CD
        copied, portald's OPT if the query had EDNS; over UDP, a response
        larger than the client accepts goes out with TC and no records.
        """
        options = [record for record in message.additional if record.type == dns.OPT]
        response = dns.Message(
            id=message.id,
            answer=1,
            opCode=message.opCode,
            recDes=message.recDes,
            recAv=1,
            auth=int(authoritative),
            rCode=rcode,
            maxSize=0,
        )
        response.checkingDisabled = message.checkingDisabled
        response.queries = list(message.queries)
        opt = (
            [
                dns._OPTHeader(
                    udpPayloadSize=EDNS_UDP_SIZE,
                    extendedRCODE=extended_rcode,
                    # RFC 3225: DO is copied from the query.
                    dnssecOK=bool(options[0].ttl & EDNS_FLAG_DO),
                )
            ]
            if options
            else []
        )
        response.answers = list(answers)
        response.authority = list(authority)
        response.additional = list(additional) + opt
        reply = response.toStr()
        if address is not None:
            limit = udp_limit(options[0].cls if options else None)
            if len(reply) > limit:
                response.trunc = 1
                response.answers, response.authority, response.additional = [], [], opt
                reply = response.toStr()
        protocol.writeReply(reply, address)
        return len(reply)


class DNSService(Service):
    """
    The DNS server on every C{dns.listen} address (UDP and TCP) at
    C{dns.port}, opened in L{privilegedStartService} (port 53 needs root,
    which twistd drops afterwards).

    @param on_walled_garden_answer: if given, called as
        C{on_walled_garden_answer(addresses, ttl)} with the A and AAAA
        addresses (text) of every upstream answer to a walled-garden name
        (or a subdomain of one), and the seconds the answer stays cached.
        It is how the firewall learns which addresses to let through before
        sign-in.  Called synchronously from the reactor; an exception in it
        is logged and does not affect the answer.
    @param on_activity: if given, called as C{on_activity(mac, received,
        sent)} for each answered query of a signed-in client (bytes of the
        query and of the answer): portald's own view of traffic, for idle
        timeouts and quotas when no firewall counts it.
    """

    name = "dns"

    def __init__(
        self,
        config: Config,
        reactor: Any,
        table: AuthorizationTable,
        neighbours: Neighbours,
        on_walled_garden_answer: WalledGardenCallback | None = None,
        on_activity: ActivityCallback | None = None,
    ) -> None:
        self._config = config
        self._reactor = reactor
        self.cache = AnswerCache(config.dns.cache_size, config.dns.max_cache_ttl)
        self.forwarder = Forwarder(reactor, config.dns.upstream, config.dns.upstream_timeout, self.cache)
        self.factory = PortalDNSFactory(
            config, neighbours, table, self.forwarder, reactor, on_walled_garden_answer, on_activity
        )
        self._ports: list[Any] = []

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        port = self._config.dns.port
        for address in self._config.dns_listen:
            interface = str(address)
            self._ports.append(
                self._reactor.listenUDP(port, self.factory.datagram_protocol(), interface=interface)
            )
            self._ports.append(self._reactor.listenTCP(port, self.factory, interface=interface))
            log.info("DNS on {address} port {port} (UDP and TCP)", address=interface, port=port)

    def stopService(self) -> defer.Deferred:
        super().stopService()
        ports, self._ports = self._ports, []
        stopped = [defer.maybeDeferred(port.stopListening) for port in ports]
        stopped.append(self.forwarder.stop())
        return defer.gatherResults(stopped)

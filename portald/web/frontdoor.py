"""
The first reader of every HTTP connection.

Most of what reaches port 80 of a captive portal is one small GET for a
foreign Host, often on a fresh connection (OS probes, apps retrying).  The
front door answers exactly those itself, from the same L{Interception} that
decides for twisted.web, at a fraction of twisted.web's cost per request.
Anything else (the portal's own Host, a request body, an unusual or
incomplete head) is handed, bytes and all, to a twisted.web channel, which
then owns the connection.

It is also where a guest's connections are counted and bounded: at most
C{http.max_connections} open, C{http.max_connections_per_client} from one
address; a head must be complete within C{http.request_timeout}; and a
client that does not read its answers stops being read (pipelined requests
are answered only as fast as they are taken away).
"""

from __future__ import annotations

import socket

import attrs
from twisted.internet.interfaces import IAddress, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.http import datetimeToString
from twisted.web.server import Site
from zope.interface import implementer

from portald.addresses import normalise_ip
from portald.connections import ConnectionCounts
from portald.memo import PerSecondMemo
from portald.periodic import Periodic
from portald.refusals import Refusals
from portald.web.channel import plain_reply
from portald.web.intercept import Interception, Response

# A head larger than this is not a probe: twisted.web gets it, with its limits.
MAX_FAST_HEAD = 8192
_FAST_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")
_TOO_SLOW = plain_reply(b"408 Request Timeout", b"That request took too long.\n")


@implementer(IPushProducer)
class FrontDoor(Protocol):
    factory: FrontDoorFactory

    def __init__(self, factory: FrontDoorFactory, client_ip: str) -> None:
        self.factory = factory
        self.client_ip = client_ip
        self._buffer = b""
        self._delegate: Protocol | None = None
        self._socket: socket.socket | None = None
        self._closing = False
        # The transport's buffer is full: the client is not reading.
        self._paused = False
        # Set by each read, cleared by the idle sweep.
        self.active = True
        # When the incomplete head now buffered began to arrive.
        self.head_since: float | None = None

    def connectionMade(self) -> None:
        self.factory.opened(self)
        # Told when the client stops taking its answers away, and when it
        # takes them again: no answer is made while the transport holds
        # more than its buffer's worth.
        self.transport.registerProducer(self, True)
        # The socket itself, while nothing waits in the transport's buffer:
        # an answer on a kept-alive connection then goes out at once, without
        # a trip through the reactor's writer registration (2.5 times the
        # requests per second).  Never under a wrapper (TLS, policies),
        # which must see every byte.
        wrapped = isinstance(self.transport, ProtocolWrapper)
        self._socket = None if wrapped else getattr(self.transport, "socket", None)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.factory.closed(self)
        if self._delegate is not None:
            self._delegate.connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:
        if self._delegate is not None:
            self._delegate.dataReceived(data)
            return
        if self._closing:
            return
        self.active = True
        buffer = self._buffer + data if self._buffer else data
        if self._paused:
            # Read before the transport stopped reading: kept for later.
            self._buffer = buffer
            return
        self._serve(buffer)

    def _serve(self, buffer: bytes) -> None:
        """Answer the complete heads at the start of C{buffer}, keep the rest."""
        while True:
            end = buffer.find(b"\r\n\r\n", 0, MAX_FAST_HEAD)
            if end < 0:
                if len(buffer) >= MAX_FAST_HEAD:
                    self._hand_over(buffer)
                    return
                self._buffer = buffer
                if self.head_since is None:
                    self.head_since = self.factory.clock.seconds()
                return
            response_sent = self._answer(buffer[:end])
            if not response_sent:
                self._hand_over(buffer)
                return
            buffer = buffer[end + 4 :]
            self.head_since = None
            if self._closing:
                return
            if not buffer:
                self._buffer = b""
                return
            if self._paused:
                self._buffer = buffer
                return

    # IPushProducer, for the transport: its buffer is full, then empty again.

    def pauseProducing(self) -> None:
        self._paused = True
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if self._delegate is None and not self._closing and self._buffer:
            buffer, self._buffer = self._buffer, b""
            self._serve(buffer)
        if not self._paused:
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self._closing = True

    def _answer(self, head: bytes) -> bool:
        """Answer one request head, if it is simple and for a foreign Host."""
        lines = head.split(b"\r\n")
        if head.count(b"\n") != len(lines) - 1 or head.count(b"\r") != len(lines) - 1:
            # A bare LF or CR: twisted.web decides how to read such a head
            # (this one must never see a body as a second request).
            return False
        request_line = lines[0].split(b" ")
        if len(request_line) != 3 or request_line[2] not in _FAST_VERSIONS:
            return False
        method, target, version = request_line
        host = None
        keep_alive = version == b"HTTP/1.1"
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or name[-1:] in (b" ", b"\t") or line[:1] in (b" ", b"\t"):
                return False
            name = name.lower()
            if name == b"host":
                if host is not None:
                    return False
                host = value.strip()
            elif name == b"connection":
                tokens = value.lower()
                if b"upgrade" in tokens:
                    return False
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
            elif name in (b"content-length", b"transfer-encoding", b"expect", b"upgrade"):
                if name != b"content-length" or value.strip() != b"0":
                    return False
        if host is None or self.factory.interception.is_portal_host(host):
            return False
        response = self.factory.interception.answer(self.client_ip, method, host, target)
        if response.closes:
            keep_alive = False
        data = self.factory.serialize(response, method == b"HEAD", keep_alive)
        if keep_alive:
            self._write(data)
        else:
            # Through the transport, which closes once it is written (sending
            # it straight and then closing was measured slower).
            self.transport.write(data)
            self._closing = True
            self.transport.loseConnection()
        return True

    def _write(self, data: bytes) -> None:
        sock = self._socket
        if sock is not None:
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                # The peer is gone: the transport finds out and closes.
                sent = 0
            if sent == len(data):
                return
            # From now on the transport's buffer holds the order.
            self._socket = None
            data = data[sent:]
        self.transport.write(data)

    def close_idle(self) -> None:
        """Nothing read for a sweep or two: close, without waiting on a client that does not read."""
        if self._paused:
            # Answers it never takes would keep a graceful close open forever.
            self.factory.refusals.refuse("http.request_timeout", self.client_ip, "answers not read")
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def too_slow(self) -> None:
        """The head has taken longer than C{http.request_timeout}: say so and close."""
        self.factory.refusals.refuse("http.request_timeout", self.client_ip, "request head too slow")
        self._closing = True
        self.transport.write(_TOO_SLOW)
        self.transport.loseConnection()

    def _hand_over(self, buffer: bytes) -> None:
        self._buffer = b""
        self.head_since = None
        # twisted.web's channel registers itself as the transport's producer.
        self.transport.unregisterProducer()
        channel = self.factory.site.buildProtocol(self.transport.getPeer())
        self._delegate = channel
        channel.makeConnection(self.transport)
        channel.dataReceived(buffer)


@attrs.frozen
class ConnectionLimits:
    """The bounds on a guest's connections (the C{http} keys of the same names)."""

    request_timeout: float = 10.0
    max_connections: int = 4096
    max_connections_per_client: int = 64


class FrontDoorFactory(Factory):
    """
    Builds a L{FrontDoor} per connection, within the L{ConnectionLimits}.
    One sweep every half C{request_timeout} (not a timer per connection)
    closes fast-path connections idle since the sweep before, and those
    whose head has been arriving for longer than C{request_timeout}.
    """

    noisy = False

    def __init__(
        self,
        interception: Interception,
        site: Site,
        clock: IReactorTime,
        refusals: Refusals,
        limits: ConnectionLimits = ConnectionLimits(),
    ):
        self.interception = interception
        self.site = site
        self.clock = clock
        self.refusals = refusals
        self.limits = limits
        # Fast-path connections, for the sweep.
        self.connections: set[FrontDoor] = set()
        # Every open connection by client address, handed over or not.
        self.counts = ConnectionCounts(
            ("http.max_connections", limits.max_connections),
            ("http.max_connections_per_client", limits.max_connections_per_client),
        )
        self._sweeper = Periodic(clock, limits.request_timeout / 2, self.sweep)
        # This second's header tails (they carry its Date), by (body length, keep-alive).
        self._tails: PerSecondMemo[tuple[int, bool], bytes] = PerSecondMemo(clock, 64)

    def buildProtocol(self, addr: IAddress) -> FrontDoor | None:  # type: ignore[override]
        host: str = addr.host  # type: ignore[attr-defined]
        # IPv4 peers come canonical already; only IPv6 text needs the work.
        client_ip = normalise_ip(host) if ":" in host else host
        refused = self.counts.refusal(client_ip)
        if refused is not None:
            # None: the listener closes the new socket at once.
            self.refusals.refuse(refused, client_ip)
            return None
        return FrontDoor(self, client_ip)

    def opened(self, connection: FrontDoor) -> None:
        self.connections.add(connection)
        self.counts.opened(connection.client_ip)

    def closed(self, connection: FrontDoor) -> None:
        self.connections.discard(connection)
        self.counts.closed(connection.client_ip)

    def startFactory(self) -> None:
        self._sweeper.start()

    def stopFactory(self) -> None:
        self._sweeper.stop()

    def sweep(self) -> None:
        too_old = self.clock.seconds() - self.limits.request_timeout
        for connection in list(self.connections):
            if connection._delegate is not None:
                # twisted.web's channel keeps its own deadlines.
                self.connections.discard(connection)
            elif connection.head_since is not None and connection.head_since <= too_old:
                connection.too_slow()
            elif connection.active:
                connection.active = False
            else:
                connection.close_idle()

    def serialize(self, response: Response, head_only: bool, keep_alive: bool) -> bytes:
        tails = self._tails.current()
        key = (len(response.body), keep_alive)
        tail = tails.get(key)
        if tail is None:
            tail = tails.remember(
                key,
                b"Date: %s\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n"
                % (
                    datetimeToString(int(self.clock.seconds())),
                    key[0],
                    b"keep-alive" if keep_alive else b"close",
                ),
            )
        if head_only:
            return response.wire_head + tail
        return response.wire_head + tail + response.body

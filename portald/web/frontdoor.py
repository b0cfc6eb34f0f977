"""
The first reader of every HTTP connection.

Most of what reaches port 80 of a captive portal is one small GET for a
foreign Host, often on a fresh connection (OS probes, apps retrying).  The
front door answers exactly those itself, from the same L{Interception} that
decides for twisted.web, at a fraction of twisted.web's cost per request.
Anything else (the portal's own Host, a request body, an unusual or
incomplete head) is handed, bytes and all, to a twisted.web channel, which
then owns the connection.
"""

from __future__ import annotations

import socket

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.http import datetimeToString
from twisted.web.server import Site

from portald.addresses import normalise_ip
from portald.memo import PerSecondMemo
from portald.periodic import Periodic
from portald.web.intercept import Interception, Response

# A head larger than this is not a probe: twisted.web gets it, with its limits.
MAX_FAST_HEAD = 8192
_FAST_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")


class FrontDoor(Protocol):
    factory: FrontDoorFactory

    def __init__(self, factory: FrontDoorFactory, client_ip: str) -> None:
        self.factory = factory
        self._client_ip = client_ip
        self._buffer = b""
        self._delegate: Protocol | None = None
        self._socket: socket.socket | None = None
        self._closing = False
        # Set by each read, cleared by the idle sweep.
        self.active = True

    def connectionMade(self) -> None:
        self.factory.connections.add(self)
        # The socket itself, while nothing waits in the transport's buffer:
        # an answer on a kept-alive connection then goes out at once, without
        # a trip through the reactor's writer registration (2.5 times the
        # requests per second).  Never under a wrapper (TLS, policies),
        # which must see every byte.
        wrapped = isinstance(self.transport, ProtocolWrapper)
        self._socket = None if wrapped else getattr(self.transport, "socket", None)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.factory.connections.discard(self)
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
        while True:
            end = buffer.find(b"\r\n\r\n", 0, MAX_FAST_HEAD)
            if end < 0:
                if len(buffer) >= MAX_FAST_HEAD:
                    self._hand_over(buffer)
                else:
                    self._buffer = buffer
                return
            response_sent = self._answer(buffer[:end])
            if not response_sent:
                self._hand_over(buffer)
                return
            buffer = buffer[end + 4 :]
            if self._closing:
                return
            if not buffer:
                self._buffer = b""
                return

    def _answer(self, head: bytes) -> bool:
        """Answer one request head, if it is simple and for a foreign Host."""
        lines = head.split(b"\r\n")
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
        response = self.factory.interception.answer(self._client_ip, method, host, target)
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

    def _hand_over(self, buffer: bytes) -> None:
        self._buffer = b""
        channel = self.factory.site.buildProtocol(self.transport.getPeer())
        self._delegate = channel
        channel.makeConnection(self.transport)
        channel.dataReceived(buffer)


class FrontDoorFactory(Factory):
    """
    Builds a L{FrontDoor} per connection, and closes fast-path connections
    that stay idle for between one and two C{idle_timeout}s (one sweep for
    all connections, not a timer per connection).
    """

    noisy = False

    def __init__(
        self, interception: Interception, site: Site, clock: IReactorTime, idle_timeout: float = 15.0
    ):
        self.interception = interception
        self.site = site
        self._clock = clock
        self.connections: set[FrontDoor] = set()
        self._sweeper = Periodic(clock, idle_timeout, self.sweep)
        # This second's header tails (they carry its Date), by (body length, keep-alive).
        self._tails: PerSecondMemo[tuple[int, bool], bytes] = PerSecondMemo(clock, 64)

    def buildProtocol(self, addr: IAddress) -> FrontDoor:
        host: str = addr.host  # type: ignore[attr-defined]
        # IPv4 peers come canonical already; only IPv6 text needs the work.
        return FrontDoor(self, normalise_ip(host) if ":" in host else host)

    def startFactory(self) -> None:
        self._sweeper.start()

    def stopFactory(self) -> None:
        self._sweeper.stop()

    def sweep(self) -> None:
        for connection in list(self.connections):
            if connection._delegate is not None:
                # twisted.web's channel keeps its own timeout.
                self.connections.discard(connection)
            elif connection.active:
                connection.active = False
            else:
                connection.transport.loseConnection()

    def serialize(self, response: Response, head_only: bool, keep_alive: bool) -> bytes:
        tails = self._tails.current()
        key = (len(response.body), keep_alive)
        tail = tails.get(key)
        if tail is None:
            tail = tails.remember(
                key,
                b"Date: %s\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n"
                % (
                    datetimeToString(int(self._clock.seconds())),
                    key[0],
                    b"keep-alive" if keep_alive else b"close",
                ),
            )
        if head_only:
            return response.wire_head + tail
        return response.wire_head + tail + response.body

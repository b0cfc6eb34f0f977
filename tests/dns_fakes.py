"""
What the DNS unit tests drive portald's real DNS objects with: a reactor
whose UDP sockets are in memory, a fake upstream resolver that reads the
queries portald really sent and answers them, and helpers that build and
read DNS messages with twisted.names (never with portald's own code).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.names import dns

from portald.config import Config, parse_config
from portald.dns.service import DNSService
from portald.neighbours import Neighbours
from portald.table import AuthorizationTable

PORTAL = "192.0.2.1"
CLIENT = ("192.0.2.10", 40000)
CLIENT_MAC = "02:00:00:00:00:10"
OTHER = ("192.0.2.11", 40001)
OTHER_MAC = "02:00:00:00:00:11"
STRANGER = ("192.0.2.12", 40002)  # on the LAN, no lease
OUTSIDER = ("198.51.100.7", 40003)
UPSTREAM1 = ("198.51.100.53", 53)
UPSTREAM2 = ("198.51.100.54", 5353)

CONFIG = """\
portal:
  address: 192.0.2.1
  subnets: [192.0.2.0/24]
  hostname: portal.example
dns:
  upstream: [198.51.100.53, "198.51.100.54:5353"]
  redirect_ttl: 5s
  upstream_timeout: 2s
  cache_size: 100
  max_cache_ttl: 1h
  walled_garden: [pay.example]
leases:
  sources: [{format: dnsmasq, path: /nonexistent/dnsmasq.leases}]
"""


def make_config(extra_portal: str = "", dns_overrides: dict[str, str] | None = None) -> Config:
    text = CONFIG
    if extra_portal:
        text = text.replace("  hostname: portal.example\n", f"  hostname: portal.example\n{extra_portal}")
    for key, value in (dns_overrides or {}).items():
        lines = [line for line in text.splitlines() if not line.startswith(f"  {key}:")]
        at = lines.index("dns:") + 1
        lines.insert(at, f"  {key}: {value}")
        text = "\n".join(lines) + "\n"
    return parse_config(text)


class FakeDatagramTransport:
    """An in-memory UDP socket: what is written is kept."""

    def __init__(self, host: tuple[str, int], everything: list | None = None) -> None:
        self.written: list[tuple[bytes, Any]] = []
        self._everything = everything if everything is not None else []
        self._host = host
        self.listening = True

    def write(self, data: bytes, addr: Any = None) -> None:
        self.written.append((data, addr))
        self._everything.append((self, data, addr))

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", *self._host)

    def stopListening(self) -> None:
        self.listening = False


class UDPMemoryReactor(MemoryReactorClock):
    """MemoryReactorClock with in-memory UDP sockets (it has none of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.udp: list[tuple[int, Any, FakeDatagramTransport]] = []
        self._ephemeral = 40000
        # Every datagram any of these sockets sent, in order: (transport, data, address).
        self.datagrams: list[tuple[FakeDatagramTransport, bytes, Any]] = []

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:
        if not port:
            self._ephemeral += 1  # as the kernel does, a new port for each port-0 socket
        transport = FakeDatagramTransport((interface or "0.0.0.0", port or self._ephemeral), self.datagrams)
        protocol.makeConnection(transport)
        self.udp.append((port, protocol, transport))
        return transport


def query(
    name: str,
    qtype: int = dns.A,
    *,
    id: int = 4321,
    edns: int | None = None,
    edns_version: int = 0,
    recursion: bool = True,
    qclass: int = dns.IN,
) -> bytes:
    message = dns.Message(id=id, recDes=int(recursion), maxSize=0)
    message.queries = [dns.Query(name, qtype, qclass)]
    if edns is not None:
        message.additional = [dns._OPTHeader(udpPayloadSize=edns, version=edns_version)]
    return message.toStr()


def parse(data: bytes) -> dns.Message:
    message = dns.Message()
    message.fromStr(data)
    return message


def addresses(message: dns.Message) -> list[str]:
    return [record.payload.dottedQuad() for record in message.answers if record.type == dns.A]


class Harness:
    """
    portald's real DNS service on an in-memory reactor: a UDP listener, the
    authorization table and neighbour map, and the fake upstreams' view.
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or make_config()
        self.reactor = UDPMemoryReactor()
        self.table = AuthorizationTable(self.reactor)
        self.neighbours = Neighbours()
        self.neighbours.replace({CLIENT[0]: CLIENT_MAC, OTHER[0]: OTHER_MAC})
        self.walled_garden_answers: list[tuple[list[str], float]] = []
        self.activity: list[tuple[str | None, int, int]] = []
        self.service = DNSService(
            self.config,
            self.reactor,
            self.table,
            self.neighbours,
            on_walled_garden_answer=lambda addrs, ttl: self.walled_garden_answers.append((list(addrs), ttl)),
            on_activity=lambda mac, received, sent: self.activity.append((mac, received, sent)),
        )
        self.service.privilegedStartService()
        self.service.startService()
        # The listener on the portal's address (the first UDP socket opened).
        _, self.server, self.server_transport = self.reactor.udp[0]
        self.errors: list[dict] = []
        globalLogPublisher.addObserver(self._observe)

    def _observe(self, event: dict) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            self.errors.append(event)

    def close(self) -> None:
        globalLogPublisher.removeObserver(self._observe)
        self.service.stopService()

    def authorize(self, mac: str = CLIENT_MAC) -> None:
        self.table.authorize(mac, ip=CLIENT[0], method="test", duration=None)

    # --- the client side ---

    def send(self, data: bytes, source: tuple[str, int] = CLIENT) -> list[bytes]:
        """Feed one datagram to the server; the datagrams it sent back to C{source}."""
        before = len(self.server_transport.written)
        self.server.datagramReceived(data, source)
        return [d for d, addr in self.server_transport.written[before:] if addr == source]

    def ask(self, data: bytes, source: tuple[str, int] = CLIENT) -> dns.Message:
        """Feed one query; exactly one answer must have come back at once."""
        replies = self.send(data, source)
        assert len(replies) == 1, replies
        return parse(replies[0])

    def replies_to(self, source: tuple[str, int] = CLIENT) -> list[dns.Message]:
        return [parse(d) for d, addr in self.server_transport.written if addr == source]

    # --- the upstream side ---

    def upstream_sockets(self) -> list[tuple[Any, FakeDatagramTransport]]:
        """portald's sockets towards the upstreams, in the order it opened them."""
        return [(protocol, transport) for port, protocol, transport in self.reactor.udp if port == 0]

    def upstream_socket_for(self, sent: dns.Message) -> tuple[Any, FakeDatagramTransport]:
        """The socket that sent C{sent}."""
        for protocol, transport in self.upstream_sockets():
            if any(parse(data).id == sent.id for data, _ in transport.written):
                return protocol, transport
        raise AssertionError(f"no socket sent query {sent.id}")

    def upstream_queries(self) -> list[tuple[dns.Message, Any]]:
        """Every query portald sent upstream so far, with where it went."""
        upstream = [transport for _, transport in self.upstream_sockets()]
        return [
            (parse(data), addr) for transport, data, addr in self.reactor.datagrams if transport in upstream
        ]

    def upstream_answers(
        self,
        sent: dns.Message,
        to: tuple[str, int],
        answers: Sequence[dns.RRHeader] = (),
        *,
        rcode: int = dns.OK,
        authority: Sequence[dns.RRHeader] = (),
        trunc: bool = False,
        source: tuple[str, int] | None = None,
        id: int | None = None,
    ) -> None:
        """The upstream at C{to} answers the query C{sent}."""
        response = dns.Message(
            id=sent.id if id is None else id, answer=1, recDes=1, recAv=1, rCode=rcode, maxSize=0
        )
        response.trunc = int(trunc)
        response.queries = sent.queries
        response.answers = list(answers)
        response.authority = list(authority)
        protocol, _ = self.upstream_socket_for(sent)
        protocol.datagramReceived(response.toStr(), source or to)


def a_record(name: str, address: str, ttl: int = 300) -> dns.RRHeader:
    return dns.RRHeader(name, dns.A, dns.IN, ttl, dns.Record_A(address, ttl))


def tcp_connection(harness: Harness, peer: tuple[str, int] = CLIENT) -> tuple[Any, StringTransport]:
    """A TCP client connected to the server's factory."""
    protocol = harness.service.factory.buildProtocol(IPv4Address("TCP", *peer))
    transport = StringTransport(peerAddress=IPv4Address("TCP", *peer))
    protocol.makeConnection(transport)
    return protocol, transport


def framed(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def unframe(stream: bytes) -> list[bytes]:
    messages = []
    while len(stream) >= 2:
        size = int.from_bytes(stream[:2], "big")
        messages.append(stream[2 : 2 + size])
        stream = stream[2 + size :]
    return messages

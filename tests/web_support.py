"""Driving portald's web part in memory: real protocols, StringTransport, Clock."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from portald.config import Config, parse_config
from portald.neighbours import Neighbours
from portald.store import SessionStore
from portald.table import AuthorizationTable
from portald.web.portal import PortalHooks
from portald.web.service import PortalWeb

CLIENT_IP = "192.0.2.10"
CLIENT_MAC = "02:00:00:00:00:0a"
OTHER_IP = "192.0.2.11"
OTHER_MAC = "02:00:00:00:00:0b"
STRANGER_IP = "192.0.2.99"  # has no lease

CONFIG = """\
portal:
  address: 192.0.2.1
  subnets: [192.0.2.0/24]
  hostname: portal.example
  venue: "Café <Test> & Co"
  terms: "Be <b>kind</b> & lawful."
leases:
  sources: [{format: dnsmasq, path: /nonexistent/dnsmasq.leases}]
http:
  port: 80
"""


def make_config(extra: str = "", base: Path | None = None, port: int = 80) -> Config:
    """The test configuration; C{extra} continues its C{http} section."""
    text = CONFIG.replace("port: 80", f"port: {port}") + extra
    return parse_config(text, "test.yaml", base=base)


@attrs.define
class Reply:
    status_line: str
    status: int
    headers: dict[str, str]
    body: str
    closed: bool

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def parse_replies(raw: bytes, *, head: bool = False, closed: bool = False) -> list[Reply]:
    """Every HTTP response in C{raw}, in order (Content-Length, chunked, or to the end)."""
    replies = []
    while raw:
        head_bytes, separator, rest = raw.partition(b"\r\n\r\n")
        assert separator, f"incomplete response head: {raw!r}"
        status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(status_line.split(" ")[1])
        if head or status in (204, 304):
            body, raw = b"", rest
        elif headers.get("transfer-encoding") == "chunked":
            chunks = []
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line, 16)
                chunks.append(rest[:size])
                rest = rest[size + 2 :]
                if size == 0:
                    break
            body, raw = b"".join(chunks), rest
        elif "content-length" in headers:
            length = int(headers["content-length"])
            body, raw = rest[:length], rest[length:]
        else:
            body, raw = rest, b""
        replies.append(Reply(status_line, status, headers, body.decode("utf-8"), closed))
    return replies


class WebHarness:
    """
    One portald web part on a Clock, with two known clients and one stranger;
    with C{store}, the table is journalled in it as in portald.
    """

    def __init__(
        self, config: Config | None = None, store: SessionStore | None = None, vouchers: Any = None
    ) -> None:
        self.config = config or make_config()
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.table = AuthorizationTable(self.clock, journal=store)
        self.neighbours = Neighbours()
        self.neighbours.replace({CLIENT_IP: CLIENT_MAC, OTHER_IP: OTHER_MAC})
        self.usage: dict[str, tuple[int, int]] = {}
        self.web = PortalWeb(
            self.config,
            self.table,
            self.neighbours,
            self.clock,
            PortalHooks(self.usage.get, last_ending=store.last_ending if store is not None else None),
            vouchers=vouchers(self.table, self.clock) if vouchers is not None else None,
        )

    def connect(self, client_ip: str = CLIENT_IP, via: str = "frontdoor"):
        peer = IPv4Address("TCP", client_ip, 40000)
        transport = StringTransport(peerAddress=peer, hostAddress=IPv4Address("TCP", "192.0.2.1", 80))
        factory = self.web.factory if via == "frontdoor" else self.web.site
        protocol = factory.buildProtocol(peer)
        protocol.makeConnection(transport)
        return protocol, transport

    def raw(self, data: bytes, client_ip: str = CLIENT_IP, via: str = "frontdoor") -> tuple[bytes, bool]:
        protocol, transport = self.connect(client_ip, via)
        protocol.dataReceived(data)
        closed = transport.disconnecting
        if closed:
            # As a real transport would once the answer is out.
            protocol.connectionLost(Failure(ConnectionDone()))
        return transport.value(), closed

    def request(
        self,
        method: str,
        url: str,
        *,
        client_ip: str = CLIENT_IP,
        headers: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        via: str = "frontdoor",
    ) -> Reply:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
        body = b""
        if form is not None:
            body = urlencode(form).encode()
            lines.append("Content-Type: application/x-www-form-urlencoded")
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        raw, closed = self.raw(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body, client_ip, via)
        replies = parse_replies(raw, head=method == "HEAD", closed=closed)
        assert len(replies) == 1, raw
        return replies[0]

    # --- the portal, as a browser uses it ---

    def form_value(self, page: str, name: str) -> str | None:
        match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', page)
        return match.group(1) if match else None

    def csrf(self, client_ip: str = CLIENT_IP) -> str:
        page = self.request("GET", "http://portal.example/", client_ip=client_ip).body
        token = self.form_value(page, "csrf")
        assert token, page
        return token

"""A sign-in is answered once the firewall has it in force (or after a bounded wait)."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from portald.web.portal import PortalHooks
from portald.web.service import PortalWeb
from portald.web.signin import ENFORCED_WAIT

from .web_support import CLIENT_IP, CLIENT_MAC, WebHarness


class EnforcedHarness(WebHarness):
    def __init__(self) -> None:
        super().__init__()
        self.waits: list[Deferred[None]] = []
        self.web = PortalWeb(
            self.config, self.table, self.neighbours, self.clock, PortalHooks(self.usage.get, self.enforced)
        )

    def enforced(self) -> Deferred[None]:
        self.waits.append(Deferred())
        return self.waits[-1]

    def post_login(self):
        body = f"csrf={self.csrf()}&accept=yes".encode()
        request = (
            b"POST /login HTTP/1.1\r\nHost: portal.example\r\nConnection: close\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        protocol, transport = self.connect(CLIENT_IP)
        protocol.dataReceived(request)
        return protocol, transport


def test_the_answer_waits_for_the_firewall() -> None:
    harness = EnforcedHarness()
    _, transport = harness.post_login()
    assert harness.table.is_authorized(CLIENT_MAC)  # the table has it at once
    assert transport.value() == b""  # but the browser hears nothing yet
    harness.waits[0].callback(None)
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    assert b"You are online" in transport.value()


def test_a_slow_firewall_delays_the_answer_only_so_long() -> None:
    harness = EnforcedHarness()
    _, transport = harness.post_login()
    harness.clock.advance(ENFORCED_WAIT - 0.1)
    assert transport.value() == b""
    with capturedLogs() as events:
        harness.clock.advance(0.1)
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    assert any("before the firewall confirmed it" in e.get("log_format", "") for e in events)


def test_a_browser_gone_while_waiting_is_not_answered() -> None:
    harness = EnforcedHarness()
    protocol, transport = harness.post_login()
    protocol.connectionLost(Failure(ConnectionDone()))
    with capturedLogs() as events:
        harness.waits[0].callback(None)
    assert transport.value() == b""
    assert not [e for e in events if e.get("log_failure")]  # nothing written to a closed request
    assert harness.table.is_authorized(CLIENT_MAC)

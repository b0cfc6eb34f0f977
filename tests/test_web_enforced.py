"""A sign-in or sign-out is answered once the firewall has it in force (or after a bounded wait)."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from portald.web.portal import ENFORCED_WAIT, PortalHooks
from portald.web.service import PortalWeb

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


def post_logout(harness: EnforcedHarness):
    status = harness.request("GET", "http://portal.example/status").body
    body = f"csrf={harness.form_value(status, 'csrf')}".encode()
    protocol, transport = harness.connect(CLIENT_IP)
    protocol.dataReceived(
        b"POST /logout HTTP/1.1\r\nHost: portal.example\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return transport


def test_a_sign_out_is_answered_once_the_device_is_cut_off() -> None:
    harness = EnforcedHarness()
    harness.table.authorize(CLIENT_MAC, ip=CLIENT_IP, method="click-through", duration=600)
    transport = post_logout(harness)
    assert not harness.table.is_authorized(CLIENT_MAC)
    # A page opened now would still go out, and be cut by the flush.
    assert transport.value() == b""
    harness.waits[-1].callback(None)
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    assert b"You are signed out" in transport.value()


def test_a_slow_firewall_delays_a_sign_out_only_so_long() -> None:
    harness = EnforcedHarness()
    harness.table.authorize(CLIENT_MAC, ip=CLIENT_IP, method="click-through", duration=600)
    transport = post_logout(harness)
    with capturedLogs() as events:
        harness.clock.advance(ENFORCED_WAIT)
    assert b"You are signed out" in transport.value()
    assert any("before the firewall confirmed it" in e.get("log_format", "") for e in events)

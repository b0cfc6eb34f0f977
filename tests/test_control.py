"""
The control API in memory: the real resource on a real Site, fed HTTP bytes
over StringTransport, with the real table, store and lease figures on a Clock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.server import Site

from portald.control.api import ENFORCED_WAIT, ControlAPI, Enforcement
from portald.control.operations import Operations, Sources, store_health
from portald.leases.model import Lease
from portald.limits import Usage
from portald.neighbours import Neighbours
from portald.store import SessionStore
from portald.table import AllowedDevice, AuthorizationTable, EndReason
from tests.web_support import parse_replies

MAC = "02:00:00:00:00:0a"
IP = "192.0.2.10"
OTHER_MAC = "02:00:00:00:00:0b"
OTHER_IP = "192.0.2.11"
CONFIGURED = "02:00:00:00:00:cc"
HOUR = 3600.0


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = SessionStore.open(tmp_path / "sessions.sqlite3")
        self.table = AuthorizationTable(
            self.clock, journal=self.store, allowed=[AllowedDevice(CONFIGURED, "config")]
        )
        self.neighbours = Neighbours()
        self.neighbours.replace({IP: MAC, OTHER_IP: OTHER_MAC})
        self.leases = {
            IP: Lease(IP, MAC, "alices-phone", None),
            OTHER_IP: Lease(OTHER_IP, OTHER_MAC, None, None),
        }
        self.usage: dict[str, Usage] = {}
        self.ended: list[tuple[str, EndReason]] = []
        self.operations = Operations(
            self.table,
            self.neighbours,
            self.clock,
            Sources(
                leases=lambda: self.leases,
                usage=self.usage.get,
                health=(("store", store_health(self.store.path, lambda: self.store.longest_write)),),
            ),
            session_timeout=4 * HOUR,
        )
        self.site = Site(ControlAPI(self.operations), reactor=self.clock)

    def call(self, method: str, target: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        protocol = self.site.buildProtocol(UNIXAddress(None))
        transport = StringTransport()
        protocol.makeConnection(transport)
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        protocol.dataReceived(
            f"{method} {target} HTTP/1.1\r\nHost: portald\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        (reply,) = parse_replies(transport.value())
        assert reply.header("Content-Type") == "application/json"
        return reply.status, json.loads(reply.body)


@pytest.fixture
def h(tmp_path: Path):
    harness = Harness(tmp_path)
    yield harness
    harness.store.close()


def test_auth_by_ip_signs_the_device_in_as_staff_with_the_default_length(h: Harness) -> None:
    status, row = h.call("POST", "/v1/auth", {"device": IP, "note": "manager's laptop"})
    assert status == 200
    assert row["mac"] == MAC and row["method"] == "staff" and row["seconds_remaining"] == 4 * 3600
    session = h.table.session(MAC)
    assert session is not None and session.method == "staff" and session.note == "manager's laptop"
    # Written before it took effect: a restart keeps it, note and all.
    assert [(s.mac, s.note) for s in h.store.open_sessions()] == [(MAC, "manager's laptop")]


def test_auth_by_mac_with_a_duration(h: Harness) -> None:
    status, row = h.call("POST", "/v1/auth", {"device": OTHER_MAC.upper(), "duration": 1800})
    assert status == 200 and row["mac"] == OTHER_MAC and row["ip"] == OTHER_IP
    assert h.table.session(OTHER_MAC).expires == h.clock.seconds() + 1800


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"device": "192.0.2.99"}, 404, "no device has the address 192.0.2.99 (no DHCP lease for it)"),
        ({"device": "02:00:00:00:00:99"}, 404, "no device with the MAC 02:00:00:00:00:99 is known"),
        ({"device": "not-an-address"}, 400, "not a MAC or IP address: 'not-an-address'"),
        ({"device": IP, "duration": -5}, 400, "duration: expected a duration above zero"),
        ({"device": IP, "duration": "2h"}, 400, "field 'duration': expected a number"),
        ({"device": IP, "note": "two\nlines"}, 400, "note: expected one line"),
        ({}, 400, "missing field 'device'"),
    ],
)
def test_auth_refusals_change_nothing(h: Harness, body: dict, status: int, error: str) -> None:
    got_status, answer = h.call("POST", "/v1/auth", body)
    assert got_status == status and answer["error"].startswith(error)
    assert len(h.table) == 0 and h.store.open_sessions() == []


def test_malformed_bodies_are_refused(h: Harness) -> None:
    assert h.call("POST", "/v1/auth", raw=b"{not json") == (400, {"error": "the request body is not JSON"})
    assert h.call("POST", "/v1/auth", raw=b"[1, 2]") == (
        400,
        {"error": "the request body is not a JSON object"},
    )
    status, answer = h.call("POST", "/v1/auth", raw=b" " * 20000)
    assert status == 413


def test_methods_and_unknown_calls(h: Harness) -> None:
    assert h.call("GET", "/v1/auth")[0] == 405
    assert h.call("POST", "/v1/status")[0] == 405
    assert h.call("GET", "/v1/nothing") == (404, {"error": "no such call: /v1/nothing"})
    assert h.call("GET", "/")[0] == 404


def test_deauth_ends_the_session_as_ended_by_staff(h: Harness) -> None:
    h.table.authorize(MAC, ip=IP, method="click-through", duration=HOUR)
    assert h.call("POST", "/v1/deauth", {"device": IP}) == (
        200,
        {"mac": MAC, "ip": IP, "ended": "ended by staff"},
    )
    assert not h.table.is_authorized(MAC)
    # What the portal then tells the guest.
    reason, _ = h.store.last_ending(MAC)
    assert reason is EndReason.ADMIN
    assert h.call("POST", "/v1/deauth", {"device": IP}) == (404, {"error": f"{MAC} is not signed in"})


def test_extend_moves_the_end(h: Harness) -> None:
    h.table.authorize(MAC, ip=IP, method="click-through", duration=HOUR)
    status, row = h.call("POST", "/v1/extend", {"device": MAC, "duration": 7200})
    assert status == 200 and row["seconds_remaining"] == 3 * 3600
    assert h.store.open_sessions()[0].expires == h.clock.seconds() + 3 * HOUR
    assert h.call("POST", "/v1/extend", {"device": OTHER_MAC, "duration": 60})[0] == 404


def test_clients_rows_have_exactly_the_documented_keys(h: Harness) -> None:
    h.table.authorize(MAC, ip=IP, method="click-through", duration=HOUR, quota_bytes=10_000)
    h.usage[MAC] = Usage(baseline=(100, 200), last_seen=(1100, 3200), last_active=h.clock.seconds())
    h.clock.advance(600)
    status, rows = h.call("GET", "/v1/clients")
    assert status == 200
    assert rows == [
        {
            "mac": MAC,
            "ip": IP,
            "hostname": "alices-phone",
            "signed_in": True,
            "method": "click-through",
            "started": 1_800_000_000,
            "seconds_remaining": 3000,
            "idle_seconds": 600,
            "bytes_up": 1000,
            "bytes_down": 3000,
            "quota_remaining": 6000,
            # Not shaped: this portald has no shaping.uplink.
            "rate_down": None,
            "rate_up": None,
        }
    ]


def test_clients_all_lists_every_known_device(h: Harness) -> None:
    h.table.authorize(OTHER_MAC, ip=OTHER_IP, method="staff", duration=None)
    status, rows = h.call("GET", "/v1/clients?all=1")
    assert status == 200
    by_mac = {row["mac"]: row for row in rows}
    assert set(by_mac) == {MAC, OTHER_MAC, CONFIGURED}
    assert by_mac[OTHER_MAC]["signed_in"] and by_mac[OTHER_MAC]["seconds_remaining"] is None
    assert not by_mac[MAC]["signed_in"] and by_mac[MAC]["method"] is None
    assert by_mac[CONFIGURED]["method"] == "allowed" and by_mac[CONFIGURED]["ip"] is None
    # Signed-in devices first.
    assert rows[0]["mac"] == OTHER_MAC


def test_allow_persists_and_lets_the_device_pass(tmp_path: Path, h: Harness) -> None:
    assert not h.table.may_pass(OTHER_MAC)
    status, device = h.call("POST", "/v1/allow", {"mac": OTHER_MAC, "note": "the till"})
    assert status == 200 and device["source"] == "staff" and device["note"] == "the till"
    assert h.table.may_pass(OTHER_MAC) and not h.table.is_authorized(OTHER_MAC)
    assert [d.mac for d in h.store.allowed_devices()] == [OTHER_MAC]
    assert [row["mac"] for row in h.call("GET", "/v1/allowed")[1]] == [CONFIGURED, OTHER_MAC]
    # A second allow keeps the first entry.
    assert h.call("POST", "/v1/allow", {"mac": OTHER_MAC})[1]["note"] == "the till"
    assert h.call("POST", "/v1/disallow", {"mac": OTHER_MAC})[0] == 200
    assert not h.table.may_pass(OTHER_MAC) and h.store.allowed_devices() == []


def test_disallow_refusals(h: Harness) -> None:
    assert h.call("POST", "/v1/disallow", {"mac": CONFIGURED}) == (
        409,
        {"error": f"{CONFIGURED} is in firewall.allowed_macs: take it out of the configuration file"},
    )
    assert h.table.may_pass(CONFIGURED)
    assert h.call("POST", "/v1/disallow", {"mac": OTHER_MAC})[0] == 404
    status, answer = h.call("POST", "/v1/allow", {"mac": "192.0.2.10"})
    assert status == 400 and answer["error"].startswith("not a MAC address: '192.0.2.10'")


def test_a_store_that_cannot_write_refuses_the_command(h: Harness) -> None:
    h.store.close()
    status, answer = h.call("POST", "/v1/auth", {"device": IP})
    assert status == 503 and answer["error"].startswith("the session database did not record it")
    assert not h.table.is_authorized(MAC)
    status, _ = h.call("POST", "/v1/allow", {"mac": OTHER_MAC})
    assert status == 503 and not h.table.may_pass(OTHER_MAC)


def test_status_counts_and_health(h: Harness) -> None:
    h.table.authorize(MAC, ip=IP, method="click-through", duration=HOUR)
    h.table.authorize(OTHER_MAC, ip=OTHER_IP, method="staff", duration=HOUR)
    h.clock.advance(90)
    status, answer = h.call("GET", "/v1/status")
    assert status == 200
    assert answer["uptime_seconds"] == 90
    assert answer["devices_known"] == 3  # two leases and the configured MAC
    assert answer["signed_in"] == 2
    assert answer["by_method"] == {"click-through": 1, "staff": 1}
    assert answer["always_allowed"] == 1
    assert answer["health"]["store"]["writable"] is True


def test_a_command_is_answered_once_the_firewall_has_it(h: Harness) -> None:
    waiting: list[Deferred[None]] = []

    def applied() -> Deferred[None]:
        waiting.append(Deferred())
        return waiting[-1]

    site = Site(ControlAPI(h.operations, Enforcement(applied, h.clock)), reactor=h.clock)
    protocol = site.buildProtocol(UNIXAddress(None))
    transport = StringTransport()
    protocol.makeConnection(transport)
    body = json.dumps({"device": IP}).encode()
    protocol.dataReceived(
        b"POST /v1/auth HTTP/1.1\r\nHost: portald\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    # Signed in (the table has it), not yet answered: the kernel has not.
    assert h.table.is_authorized(MAC) and transport.value() == b""
    waiting[0].callback(None)
    (reply,) = parse_replies(transport.value())
    assert reply.status == 200 and json.loads(reply.body)["method"] == "staff"


def test_a_slow_firewall_delays_the_answer_by_at_most_the_wait(h: Harness) -> None:
    site = Site(ControlAPI(h.operations, Enforcement(Deferred, h.clock)), reactor=h.clock)
    protocol = site.buildProtocol(UNIXAddress(None))
    transport = StringTransport()
    protocol.makeConnection(transport)
    body = json.dumps({"device": IP}).encode()
    protocol.dataReceived(
        b"POST /v1/deauth HTTP/1.1\r\nHost: portald\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    # Refusals do not wait.
    (reply,) = parse_replies(transport.value())
    assert reply.status == 404
    transport.clear()
    protocol.dataReceived(b"GET /v1/status HTTP/1.1\r\nHost: portald\r\n\r\n")
    assert parse_replies(transport.value())[0].status == 200
    transport.clear()
    protocol.dataReceived(
        b"POST /v1/allow HTTP/1.1\r\nHost: portald\r\nContent-Length: 28\r\n\r\n"
        + json.dumps({"mac": OTHER_MAC}).encode()
    )
    assert transport.value() == b""
    h.clock.advance(ENFORCED_WAIT)
    (reply,) = parse_replies(transport.value())
    assert reply.status == 200 and h.table.may_pass(OTHER_MAC)


def test_rate_without_shaping_is_refused(h: Harness) -> None:
    h.table.authorize(MAC, ip=IP, method="click-through", duration=HOUR)
    status, answer = h.call("POST", "/v1/rate", {"device": IP, "down": 4_000_000, "up": 0})
    assert status == 409 and "portald does not shape: set shaping.uplink" in answer["error"]
    assert h.table.session(MAC).rate_down is None


def test_rate_gives_the_session_its_own_rates_kept_across_a_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    way_in = (10_000_000, 2_000_000)
    ops = Operations(
        h.table, h.neighbours, h.clock,
        Sources(leases=lambda: h.leases, usage=h.usage.get, rates=lambda s: (
            s.rate_down if s.rate_down is not None else way_in[0], s.rate_up if s.rate_up is not None else way_in[1]
        )),
        session_timeout=HOUR,
    )  # fmt: skip
    h.site = Site(ControlAPI(ops), reactor=h.clock)
    h.table.authorize(MAC, ip=IP, method="click-through", duration=HOUR)
    status, row = h.call("POST", "/v1/rate", {"device": IP, "down": 4_000_000, "up": 0})
    assert status == 200 and (row["rate_down"], row["rate_up"]) == (4_000_000, 0)
    (stored,) = h.store.open_sessions()
    assert (stored.rate_down, stored.rate_up) == (4_000_000, 0)
    status, row = h.call("POST", "/v1/rate", {"device": MAC, "down": None, "up": None})
    assert (row["rate_down"], row["rate_up"]) == way_in
    for body, error in [
        ({"device": IP, "down": 5, "up": 0}, "down: expected a rate"),
        ({"device": IP, "down": "4Mbit", "up": 0}, "field 'down': expected a whole number"),
        ({"device": OTHER_IP, "down": 1_000_000, "up": 0}, "is not signed in"),
    ]:
        status, answer = h.call("POST", "/v1/rate", body)
        assert status in (400, 404) and error in answer["error"], answer
    h.store.close()

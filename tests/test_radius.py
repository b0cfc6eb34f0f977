"""
portald's RADIUS parts on a Clock, with real packets: pyrad encodes what a
server would answer, bytes go through the client's datagramReceived, and
what portald sends is decoded back with the server's secret.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyrad import packet as radius
from twisted.internet.task import Clock

from portald.auth.interface import Credentials
from portald.config import RadiusSettings
from portald.control.operations import Operations, Sources
from portald.neighbours import Neighbours
from portald.radius.accounting import RadiusAccounting
from portald.radius.client import NoAnswer, RadiusClient, Timing
from portald.radius.das import DynamicAuthorization
from portald.radius.method import NAS, NOT_ANSWERING, RadiusMethod
from portald.radius.packets import dictionary, split_octets, station_id
from portald.radius.queue import AccountingQueue, Grant
from portald.table import AuthorizationTable, EndReason

SECRET = b"s3cret"
SERVER = ("198.51.100.10", 1812)
SECOND = ("198.51.100.11", 1812)
MAC, IP = "02:00:00:00:00:01", "192.0.2.50"
NAS_ = NAS("gw-a", "192.0.2.1", "gw-a")


class Wire:
    """The client's UDP transport: what it wrote, and to whom."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


def connected(client, wire: Wire | None = None) -> Wire:
    wire = wire or Wire()
    client.transport = wire
    return wire


def decoded(data: bytes, secret: bytes = SECRET) -> radius.Packet:
    """A request as the server reads it."""
    code = data[0]
    cls = radius.AcctPacket if code in (radius.AccountingRequest,) else radius.AuthPacket
    if code in (radius.CoARequest, radius.DisconnectRequest):
        cls = radius.CoAPacket
    return cls(packet=data, secret=secret, dict=dictionary())


def answer(data: bytes, code: int, *, sign: bool = True, secret: bytes = SECRET, **attributes) -> bytes:
    """The server's reply to the request C{data}."""
    request = decoded(data, secret)
    reply = request.CreateReply()
    reply.code = code
    reply.message_authenticator = sign or None
    for name, value in attributes.items():
        reply[name.replace("_", "-")] = value
    return reply.ReplyPacket()


def auth_client(clock: Clock, servers=(SERVER,), **timing) -> RadiusClient:
    return RadiusClient(
        clock, [(host, port, SECRET) for host, port in servers], Timing(**timing),
        what="authentication", nas_identifier="gw-a",
    )  # fmt: skip


def method(client: RadiusClient, grants: dict | None = None, **settings) -> RadiusMethod:
    store = grants if grants is not None else {}
    return RadiusMethod(client, NAS_, RadiusSettings(**settings), on_accept=store.__setitem__)


def attempt(way: RadiusMethod, user: str = "alice", password: str = "wonderland"):
    results: list = []
    way.authenticate(Credentials(MAC, IP, {"username": user, "password": password})).addBoth(results.append)
    return results


# --- authentication ---


def test_an_access_request_carries_what_the_issue_lists_with_the_message_authenticator_first() -> None:
    clock = Clock()
    client = auth_client(clock)
    wire = connected(client)
    attempt(method(client))
    ((data, addr),) = wire.sent
    assert addr == SERVER
    assert data[20] == 80  # the first attribute
    request = decoded(data)
    assert request.verify_message_authenticator()
    assert request.PwDecrypt(request["User-Password"][0]) == "wonderland"
    assert request["User-Name"] == ["alice"]
    assert request["Calling-Station-Id"] == ["02-00-00-00-00-01"]
    assert request["Framed-IP-Address"] == [IP]
    assert request["NAS-Identifier"] == ["gw-a"]
    assert request["NAS-IP-Address"] == ["192.0.2.1"]
    assert request["Called-Station-Id"] == ["gw-a"]
    assert len(request["Acct-Session-Id"][0]) == 16


def test_an_access_accept_sets_the_sessions_limits_and_what_accounting_repeats() -> None:
    clock = Clock()
    client = auth_client(clock)
    wire = connected(client)
    grants: dict[str, Grant] = {}
    results = attempt(method(client, grants))
    data = wire.sent[0][0]
    client.datagramReceived(
        answer(
            data, radius.AccessAccept,
            Session_Timeout=3600, Idle_Timeout=600, Acct_Interim_Interval=120,
            ChilliSpot_Max_Total_Octets=1, ChilliSpot_Max_Total_Gigawords=2,
            WISPr_Bandwidth_Max_Down=8_000_000, ChilliSpot_Bandwidth_Max_Up=2000, Class=b"plan-gold",
        ),
        SERVER,
    )  # fmt: skip
    (result,) = results
    assert result.ok and result.user == "alice"
    assert result.duration == 3600 and result.idle_timeout == 600
    assert result.quota_bytes == 2 * 2**32 + 1
    assert (result.rate_down, result.rate_up) == (8_000_000, 2_000_000)
    grant = grants[MAC]
    assert grant.classes == (b"plan-gold",) and grant.interim == 120
    assert grant.session_id == decoded(data)["Acct-Session-Id"][0]


def test_a_reject_shows_its_reply_message() -> None:
    clock = Clock()
    client = auth_client(clock)
    wire = connected(client)
    results = attempt(method(client), password="wrong")
    client.datagramReceived(
        answer(wire.sent[0][0], radius.AccessReject, Reply_Message="Your plan has ended"), SERVER
    )
    (result,) = results
    assert not result.ok and result.counts
    assert result.message == "Your plan has ended"


@pytest.mark.parametrize("forgery", ["unsigned", "wrong secret", "proxy-state not sent"])
def test_a_reply_that_is_not_genuine_is_discarded_and_the_request_goes_on(forgery: str) -> None:
    clock = Clock()
    client = auth_client(clock)
    wire = connected(client)
    results = attempt(method(client))
    data = wire.sent[0][0]
    if forgery == "unsigned":
        forged = answer(data, radius.AccessAccept, sign=False)
    elif forgery == "wrong secret":
        forged = answer(data, radius.AccessAccept, secret=b"guessed")
    else:
        forged = answer(data, radius.AccessAccept, Proxy_State=b"attacker")
    client.datagramReceived(forged, SERVER)
    assert results == [] and client.discarded == 1
    client.datagramReceived(answer(data, radius.AccessAccept), SERVER)
    assert results[0].ok


def test_retransmissions_repeat_the_same_bytes_then_the_guest_is_told_within_the_bound() -> None:
    clock = Clock()
    client = auth_client(clock, timeout=2.0, retries=2, give_up_after=10.0)
    wire = connected(client)
    results = attempt(method(client))
    for step in (2.0, 4.0):
        clock.advance(step)
    assert len(wire.sent) == 3
    assert len({data for data, _ in wire.sent}) == 1  # RFC 5080: same id, same bytes
    clock.advance(4.0)
    (result,) = results
    assert not result.ok and result.message == NOT_ANSWERING
    assert not result.counts  # not the guest's fault
    assert clock.seconds() <= 10.0


def test_a_dead_server_is_skipped_and_found_alive_again_by_status_server() -> None:
    clock = Clock()
    client = auth_client(clock, (SERVER, SECOND), timeout=1.0, retries=1, give_up_after=6.0, dead_time=30.0)
    wire = connected(client)
    results = attempt(method(client))
    clock.advance(1.0)
    clock.advance(2.0)  # the first server's share (3 s) is over
    data, addr = wire.sent[-1]
    assert addr == SECOND
    client.datagramReceived(answer(data, radius.AccessAccept), SECOND)
    assert results[0].ok
    # The next sign-in goes straight to the second server.
    attempt(method(client))
    assert wire.sent[-1][1] == SECOND
    client.datagramReceived(answer(wire.sent[-1][0], radius.AccessAccept), SECOND)
    # Status-Server probes the first; its signed answer brings it back.
    clock.advance(10.0)
    probe, addr = wire.sent[-1]
    assert addr == SERVER and probe[0] == radius.StatusServer
    client.datagramReceived(answer(probe, radius.AccessAccept), SERVER)
    assert client.health()[0]["alive"]
    attempt(method(client))
    assert wire.sent[-1][1] == SERVER


def test_a_malformed_or_stray_datagram_changes_nothing() -> None:
    clock = Clock()
    client = auth_client(clock)
    wire = connected(client)
    results = attempt(method(client))
    for junk in (b"", b"\x02", bytes(19), b"\x02" + wire.sent[0][0][1:2] + b"\x00\x14" + bytes(300)):
        client.datagramReceived(junk, SERVER)
    client.datagramReceived(answer(wire.sent[0][0], radius.AccessAccept), ("203.0.113.9", 1812))
    assert results == []
    client.datagramReceived(answer(wire.sent[0][0], radius.AccessAccept), SERVER)
    assert results[0].ok


# --- accounting ---


class Gateway:
    """A table, accounting on a queue file, and an accounting server's port."""

    def __init__(self, tmp_path: Path, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        if clock is None:
            self.clock.advance(1_800_000_000)
        self.table = AuthorizationTable(self.clock)
        self.usage: dict[str, tuple[int, int]] = {}
        self.queue = AccountingQueue.open(tmp_path / "radius.sqlite3")
        self.client = RadiusClient(
            self.clock, [(SERVER[0], 1813, SECRET)], Timing(give_up_after=4.0), what="accounting",
            nas_identifier="gw-a",
        )  # fmt: skip
        self.wire = connected(self.client)
        self.accounting = RadiusAccounting(
            self.queue, self.client, self.clock, usage=self.usage.get, sessions=self.table.session,
            nas=NAS_.attributes(), default_interim=0.0,
        )  # fmt: skip
        self.table.add_observer(self.accounting)
        self.accounting.startService()

    def sign_in(self, interim: float = 60.0) -> None:
        self.accounting.granted(MAC, Grant("00AA11BB22CC33DD", "alice", (b"gold",), interim))
        self.table.authorize(MAC, ip=IP, method="radius", user="alice", duration=3600)

    def records(self) -> list[radius.Packet]:
        self.clock.advance(0)  # this turn's records, written and sent
        return [decoded(data) for data, _ in self.wire.sent]

    def acknowledge_all(self) -> None:
        self.clock.advance(0)
        for data, addr in list(self.wire.sent):
            self.client.datagramReceived(answer(data, radius.AccountingResponse, sign=False), addr)
        self.clock.advance(0)  # the acknowledged ones deleted


def test_start_interim_and_stop_carry_the_octets_as_the_nas_sees_them(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    gw.sign_in()
    gw.acknowledge_all()
    gw.usage[MAC] = (1_000, 5 * 2**32 + 7)  # (from the guest, to the guest)
    gw.clock.advance(60)
    gw.acknowledge_all()
    gw.clock.advance(30)
    gw.table.deauthorize(MAC, EndReason.ADMIN)
    gw.acknowledge_all()
    start, interim, stop = gw.records()
    assert [r["Acct-Status-Type"][0] for r in (start, interim, stop)] == ["Start", "Interim-Update", "Stop"]
    for record in (start, interim, stop):
        assert record.VerifyAcctRequest()
        assert record["Acct-Session-Id"] == ["00AA11BB22CC33DD"]
        assert record["Class"] == [b"gold"]
        assert record["Calling-Station-Id"] == [station_id(MAC)]
    assert stop["Acct-Input-Octets"] == [1_000]
    assert (stop["Acct-Output-Octets"][0], stop["Acct-Output-Gigawords"][0]) == split_octets(5 * 2**32 + 7)
    assert stop["Acct-Session-Time"] == [90]
    assert stop["Acct-Terminate-Cause"] == ["Admin-Reset"]
    assert gw.queue.waiting() == 0


def test_records_wait_on_disk_through_an_outage_and_a_restart_and_go_out_in_order(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    gw.sign_in()
    gw.clock.advance(60)
    gw.table.deauthorize(MAC, EndReason.LOGOUT)
    gw.clock.advance(30)  # nobody answers
    assert gw.queue.waiting() == 3  # Start, Interim-Update, Stop
    gw.accounting.stopService()
    gw.client.stop()
    gw.queue.close()
    # portald starts again, the server is back.
    again = Gateway(tmp_path, gw.clock)
    assert again.queue.waiting() == 3
    first = again.records()
    assert [r["Acct-Status-Type"][0] for r in first] == ["Start"]  # the rest wait for it
    for _ in range(3):
        again.acknowledge_all()
    kinds = [r["Acct-Status-Type"][0] for r in again.records()]
    assert kinds == ["Start", "Interim-Update", "Stop"]
    assert again.queue.waiting() == 0
    stop = again.records()[-1]
    assert stop["Acct-Delay-Time"][0] >= 30  # it waited, and says so


def test_a_restored_session_gets_no_second_start(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    gw.sign_in()
    session = gw.table.session(MAC)
    gw.acknowledge_all()
    fresh = Gateway(tmp_path, gw.clock)
    fresh.table.restore(session)
    assert fresh.records() == [] and fresh.accounting.restored == 1


# --- dynamic authorization ---

DAS_CLIENT = ("198.51.100.2", 40000)


def das(tmp_path: Path):
    gw = Gateway(tmp_path)
    gw.sign_in()
    gw.acknowledge_all()
    neighbours = Neighbours()
    neighbours.replace({IP: MAC})
    operations = Operations(
        gw.table, neighbours, gw.clock, Sources(leases=dict, usage=lambda mac: None), session_timeout=3600
    )
    listener = DynamicAuthorization(
        {DAS_CLIENT[0]: b"das-secret"}, operations, gw.table.sessions, gw.queue.grants,
        NAS_.attributes(), gw.clock,
    )  # fmt: skip
    wire = connected(listener)
    return gw, listener, wire


def das_request(code: int, secret: bytes = b"das-secret", sign: bool = True, **attributes) -> bytes:
    request = radius.CoAPacket(code=code, secret=secret, dict=dictionary())
    if sign:
        request.add_message_authenticator()
    for name, value in attributes.items():
        request[name.replace("_", "-")] = value
    return request.RequestPacket()


def das_reply(wire: Wire) -> radius.Packet:
    data, addr = wire.sent[-1]
    assert addr == DAS_CLIENT
    return radius.CoAPacket(packet=data, secret=b"das-secret", dict=dictionary())


def test_a_disconnect_request_ends_the_session_and_its_stop_says_admin_reset(tmp_path: Path) -> None:
    gw, listener, wire = das(tmp_path)
    listener.datagramReceived(
        das_request(radius.DisconnectRequest, Acct_Session_Id="00AA11BB22CC33DD"), DAS_CLIENT
    )
    reply = das_reply(wire)
    assert reply.code == radius.DisconnectACK
    assert not gw.table.is_authorized(MAC)
    assert gw.records()[-1]["Acct-Terminate-Cause"] == ["Admin-Reset"]


@pytest.mark.parametrize("how", ["wrong secret", "unlisted address", "no message-authenticator"])
def test_a_request_not_from_a_client_with_its_secret_changes_nothing_and_is_not_answered(
    tmp_path: Path, how: str
) -> None:
    gw, listener, wire = das(tmp_path)
    secret = b"guessed" if how == "wrong secret" else b"das-secret"
    data = das_request(radius.DisconnectRequest, secret, sign=how != "no message-authenticator",
                       Calling_Station_Id=station_id(MAC))  # fmt: skip
    source = ("203.0.113.66", 3799) if how == "unlisted address" else DAS_CLIENT
    listener.datagramReceived(data, source)
    assert wire.sent == [] and gw.table.is_authorized(MAC)


def test_an_unknown_session_is_naked_with_session_context_not_found(tmp_path: Path) -> None:
    gw, listener, wire = das(tmp_path)
    listener.datagramReceived(das_request(radius.DisconnectRequest, User_Name="bob"), DAS_CLIENT)
    reply = das_reply(wire)
    assert reply.code == radius.DisconnectNAK
    assert reply["Error-Cause"] == ["Session-Context-Not-Found"]
    assert gw.table.is_authorized(MAC)


def test_coa_moves_the_end_and_an_unsupported_attribute_is_naked(tmp_path: Path) -> None:
    gw, listener, wire = das(tmp_path)
    listener.datagramReceived(
        das_request(radius.CoARequest, Calling_Station_Id=station_id(MAC), Session_Timeout=120), DAS_CLIENT
    )
    assert das_reply(wire).code == radius.CoAACK
    assert gw.table.session(MAC).remaining(gw.clock.seconds()) == 120
    listener.datagramReceived(
        das_request(radius.CoARequest, Calling_Station_Id=station_id(MAC), Idle_Timeout=5), DAS_CLIENT
    )
    reply = das_reply(wire)
    assert reply.code == radius.CoANAK and reply["Error-Cause"] == ["Unsupported-Attribute"]


def test_a_retransmitted_disconnect_gets_the_same_answer(tmp_path: Path) -> None:
    gw, listener, wire = das(tmp_path)
    data = das_request(radius.DisconnectRequest, User_Name="alice")
    listener.datagramReceived(data, DAS_CLIENT)
    listener.datagramReceived(data, DAS_CLIENT)
    assert wire.sent[0][0] == wire.sent[1][0]
    assert das_reply(wire).code == radius.DisconnectACK


def test_no_answer_fails_a_bare_request_with_no_answer() -> None:
    clock = Clock()
    client = auth_client(clock, timeout=1.0, retries=0, give_up_after=1.0)
    connected(client)
    failures: list = []
    client.request(lambda secret: radius.AuthPacket(secret=secret, dict=dictionary())).addErrback(
        failures.append
    )
    clock.advance(1.0)
    assert failures and failures[0].check(NoAnswer)


# --- MAC authentication ---


def mac_auth(tmp_path: Path):
    from portald.config import parse_config
    from portald.radius.macauth import MacAuthentication

    config = parse_config(
        "portal: {address: 192.0.2.1, subnets: [192.0.2.0/24]}\n"
        "leases: {sources: [{format: dnsmasq, path: /dev/null}]}\n"
        "auth: {method: radius}\n"
        "radius: {servers: [{address: 198.51.100.10, secret: s3cret}], mac_auth: {enabled: true}}\n"
    )
    clock = Clock()
    table = AuthorizationTable(clock)
    client = auth_client(clock)
    wire = connected(client)
    grants: dict[str, Grant] = {}
    return (
        MacAuthentication(client, NAS_, config, table, clock, grants.__setitem__),
        table,
        client,
        wire,
        grants,
        clock,
    )


def test_a_device_the_aaa_knows_by_its_mac_is_let_in_without_the_portal(tmp_path: Path) -> None:
    macs, table, client, wire, grants, _ = mac_auth(tmp_path)
    macs.leases_changed({IP: MAC})
    ((data, _),) = wire.sent
    request = decoded(data)
    assert request["User-Name"] == ["02-00-00-00-00-01"]
    assert request.PwDecrypt(request["User-Password"][0]) == "02-00-00-00-00-01"
    client.datagramReceived(answer(data, radius.AccessAccept, Session_Timeout=900), SERVER)
    session = table.session(MAC)
    assert session is not None and session.method == "radius-mac" and session.ip == IP
    assert session.remaining(0) == 900
    assert grants[MAC].session_id == request["Acct-Session-Id"][0]
    macs.leases_changed({IP: MAC})
    assert len(wire.sent) == 1  # signed in: not asked again


def test_a_device_refused_by_its_mac_meets_the_portal_and_is_not_asked_again_for_a_while(
    tmp_path: Path,
) -> None:
    macs, table, client, wire, _, clock = mac_auth(tmp_path)
    macs.leases_changed({IP: MAC})
    client.datagramReceived(answer(wire.sent[0][0], radius.AccessReject), SERVER)
    assert not table.is_authorized(MAC)
    macs.leases_changed({IP: MAC})
    assert len(wire.sent) == 1
    clock.advance(601)
    macs.leases_changed({IP: MAC})
    assert len(wire.sent) == 2


# --- configuration ---

BASE = "portal: {address: 192.0.2.1, subnets: [192.0.2.0/24]}\nleases: {sources: [{format: dnsmasq, path: /dev/null}]}\n"


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("auth: {method: radius}\n", "radius.servers", "at least one server"),
        ("radius: {servers: [{address: 198.51.100.10}]}\n", "radius.servers", "missing required key 'secret'"),
        ("radius: {servers: [{address: 198.51.100.10, secret: s}], interim_interval: 30s}\n",
         "radius.interim_interval", "at least 60s"),
        ("radius: {servers: [{address: 198.51.100.10, secret: s}], das: {listen: 192.0.2.1, "
         "clients: [{address: 198.51.100.10, secret: d}]}}\n", "radius.das.listen", "not the guests'"),
        ("radius: {das: {listen: 198.51.100.1}}\n", "radius.das.clients", "at least one client"),
    ],
)  # fmt: skip
def test_a_radius_setting_that_cannot_work_is_refused_naming_its_key(
    text: str, key: str, expected: str
) -> None:
    from portald.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + text)
    assert key in str(caught.value) and expected in str(caught.value)

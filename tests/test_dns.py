"""
portald's DNS: raw datagrams fed to the real protocol objects, a fake
upstream driven through an in-memory reactor and its clock.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.internet.address import IPv4Address
from twisted.names import dns

from portald.dns.service import DNSService
from portald.dns.wire import parse_simple_query
from portald.table import EndReason
from tests.dns_fakes import (
    CLIENT,
    CLIENT_MAC,
    OTHER,
    OUTSIDER,
    PORTAL,
    STRANGER,
    UPSTREAM1,
    UPSTREAM2,
    Harness,
    UDPMemoryReactor,
    a_record,
    addresses,
    framed,
    make_config,
    parse,
    query,
    tcp_connection,
    unframe,
)


@pytest.fixture
def dns_server() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()
    assert harness.errors == []


def forward_and_answer(h: Harness, name: str, address: str, ttl: int = 300, **kwargs) -> dns.Message:
    """An authorized client asks C{name}; the first upstream answers; the client's answer."""
    before = len(h.upstream_queries())
    h.send(query(name, **kwargs))
    sent, to = h.upstream_queries()[before]
    assert to == UPSTREAM1
    h.upstream_answers(sent, to, [a_record(name, address, ttl)])
    return h.replies_to(CLIENT)[-1]


# --- unauthorized clients ---


@pytest.mark.parametrize("source", [CLIENT, STRANGER], ids=["with a lease", "without a lease"])
def test_unauthorized_a_gets_the_portal_address(dns_server: Harness, source) -> None:
    answer = dns_server.ask(query("anything.example", id=7), source)
    assert answer.id == 7 and answer.answer and answer.rCode == dns.OK
    assert answer.auth and answer.recAv and answer.recDes
    assert [(str(r.name), r.ttl) for r in answer.answers] == [("anything.example", 5)]
    assert addresses(answer) == [PORTAL]
    assert dns_server.upstream_queries() == []


def test_the_name_need_not_exist_and_its_spelling_is_echoed(dns_server: Harness) -> None:
    answer = dns_server.ask(query("No-Such-Name.INVALID"))
    assert answer.queries[0].name.name == b"No-Such-Name.INVALID"
    assert addresses(answer) == [PORTAL]


def test_unauthorized_aaaa_and_other_types_get_empty_answers(dns_server: Harness) -> None:
    for qtype in (dns.AAAA, dns.MX, dns.TXT, dns.ALL_RECORDS, dns.PTR):
        answer = dns_server.ask(query("anything.example", qtype))
        assert answer.rCode == dns.OK and answer.answers == [] and answer.auth, qtype


def test_unauthorized_aaaa_gets_the_portal_ipv6_address_when_it_has_one() -> None:
    h = Harness(make_config(extra_portal="  address6: 2001:db8::1\n"))
    try:
        answer = h.ask(query("anything.example", dns.AAAA))
        assert [r.payload.address for r in answer.answers] == [dns.Record_AAAA("2001:db8::1").address]
        assert answer.answers[0].ttl == 5
    finally:
        h.close()


def test_redirect_ttl_is_configurable() -> None:
    h = Harness(make_config(dns_overrides={"redirect_ttl": "30s"}))
    try:
        assert h.ask(query("a.example")).answers[0].ttl == 30
    finally:
        h.close()


def test_recursion_desired_is_copied(dns_server: Harness) -> None:
    assert dns_server.ask(query("a.example", recursion=False)).recDes == 0


# --- for everyone ---


@pytest.mark.parametrize("authorized", [False, True])
def test_doh_canary_is_nxdomain(dns_server: Harness, authorized: bool) -> None:
    if authorized:
        dns_server.authorize()
    for name in ("use-application-dns.net", "USE-application-DNS.net", "x.use-application-dns.net"):
        for qtype in (dns.A, dns.AAAA):
            answer = dns_server.ask(query(name, qtype))
            assert answer.rCode == dns.ENAME and answer.answers == [], (name, qtype)
    assert dns_server.upstream_queries() == []


@pytest.mark.parametrize("authorized", [False, True])
def test_portal_hostname_is_the_portal_for_everyone(dns_server: Harness, authorized: bool) -> None:
    if authorized:
        dns_server.authorize()
    answer = dns_server.ask(query("Portal.Example"))
    assert addresses(answer) == [PORTAL] and answer.auth
    assert dns_server.ask(query("portal.example", dns.AAAA)).answers == []
    assert dns_server.upstream_queries() == []


def test_walled_garden_is_forwarded_for_the_unauthorized(dns_server: Harness) -> None:
    for name, address in (("pay.example", "203.0.113.80"), ("www.Pay.Example", "203.0.113.81")):
        dns_server.send(query(name))
        sent, to = dns_server.upstream_queries()[-1]
        assert to == UPSTREAM1 and sent.queries[0].name.name.lower() == name.lower().encode()
        dns_server.upstream_answers(sent, to, [a_record(name, address, 120)])
        assert addresses(dns_server.replies_to(CLIENT)[-1]) == [address]
    assert dns_server.walled_garden_answers == [(["203.0.113.80"], 120.0), (["203.0.113.81"], 120.0)]
    # Not a walled-garden name: the portal.
    assert addresses(dns_server.ask(query("notpay.example"))) == [PORTAL]


def test_walled_garden_answers_open_only_their_own_names_addresses(dns_server: Harness) -> None:
    dns_server.send(query("pay.example"))
    sent, to = dns_server.upstream_queries()[-1]
    # Out of bailiwick: records for names the question does not lead to.
    cname = dns.RRHeader("pay.example", dns.CNAME, dns.IN, 60, dns.Record_CNAME("edge.cdn.example"))
    dns_server.upstream_answers(
        sent,
        to,
        [
            a_record("bank.example", "198.51.100.66", 60),
            cname,
            a_record("edge.cdn.example", "203.0.113.91", 60),
            a_record("cdn.example", "198.51.100.67", 60),
        ],
    )
    assert dns_server.walled_garden_answers == [(["203.0.113.91"], 60.0)]


def test_walled_garden_callback_only_for_upstream_answers(dns_server: Harness) -> None:
    dns_server.send(query("pay.example"))
    sent, to = dns_server.upstream_queries()[-1]
    cname = dns.RRHeader("pay.example", dns.CNAME, dns.IN, 60, dns.Record_CNAME("cdn.example.net"))
    aaaa = dns.RRHeader("cdn.example.net", dns.AAAA, dns.IN, 60, dns.Record_AAAA("2001:db8::80"))
    dns_server.upstream_answers(sent, to, [cname, a_record("cdn.example.net", "203.0.113.90", 30), aaaa])
    assert dns_server.walled_garden_answers == [(["203.0.113.90", "2001:db8::80"], 30.0)]
    dns_server.ask(query("pay.example"), OTHER)  # from the cache: no new call
    assert len(dns_server.walled_garden_answers) == 1


def test_a_failing_walled_garden_callback_does_not_cost_the_answer() -> None:
    h = Harness()
    h.service.factory._on_walled_garden_answer = lambda addresses, ttl: 1 / 0
    h.send(query("pay.example"))
    sent, to = h.upstream_queries()[-1]
    h.upstream_answers(sent, to, [a_record("pay.example", "203.0.113.80")])
    assert addresses(h.replies_to(CLIENT)[-1]) == ["203.0.113.80"]
    assert len(h.errors) == 1 and "ZeroDivisionError" in str(h.errors[0].get("log_failure"))
    h.close()


# --- authorized clients ---


def test_authorized_is_forwarded_then_cached(dns_server: Harness) -> None:
    dns_server.authorize()
    assert dns_server.send(query("www.example.com", id=99)) == []  # waiting for upstream
    [(sent, to)] = dns_server.upstream_queries()
    assert to == UPSTREAM1 and sent.recDes and sent.queries == [dns.Query("www.example.com", dns.A)]
    dns_server.upstream_answers(sent, to, [a_record("www.example.com", "203.0.113.5", 300)])
    [answer] = dns_server.replies_to(CLIENT)
    assert answer.id == 99 and answer.rCode == dns.OK and not answer.auth and answer.recAv
    assert addresses(answer) == ["203.0.113.5"] and answer.answers[0].ttl == 300
    # From the cache, with its TTL counting down; no new upstream query.
    dns_server.reactor.advance(100)
    cached = dns_server.ask(query("WWW.example.com", id=100))
    assert cached.id == 100 and addresses(cached) == ["203.0.113.5"] and cached.answers[0].ttl == 200
    assert cached.queries[0].name.name == b"WWW.example.com"
    # The same query again: within the second, and a second later.
    again = dns_server.ask(query("WWW.example.com", id=101))
    assert again.id == 101 and again.answers[0].ttl == 200
    dns_server.reactor.advance(1)
    later = dns_server.ask(query("WWW.example.com", id=102))
    assert later.id == 102 and later.answers[0].ttl == 199
    assert len(dns_server.upstream_queries()) == 1
    # Expired: asked again.
    dns_server.reactor.advance(199)
    dns_server.send(query("www.example.com"))
    assert len(dns_server.upstream_queries()) == 2


def test_the_very_next_query_after_authorize_is_forwarded(dns_server: Harness) -> None:
    assert addresses(dns_server.ask(query("www.example.com"))) == [PORTAL]
    dns_server.authorize()
    assert addresses(forward_and_answer(dns_server, "www.example.com", "203.0.113.5")) == ["203.0.113.5"]
    # And after the session ends, the portal again, even for a cached name.
    dns_server.table.deauthorize(CLIENT_MAC, EndReason.LOGOUT)
    assert addresses(dns_server.ask(query("www.example.com"))) == [PORTAL]


def test_another_client_is_not_authorized_by_mine(dns_server: Harness) -> None:
    dns_server.authorize()
    forward_and_answer(dns_server, "www.example.com", "203.0.113.5")
    assert addresses(dns_server.ask(query("www.example.com"), OTHER)) == [PORTAL]
    assert addresses(dns_server.ask(query("www.example.com"), STRANGER)) == [PORTAL]


def test_failover_to_the_next_upstream_then_servfail_in_bounded_time(dns_server: Harness) -> None:
    dns_server.authorize()
    dns_server.send(query("slow.example"))
    assert [to for _, to in dns_server.upstream_queries()] == [UPSTREAM1]
    dns_server.reactor.advance(2)
    assert [to for _, to in dns_server.upstream_queries()] == [UPSTREAM1, UPSTREAM2]
    assert dns_server.replies_to(CLIENT) == []
    dns_server.reactor.advance(2)
    [answer] = dns_server.replies_to(CLIENT)
    assert answer.rCode == dns.ESERVER and answer.answers == []
    assert dns_server.reactor.getDelayedCalls() == []
    # Failures are not cached: the next query asks again.
    dns_server.send(query("slow.example"))
    assert len(dns_server.upstream_queries()) == 3


def test_the_second_upstream_answers_after_the_first_times_out(dns_server: Harness) -> None:
    dns_server.authorize()
    dns_server.send(query("www.example.com"))
    dns_server.reactor.advance(2)
    sent, to = dns_server.upstream_queries()[-1]
    assert to == UPSTREAM2
    dns_server.upstream_answers(sent, to, [a_record("www.example.com", "203.0.113.6")])
    assert addresses(dns_server.replies_to(CLIENT)[-1]) == ["203.0.113.6"]
    # The first one answering late changes nothing.
    first, _ = dns_server.upstream_queries()[0]
    dns_server.upstream_answers(first, UPSTREAM1, [a_record("www.example.com", "203.0.113.66")])
    assert len(dns_server.replies_to(CLIENT)) == 1


@pytest.mark.parametrize("rcode", [dns.ESERVER, dns.EREFUSED])
def test_an_upstream_error_moves_to_the_next(dns_server: Harness, rcode: int) -> None:
    dns_server.authorize()
    dns_server.send(query("www.example.com"))
    sent, to = dns_server.upstream_queries()[0]
    dns_server.upstream_answers(sent, to, rcode=rcode)
    sent, to = dns_server.upstream_queries()[1]
    assert to == UPSTREAM2
    dns_server.upstream_answers(sent, to, [a_record("www.example.com", "203.0.113.6")])
    assert addresses(dns_server.replies_to(CLIENT)[-1]) == ["203.0.113.6"]


def test_spoofed_upstream_answers_are_ignored(dns_server: Harness) -> None:
    dns_server.authorize()
    dns_server.send(query("www.example.com"))
    sent, to = dns_server.upstream_queries()[0]
    bad = [a_record("www.example.com", "203.0.113.66")]
    dns_server.upstream_answers(sent, to, bad, source=("198.51.100.99", 53))  # wrong source
    dns_server.upstream_answers(sent, to, bad, id=(sent.id + 1) % 65536)  # wrong id
    other = dns.Message(id=sent.id)
    other.queries = [dns.Query("evil.example")]
    dns_server.upstream_answers(other, to, bad)  # wrong question
    protocol, _ = dns_server.upstream_socket_for(sent)
    protocol.datagramReceived(b"\x00\x01garbage", to)
    assert dns_server.replies_to(CLIENT) == []
    dns_server.upstream_answers(sent, to, [a_record("www.example.com", "203.0.113.5")])
    assert addresses(dns_server.replies_to(CLIENT)[-1]) == ["203.0.113.5"]


def test_identical_questions_in_flight_share_one_upstream_query(dns_server: Harness) -> None:
    dns_server.authorize()
    dns_server.table.authorize("02:00:00:00:00:11", ip=OTHER[0], method="test", duration=None)
    dns_server.send(query("www.example.com", id=1))
    dns_server.send(query("www.example.com", id=2), OTHER)
    [(sent, to)] = dns_server.upstream_queries()
    dns_server.upstream_answers(sent, to, [a_record("www.example.com", "203.0.113.5")])
    assert [m.id for m in dns_server.replies_to(CLIENT)] == [1]
    assert [m.id for m in dns_server.replies_to(OTHER)] == [2]


def test_nxdomain_is_cached_by_the_soa_negative_ttl(dns_server: Harness) -> None:
    dns_server.authorize()
    dns_server.send(query("nope.example.com"))
    [(sent, to)] = dns_server.upstream_queries()
    soa = dns.RRHeader(
        "example.com", dns.SOA, dns.IN, 600, dns.Record_SOA(b"ns.example.com", b"h.example.com", minimum=60)
    )
    dns_server.upstream_answers(sent, to, rcode=dns.ENAME, authority=[soa])
    assert dns_server.replies_to(CLIENT)[-1].rCode == dns.ENAME
    dns_server.reactor.advance(59)
    cached = dns_server.ask(query("nope.example.com"))
    assert cached.rCode == dns.ENAME and cached.authority[0].ttl == 600 - 59
    dns_server.reactor.advance(1)
    dns_server.send(query("nope.example.com"))
    assert len(dns_server.upstream_queries()) == 2


def test_cache_is_bounded_in_time_and_size() -> None:
    h = Harness(make_config(dns_overrides={"cache_size": "3", "max_cache_ttl": "60s"}))
    h.authorize()
    answer = forward_and_answer(h, "long.example", "203.0.113.1", ttl=86400)
    assert answer.answers[0].ttl == 60
    h.reactor.advance(60)
    h.send(query("long.example"))
    assert len(h.upstream_queries()) == 2
    h.upstream_answers(*h.upstream_queries()[-1], [a_record("long.example", "203.0.113.1", 86400)])
    for i in range(4):
        forward_and_answer(h, f"n{i}.example", "203.0.113.2")
    assert len(h.service.cache) == 3
    h.close()


def test_a_zero_ttl_answer_is_given_but_not_cached(dns_server: Harness) -> None:
    dns_server.authorize()
    assert forward_and_answer(dns_server, "zero.example", "203.0.113.3", ttl=0).answers[0].ttl == 0
    dns_server.send(query("zero.example"))
    assert len(dns_server.upstream_queries()) == 2


# --- who may ask, and what cannot be parsed ---


def test_sources_outside_the_lan_are_refused(dns_server: Harness) -> None:
    answer = dns_server.ask(query("anything.example"), OUTSIDER)
    assert answer.rCode == dns.EREFUSED and answer.answers == [] and answer.answer
    protocol, transport = tcp_connection(dns_server, OUTSIDER)
    protocol.dataReceived(framed(query("anything.example")))
    [reply] = unframe(transport.value())
    assert parse(reply).rCode == dns.EREFUSED
    assert dns_server.upstream_queries() == []


def test_an_ipv4_mapped_source_inside_the_lan_is_answered(dns_server: Harness) -> None:
    assert addresses(dns_server.ask(query("a.example"), ("::ffff:192.0.2.10", 40000, 0, 0))) == [PORTAL]


def test_garbage_from_outside_is_dropped_not_answered(dns_server: Harness) -> None:
    assert dns_server.send(b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6, OUTSIDER) == []
    protocol, transport = tcp_connection(dns_server, OUTSIDER)
    protocol.dataReceived(framed(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07exam"))
    assert transport.value() == b"" and transport.disconnecting


def test_other_opcodes_from_outside_are_refused_too(dns_server: Harness) -> None:
    message = dns.Message(id=8, opCode=dns.OP_NOTIFY)
    message.queries = [dns.Query("a.example", dns.SOA)]
    assert dns_server.ask(message.toStr(), OUTSIDER).rCode == dns.EREFUSED


@pytest.mark.parametrize(
    "data",
    [
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07exam",  # question cut short
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",  # says one question, has none
        b"\x12\x34\x01\x00\x00\x01\x00\x01\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01",  # missing answer
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # pointer loop
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01junk",  # bytes after the end
    ],
)
def test_unreadable_queries_get_formerr(dns_server: Harness, data: bytes) -> None:
    answer = dns_server.ask(data)
    assert answer.id == 0x1234 and answer.answer and answer.rCode == dns.EFORMAT


def test_no_question_or_two_questions_get_formerr(dns_server: Harness) -> None:
    for names in ([], ["a.example", "b.example"]):
        message = dns.Message(id=5, recDes=1)
        message.queries = [dns.Query(name) for name in names]
        assert dns_server.ask(message.toStr()).rCode == dns.EFORMAT


@pytest.mark.parametrize("data", [b"", b"\x00", b"short", b"\x12\x34\x81\x80" + b"\x00" * 8])
def test_fragments_and_responses_are_dropped(dns_server: Harness, data: bytes) -> None:
    assert dns_server.send(data) == []
    assert addresses(dns_server.ask(query("a.example"))) == [PORTAL]


def test_other_opcodes_get_notimp(dns_server: Harness) -> None:
    message = dns.Message(id=8, opCode=dns.OP_NOTIFY)
    message.queries = [dns.Query("a.example", dns.SOA)]
    answer = dns_server.ask(message.toStr())
    assert answer.rCode == dns.ENOTIMP and answer.opCode == dns.OP_NOTIFY


# --- EDNS and size limits ---


def opt_of(message: dns.Message) -> list[dns.RRHeader]:
    return [record for record in message.additional if record.type == dns.OPT]


def test_edns_gets_one_clean_opt_back(dns_server: Harness) -> None:
    answer = dns_server.ask(query("a.example", edns=4096))
    [opt] = opt_of(answer)
    assert opt.name.name == b"" and opt.cls == 1232 and opt.ttl == 0  # version 0, no DO, no ext rcode
    assert addresses(answer) == [PORTAL]
    assert opt_of(dns_server.ask(query("a.example"))) == []


@pytest.mark.parametrize("authorized", [False, True])
def test_the_do_bit_is_copied_on_both_paths(dns_server: Harness, authorized: bool) -> None:
    # RFC 3225 section 3: the DO bit of the query is copied in the response.
    if authorized:
        dns_server.authorize()
        forward_and_answer(dns_server, "signed.example", "203.0.113.7")
    name = "signed.example" if authorized else "a.example"
    for qtype in (dns.A, dns.MX):  # the fast path, and the full path
        message = dns.Message(id=9, recDes=1, maxSize=0)
        message.queries = [dns.Query(name, qtype)]
        message.additional = [dns._OPTHeader(udpPayloadSize=1232, dnssecOK=True)]
        if qtype == dns.MX and authorized:
            continue  # would go upstream
        [opt] = opt_of(dns_server.ask(message.toStr()))
        assert dns._OPTHeader.fromRRHeader(opt).dnssecOK
        # Over TCP, always the full path.
        protocol, transport = tcp_connection(dns_server)
        protocol.dataReceived(framed(message.toStr()))
        [opt] = opt_of(parse(unframe(transport.value())[0]))
        assert dns._OPTHeader.fromRRHeader(opt).dnssecOK
    [opt] = opt_of(dns_server.ask(query(name, edns=1232)))
    assert not dns._OPTHeader.fromRRHeader(opt).dnssecOK


def test_a_dot_inside_a_label_gets_formerr(dns_server: Harness) -> None:
    # The label "a.b" then "example": as dotted text it reads as three
    # labels, so an answer would name another question (and the cache
    # would keep it under that other name).
    odd = b"\x00\x07\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03a.b\x07example\x00\x00\x01\x00\x01"
    assert parse_simple_query(odd) is None
    answer = dns_server.ask(odd)
    assert answer.id == 7 and answer.rCode == dns.EFORMAT
    dns_server.authorize()
    assert dns_server.ask(odd).rCode == dns.EFORMAT and dns_server.upstream_queries() == []


def test_an_unknown_edns_version_gets_badvers(dns_server: Harness) -> None:
    answer = dns_server.ask(query("a.example", edns=1232, edns_version=1))
    [opt] = opt_of(answer)
    assert answer.rCode == 0 and opt.ttl >> 24 == 1  # extended rcode 16, BADVERS
    assert answer.answers == []


def test_two_opt_records_get_formerr(dns_server: Harness) -> None:
    message = dns.Message(id=5, recDes=1)
    message.queries = [dns.Query("a.example")]
    message.additional = [dns._OPTHeader(), dns._OPTHeader()]
    assert dns_server.ask(message.toStr()).rCode == dns.EFORMAT


def big_answer(h: Harness, name: str, count: int = 40) -> None:
    h.authorize()
    h.send(query(name))
    sent, to = h.upstream_queries()[-1]
    h.upstream_answers(sent, to, [a_record(name, f"203.0.113.{i + 1}") for i in range(count)])


def test_udp_answers_over_the_clients_limit_are_truncated(dns_server: Harness) -> None:
    big_answer(dns_server, "big.example")  # 40 A records: about 680 bytes
    first = dns_server.replies_to(CLIENT)[-1]
    assert first.trunc and first.answers == []
    small = dns_server.ask(query("big.example"))
    assert small.trunc and small.answers == [] and small.queries == [dns.Query("big.example")]
    large = dns_server.ask(query("big.example", edns=4096))
    assert not large.trunc and len(large.answers) == 40 and len(opt_of(large)) == 1
    tight = dns_server.ask(query("big.example", edns=512))
    assert tight.trunc and len(opt_of(tight)) == 1
    # Over TCP, the whole answer.
    protocol, transport = tcp_connection(dns_server)
    protocol.dataReceived(framed(query("big.example")))
    [reply] = unframe(transport.value())
    assert len(parse(reply).answers) == 40 and not parse(reply).trunc


def test_a_truncated_upstream_answer_is_fetched_again_over_tcp(dns_server: Harness) -> None:
    dns_server.authorize()
    dns_server.send(query("huge.example"))
    sent, to = dns_server.upstream_queries()[0]
    dns_server.upstream_answers(sent, to, trunc=True)
    [(host, port, factory, timeout, _)] = dns_server.reactor.tcpClients
    assert (host, port) == to and timeout == 2
    protocol = factory.buildProtocol(IPv4Address("TCP", *to))
    from twisted.internet.testing import StringTransport

    transport = StringTransport()
    protocol.makeConnection(transport)
    [tcp_query] = [parse(m) for m in unframe(transport.value())]
    assert tcp_query.queries == [dns.Query("huge.example")]
    response = dns.Message(id=tcp_query.id, answer=1, recAv=1, maxSize=0)
    response.queries = tcp_query.queries
    response.answers = [a_record("huge.example", f"203.0.113.{i + 1}") for i in range(60)]
    protocol.dataReceived(framed(response.toStr()))
    assert transport.disconnecting
    assert len(dns_server.ask(query("huge.example", edns=1232)).answers) == 60


# --- TCP ---


def test_tcp_queries_are_answered_and_the_connection_kept(dns_server: Harness) -> None:
    protocol, transport = tcp_connection(dns_server)
    protocol.dataReceived(
        framed(query("a.example", id=1)) + framed(query("use-application-dns.net", id=2))[:5]
    )
    protocol.dataReceived(framed(query("use-application-dns.net", id=2))[5:])
    first, second = (parse(m) for m in unframe(transport.value()))
    assert first.id == 1 and addresses(first) == [PORTAL]
    assert second.id == 2 and second.rCode == dns.ENAME
    assert not transport.disconnecting


def test_tcp_garbage_closes_that_connection_only(dns_server: Harness) -> None:
    bad, bad_transport = tcp_connection(dns_server)
    good, good_transport = tcp_connection(dns_server)
    bad.dataReceived(b"\x00\x00")  # an empty message
    assert bad_transport.disconnecting
    good.dataReceived(framed(query("a.example")))
    assert addresses(parse(unframe(good_transport.value())[0])) == [PORTAL]
    assert not good_transport.disconnecting


def test_tcp_formerr_and_idle_timeout(dns_server: Harness) -> None:
    protocol, transport = tcp_connection(dns_server)
    protocol.dataReceived(framed(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07exam"))
    assert parse(unframe(transport.value())[0]).rCode == dns.EFORMAT
    assert not transport.disconnecting
    dns_server.reactor.advance(30)
    assert transport.disconnecting


def test_a_forwarded_answer_for_a_closed_tcp_connection_goes_nowhere(dns_server: Harness) -> None:
    dns_server.authorize()
    protocol, transport = tcp_connection(dns_server)
    protocol.dataReceived(framed(query("www.example.com")))
    protocol.connectionLost(None)
    sent, to = dns_server.upstream_queries()[0]
    dns_server.upstream_answers(sent, to, [a_record("www.example.com", "203.0.113.5")])
    assert transport.value() == b""


# --- the service ---


def test_listeners_on_every_address_udp_and_tcp() -> None:
    h = Harness(make_config(dns_overrides={"listen": "[192.0.2.1, 2001:db8::1]", "port": "5300"}))
    try:
        assert [(port, t.getHost().host) for port, _, t in h.reactor.udp] == [
            (5300, "192.0.2.1"),
            (5300, "2001:db8::1"),
        ]
        assert [(port, interface) for port, _, _, interface in h.reactor.tcpServers] == [
            (5300, "192.0.2.1"),
            (5300, "2001:db8::1"),
        ]
    finally:
        h.close()


def test_ports_are_opened_in_privileged_start_only_and_once() -> None:
    h = Harness()
    try:
        # The harness ran privilegedStartService, then startService: one of each.
        assert len([port for port, _, _ in h.reactor.udp if port]) == 1 and len(h.reactor.tcpServers) == 1
        reactor = UDPMemoryReactor()
        unprivileged = DNSService(h.config, reactor, h.table, h.neighbours)
        unprivileged.startService()  # as after twistd dropped root: nothing opened late
        assert reactor.udp == [] and reactor.tcpServers == []
        unprivileged.stopService()
    finally:
        h.close()


def test_stopping_fails_queries_in_flight_and_leaves_no_timers() -> None:
    h = Harness()
    h.authorize()
    h.send(query("www.example.com"))
    h.close()
    assert h.reactor.getDelayedCalls() == []
    assert h.replies_to(CLIENT)[-1].rCode == dns.ESERVER


def test_signed_in_queries_count_as_activity_on_both_paths(dns_server: Harness) -> None:
    dns_server.authorize()
    first = query("www.example.com")
    dns_server.send(first)
    sent, to = dns_server.upstream_queries()[-1]
    dns_server.upstream_answers(sent, to, [a_record("www.example.com", "203.0.113.5")])
    cached = query("www.example.com", id=2, edns=1232)
    dns_server.send(cached)  # the fast path
    answers = dns_server.server_transport.written
    assert dns_server.activity == [
        (CLIENT_MAC, len(first), len(answers[-2][0])),
        (CLIENT_MAC, len(cached), len(answers[-1][0])),
    ]
    # Not signed in, the portal, the canary, the walled garden: none counts.
    dns_server.send(query("www.example.com"), OTHER)
    dns_server.send(query("portal.example"))
    dns_server.send(query("use-application-dns.net"))
    assert len(dns_server.activity) == 2


def test_without_upstreams_signed_in_clients_get_servfail_at_once() -> None:
    h = Harness(make_config(dns_overrides={"upstream": "[]"}))
    h.authorize()
    assert h.ask(query("www.example.com")).rCode == dns.ESERVER
    assert h.reactor.getDelayedCalls() == []
    h.close()


def test_an_upstream_outage_is_logged_without_a_flood() -> None:
    from twisted.logger import globalLogPublisher

    warnings: list[dict] = []

    def observer(event: dict) -> None:
        if "no upstream answered" in event.get("log_format", ""):
            warnings.append(event)

    globalLogPublisher.addObserver(observer)
    h = Harness(make_config(dns_overrides={"upstream": "[]"}))
    try:
        h.authorize()
        for i in range(20):
            assert h.ask(query(f"n{i}.example")).rCode == dns.ESERVER
        h.reactor.advance(10)
        h.ask(query("later.example"))
    finally:
        globalLogPublisher.removeObserver(observer)
        h.close()
    assert [event["more"] for event in warnings] == [0, 19]


def test_upstream_queries_use_a_pool_of_sockets_each_retired_after_some_queries(dns_server: Harness) -> None:
    forwarder = dns_server.service.forwarder
    forwarder.pool_size, forwarder.queries_per_socket = 3, 2
    dns_server.authorize()
    for i in range(3):  # the pool grows to its size, one new socket per query
        dns_server.send(query(f"n{i}.example"))
    sockets = dns_server.upstream_sockets()
    assert len(sockets) == 3 and len({t.getHost().port for _, t in sockets}) == 3
    for i in range(3, 9):  # then each socket sends its second query and is retired
        dns_server.send(query(f"n{i}.example"))
        sent, to = dns_server.upstream_queries()[-1]
        dns_server.upstream_answers(sent, to, [a_record(f"n{i}.example", "203.0.113.1")])
    assert len(dns_server.upstream_sockets()) > 3
    # A retired socket closes once its last query is answered, not before.
    retired = [t for p, t in dns_server.upstream_sockets() if p in forwarder._retired]
    assert retired and all(t.listening for t in retired)
    for sent, to in dns_server.upstream_queries()[:3]:
        dns_server.upstream_answers(sent, to, [a_record(sent.queries[0].name.name.decode(), "203.0.113.2")])
    assert not any(t.listening for t in retired)
    assert len(dns_server.replies_to(CLIENT)) == 9

"""
Properties of portald's DNS, checked with generated inputs:

* the fast path and the full twisted.names path give the same answers, for
  generated queries and clients;
* no input (arbitrary bytes, mutated valid queries, over UDP or TCP) crashes
  anything or stops the server answering the next valid query correctly.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from twisted.names import dns

from portald.dns.request import Malformed, Unanswerable, decode_query
from tests.dns_fakes import (
    CLIENT,
    OTHER,
    OUTSIDER,
    PORTAL,
    STRANGER,
    Harness,
    a_record,
    addresses,
    framed,
    make_config,
    parse,
    query,
    tcp_connection,
    unframe,
)

CONFIGS = {False: make_config(), True: make_config(extra_portal="  address6: 2001:db8::1\n")}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

label = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=12
)
ordinary_name = st.lists(label, min_size=1, max_size=4).map(".".join)
special_name = st.sampled_from(
    [
        "use-application-dns.net",
        "x.use-application-dns.net",
        "portal.example",
        "pay.example",
        "a.b.pay.example",
    ]
)


@st.composite
def any_case(draw: Any, names: st.SearchStrategy[str]) -> str:
    name = draw(names)
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(name, flips, strict=True))


class Recorder:
    """Stands in for the UDP protocol on the full path: keeps what it is told to send."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def writeReply(self, reply: bytes, address: Any) -> None:
        self.sent.append(reply)


def record_view(record: Any) -> tuple:
    if record.type == dns.OPT:
        return (dns.OPT, record.name.name, record.cls, record.ttl)
    return (record.name.name.lower(), record.type, record.cls, record.ttl, record.payload)


def view(message: dns.Message) -> tuple:
    """Everything a client can see in an answer (names compared as DNS compares them)."""
    flags = (message.answer, message.opCode, message.auth, message.trunc, message.recDes, message.recAv)
    flags += (message.checkingDisabled, message.rCode)
    queries = [(q.name.name, q.type, q.cls) for q in message.queries]
    sections = [[record_view(r) for r in s] for s in (message.answers, message.authority, message.additional)]
    return (message.id, flags, queries, sections)


def full_path(h: Harness, data: bytes, source: tuple[str, int]) -> bytes:
    recorder = Recorder()
    h.service.factory.queryReceived(decode_query(data), recorder, source)
    [reply] = recorder.sent
    return reply


def prime_cache(h: Harness, name: str, qtype: int, records: int, ttl: int, rcode: int) -> None:
    """Resolve C{name} through the real forwarder, answered by the fake upstream."""
    key = (name.lower().encode(), qtype, dns.IN)
    results: list = []
    h.service.forwarder.resolve(key).addBoth(results.append)
    sent, to = h.upstream_queries()[-1]
    if rcode == dns.ENAME:
        soa = dns.Record_SOA(b"ns.example", b"h.example", minimum=ttl)
        authority = [dns.RRHeader(name.lower(), dns.SOA, dns.IN, ttl, soa)]
        h.upstream_answers(sent, to, rcode=dns.ENAME, authority=authority)
    else:
        cname = dns.RRHeader(name.lower(), dns.CNAME, dns.IN, ttl, dns.Record_CNAME(b"target.example.net"))
        answers = [cname] + [
            a_record("target.example.net", f"203.0.113.{i + 1}", ttl + i) for i in range(records)
        ]
        h.upstream_answers(sent, to, answers)
    assert len(results) == 1


@SETTINGS
@given(
    name=st.one_of(any_case(ordinary_name), any_case(ordinary_name), any_case(special_name)),
    qtype=st.sampled_from([dns.A, dns.A, dns.AAAA, dns.AAAA, dns.MX, dns.TXT, dns.ALL_RECORDS]),
    query_id=st.integers(0, 0xFFFF),
    recursion=st.booleans(),
    checking_disabled=st.booleans(),
    edns=st.one_of(st.none(), st.integers(0, 0xFFFF)),
    source=st.sampled_from([CLIENT, CLIENT, CLIENT, OTHER, STRANGER, OUTSIDER]),
    authorized=st.booleans(),
    ipv6_portal=st.booleans(),
    cached=st.sampled_from([False, True, True]),
    records=st.one_of(st.integers(0, 6), st.integers(0, 6), st.integers(0, 60)),
    ttl=st.integers(1, 7200),
    age=st.one_of(st.integers(0, 30), st.integers(0, 7200)),
    rcode=st.sampled_from([dns.OK, dns.ENAME]),
)
# Owners in the client's case on both paths, or the full path's answer was
# larger (no compression against the question) and truncated where the fast
# path's fit.
@example(
    name="00.0000.0000.00A", qtype=dns.A, query_id=0, recursion=False, checking_disabled=False, edns=None,
    source=CLIENT, authorized=True, ipv6_portal=False, cached=True, records=27, ttl=1, age=0, rcode=dns.OK,
)  # fmt: skip
def test_fast_path_gives_the_same_answers_as_the_full_path(
    name, qtype, query_id, recursion, checking_disabled, edns, source, authorized, ipv6_portal,
    cached, records, ttl, age, rcode,
) -> None:  # fmt: skip
    h = Harness(CONFIGS[ipv6_portal])
    try:
        if authorized:
            h.authorize()
        if cached:
            prime_cache(h, name, qtype, records, ttl, rcode)
            h.reactor.advance(age)
        message = dns.Message(id=query_id, recDes=int(recursion), maxSize=0)
        message.checkingDisabled = int(checking_disabled)
        message.queries = [dns.Query(name, qtype)]
        if edns is not None:
            message.additional = [dns._OPTHeader(udpPayloadSize=edns)]
        data = message.toStr()
        fast = h.service.factory.fast_path.answer(data, source[0])
        upstream_before = len(h.upstream_queries())
        slow = full_path(h, data, source) if fast is not None or source == OUTSIDER else None
        if fast is not None:
            event("fast path: " + ("cached" if parse(fast).recAv and not parse(fast).auth else "redirect"))
            assert view(parse(fast)) == view(parse(slow))
            # Again with another ID: the fast path's memo of this query answers.
            again = bytes([query_id >> 8 ^ 0xFF, query_id & 0xFF]) + data[2:]
            fast_again = h.service.factory.fast_path.answer(again, source[0])
            assert fast_again is not None
            assert view(parse(fast_again)) == view(parse(full_path(h, again, source)))
            # The fast path never needed anything the full path had to fetch.
            assert len(h.upstream_queries()) == upstream_before
        # It does take the common cases: a redirect, or a cached answer that fits.
        lower = name.lower()
        special = (
            lower.endswith("use-application-dns.net") or lower == "portal.example" or "pay.example" in lower
        )
        redirect = not special and not (authorized and source == CLIENT)
        if source != OUTSIDER and redirect:
            assert fast is not None
        if source == OUTSIDER:
            assert fast is None and parse(slow).rCode == dns.EREFUSED
        assert h.errors == []
    finally:
        h.close()


def assert_still_answering(h: Harness, authorized: bool = False) -> None:
    """A valid query gets its right answer: the portal, or (authorized) the upstream's."""
    answer = h.ask(query("after.example", id=0x7777), STRANGER)
    assert answer.id == 0x7777 and addresses(answer) == [PORTAL] and answer.answers[0].ttl == 5
    protocol, transport = tcp_connection(h, STRANGER)
    protocol.dataReceived(framed(query("after.example", id=0x7778)))
    [reply] = unframe(transport.value())
    assert addresses(parse(reply)) == [PORTAL]
    if authorized:
        h.send(query("forwarded-after.example", id=0x7779))
        sent, to = h.upstream_queries()[-1]
        h.upstream_answers(sent, to, [a_record("forwarded-after.example", "203.0.113.77")])
        answer = h.replies_to(CLIENT)[-1]
        assert answer.id == 0x7779 and addresses(answer) == ["203.0.113.77"]
    assert h.errors == []


def check_reply(data: bytes, replies: list[bytes]) -> None:
    """At most one reply, and only ever a response with the query's ID."""
    assert len(replies) <= 1
    for reply in replies:
        assert reply[:2] == data[:2] and reply[2] & 0x80


@SETTINGS
@given(
    data=st.binary(max_size=600),
    source=st.sampled_from([CLIENT, STRANGER, OUTSIDER]),
    authorized=st.booleans(),
)
def test_arbitrary_bytes_never_break_the_server(data: bytes, source, authorized: bool) -> None:
    h = Harness(CONFIGS[False])
    try:
        if authorized:
            h.authorize()
        check_reply(data, h.send(data, source))
        if source == OUTSIDER:
            assert all(parse(r).rCode == dns.EREFUSED for r in h.replies_to(OUTSIDER))
        assert_still_answering(h, authorized)
    finally:
        h.close()


@st.composite
def mutated_query(draw: Any) -> bytes:
    data = bytearray(
        query(
            draw(any_case(ordinary_name)),
            draw(st.sampled_from([dns.A, dns.AAAA, dns.MX])),
            id=draw(st.integers(0, 0xFFFF)),
            edns=draw(st.one_of(st.none(), st.integers(0, 4096))),
        )
    )
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[at] = draw(st.sampled_from([0x00, 0x3F, 0x40, 0xC0, 0xFF, 0x29]))
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at]
    return bytes(data)


@SETTINGS
@given(data=mutated_query(), authorized=st.booleans())
def test_mutated_queries_never_break_the_server(data: bytes, authorized: bool) -> None:
    h = Harness(CONFIGS[False])
    try:
        if authorized:
            h.authorize()
        replies = h.send(data)
        check_reply(data, replies)
        # What the full path makes of it, where it can be read at all.
        try:
            decode_query(data)
        except Unanswerable:
            assert replies == []
        except Malformed:
            assert [parse(r).rCode for r in replies] == [dns.EFORMAT]
        assert_still_answering(h, authorized)
    finally:
        h.close()


@SETTINGS
@given(chunks=st.lists(st.binary(max_size=80), max_size=6))
def test_tcp_garbage_never_breaks_the_server(chunks: list[bytes]) -> None:
    h = Harness(CONFIGS[False])
    try:
        protocol, transport = tcp_connection(h)
        for chunk in chunks:
            if transport.disconnecting:
                break
            protocol.dataReceived(chunk)
        assert_still_answering(h)
    finally:
        h.close()

"""The fast path's wire parser: what it takes, and everything it leaves to the full path."""

from __future__ import annotations

import pytest
from twisted.names import dns

from portald.dns.wire import SimpleQuery, parse_simple_query, udp_limit
from tests.dns_fakes import query


def test_a_plain_query_is_taken_with_its_spelling_kept() -> None:
    data = query("WWW.Example.COM", dns.AAAA, id=0xBEEF)
    parsed = parse_simple_query(data)
    assert isinstance(parsed, SimpleQuery)
    assert parsed.name == b"www.example.com" and parsed.qtype == dns.AAAA and parsed.edns_size is None
    assert parsed.question == data[12:] and b"WWW.Example.COM" not in parsed.question  # wire form
    assert parsed.flags & 0x0100  # RD


def test_an_edns_query_is_taken_with_its_size() -> None:
    parsed = parse_simple_query(query("a.example", edns=4096))
    assert parsed is not None and parsed.edns_size == 4096


@pytest.mark.parametrize(
    "data",
    [
        query("a.example", qclass=dns.CH),  # another class
        query("a.example", edns=1232, edns_version=1),  # an EDNS version it does not know
        query("a.example") + b"\x00",  # a byte after the end
        query("a.example")[:-1],  # cut short
        query("a.example", id=1)[:12] + b"\xc0\x0c\x00\x01\x00\x01",  # a compression pointer
        query("a.example")[:12] + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",  # a 64-byte label
        query(
            ".".join(["abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv"] * 5)
        ),  # a name over 255
        b"\x00\x01\x81\x00" + query("a.example")[4:],  # a response
        b"\x00\x01\x29\x00" + query("a.example")[4:],  # opcode 5 (UPDATE)
        b"\x00\x01\x03\x00" + query("a.example")[4:],  # TC set
        query("a.example")[:4] + b"\x00\x02" + query("a.example")[6:],  # says two questions
        b"\x00" * 16,  # too short
    ],
)
def test_anything_unusual_is_left_to_the_full_path(data: bytes) -> None:
    assert parse_simple_query(data) is None


def test_edns_options_must_fit_exactly() -> None:
    good = query("a.example", edns=1232)
    # Rewrite the OPT's RDLENGTH to 4 and add one empty option (code 10, length 0).
    with_option = good[:-2] + b"\x00\x04" + b"\x00\x0a\x00\x00"
    assert parse_simple_query(with_option) is not None
    overlong = good[:-2] + b"\x00\x04" + b"\x00\x0a\x00\x01"
    assert parse_simple_query(overlong) is None


def test_udp_limit() -> None:
    assert udp_limit(None) == 512
    assert udp_limit(0) == 512 and udp_limit(512) == 512
    assert udp_limit(1000) == 1000
    assert udp_limit(65535) == 1232

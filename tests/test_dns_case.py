"""0x20: questions go upstream in random letter case, and only an answer that echoes it exactly counts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.names import dns

from portald.dns.casing import CaseRandomiser
from tests.dns_fakes import CLIENT, Harness, a_record, addresses, make_config, query


@pytest.fixture
def dns_server() -> Iterator[Harness]:
    harness = Harness()
    harness.authorize()
    yield harness
    harness.close()
    assert harness.errors == []


def test_letters_change_case_by_the_random_bits_and_nothing_else_does() -> None:
    assert CaseRandomiser(lambda n: (1 << n) - 1).spell(b"www-1.example.") == b"WWW-1.EXAMPLE."
    assert CaseRandomiser(lambda n: 0b101).spell(b"abc") == b"AbC"
    assert CaseRandomiser(lambda n: 0).spell(b"") == b""


def test_a_forged_answer_in_the_wrong_case_is_ignored(dns_server: Harness) -> None:
    dns_server.send(query("www.example.com"))
    sent, to = dns_server.upstream_queries()[-1]
    spelled = sent.queries[0].name.name
    assert spelled.lower() == b"www.example.com"
    # Right port, right ID, right name but not as spelled: dropped.
    forged = dns.Message()
    forged.fromStr(sent.toStr())
    forged.queries = [dns.Query(spelled.swapcase(), dns.A, dns.IN)]
    dns_server.upstream_answers(forged, to, [a_record(spelled.swapcase().decode(), "198.51.100.66")])
    assert dns_server.replies_to(CLIENT) == []
    # The real answer, echoing the case sent, is taken; the client sees the name as it asked.
    dns_server.upstream_answers(sent, to, [a_record(spelled.decode(), "203.0.113.80")])
    (reply,) = dns_server.replies_to(CLIENT)
    assert addresses(reply) == ["203.0.113.80"]
    assert reply.answers[0].name.name == b"www.example.com"


def test_randomising_can_be_turned_off_for_an_upstream_that_loses_the_case() -> None:
    harness = Harness(make_config(dns_overrides={"randomise_case": "false"}))
    harness.authorize()
    try:
        harness.send(query("www.example.com"))
        sent, _ = harness.upstream_queries()[-1]
        assert sent.queries[0].name.name == b"www.example.com"
    finally:
        harness.close()

"""
The generated nftables text: golden files, plus the element commands.

The same texts are checked by the real ``nft`` in a namespace in
tests/test_firewall_nft_check.py.  To update a golden file after an intended
change: PORTALD_UPDATE_GOLDEN=1 make unit, then read the diff.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from portald.firewall import ruleset
from tests.firewall_plans import FULL_CLIENTS, FULL_LEARNED, FULL_LEASED, FULL_YAML, plan

GOLDEN = Path(__file__).parent / "golden"

CASES = {
    "minimal": lambda: ruleset.ruleset(plan()),
    "full": lambda: ruleset.ruleset(plan(FULL_YAML), FULL_CLIENTS, FULL_LEARNED, FULL_LEASED),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_ruleset_matches_golden_text(name: str) -> None:
    text = CASES[name]()
    path = GOLDEN / f"ruleset-{name}.nft"
    if os.environ.get("PORTALD_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text()


def test_ruleset_replaces_the_table_in_one_transaction() -> None:
    lines = ruleset.ruleset(plan()).splitlines()
    # Creating it empty first makes the delete succeed on a machine that has
    # no table yet; all three run in the same nft -f transaction.
    assert lines[:3] == ["table inet portald {}", "delete table inet portald", "table inet portald {"]


def test_minimal_ruleset_has_no_ipv6_dnat_and_no_elements() -> None:
    text = ruleset.ruleset(plan())
    assert "dnat ip6" not in text
    assert "elements" not in text
    assert 'iifname != "lan" return' in text
    assert "dnat ip to 192.0.2.1:53" in text and "dnat ip to 192.0.2.1:80" in text


def test_full_ruleset_uses_configured_ports_table_and_interface() -> None:
    text = ruleset.ruleset(plan(FULL_YAML), FULL_CLIENTS, FULL_LEARNED)
    assert text.startswith("table inet guests {}\n")
    assert "dnat ip to 192.0.2.1:5353" in text and "dnat ip to 192.0.2.1:8080" in text
    assert "dnat ip6 to [2001:db8::1]:5353" in text and "dnat ip6 to [2001:db8::1]:8080" in text
    assert 'iifname "wlan0" jump from_clients' in text
    # MACs normalised by the configuration, both spellings.
    assert "elements = { 02:00:00:00:aa:01,\n\t\t\t     02:00:00:00:aa:02 }" in text


def test_timeouts_are_whole_milliseconds_of_at_least_a_second() -> None:
    assert ruleset.nft_timeout(3600) == "3600000ms"
    assert ruleset.nft_timeout(0.2) == "1000ms"
    assert ruleset.nft_timeout(0) == "1000ms"
    assert ruleset.nft_timeout(60.0005) == "60001ms"


def test_grant_replaces_elements_whether_or_not_they_exist() -> None:
    lines = ruleset.grant(plan(), "02:00:00:00:00:01", ipaddress.ip_address("192.0.2.10"), 90)
    assert lines == [
        "add element inet portald authorized { 02:00:00:00:00:01 }",
        "delete element inet portald authorized { 02:00:00:00:00:01 }",
        "add element inet portald authorized { 02:00:00:00:00:01 timeout 90000ms }",
        "add element inet portald bytes_from_client { 02:00:00:00:00:01 }",
        "delete element inet portald bytes_from_client { 02:00:00:00:00:01 }",
        "add element inet portald bytes_from_client { 02:00:00:00:00:01 }",
        "add element inet portald bytes_to_client4 { 192.0.2.10 }",
        "delete element inet portald bytes_to_client4 { 192.0.2.10 }",
        "add element inet portald bytes_to_client4 { 192.0.2.10 }",
    ]


def test_grant_without_end_or_address() -> None:
    assert ruleset.grant(plan(), "02:00:00:00:00:01", None, None) == [
        "add element inet portald authorized { 02:00:00:00:00:01 }",
        "delete element inet portald authorized { 02:00:00:00:00:01 }",
        "add element inet portald authorized { 02:00:00:00:00:01 }",
        "add element inet portald bytes_from_client { 02:00:00:00:00:01 }",
        "delete element inet portald bytes_from_client { 02:00:00:00:00:01 }",
        "add element inet portald bytes_from_client { 02:00:00:00:00:01 }",
    ]


def test_extend_touches_only_the_timeout() -> None:
    assert ruleset.extend(plan(), "02:00:00:00:00:01", 7200) == [
        "add element inet portald authorized { 02:00:00:00:00:01 }",
        "delete element inet portald authorized { 02:00:00:00:00:01 }",
        "add element inet portald authorized { 02:00:00:00:00:01 timeout 7200000ms }",
    ]


def test_revoke_removes_even_an_element_that_already_timed_out() -> None:
    assert ruleset.revoke(plan(), "02:00:00:00:00:01", ipaddress.ip_address("2001:db8::20")) == [
        "add element inet portald authorized { 02:00:00:00:00:01 }",
        "delete element inet portald authorized { 02:00:00:00:00:01 }",
        "add element inet portald bytes_from_client { 02:00:00:00:00:01 }",
        "delete element inet portald bytes_from_client { 02:00:00:00:00:01 }",
        "add element inet portald bytes_to_client6 { 2001:db8::20 }",
        "delete element inet portald bytes_to_client6 { 2001:db8::20 }",
    ]


def test_learn_puts_each_family_in_its_set() -> None:
    assert ruleset.learn(plan(), ipaddress.ip_address("203.0.113.5"), 30)[-1] == (
        "add element inet portald walled_garden_dns4 { 203.0.113.5 timeout 30000ms }"
    )
    assert ruleset.learn(plan(), ipaddress.ip_address("2001:db8::5"), 30)[-1] == (
        "add element inet portald walled_garden_dns6 { 2001:db8::5 timeout 30000ms }"
    )


def test_remove_table_works_whether_or_not_it_exists() -> None:
    assert ruleset.remove_table(plan(FULL_YAML)) == "table inet guests {}\ndelete table inet guests\n"

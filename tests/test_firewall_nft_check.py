"""
Every text the firewall generates, accepted by the real nft: the whole
rulesets with --check in a throwaway namespace, and the element commands
applied for real on top of a loaded table.
"""

from __future__ import annotations

import ipaddress

import pytest

from portald.firewall import ruleset
from tests import firewall_netns as netns
from tests.firewall_plans import FULL_CLIENTS, FULL_LEARNED, FULL_LEASED, FULL_YAML, plan
from tests.test_firewall_ruleset import CASES

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("name", sorted(CASES))
def test_nft_accepts_the_generated_ruleset(name: str) -> None:
    with netns.namespace() as ns:
        result = netns.nft(ns, "--check", "-f", "-", input=CASES[name](), check=False)
        assert result.returncode == 0, result.stderr


def test_loading_twice_replaces_the_table_and_keeps_counters() -> None:
    full = plan(FULL_YAML)
    text = ruleset.ruleset(full, FULL_CLIENTS, FULL_LEARNED, FULL_LEASED)
    with netns.namespace() as ns:
        netns.nft(ns, "-f", "-", input=text)
        netns.nft(ns, "-f", "-", input=text)
        listing = netns.nft(ns, "list", "table", "inet", "guests").stdout
        assert listing.count("table inet guests") == 1
        assert "02:00:00:00:00:01 counter packets 7 bytes 700" in listing
        assert "192.0.2.10 counter packets 9 bytes 9000" in listing
        # The overlapping configured networks were merged, not refused.
        assert "203.0.113.64/26" in listing and "203.0.113.96/27" not in listing


def test_lease_commands_apply_in_any_kernel_state() -> None:
    p = plan()
    with netns.namespace() as ns:
        netns.nft(ns, "-f", "-", input=ruleset.ruleset(p, leased={"192.0.2.10": "02:00:00:00:00:01"}))
        batches = [
            ruleset.lease(p, "192.0.2.10", "02:00:00:00:00:01"),  # already there
            ruleset.unlease(p, "192.0.2.10", "02:00:00:00:00:01")
            + ruleset.lease(p, "192.0.2.10", "02:00:00:00:00:02"),  # the address moved
            ruleset.unlease(p, "192.0.2.11", "02:00:00:00:00:03"),  # never there
        ]
        for lines in batches:
            netns.nft(ns, "-f", "-", input="".join(line + "\n" for line in lines))
        listing = netns.nft(ns, "list", "table", "inet", "portald").stdout
        assert "192.0.2.10 . 02:00:00:00:00:02" in listing and "02:00:00:00:00:01" not in listing
        assert "192.0.2.11" not in listing


def test_element_commands_apply_in_any_kernel_state() -> None:
    p = plan()
    mac, ip6, ip4 = (
        "02:00:00:00:00:01",
        ipaddress.ip_address("2001:db8::20"),
        ipaddress.ip_address("192.0.2.10"),
    )
    with netns.namespace() as ns:
        netns.nft(ns, "-f", "-", input=ruleset.ruleset(p))
        batches = [
            ruleset.revoke(p, mac, ip4),  # revoking what is not there
            ruleset.grant(p, mac, ip4, 3600),
            ruleset.grant(p, mac, ip4, 3600),  # granting twice
            ruleset.extend(p, mac, 7200),
            ruleset.forget_counter(p, ip4) + ruleset.grant(p, mac, ip6, None),
            ruleset.learn(p, ipaddress.ip_address("203.0.113.5"), 30),
            ruleset.learn(p, ipaddress.ip_address("203.0.113.5"), 90),
            ruleset.learn(p, ipaddress.ip_address("2001:db8::5"), 30),
        ]
        for lines in batches:
            text = "".join(line + "\n" for line in lines)
            checked = netns.nft(ns, "--check", "-f", "-", input=text, check=False)
            assert checked.returncode == 0, (text, checked.stderr)
            netns.nft(ns, "-f", "-", input=text)
        listing = netns.nft(ns, "list", "table", "inet", "portald").stdout
        assert "elements = { 02:00:00:00:00:01 }" in listing  # no end: no timeout
        assert "2001:db8::20 counter packets 0 bytes 0" in listing
        assert "192.0.2.10" not in listing
        assert "203.0.113.5 timeout 1m30s" in listing
        netns.nft(ns, "-f", "-", input="".join(line + "\n" for line in ruleset.revoke(p, mac, ip6)))
        listing = netns.nft(ns, "list", "table", "inet", "portald").stdout
        assert mac not in listing and "2001:db8::20" not in listing
        netns.nft(ns, "-f", "-", input=ruleset.remove_table(p))
        netns.nft(ns, "-f", "-", input=ruleset.remove_table(p))  # and again: nothing to remove
        assert "portald" not in netns.nft(ns, "list", "tables").stdout

"""Learned walled-garden addresses on their own: what is opened, for how long, and what a load puts back."""

from __future__ import annotations

import ipaddress

from twisted.logger import capturedLogs

from portald.firewall.garden import LearnedGarden
from portald.firewall.ruleset import LearnedAddress

ip = ipaddress.ip_address


def garden() -> LearnedGarden:
    return LearnedGarden((ipaddress.ip_network("203.0.113.64/26"),), shortest=60, longest=3600)


def test_answers_are_opened_for_their_ttl_within_bounds() -> None:
    g = garden()
    assert g.learn(["203.0.113.1"], 600, now=0) == [LearnedAddress(ip("203.0.113.1"), 600)]
    assert g.learn(["203.0.113.2"], 1, now=0) == [LearnedAddress(ip("203.0.113.2"), 60)]
    assert g.learn(["2001:db8::1"], 10**6, now=0) == [LearnedAddress(ip("2001:db8::1"), 3600)]


def test_configured_networks_and_nonsense_are_left_out() -> None:
    g = garden()
    with capturedLogs() as events:
        assert g.learn(["203.0.113.70", "not-an-ip"], 600, now=0) == []
    assert [e["text"] for e in events] == ["not-an-ip"]


def test_a_renewal_is_sent_only_when_it_ends_a_second_later_or_more() -> None:
    g = garden()
    g.learn(["203.0.113.1"], 600, now=0)
    assert g.learn(["203.0.113.1"], 600, now=1) == []
    assert g.learn(["203.0.113.1"], 600, now=1.5) == [LearnedAddress(ip("203.0.113.1"), 600)]


def test_a_whole_load_gets_the_time_left_keeping_the_kernels_where_longer() -> None:
    g = garden()
    g.learn(["203.0.113.1", "203.0.113.2"], 300, now=0)
    g.kernel_had(
        {ip("203.0.113.1"): 500, ip("203.0.113.2"): 100, ip("203.0.113.3"): 50, ip("203.0.113.4"): 0}, 100
    )
    assert sorted(g.remaining(now=100), key=lambda a: a.address) == [
        LearnedAddress(ip("203.0.113.1"), 500),
        LearnedAddress(ip("203.0.113.2"), 200),
        LearnedAddress(ip("203.0.113.3"), 50),
    ]
    g.kernel_had({}, now=300)
    assert g.remaining(now=300) == [LearnedAddress(ip("203.0.113.1"), 300)]


def test_many_addresses_drop_the_expired_ones() -> None:
    g = garden()
    g.learn([str(ip("2001:db8::") + n) for n in range(4000)], 600, now=0)
    g.learn([f"198.51.100.{n}" for n in range(96)], 60, now=0)
    assert len(g.remaining(now=0)) == 4096
    g.learn(["192.0.2.1"], 600, now=100)
    assert len(g.remaining(now=100)) == 4001

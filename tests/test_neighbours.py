"""Neighbours: a change of a few leases updates the map as rebuilding it whole would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from portald.neighbours import Neighbours

ips = st.sampled_from([f"192.0.2.{n}" for n in range(1, 7)] + [f"2001:db8::{n}" for n in range(1, 4)])
macs = st.sampled_from([f"02:00:00:00:00:0{n}" for n in range(1, 5)])
maps = st.dictionaries(ips, macs, max_size=8)


def rebuilt(
    leased: dict[str, str], learned: dict[str, str]
) -> tuple[dict[str, str], dict[str, frozenset[str]]]:
    combined = {**learned, **leased}
    by_mac: dict[str, set[str]] = {}
    for ip, mac in combined.items():
        by_mac.setdefault(mac, set()).add(ip)
    return combined, {mac: frozenset(found) for mac, found in by_mac.items()}


@settings(max_examples=300)
@given(st.lists(st.tuples(st.booleans(), maps), min_size=1, max_size=8))
def test_updates_equal_a_map_rebuilt_whole(steps: list[tuple[bool, dict[str, str]]]) -> None:
    neighbours = Neighbours()
    leased: dict[str, str] = {}
    learned: dict[str, str] = {}
    for is_lease, mapping in steps:
        if is_lease:
            neighbours.replace(mapping)
            leased = mapping
        else:
            neighbours.learn6(mapping)
            learned = mapping
        combined, by_mac = rebuilt(leased, learned)
        assert {ip: neighbours.mac_for(ip) for ip in combined} == combined
        assert all(
            neighbours.mac_for(ip) is None for ip in learned.keys() | leased.keys() if ip not in combined
        )
        assert {mac: neighbours.ips_for(mac) for mac in by_mac} == by_mac
        assert neighbours._ips_by_mac == by_mac and len(neighbours) == len(combined)
        assert neighbours.snapshot() == leased

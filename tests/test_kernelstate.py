"""Reading nft's JSON listing: the compact decoder reads what a plain walk of the document reads."""

from __future__ import annotations

import ipaddress
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from portald.firewall.kernelstate import KernelState, UnreadableState, parse_kernel_state
from portald.firewall.ruleset import Counter


def plainly(document: dict) -> KernelState:
    """The listing walked as plain dicts, element by element (how it was read before the decoder's hook)."""
    sets = {item["set"]["name"]: item["set"] for item in document["nftables"] if "set" in item}

    def elements(name: str) -> list[tuple[object, dict]]:
        found = []
        for element in sets.get(name, {}).get("elem", ()):
            if isinstance(element, dict) and "elem" in element:
                found.append((element["elem"]["val"], element["elem"]))
            else:
                found.append((element, {}))
        return found

    def counter(attributes: dict) -> Counter:
        c = attributes.get("counter") or {}
        return Counter(int(c.get("packets", 0)), int(c.get("bytes", 0)))

    return KernelState(
        frozenset(str(v) for v, _ in elements("authorized")),
        {str(v): counter(a) for v, a in elements("bytes_from_client")},
        {str(v): counter(a) for name in ("bytes_to_client4", "bytes_to_client6") for v, a in elements(name)},
        {
            ipaddress.ip_address(v): float(a.get("expires", a.get("timeout", 0)))
            for name in ("walled_garden_dns4", "walled_garden_dns6")
            for v, a in elements(name)
        },
        {str(v["concat"][0]): str(v["concat"][1]) for v, _ in elements("seen6")},
    )


macs = st.integers(0, 2**16).map(lambda n: f"02:00:00:00:{n >> 8:02x}:{n & 255:02x}")
ip4s = st.integers(1, 254).map(lambda n: f"192.0.2.{n}")
ip6s = st.integers(1, 2**16).map(lambda n: f"2001:db8::{n:x}")
counters = st.builds(lambda p, b: {"packets": p, "bytes": b}, st.integers(0, 2**40), st.integers(0, 2**50))


def element(values: st.SearchStrategy, counted: bool) -> st.SearchStrategy:
    attributes = st.fixed_dictionaries(
        {},
        optional={
            "timeout": st.integers(0, 86400),
            "expires": st.integers(0, 86400),
            **({"counter": counters} if counted else {}),
        },
    )
    return st.one_of(values, st.builds(lambda v, a: {"elem": {"val": v, **a}}, values, attributes))


def a_set(name: str, values: st.SearchStrategy, counted: bool = False) -> st.SearchStrategy:
    return st.builds(
        lambda elems: {
            "set": {"family": "inet", "name": name, "table": "portald", "type": "x", "elem": elems}
        },
        st.lists(element(values, counted), max_size=6),
    )


listings = st.builds(
    lambda sets: {"nftables": [{"metainfo": {"json_schema_version": 1}}, *sets]},
    st.tuples(
        a_set("authorized", macs),
        a_set("bytes_from_client", macs, counted=True),
        a_set("bytes_to_client4", ip4s, counted=True),
        a_set("bytes_to_client6", ip6s, counted=True),
        a_set("walled_garden_dns4", ip4s),
        a_set("seen6", st.builds(lambda a, m: {"concat": [a, m]}, ip6s, macs)),
        st.just(
            {"rule": {"expr": [{"counter": {"packets": 1, "bytes": 2}}, {"match": {"right": {"val": 1}}}]}}
        ),
    ),
)


@settings(max_examples=300)
@given(listings)
def test_the_compact_decoder_reads_what_a_plain_walk_reads(document: dict) -> None:
    assert parse_kernel_state(json.dumps(document)) == plainly(document)


def test_garbage_is_unreadable_not_a_crash() -> None:
    for text in ("", "[]", '{"nftables": 1}', '{"nftables": [{"set": {"name": "authorized", "elem": 3}}]}',
                 '{"nftables": [{"set": {"name": "bytes_from_client", "elem": [{"elem": {"val": "m", "counter": {"packets": "x", "bytes": 1}}}]}}]}'):  # fmt: skip
        try:
            parse_kernel_state(text)
        except UnreadableState:
            continue
        raise AssertionError(f"{text!r} was read")

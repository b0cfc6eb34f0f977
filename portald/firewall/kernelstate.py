"""
Reading portald's table back from ``nft -j list table``: what the kernel
holds now (authorized MACs, counters, learned walled-garden addresses).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import attrs

from portald.config import IPAddress
from portald.firewall.ruleset import Counter


class UnreadableState(ValueError):
    """``nft -j`` printed something that is not portald's table."""


@attrs.frozen
class KernelState:
    authorized: frozenset[str] = frozenset()
    from_client: dict[str, Counter] = attrs.field(factory=dict)
    # By the address's text as nft prints it (canonical, like portald's own:
    # no parsing of thousands of addresses in the reactor).
    to_client: dict[str, Counter] = attrs.field(factory=dict)
    # Learned walled-garden address -> seconds until the kernel drops it.
    learned: dict[IPAddress, float] = attrs.field(factory=dict)
    # IPv6 address -> the MAC the kernel saw sending from it (C{seen6}).
    seen6: dict[str, str] = attrs.field(factory=dict)


def _elements(set_object: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(value, attributes) for each element of a set in nft's JSON."""
    result = []
    for element in set_object.get("elem", ()):
        if isinstance(element, dict) and "elem" in element:
            inner = element["elem"]
            result.append((str(inner["val"]), inner))
        else:
            result.append((str(element), {}))
    return result


def _counter(attributes: dict[str, Any]) -> Counter:
    counter = attributes.get("counter") or {}
    return Counter(int(counter.get("packets", 0)), int(counter.get("bytes", 0)))


def _pairs(set_object: dict[str, Any]) -> dict[str, str]:
    """A set of C{address . mac} as address -> MAC."""
    pairs = {}
    for element in set_object.get("elem", ()):
        value = element["elem"]["val"] if isinstance(element, dict) and "elem" in element else element
        address, mac = value["concat"]
        pairs[str(address)] = str(mac)
    return pairs


def parse_seen6(text: bytes | str) -> dict[str, str]:
    """
    IPv6 address -> MAC from ``nft -j list set ... seen6``.

    @raise UnreadableState: if C{text} is not that listing.
    """
    try:
        items = json.loads(text)["nftables"]
        sets = [item["set"] for item in items if isinstance(item, dict) and "set" in item]
        return _pairs(sets[0]) if sets else {}
    except (ValueError, KeyError, TypeError) as e:
        raise UnreadableState(f"not an nft listing of seen6: {e}") from None


def parse_kernel_state(text: bytes | str) -> KernelState:
    """
    @raise UnreadableState: if C{text} is not ``nft -j`` output.
    """
    try:
        document = json.loads(text)
        items = document["nftables"]
    except (ValueError, KeyError, TypeError) as e:
        raise UnreadableState(f"not nft JSON output: {e}") from None
    sets = {item["set"]["name"]: item["set"] for item in items if isinstance(item, dict) and "set" in item}
    try:
        authorized = frozenset(value for value, _ in _elements(sets.get("authorized", {})))
        from_client = {value: _counter(a) for value, a in _elements(sets.get("bytes_from_client", {}))}
        to_client = {
            value: _counter(a)
            for name in ("bytes_to_client4", "bytes_to_client6")
            for value, a in _elements(sets.get(name, {}))
        }
        learned = {
            ipaddress.ip_address(value): float(a.get("expires", a.get("timeout", 0)))
            for name in ("walled_garden_dns4", "walled_garden_dns6")
            for value, a in _elements(sets.get(name, {}))
        }
        seen6 = _pairs(sets.get("seen6", {}))
    except (ValueError, KeyError, TypeError) as e:
        raise UnreadableState(f"unexpected element in nft JSON output: {e}") from None
    return KernelState(authorized, from_client, to_client, learned, seen6)

"""
0x20 (draft-vixie-dnsext-dns0x20): the letters of a name sent upstream in a
random mix of cases.  Resolvers copy the question as they got it, so an
off-path forger must now guess the case of every letter as well as the query
ID and the source port.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

_LETTERS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class CaseRandomiser:
    """Spells names in random case, from C{random_bits(n)} (an int of C{n} random bits)."""

    def __init__(self, random_bits: Callable[[int], int] = secrets.randbits) -> None:
        self._random_bits = random_bits

    def spell(self, name: bytes) -> bytes:
        bits = self._random_bits(len(name)) if name else 0
        spelled = bytearray(name)
        for i, byte in enumerate(spelled):
            if byte in _LETTERS and (bits >> i) & 1:
                spelled[i] = byte ^ 0x20
        return bytes(spelled)


def as_asked(name: bytes) -> bytes:
    """Unchanged: for an upstream that does not keep the case of the question."""
    return name

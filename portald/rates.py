"""Rates in bit/s as people write them (``10Mbit``, ``500kbit``) and as staff read them."""

from __future__ import annotations

import re

_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit)?", re.IGNORECASE)
_RATE_UNITS = {None: 1, "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
# What tc's HTB can do: from 8 kbit/s to 100 Gbit/s.
LEAST_RATE, MOST_RATE = 8_000, 100 * 10**9


def rate_bits(text: str) -> int | None:
    """A rate such as ``10Mbit`` or ``500kbit`` in bit/s (0: unlimited); C{None} if it is not one."""
    match = _RATE.fullmatch(text.strip())
    if match is None:
        return None
    unit = match.group(2).lower() if match.group(2) else None
    return int(float(match.group(1)) * _RATE_UNITS[unit])


def rate_in_range(bits: int | None) -> bool:
    """Whether C{bits} is a rate the kernel can shape (0 is unlimited)."""
    return bits is not None and (bits == 0 or LEAST_RATE <= bits <= MOST_RATE)


def rate_text(bits: int | None) -> str:
    """``4 Mbit/s``, ``500 kbit/s``, ``unlimited``; ``-`` for none."""
    if bits is None:
        return "-"
    if bits == 0:
        return "unlimited"
    for unit, size in (("Gbit/s", 10**9), ("Mbit/s", 10**6), ("kbit/s", 10**3)):
        if bits >= size:
            value = bits / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{bits} bit/s"

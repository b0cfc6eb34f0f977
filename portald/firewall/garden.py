"""
Walled-garden addresses learned from portald's DNS answers, each open until
its kernel timeout ends.

The kernel drops a learned address by itself when its timeout ends; this
remembers the ends so that a repeated answer is not sent again, and so that
a whole load puts every address back with the time it has left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from twisted.logger import Logger

from portald.config import IPAddress, IPNetwork
from portald.firewall.ruleset import LearnedAddress, parse_address

log = Logger()

# Beyond this many, expired ends are dropped (the kernel has dropped them already).
_TIDY_ABOVE = 4096


class LearnedGarden:
    """Learned addresses and when (seconds on the backend's clock) each one's timeout ends."""

    def __init__(self, configured: Sequence[IPNetwork], shortest: float, longest: float) -> None:
        self.configured = configured
        self._shortest = shortest
        self._longest = longest
        self._ends: dict[IPAddress, float] = {}

    def learn(self, addresses: Sequence[str], ttl: float, now: float) -> list[LearnedAddress]:
        """
        A walled-garden name resolved to C{addresses} for C{ttl} seconds: the
        ones to open, and for how long (the TTL within the configured bounds).
        """
        timeout = min(max(float(ttl), self._shortest), self._longest)
        learned = []
        for text in addresses:
            address = parse_address(str(text))
            if address is None:
                log.warn("walled garden: ignoring {text!r}, not an IP address", text=text)
                continue
            if any(address in network for network in self.configured):
                continue  # Already open through firewall.walled_garden.
            # A renewal within a second of the current end is not worth a change.
            if self._ends.get(address, 0.0) >= now + timeout - 1.0:
                continue
            self._ends[address] = now + timeout
            learned.append(LearnedAddress(address, timeout))
        if len(self._ends) > _TIDY_ABOVE:
            self._forget_expired(now)
        return learned

    def kernel_had(self, remaining: Mapping[IPAddress, float], now: float) -> None:
        """Before a whole load: the kernel's own timeouts (seconds left) where they end later."""
        for address, left in remaining.items():
            if left > 0 and self._ends.get(address, 0.0) < now + left:
                self._ends[address] = now + left
        self._forget_expired(now)

    def remaining(self, now: float) -> list[LearnedAddress]:
        """Every learned address with the seconds it has left, for a whole load."""
        return [LearnedAddress(address, end - now) for address, end in self._ends.items()]

    def _forget_expired(self, now: float) -> None:
        self._ends = {address: end for address, end in self._ends.items() if end > now}

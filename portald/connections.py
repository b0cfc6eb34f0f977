"""Open connections counted by client address, within a per-client and a total bound."""

from __future__ import annotations

from collections import Counter


class ConnectionCounts:
    """
    How many connections each client has open, and in all.  A listener's
    factory asks L{refusal} before it builds a protocol, and the protocol
    reports L{opened} and L{closed}.  The limit names are config keys (what
    L{portald.refusals.Refusals} counts under).
    """

    def __init__(self, total_limit: tuple[str, int], per_client_limit: tuple[str, int]) -> None:
        self._total_key, self._total = total_limit
        self._per_client_key, self._per_client = per_client_limit
        self.by_client: Counter[str] = Counter()
        self.total = 0

    def refusal(self, client: str) -> str | None:
        """The limit a new connection from C{client} would exceed, or C{None}."""
        if self.total >= self._total:
            return self._total_key
        if self.by_client[client] >= self._per_client:
            return self._per_client_key
        return None

    def opened(self, client: str) -> None:
        self.by_client[client] += 1
        self.total += 1

    def closed(self, client: str) -> None:
        self.total -= 1
        left = self.by_client[client] - 1
        if left > 0:
            self.by_client[client] = left
        else:
            del self.by_client[client]

"""
Whose downloads each address's counter holds.

The kernel counts uploads by MAC and downloads by client address, one
counter per address.  A device keeps its MAC, but its lease may move, and
its old address may be handed on to another device that signs in there.
L{CounterOwnership} gives every counted address one owner, the signed-in
device whose downloads it holds, and remembers each device's last reading so
that a move carries it on.

A device's other IPv6 addresses (SLAAC and privacy addresses, which it
makes itself) are counted too: the kernel counts every IPv6 address that
answers go to once a signed-in device sent from it, and learns which
device sends from which (C{seen6});
L{IPv6Downloads} adds those counters up per device.

Pure bookkeeping, no reactor and no I/O: it answers which counters to
create, carry on or forget, and the backend turns that into nft commands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import attrs

from portald.config import IPAddress
from portald.firewall.ruleset import Counter, parse_address
from portald.table import Session


@attrs.frozen
class SignIn:
    """A sign-in's counters: the address now counted, and an old one nobody owns any more."""

    counted: IPAddress | None
    forget: IPAddress | None


@attrs.frozen
class SignOut:
    """Where a device that signed out was counted, and its counter there if it was its own."""

    address: str
    counter: IPAddress | None


@attrs.frozen
class Move:
    """A signed-in device is counted at another address from now on."""

    mac: str
    old: str
    new: str
    counter: IPAddress
    # Where the new counter starts: the old one's last reading (no reset for the quota).
    start: Counter | None
    # The old address's counter, when nobody else owns it.
    forget: IPAddress | None


def _new_address(session: Session, counted: str, now_at: frozenset[str]) -> str:
    """Back to its sign-in address if it has it, else one of the same family."""
    if session.ip in now_at:
        return session.ip
    v6 = ":" in counted
    return min(now_at, key=lambda address: ((":" in address) != v6, address))


@attrs.define
class _Tally:
    """One signed-in device's IPv6 counters as last read."""

    last: dict[str, int] = attrs.field(factory=dict)
    # What addresses whose counters started again had counted before.
    earlier: int = 0

    def read(self, address: str, value: int) -> None:
        last = self.last.get(address, 0)
        if value < last:
            # The kernel forgot the address (an hour unused) and counts it afresh.
            self.earlier += last
        self.last[address] = value

    def total(self) -> int:
        return self.earlier + sum(self.last.values())


class IPv6Downloads:
    """
    What each signed-in device received at the IPv6 addresses the kernel saw
    it send from.  The kernel counts an address only once a signed-in device
    sent from it (C{signed_in6}), and forgets it when the device signs out,
    so every count is the session's.  A reading never goes down: an address
    the device stopped using keeps what it counted.
    """

    def __init__(self) -> None:
        self._tallies: dict[str, _Tally] = {}

    def signed_in(self, mac: str) -> None:
        self._tallies[mac] = _Tally()

    def signed_out(self, mac: str) -> None:
        self._tallies.pop(mac, None)

    def keep_only(self, macs: Iterable[str]) -> None:
        """After a whole load: the signed-in devices now (the kernel kept their counters)."""
        live = set(macs)
        self._tallies = {mac: t for mac, t in self._tallies.items() if mac in live}
        for mac in live - self._tallies.keys():
            self._tallies[mac] = _Tally()

    def reading(self, mac: str, addresses: Iterable[str], counters: Mapping[str, Counter]) -> int:
        """C{mac}'s IPv6 downloads from the C{counters} of C{addresses} (those it sent from)."""
        tally = self._tallies.get(mac)
        if tally is None:
            return 0
        for address in addresses:
            counter = counters.get(address)
            if counter is not None:
                tally.read(address, counter.bytes)
        return tally.total()


def by_device(seen6: Mapping[str, str]) -> dict[str, list[str]]:
    """The kernel's IPv6 address -> MAC map, as MAC -> its addresses."""
    addresses: dict[str, list[str]] = {}
    for address, mac in seen6.items():
        addresses.setdefault(mac, []).append(address)
    return addresses


class CounterOwnership:
    """The signed-in devices the kernel was told of, and the owner of each counted address."""

    def __init__(self) -> None:
        # MAC -> its session as the kernel was last told it.
        self._sessions: dict[str, Session] = {}
        # MAC -> the address its downloads are counted at, when that is no
        # longer its sign-in address (the lease moved).
        self._moved: dict[str, str] = {}
        # Address -> the signed-in MAC whose downloads its counter holds.
        self._owner: dict[str, str] = {}
        # MAC -> its download counter as last read (carried to a new address).
        self._downloaded: dict[str, Counter] = {}
        self._ipv6 = IPv6Downloads()

    # --- the table's changes ---

    def signed_in(self, session: Session) -> SignIn:
        """C{session} began (maybe again, at another address): it owns its address's counter."""
        previous = self._sessions.get(session.mac)
        before = self._counted_at(previous) if previous is not None else None
        if before is not None:
            self._let_go(before, session.mac)
        self._moved.pop(session.mac, None)
        self._downloaded.pop(session.mac, None)
        self._sessions[session.mac] = session
        self._ipv6.signed_in(session.mac)
        forget = None
        if before is not None and before != session.ip and before not in self._owner:
            forget = parse_address(before)
        counted = parse_address(session.ip)
        if counted is not None:
            self._owner[session.ip] = session.mac
        return SignIn(counted=counted, forget=forget)

    def extended(self, session: Session) -> None:
        self._sessions[session.mac] = session

    def signed_out(self, session: Session) -> SignOut:
        """C{session} ended.  An address another signed-in device now has keeps its counter."""
        self._sessions.pop(session.mac, None)
        self._downloaded.pop(session.mac, None)
        self._ipv6.signed_out(session.mac)
        address = self._moved.pop(session.mac, session.ip)
        counter = parse_address(address) if self._let_go(address, session.mac) else None
        return SignOut(address=address, counter=counter)

    # --- devices that move ---

    def moved(self, ips_for: Callable[[str], frozenset[str]]) -> list[Move]:
        """The leases changed (C{ips_for(mac)}: a device's addresses now): who is counted elsewhere."""
        moves = []
        for mac, session in self._sessions.items():
            counted = self._counted_at(session)
            now_at = ips_for(mac)
            if not now_at or (counted in now_at and self._owner.get(counted) == mac):
                continue  # still there, or nowhere (its lease ended): left as it is
            new = _new_address(session, counted, now_at)
            counter = parse_address(new)
            if counter is None:
                continue
            old = parse_address(counted)
            forget = old if self._let_go(counted, mac) and old is not None else None
            moves.append(Move(mac, counted, new, counter, self._downloaded.get(mac), forget))
            self._owner[new] = mac
            if new == session.ip:
                self._moved.pop(mac, None)
            else:
                self._moved[mac] = new
        return moves

    # --- the kernel's counters ---

    def readings(
        self,
        from_client: Mapping[str, Counter],
        to_client: Mapping[str, Counter],
        seen6: Mapping[str, str] | None = None,
    ) -> dict:
        """
        Each signed-in device's (bytes sent, bytes received) from the kernel's
        counters by MAC and by address, its other IPv6 addresses (C{seen6})
        included.  A device not in the kernel yet is left out.
        """
        addresses6 = by_device(seen6 or {})
        result = {}
        for mac, session in self._sessions.items():
            sent = from_client.get(mac)
            if sent is None:
                continue  # Not in the kernel yet.
            at = self._counted_at(session)
            # An address's counter is its owner's alone.
            received = to_client.get(at) if self._owner.get(at) == mac else None
            if received is None:
                # Not counted anywhere right now (its address taken, or its
                # new counter not in the kernel yet): its last reading, so
                # that the reading never goes down (which the limits would
                # take for a reset, and count twice).
                received = self._downloaded.get(mac)
            else:
                self._downloaded[mac] = received
            others = [address for address in addresses6.get(mac, ()) if address != at]
            received6 = self._ipv6.reading(mac, others, to_client)
            result[mac] = (sent.bytes, (received.bytes if received is not None else 0) + received6)
        return result

    # --- whole loads ---

    def counted_for_load(self, sessions: list[Session]) -> list[tuple[Session, IPAddress | None]]:
        """
        For a whole load of C{sessions}: each one with the address of its
        download counter, if it owns one (a set holds each address once).
        """
        self._claim_unowned(sessions)
        counted = []
        for session in sessions:
            at = self._counted_at(session)
            counted.append((session, parse_address(at) if self._owner.get(at) == session.mac else None))
        return counted

    def loaded(self, sessions: Iterable[Session]) -> None:
        """A whole load succeeded; C{sessions} are the table's now (a login made meanwhile included)."""
        self._sessions = {s.mac: s for s in sessions}
        self._moved = {mac: ip for mac, ip in self._moved.items() if mac in self._sessions}
        self._ipv6.keep_only(self._sessions)
        self._claim_unowned(list(self._sessions.values()))

    # --- ownership ---

    def _counted_at(self, session: Session) -> str:
        """The address a signed-in device's downloads are counted at."""
        return self._moved.get(session.mac, session.ip)

    def _claim_unowned(self, sessions: list[Session]) -> None:
        """Give each address without a signed-in owner to the latest session counted there."""
        live = {s.mac for s in sessions}
        self._owner = {address: mac for address, mac in self._owner.items() if mac in live}
        for session in sorted(sessions, key=lambda s: s.started, reverse=True):
            self._owner.setdefault(self._counted_at(session), session.mac)

    def _let_go(self, address: str, mac: str) -> bool:
        """C{mac} stops counting at C{address}; whether that address was its own."""
        if self._owner.get(address) != mac:
            return False
        del self._owner[address]
        return True

"""
What staff can ask of a running portald and do to it: the one
implementation under ``portald-ctl`` and (later) the admin page.

Every operation asks the table or changes it through its own commands;
answers are plain JSON values, and a request that cannot be done raises
L{Refused} with the sentence to show, having changed nothing.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import attrs
from twisted.internet.interfaces import IReactorTime

from portald import __version__
from portald.addresses import InvalidMAC, normalise_ip, normalise_mac
from portald.leases.model import Lease
from portald.limits import Usage
from portald.neighbours import Neighbours
from portald.rates import rate_in_range
from portald.table import AuthorizationTable, EndReason, JournalRefused, Session

# The method recorded on sessions staff start.
STAFF = "staff"
# Notes are shown in tables and logs: one line, not a document.
MAX_NOTE = 200


class Refused(Exception):
    """A request that was not done; the message says why, and nothing changed."""

    def __init__(self, message: str, *, status: int = 409) -> None:
        super().__init__(message)
        self.message = message
        # The HTTP status the API answers with: 400 malformed, 404 unknown, 409 not now.
        self.status = status


@attrs.frozen
class EncodedJSON:
    """An answer already encoded as JSON (a long list, encoded a chunk per turn of the reactor)."""

    data: bytes


@attrs.frozen
class Sources:
    """Where the operations read what the table does not hold."""

    leases: Callable[[], Mapping[str, Lease]]
    usage: Callable[[str], Usage | None]
    # Each subsystem's health, by name, as JSON values.
    health: Sequence[tuple[str, Callable[[], object]]] = ()
    # A session's rates in bit/s (0 unlimited), as the shaper applies them; None when portald does not shape.
    rates: Callable[[Session], tuple[int, int]] | None = None


class Operations:
    """The staff's operations on one portald (see the module's docstring)."""

    def __init__(
        self,
        table: AuthorizationTable,
        neighbours: Neighbours,
        clock: IReactorTime,
        sources: Sources,
        *,
        session_timeout: float,
    ) -> None:
        self._table = table
        self._neighbours = neighbours
        self._clock = clock
        self._sources = sources
        # The default length of a staff sign-in (a reload may change it).
        self.session_timeout = session_timeout
        self._started = clock.seconds()
        # Staff's sign-ins, counted as the portal counts guests' (method, result).
        self.logins: Counter[tuple[str, str]] = Counter()

    # --- finding the device ---

    def device(self, text: str) -> str:
        """
        The MAC that C{text} (a MAC, or an IP with a lease) names.

        @raise Refused: text that is neither, or an IP no device holds.
        """
        try:
            return normalise_mac(text)
        except InvalidMAC:
            pass
        try:
            ip = normalise_ip(text)
        except ValueError:
            raise Refused(f"not a MAC or IP address: {text!r}", status=400) from None
        mac = self._neighbours.mac_for(ip)
        if mac is None:
            raise Refused(f"no device has the address {ip} (no DHCP lease for it)", status=404)
        return mac

    def _known_device(self, text: str) -> tuple[str, str]:
        """The MAC and an address of a device portald can see (a lease or a session)."""
        mac = self.device(text)
        session = self._table.session(mac)
        ips = sorted(self._neighbours.ips_for(mac), key=lambda ip: (":" in ip, ip))
        if ips:
            return mac, ips[0]
        if session is not None:
            return mac, session.ip
        raise Refused(f"no device with the MAC {mac} is known (it has no DHCP lease)", status=404)

    def _signed_in(self, text: str) -> Session:
        mac = self.device(text)
        session = self._table.session(mac)
        if session is None:
            raise Refused(f"{mac} is not signed in", status=404)
        return session

    # --- questions ---

    def status(self) -> dict[str, object]:
        now = self._clock.seconds()
        sessions = list(self._table.sessions())
        by_method = Counter(session.method for session in sessions)
        return {
            "version": __version__,
            "started": self._started,
            "uptime_seconds": round(now - self._started, 3),
            "devices_known": len(self._known_macs()),
            "signed_in": len(sessions),
            "by_method": dict(sorted(by_method.items())),
            "always_allowed": len(self._table.allowed()),
            "health": {name: read() for name, read in self._sources.health},
        }

    def clients(self, *, every_device: bool = False) -> list[dict[str, object]]:
        """One row per signed-in device; with C{every_device}, every device portald knows of."""
        now = self._clock.seconds()
        leases_by_mac = {lease.mac: lease for lease in self._sources.leases().values()}
        macs = {session.mac for session in self._table.sessions()}
        if every_device:
            macs |= self._known_macs()
        rows = [self._row(mac, leases_by_mac.get(mac), now) for mac in macs]
        return sorted(rows, key=lambda row: (not row["signed_in"], str(row["ip"]), str(row["mac"])))

    def allowed(self) -> list[dict[str, object]]:
        return [attrs.asdict(device) for device in self._table.allowed()]

    def _known_macs(self) -> set[str]:
        known = {lease.mac for lease in self._sources.leases().values()}
        known |= set(self._neighbours.snapshot().values())
        known |= {session.mac for session in self._table.sessions()}
        known |= {device.mac for device in self._table.allowed()}
        return known

    def _row(self, mac: str, lease: Lease | None, now: float) -> dict[str, object]:
        session = self._table.session(mac)
        usage = self._sources.usage(mac) if session is not None else None
        up, down = usage.bytes if usage is not None else (None, None)
        quota = session.quota_bytes if session is not None else None
        ips = sorted(self._neighbours.ips_for(mac), key=lambda ip: (":" in ip, ip))
        ip = ips[0] if ips else (session.ip if session is not None else None)
        if session is not None:
            method: str | None = session.method
        elif self._table.may_pass(mac):
            method = "allowed"
        else:
            method = None
        remaining = session.remaining(now) if session is not None else None
        rates = self._sources.rates(session) if session is not None and self._sources.rates else (None, None)
        return {
            "mac": mac,
            "ip": ip,
            "hostname": lease.hostname if lease is not None else None,
            "signed_in": session is not None,
            "method": method,
            "started": session.started if session is not None else None,
            "seconds_remaining": None if remaining is None else round(remaining),
            "idle_seconds": None if usage is None else round(max(0.0, now - usage.last_active)),
            "bytes_up": up,
            "bytes_down": down,
            "quota_remaining": None if not quota or up is None or down is None else max(0, quota - up - down),
            "rate_down": rates[0],
            "rate_up": rates[1],
        }

    # --- commands ---

    def authorize(
        self, text: str, duration: float | None = None, note: str | None = None
    ) -> dict[str, object]:
        """Sign a device in as staff, for C{duration} seconds (default: a session's length)."""
        mac, ip = self._known_device(text)
        seconds = self.session_timeout if duration is None else _positive(duration, "duration")
        try:
            session = self._table.authorize(mac, ip=ip, method=STAFF, duration=seconds, note=_note(note))
        except JournalRefused as e:
            self.logins[(STAFF, "not_recorded")] += 1
            raise Refused(f"the session database did not record it: {e}", status=503) from None
        self.logins[(STAFF, "ok")] += 1
        return self._row(session.mac, None, self._clock.seconds()) | {"note": session.note}

    def deauthorize(self, text: str) -> dict[str, object]:
        """End a device's session, "ended by staff" (the portal tells the guest so)."""
        session = self._signed_in(text)
        self._table.deauthorize(session.mac, EndReason.ADMIN)
        return {"mac": session.mac, "ip": session.ip, "ended": "ended by staff"}

    def extend(self, text: str, duration: float) -> dict[str, object]:
        session = self._signed_in(text)
        if session.expires is None:
            raise Refused(f"{session.mac}'s session has no end to move")
        try:
            extended = self._table.extend(session.mac, _positive(duration, "duration"))
        except JournalRefused as e:
            raise Refused(f"the session database did not record it: {e}", status=503) from None
        assert extended is not None
        return self._row(extended.mac, None, self._clock.seconds())

    def limit(self, text: str, remaining: float) -> dict[str, object]:
        """End a device's session C{remaining} seconds from now, sooner or later than it would have."""
        session = self._signed_in(text)
        if session.expires is None:
            raise Refused(f"{session.mac}'s session has no end to move")
        now = self._clock.seconds()
        try:
            changed = self._table.extend(
                session.mac, now + _positive(remaining, "remaining") - session.expires
            )
        except JournalRefused as e:
            raise Refused(f"the session database did not record it: {e}", status=503) from None
        assert changed is not None
        return self._row(changed.mac, None, now)

    def rate(self, text: str, down: int | None, up: int | None) -> dict[str, object]:
        """
        Give a signed-in device its own rates in bit/s (0 unlimited; C{None}:
        back to its way in's), in force in the kernel within a second.
        """
        if self._sources.rates is None:
            raise Refused("portald does not shape: set shaping.uplink (the interface towards the internet)")
        session = self._signed_in(text)
        for what, value in (("down", down), ("up", up)):
            if value is not None and not rate_in_range(value):
                raise Refused(
                    f"{what}: expected a rate such as 4Mbit, 0 for unlimited, or default", status=400
                )
        try:
            self._table.set_rates(session.mac, down, up)
        except JournalRefused as e:
            raise Refused(f"the session database did not record it: {e}", status=503) from None
        return self._row(session.mac, None, self._clock.seconds())

    def allow(self, text: str, note: str | None = None) -> dict[str, object]:
        mac = _mac(text)
        try:
            device = self._table.allow(mac, _note(note))
        except JournalRefused as e:
            raise Refused(f"the session database did not record it: {e}", status=503) from None
        return attrs.asdict(device)

    def disallow(self, text: str) -> dict[str, object]:
        mac = _mac(text)
        listed = {device.mac: device for device in self._table.allowed()}.get(mac)
        if listed is None:
            raise Refused(f"{mac} is not on the always-allowed list", status=404)
        if listed.source != "staff":
            raise Refused(f"{mac} is in firewall.allowed_macs: take it out of the configuration file")
        try:
            self._table.disallow(mac)
        except JournalRefused as e:
            raise Refused(f"the session database did not record it: {e}", status=503) from None
        return attrs.asdict(listed)


def _mac(text: str) -> str:
    try:
        return normalise_mac(text)
    except InvalidMAC:
        raise Refused(
            f"not a MAC address: {text!r} (expected one such as 02:00:00:aa:bb:cc)", status=400
        ) from None


def _positive(seconds: float, what: str) -> float:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 < seconds < 10 * 365 * 86400
    ):
        raise Refused(f"{what}: expected a duration above zero, such as 30m, 2h or 1d", status=400)
    return float(seconds)


def _note(note: str | None) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str) or len(note) > MAX_NOTE or any(ord(c) < 32 for c in note):
        raise Refused(f"note: expected one line of at most {MAX_NOTE} characters", status=400)
    return note or None


def store_health(path: os.PathLike[str] | str, longest_write: Callable[[], float]) -> Callable[[], object]:
    """The store's health: whether its file is writable, and its slowest write."""

    def health() -> dict[str, object]:
        return {
            "path": str(path),
            "writable": os.access(path, os.W_OK),
            "longest_write_ms": round(longest_write() * 1000, 1),
        }

    return health

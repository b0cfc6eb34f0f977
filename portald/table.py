"""
Who may pass: the one authorization table (MAC -> Session), the centre of
portald.  Devices are found behind an IP through L{portald.neighbours}.

The table knows nothing about DNS, HTTP or nftables.  Everything else either
asks it (DNS, web) or observes it (firewall, store, metrics) through
L{IAuthorizationObserver}.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Interface, implementer

from portald.addresses import normalise_mac
from portald.deadlines import Deadlines

log = Logger()


class EndReason(enum.Enum):
    """Why a session ended."""

    LOGOUT = "logout"
    EXPIRED = "expired"
    IDLE = "idle"
    QUOTA = "quota"
    ADMIN = "admin"
    REPLACED = "replaced"
    # Its voucher was withdrawn by staff, or signed in on one device too many.
    VOUCHER_REVOKED = "voucher-revoked"
    VOUCHER_ELSEWHERE = "voucher-elsewhere"


@attrs.frozen
class Session:
    """
    One authorized client: who, how, when, and within which limits.

    Times are seconds on the table's clock (the reactor's, in production).
    """

    mac: str
    ip: str
    method: str
    started: float
    expires: float | None
    user: str | None = None
    idle_timeout: float | None = None
    quota_bytes: int | None = None
    # What staff wrote when they let the device in (portald-ctl auth --note).
    note: str | None = None
    # This session's own rates in bit/s (a voucher's, RADIUS', portald-ctl
    # rate's; 0 unlimited); None: its way in's, from the configuration.
    rate_down: int | None = None
    rate_up: int | None = None

    def remaining(self, now: float) -> float | None:
        """Seconds left, or C{None} for a session without an end."""
        if self.expires is None:
            return None
        return max(0.0, self.expires - now)


class IAuthorizationObserver(Interface):
    """
    Something that follows the authorization table: the firewall, the store,
    metrics, logs.  Called synchronously, in the order the changes happen.
    """

    def session_started(session: Session) -> None:
        """A client was authorized (or re-authorized, replacing its session)."""

    def session_extended(session: Session) -> None:
        """A session's end moved; C{session} is the new value."""

    def session_ended(session: Session, reason: EndReason) -> None:
        """A session ended (logout, expiry, limits, an operator)."""


@attrs.frozen
class AllowedDevice:
    """
    A device that passes without signing in: from C{firewall.allowed_macs}
    (C{source} "config") or let in by staff at run time ("staff").
    """

    mac: str
    source: str
    note: str | None = None
    added: float | None = None


class IRateObserver(Interface):
    """An observer that also follows changes of a session's rates (the shaper)."""

    def rates_changed(session: Session) -> None:
        """C{session}'s own rates changed; C{session} is the new value."""


class IAllowListObserver(Interface):
    """An observer that also follows the always-allowed list (the firewall)."""

    def allowed_changed(mac: str, allowed: bool) -> None:
        """C{mac} was added to (C{allowed}) or removed from the always-allowed list."""


class JournalRefused(Exception):
    """
    The journal could not record a change, so the change is refused (the
    table is as it was).  The message says what went wrong, for the log.
    """


class ISessionJournal(Interface):
    """
    Durable record of the table (the session store).  Unlike observers, it
    is written *before* a change takes effect, and a failure to record a
    login refuses the login: a client is never told it is signed in unless
    that survives a crash.
    """

    def record_started(session: Session) -> None:
        """Persist a new session; raise L{JournalRefused} to refuse it."""

    def record_extended(session: Session) -> None:
        """Persist a session's new end; raise L{JournalRefused} to refuse the extension."""

    def record_ended(session: Session, reason: EndReason, ended: float) -> None:
        """Persist the end of a session (failures are logged, not raised)."""

    def record_rates(session: Session) -> None:
        """Persist a session's own rates; raise L{JournalRefused} to refuse the change."""

    def record_allowed(device: AllowedDevice) -> None:
        """Persist a device staff let in; raise L{JournalRefused} to refuse it."""

    def record_disallowed(mac: str) -> None:
        """Persist that staff took C{mac} off the list; raise L{JournalRefused} to refuse it."""


@implementer(IAuthorizationObserver)
class SessionLog:
    """The operator's log of every change to the table."""

    def session_started(self, session: Session) -> None:
        log.info(
            "authorized {mac} ({ip}) by {method}{user} until {expires}",
            mac=session.mac,
            ip=session.ip,
            method=session.method,
            user=f" as {session.user}" if session.user else "",
            expires="its end" if session.expires is None else f"t={session.expires:.0f}",
        )

    def session_extended(self, session: Session) -> None:
        log.info("extended {mac} until t={expires}", mac=session.mac, expires=session.expires)

    def session_ended(self, session: Session, reason: EndReason) -> None:
        log.info("deauthorized {mac} ({ip}): {reason}", mac=session.mac, ip=session.ip, reason=reason.value)


class AuthorizationTable:
    """
    MAC -> L{Session}: the single source of truth about who may pass.

    Expiry is scheduled on the injected clock (L{Deadlines}: one call for the
    soonest), set again whenever the session changes.
    """

    def __init__(
        self,
        clock: IReactorTime,
        journal: ISessionJournal | None = None,
        allowed: Iterable[AllowedDevice] = (),
    ) -> None:
        self._clock = clock
        self.journal = journal
        self._sessions: dict[str, Session] = {}
        # The always-allowed list: configured and staff's (restored from the store).
        self._allowed: dict[str, AllowedDevice] = {device.mac: device for device in allowed}
        # Each session's end, on one timer for the soonest.
        self._expiries = Deadlines(clock, self._expire)
        self._observers: list[IAuthorizationObserver] = []

    # --- observers ---

    def add_observer(self, observer: IAuthorizationObserver) -> None:
        self._observers.append(observer)

    def remove_observer(self, observer: IAuthorizationObserver) -> None:
        self._observers.remove(observer)

    def _notify(self, event: str, *args: object) -> None:
        for observer in list(self._observers):
            try:
                getattr(observer, event)(*args)
            except Exception:
                # One broken observer must not stop the others, nor the table.
                log.failure("observer {observer!r} failed on {event}", observer=observer, event=event)

    # --- queries ---

    def is_authorized(self, mac: str | None) -> bool:
        """Whether C{mac} has a session (signed in)."""
        return mac is not None and mac in self._sessions

    def may_pass(self, mac: str | None) -> bool:
        """Whether C{mac} gets through: signed in, or always allowed."""
        return mac is not None and (mac in self._sessions or mac in self._allowed)

    def allowed(self) -> list[AllowedDevice]:
        """The always-allowed list, in the order the devices were added."""
        return list(self._allowed.values())

    def session(self, mac: str | None) -> Session | None:
        return self._sessions.get(mac) if mac is not None else None

    def sessions(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    # --- commands ---

    def authorize(
        self,
        mac: str,
        *,
        ip: str,
        method: str,
        duration: float | None,
        user: str | None = None,
        idle_timeout: float | None = None,
        quota_bytes: int | None = None,
        note: str | None = None,
        rate_down: int | None = None,
        rate_up: int | None = None,
    ) -> Session:
        """
        Let C{mac} pass for C{duration} seconds (C{None}: until ended).
        An existing session of the same MAC is replaced.

        @raise JournalRefused: the journal could not record it; nothing changed.
        """
        now = self._clock.seconds()
        session = Session(
            mac=normalise_mac(mac),
            ip=ip,
            method=method,
            started=now,
            expires=None if duration is None else now + duration,
            user=user,
            idle_timeout=idle_timeout,
            quota_bytes=quota_bytes,
            note=note,
            rate_down=rate_down,
            rate_up=rate_up,
        )
        if self.journal is not None:
            self.journal.record_started(session)
        self._install(session)
        self._notify("session_started", session)
        return session

    def restore(self, session: Session) -> bool:
        """
        Put back a session that existed before (from the store), unless it
        has already expired.  Observers see it as started.
        """
        if session.expires is not None and session.expires <= self._clock.seconds():
            return False
        self._install(session)
        self._notify("session_started", session)
        return True

    def extend(self, mac: str, seconds: float) -> Session | None:
        """
        Move the end of C{mac}'s session C{seconds} later.

        @raise JournalRefused: the journal could not record it; nothing changed.
        """
        session = self._sessions.get(mac)
        if session is None or session.expires is None:
            return session
        session = attrs.evolve(session, expires=session.expires + seconds)
        if self.journal is not None:
            self.journal.record_extended(session)
        self._install(session)
        self._notify("session_extended", session)
        return session

    def set_rates(self, mac: str, down: int | None, up: int | None) -> Session | None:
        """
        Give C{mac}'s session its own rates (C{None}: back to its way in's).

        @raise JournalRefused: the journal could not record it; nothing changed.
        """
        session = self._sessions.get(mac)
        if session is None:
            return None
        session = attrs.evolve(session, rate_down=down, rate_up=up)
        if self.journal is not None:
            self.journal.record_rates(session)
        self._sessions[mac] = session
        log.info(
            "rates of {mac}: {down} down, {up} up",
            mac=mac,
            down="its way in's" if down is None else f"{down} bit/s",
            up="its way in's" if up is None else f"{up} bit/s",
        )
        for observer in list(self._observers):
            if IRateObserver.providedBy(observer):
                try:
                    observer.rates_changed(session)
                except Exception:
                    log.failure("observer {observer!r} failed on rates_changed", observer=observer)
        return session

    def deauthorize(self, mac: str, reason: EndReason) -> Session | None:
        """End C{mac}'s session, if it has one."""
        session = self._sessions.pop(mac, None)
        self._cancel_expiry(mac)
        if session is None:
            return None
        if self.journal is not None:
            try:
                self.journal.record_ended(session, reason, self._clock.seconds())
            except Exception:
                # Ending a session must never fail; at worst the store will
                # restore it after a restart, until its own expiry.
                log.failure("could not record the end of {mac}'s session", mac=mac)
        self._notify("session_ended", session, reason)
        return session

    def allow(self, mac: str, note: str | None = None) -> AllowedDevice:
        """
        Let C{mac} pass without signing in, from now until L{disallow}.
        A device already on the list keeps its entry.

        @raise JournalRefused: the journal could not record it; nothing changed.
        """
        mac = normalise_mac(mac)
        existing = self._allowed.get(mac)
        if existing is not None:
            return existing
        device = AllowedDevice(mac, "staff", note, self._clock.seconds())
        if self.journal is not None:
            self.journal.record_allowed(device)
        self._allowed[mac] = device
        log.info("{mac} is always allowed now{note}", mac=mac, note=f" ({note})" if note else "")
        self._notify_allowed(mac, True)
        return device

    def disallow(self, mac: str) -> AllowedDevice | None:
        """
        Take C{mac} off the list staff put it on, returning its entry; a
        configured one stays (it is the file's) and C{None} is returned.
        Its session, if it has one, goes on.

        @raise JournalRefused: the journal could not record it; nothing changed.
        """
        device = self._allowed.get(mac)
        if device is None or device.source != "staff":
            return None
        if self.journal is not None:
            self.journal.record_disallowed(mac)
        del self._allowed[mac]
        log.info("{mac} is no longer always allowed", mac=mac)
        self._notify_allowed(mac, False)
        return device

    def set_configured_allowed(self, macs: Iterable[str]) -> None:
        """The file's always-allowed list changed (a reload): staff's entries stay."""
        wanted = set(macs)
        for mac, device in list(self._allowed.items()):
            if device.source == "config" and mac not in wanted:
                del self._allowed[mac]
                self._notify_allowed(mac, False)
        for mac in sorted(wanted - set(self._allowed)):
            self._allowed[mac] = AllowedDevice(mac, "config")
            self._notify_allowed(mac, True)

    def _notify_allowed(self, mac: str, allowed: bool) -> None:
        for observer in list(self._observers):
            if IAllowListObserver.providedBy(observer):
                try:
                    observer.allowed_changed(mac, allowed)
                except Exception:
                    log.failure("observer {observer!r} failed on allowed_changed", observer=observer)

    def _install(self, session: Session) -> None:
        self._cancel_expiry(session.mac)
        self._sessions[session.mac] = session
        if session.expires is not None:
            self._expiries.set(session.mac, session.expires)

    def _cancel_expiry(self, mac: str) -> None:
        self._expiries.cancel(mac)

    def _expire(self, mac: str) -> None:
        self.deauthorize(mac, EndReason.EXPIRED)

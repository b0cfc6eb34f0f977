"""
The vouchers, and what redeeming one does: its time starts at its first
use and ends then plus its duration, or at its hard deadline, whichever
comes first; it serves a few devices at once, each with its own session in
the authorization table (the table says how many it has now).
"""

from __future__ import annotations

import enum
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from zope.interface import Interface, implementer

from portald.limits import IQuotaPools, Pool
from portald.rates import rate_in_range
from portald.table import AuthorizationTable, EndReason, IAuthorizationObserver, Session
from portald.vouchers.codes import VoucherKey, new_code, read_typed, shown

log = Logger()

METHOD = "voucher"
MOST_AT_ONCE = 10_000
# Vouchers made (and written, one transaction) per turn of the reactor.
CHUNK = 100
MOST_DEVICES = 100
# A voucher that ended this long ago is dropped by prune.
PRUNE_AFTER = 30 * 86400.0


def chunk_per_turn(clock: IReactorTime) -> Cooperator:
    """A Cooperator that runs one step of each task per turn of C{clock}'s reactor (a few ms), whatever the time slice."""
    return Cooperator(
        terminationPredicateFactory=lambda: lambda: True,
        scheduler=lambda step: clock.callLater(0, step),
    )


class VoucherError(ValueError):
    """A request about vouchers that cannot be done; the message says why (nothing changed)."""


class State(enum.Enum):
    UNUSED = "unused"
    ACTIVE = "active"
    USED_UP = "used up"
    EXPIRED = "expired"
    REVOKED = "revoked"


@attrs.frozen
class Voucher:
    """One voucher as stored (its code only as a keyed hash)."""

    digest: str
    batch: str
    duration: float
    devices: int
    created: float
    note: str = ""
    valid_until: float | None = None
    quota: int | None = None
    first_used: float | None = None
    revoked: float | None = None
    # Its devices' rates in bit/s (0 unlimited); None: the voucher way in's.
    rate_down: int | None = None
    rate_up: int | None = None

    @property
    def id(self) -> str:
        """How sessions and staff name it (a prefix of the keyed hash: no code in it)."""
        return self.digest[:12]

    def ends(self) -> float | None:
        """When its time is over: C{None} while unused and without a deadline."""
        if self.first_used is None:
            return self.valid_until
        used_up = self.first_used + self.duration
        return used_up if self.valid_until is None else min(used_up, self.valid_until)

    def state(self, now: float) -> State:
        if self.revoked is not None:
            return State.REVOKED
        ends = self.ends()
        if ends is not None and now >= ends:
            if self.first_used is not None and ends == self.first_used + self.duration:
                return State.USED_UP
            return State.EXPIRED
        return State.UNUSED if self.first_used is None else State.ACTIVE


class IVoucherStore(Interface):
    """Where vouchers outlive the daemon (the session database)."""

    def vouchers() -> list[Voucher]:
        """Every stored voucher."""

    def record_vouchers(vouchers: Sequence[Voucher]) -> None:
        """Add C{vouchers} (one transaction).  @raise JournalRefused: not written."""

    def record_voucher_used(digest: str, first_used: float) -> None:
        """A voucher's first use.  @raise JournalRefused: not written."""

    def record_vouchers_revoked(digests: Sequence[str], revoked: float) -> None:
        """Vouchers withdrawn.  @raise JournalRefused: not written."""

    def delete_vouchers(digests: Sequence[str]) -> None:
        """Vouchers forgotten (pruned)."""

    def bytes_used_by(method: str, user: str) -> int:
        """Bytes the ended sessions of C{user} by C{method} used, both ways."""


@attrs.frozen
class Batch:
    """Vouchers just made: their codes, shown only this once."""

    batch: str
    codes: tuple[str, ...]
    vouchers: tuple[Voucher, ...]


@attrs.frozen
class Redeemed:
    """A redemption granted: the session's length, and sessions it ends (the oldest, when full)."""

    voucher: Voucher
    remaining: float
    replaces: tuple[str, ...] = ()


@attrs.frozen
class Refused:
    """A redemption refused, in words for the guest; C{counts} if it was a wrong code (a guess)."""

    message: str
    counts: bool = False


NOT_A_CODE = "That code is not valid. Check it and try again."


@implementer(IQuotaPools, IAuthorizationObserver)
class VoucherBook:
    """
    Every voucher, kept in C{store}; redemptions decided with the C{table}'s
    sessions.  A voucher's quota is shared by its devices: the book tells
    the limits which sessions share one (it observes the table to know when
    what its ended sessions used has changed).
    """

    def __init__(
        self,
        store: IVoucherStore,
        table: AuthorizationTable,
        clock: IReactorTime,
        key: VoucherKey,
        when_full: str = "refuse",
    ) -> None:
        self._store = store
        self._table = table
        self._clock = clock
        self._key = key
        self.when_full = when_full
        self._by_digest: dict[str, Voucher] = {}
        self._by_id: dict[str, Voucher] = {}
        for voucher in store.vouchers():
            self._keep(voucher)
        # What each voucher's ended sessions used, read from the store once
        # and again after each of its sessions ends.
        self._spent: dict[str, int] = {}
        # Big batches are made a chunk per turn of this clock.
        self._cooperator = chunk_per_turn(clock)

    # --- staff ---

    def create(
        self,
        count: int,
        duration: float,
        *,
        devices: int = 1,
        quota: int | None = None,
        valid_until: float | None = None,
        note: str = "",
        batch: str | None = None,
        rate_down: int | None = None,
        rate_up: int | None = None,
    ) -> Deferred[Batch]:
        """
        Make C{count} vouchers, a few hundred per turn of the reactor (10 000
        take a few seconds and never hold it up for long).

        @raise VoucherError: a value out of range (nothing made).
        @return: fires with the batch, or fails with L{JournalRefused} if the
            store stopped taking them (those made until then are kept).
        """
        now = self._clock.seconds()
        if not 1 <= count <= MOST_AT_ONCE:
            raise VoucherError(f"count: expected 1 to {MOST_AT_ONCE} vouchers, not {count}")
        if not duration > 0:
            raise VoucherError("duration: expected a positive duration, such as 1d or 2h")
        if not 1 <= devices <= MOST_DEVICES:
            raise VoucherError(f"devices: expected 1 to {MOST_DEVICES}, not {devices}")
        if quota is not None and quota <= 0:
            raise VoucherError("quota: expected a positive amount, such as 2GB")
        if valid_until is not None and valid_until <= now:
            raise VoucherError("valid-until: expected a time in the future")
        if batch is not None and not batch.strip():
            raise VoucherError("batch: expected a name")
        for what, rate in (("rate-down", rate_down), ("rate-up", rate_up)):
            if rate is not None and not rate_in_range(rate):
                raise VoucherError(f"{what}: expected a rate such as 10Mbit, or 0 for unlimited")
        name = (
            batch.strip() if batch else time.strftime("%Y%m%d", time.gmtime(now)) + "-" + secrets.token_hex(2)
        )
        codes: list[str] = []
        made: list[Voucher] = []

        def make() -> Iterator[None]:
            while len(made) < count:
                chunk = []
                while len(chunk) < min(CHUNK, count - len(made)):
                    code = new_code()
                    digest = self._key.digest(code)
                    if digest in self._by_digest or any(v.digest == digest for v in chunk):
                        continue  # one in 2^49: still never two vouchers with one code
                    codes.append(shown(code))
                    chunk.append(
                        Voucher(digest, name, duration, devices, now, note, valid_until, quota,
                                rate_down=rate_down, rate_up=rate_up)
                    )  # fmt: skip
                self._store.record_vouchers(chunk)
                for voucher in chunk:
                    self._keep(voucher)
                made.extend(chunk)
                yield None

        def done(_: object) -> Batch:
            log.info("{count} voucher(s) made in batch {batch}", count=count, batch=name)
            return Batch(name, tuple(codes), tuple(made))

        return self._cooperator.coiterate(make()).addCallback(done)

    def find(self, typed: str) -> Voucher | None:
        """The voucher whose code C{typed} is (or whose id it is, for staff)."""
        code = read_typed(typed)
        if code is not None:
            found = self._by_digest.get(self._key.digest(code))
            if found is not None:
                return found
        return self._by_id.get(typed.strip().lower())

    def listing(self, batch: str | None = None, state: State | None = None) -> list[Voucher]:
        now = self._clock.seconds()
        return sorted(
            (
                v
                for v in self._by_digest.values()
                if (batch is None or v.batch == batch) and (state is None or v.state(now) is state)
            ),
            key=lambda v: (v.created, v.batch, v.digest),
        )

    def devices_on(self) -> dict[str, list[str]]:
        """The MACs on each voucher in use now, by voucher id (one pass over the table)."""
        on: dict[str, list[Session]] = {}
        for session in self._table.sessions():
            if session.method == METHOD and session.user is not None:
                on.setdefault(session.user, []).append(session)
        return {id: [s.mac for s in sorted(sessions, key=lambda s: s.started)] for id, sessions in on.items()}

    def sessions_of(self, voucher: Voucher) -> list[Session]:
        """Its sessions now, oldest first."""
        ours = (s for s in self._table.sessions() if s.method == METHOD and s.user == voucher.id)
        return sorted(ours, key=lambda s: s.started)

    def revoke(self, vouchers: Iterable[Voucher]) -> list[Voucher]:
        """
        Withdraw C{vouchers}; their sessions end.

        @raise JournalRefused: the store did not take it (nothing changed).
        """
        now = self._clock.seconds()
        withdrawn = [v for v in vouchers if v.revoked is None]
        if not withdrawn:
            return []
        self._store.record_vouchers_revoked([v.digest for v in withdrawn], now)
        for voucher in withdrawn:
            self._keep(attrs.evolve(voucher, revoked=now))
            for session in self.sessions_of(voucher):
                self._table.deauthorize(session.mac, EndReason.VOUCHER_REVOKED)
        return [self._by_digest[v.digest] for v in withdrawn]

    def prune(self) -> int:
        """Forget vouchers over for more than 30 days; how many."""
        now = self._clock.seconds()
        old = []
        for voucher in self._by_digest.values():
            over = voucher.revoked if voucher.revoked is not None else voucher.ends()
            if voucher.state(now) not in (State.UNUSED, State.ACTIVE) and over is not None:
                if now - over > PRUNE_AFTER:
                    old.append(voucher.digest)
        if old:
            self._store.delete_vouchers(old)
            for digest in old:
                voucher = self._by_digest.pop(digest)
                del self._by_id[voucher.id]
                self._spent.pop(voucher.id, None)
        return len(old)

    # --- guests ---

    def redeem(self, typed: str, mac: str) -> Redeemed | Refused:
        """
        C{mac} signs in with the code C{typed}.  The voucher's first use is
        recorded here.

        @raise JournalRefused: its first use could not be recorded.
        """
        code = read_typed(typed)
        voucher = self._by_digest.get(self._key.digest(code)) if code is not None else None
        if voucher is None:
            return Refused(NOT_A_CODE, counts=True)
        now = self._clock.seconds()
        state = voucher.state(now)
        if state is State.REVOKED:
            return Refused("This code has been withdrawn. Please ask the staff for a new one.")
        if state is State.EXPIRED:
            return Refused("This code has expired. Please ask the staff for a new one.")
        if state is State.USED_UP:
            return Refused("This code's time is used up. Please ask the staff for a new one.")
        if voucher.quota is not None and self.spent(voucher) >= voucher.quota:
            return Refused("This code's data allowance is used up. Please ask the staff for a new one.")
        others = [s for s in self.sessions_of(voucher) if s.mac != mac]
        replaces: tuple[str, ...] = ()
        if len(others) >= voucher.devices:
            if self.when_full != "replace-oldest":
                devices = "1 device" if len(others) == 1 else f"{len(others)} devices"
                return Refused(f"This code is in use on {devices} already, as many as it allows.")
            replaces = tuple(s.mac for s in others[: len(others) - voucher.devices + 1])
        if voucher.first_used is None:
            self._store.record_voucher_used(voucher.digest, now)
            voucher = self._keep(attrs.evolve(voucher, first_used=now))
        ends = voucher.ends()
        assert ends is not None
        return Redeemed(voucher, ends - now, replaces)

    # --- shared allowances ---

    def spent(self, voucher: Voucher) -> int:
        """What its ended sessions used."""
        spent = self._spent.get(voucher.id)
        if spent is None:
            spent = self._spent[voucher.id] = self._store.bytes_used_by(METHOD, voucher.id)
        return spent

    def pool_of(self, session: Session) -> Pool | None:
        if session.method != METHOD or session.user is None:
            return None
        voucher = self._by_id.get(session.user)
        if voucher is None or voucher.quota is None:
            return None
        return Pool(voucher.id, voucher.quota, self.spent(voucher))

    def session_started(self, session: Session) -> None:
        pass

    def session_extended(self, session: Session) -> None:
        pass

    def session_ended(self, session: Session, reason: EndReason) -> None:
        if session.method == METHOD and session.user is not None:
            # The store writes what it used in this same turn; read it next time.
            self._spent.pop(session.user, None)

    def _keep(self, voucher: Voucher) -> Voucher:
        self._by_digest[voucher.digest] = voucher
        self._by_id[voucher.id] = voucher
        return voucher

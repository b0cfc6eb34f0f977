"""What staff do with vouchers (``portald-ctl vouchers …``), as JSON values for the control API."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from portald.control.operations import Refused
from portald.table import JournalRefused
from portald.vouchers.book import Batch, State, Voucher, VoucherBook, VoucherError
from portald.vouchers.sheet import Slip


class VoucherOperations:
    """The voucher book's staff side: each answer a JSON value, each refusal a L{Refused}."""

    def __init__(self, book: VoucherBook, clock: IReactorTime, slip: Slip) -> None:
        self._book = book
        self._clock = clock
        # What the printed slips say besides the codes (the venue, the Wi-Fi); follows a reload.
        self.slip = slip

    def create(
        self,
        count: int,
        duration: float,
        devices: int = 1,
        quota: int | None = None,
        valid_until: float | None = None,
        note: str | None = None,
        batch: str | None = None,
    ) -> Deferred[dict[str, object]]:
        try:
            made = self._book.create(
                count,
                duration,
                devices=devices,
                quota=quota,
                valid_until=valid_until,
                note=note or "",
                batch=batch,
            )
        except VoucherError as e:
            raise Refused(str(e), status=400) from None

        def answer(batch: Batch) -> dict[str, object]:
            return {
                "batch": batch.batch,
                # Shown this once: only their keyed hashes are kept.
                "vouchers": [
                    dict(self.row(v), code=code) for v, code in zip(batch.vouchers, batch.codes, strict=True)
                ],
                "slip": self.slip.as_dict(),
            }

        def refused(failure: Any) -> None:
            failure.trap(JournalRefused)
            raise Refused(f"the session database did not take the vouchers: {failure.value}", status=500)

        return made.addCallbacks(answer, refused)

    def listing(self, batch: str | None = None, state: str | None = None) -> list[dict[str, object]]:
        wanted = None
        if state is not None:
            try:
                wanted = State(state.replace("-", " "))
            except ValueError:
                states = ", ".join(s.value.replace(" ", "-") for s in State)
                raise Refused(f"state: expected one of {states}", status=400) from None
        return [self.row(v) for v in self._book.listing(batch, wanted)]

    def show(self, code: str) -> dict[str, object]:
        return self.row(self._find(code))

    def revoke(self, code: str | None = None, batch: str | None = None) -> dict[str, object]:
        if (code is None) == (batch is None):
            raise Refused("give a code (or a voucher's id) or a batch", status=400)
        vouchers = [self._find(code)] if code is not None else self._book.listing(batch)
        if not vouchers:
            raise Refused(f"no voucher in batch {batch!r}", status=404)
        try:
            revoked = self._book.revoke(vouchers)
        except JournalRefused as e:
            raise Refused(f"the session database did not take it: {e}", status=500) from None
        return {"revoked": [v.id for v in revoked], "already": len(vouchers) - len(revoked)}

    def prune(self) -> dict[str, object]:
        return {"pruned": self._book.prune()}

    def _find(self, code: str) -> Voucher:
        voucher = self._book.find(code)
        if voucher is None:
            raise Refused("no such voucher (check the code, or give its id from vouchers list)", status=404)
        return voucher

    def row(self, voucher: Voucher) -> dict[str, object]:
        now = self._clock.seconds()
        return {
            "id": voucher.id,
            "batch": voucher.batch,
            "note": voucher.note,
            "state": voucher.state(now).value,
            "duration": voucher.duration,
            "devices": voucher.devices,
            "devices_now": [s.mac for s in self._book.sessions_of(voucher)],
            "quota": voucher.quota,
            "valid_until": voucher.valid_until,
            "created": voucher.created,
            "first_used": voucher.first_used,
            "ends": voucher.ends(),
        }

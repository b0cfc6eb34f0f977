"""What staff do with vouchers (``portald-ctl vouchers …``), as JSON values for the control API."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from portald.control.operations import EncodedJSON, Refused
from portald.table import JournalRefused
from portald.vouchers.book import Batch, State, Voucher, VoucherBook, VoucherError, chunk_per_turn
from portald.vouchers.sheet import Slip

# Rows turned into JSON per turn of the reactor (a few ms): listing 20 000
# vouchers at once held it for 160 ms.
ROWS_PER_TURN = 500


class VoucherOperations:
    """The voucher book's staff side: each answer a JSON value, each refusal a L{Refused}."""

    def __init__(self, book: VoucherBook, clock: IReactorTime, slip: Slip, *, shapes: bool = False) -> None:
        self._book = book
        self._clock = clock
        # Whether portald shapes: a voucher's rates would mean nothing otherwise.
        self._shapes = shapes
        # What the printed slips say besides the codes (the venue, the Wi-Fi); follows a reload.
        self.slip = slip
        self._cooperator = chunk_per_turn(clock)

    def create(
        self,
        count: int,
        duration: float,
        devices: int = 1,
        quota: int | None = None,
        valid_until: float | None = None,
        note: str | None = None,
        batch: str | None = None,
        rate_down: int | None = None,
        rate_up: int | None = None,
    ) -> Deferred[EncodedJSON]:
        if (rate_down is not None or rate_up is not None) and not self._shapes:
            raise Refused(
                "portald does not shape, so a voucher's rates would not hold: set shaping.uplink", status=400
            )
        try:
            made = self._book.create(
                count,
                duration,
                devices=devices,
                quota=quota,
                valid_until=valid_until,
                note=note or "",
                batch=batch,
                rate_down=rate_down,
                rate_up=rate_up,
            )
        except VoucherError as e:
            raise Refused(str(e), status=400) from None

        def answer(batch: Batch) -> Deferred[EncodedJSON]:
            head = {"batch": batch.batch, "slip": self.slip.as_dict()}
            # The codes are shown this once: only their keyed hashes are kept.
            rows = self._encoded(batch.vouchers, codes=batch.codes)
            return rows.addCallback(
                lambda listed: EncodedJSON(
                    json.dumps(head)[:-1].encode() + b', "vouchers": ' + listed.data + b"}"
                )
            )

        def refused(failure: Any) -> None:
            failure.trap(JournalRefused)
            raise Refused(f"the session database did not take the vouchers: {failure.value}", status=500)

        return made.addCallbacks(answer, refused)

    def listing(self, batch: str | None = None, state: str | None = None) -> Deferred[EncodedJSON]:
        wanted = None
        if state is not None:
            try:
                wanted = State(state.replace("-", " "))
            except ValueError:
                states = ", ".join(s.value.replace(" ", "-") for s in State)
                raise Refused(f"state: expected one of {states}", status=400) from None
        return self._encoded(self._book.listing(batch, wanted))

    def show(self, code: str) -> dict[str, object]:
        return self.row(self._find(code), self._book.devices_on())

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

    def _encoded(
        self, vouchers: Sequence[Voucher], codes: Sequence[str] | None = None
    ) -> Deferred[EncodedJSON]:
        """C{vouchers} as a JSON list, a few hundred rows per turn of the reactor."""
        on = self._book.devices_on()
        chunks: list[str] = []

        def encode() -> Iterator[None]:
            for start in range(0, len(vouchers), ROWS_PER_TURN):
                rows = []
                for index in range(start, min(start + ROWS_PER_TURN, len(vouchers))):
                    row = self.row(vouchers[index], on)
                    if codes is not None:
                        row["code"] = codes[index]
                    rows.append(row)
                chunks.append(json.dumps(rows)[1:-1])
                yield None

        return self._cooperator.coiterate(encode()).addCallback(
            lambda _: EncodedJSON(("[" + ", ".join(chunks) + "]").encode())
        )

    def _find(self, code: str) -> Voucher:
        voucher = self._book.find(code)
        if voucher is None:
            raise Refused("no such voucher (check the code, or give its id from vouchers list)", status=404)
        return voucher

    def row(self, voucher: Voucher, on: dict[str, list[str]]) -> dict[str, object]:
        """A voucher as JSON; C{on}: L{VoucherBook.devices_on}, read once for many rows."""
        now = self._clock.seconds()
        return {
            "id": voucher.id,
            "batch": voucher.batch,
            "note": voucher.note,
            "state": voucher.state(now).value,
            "duration": voucher.duration,
            "devices": voucher.devices,
            "devices_now": on.get(voucher.id, []),
            "quota": voucher.quota,
            "rate_down": voucher.rate_down,
            "rate_up": voucher.rate_up,
            "valid_until": voucher.valid_until,
            "created": voucher.created,
            "first_used": voucher.first_used,
            "ends": voucher.ends(),
        }

"""The voucher as a way in: one field on the portal page."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from portald.auth.interface import AuthResult, Credentials, FormField, IAuthenticator
from portald.table import JournalRefused
from portald.vouchers.book import METHOD, Redeemed, VoucherBook

VOUCHER_FIELD = "voucher"


@implementer(IAuthenticator)
class VoucherMethod:
    """A voucher code typed (or pre-filled from the slip's QR code: C{/?voucher=CODE})."""

    name = METHOD
    guessable = True
    fields = (FormField(VOUCHER_FIELD, "Voucher code", "text"),)
    submit_label = "Connect"

    def __init__(self, book: VoucherBook) -> None:
        self._book = book

    def authenticate(self, credentials: Credentials) -> Deferred[AuthResult]:
        typed = credentials.fields.get(VOUCHER_FIELD, "")
        if not typed.strip():
            return succeed(AuthResult.failure("Please type the voucher code.", incomplete=True))
        try:
            outcome = self._book.redeem(typed, credentials.mac)
        except JournalRefused:
            return succeed(AuthResult.failure("The network could not record your voucher. Please try again."))
        if not isinstance(outcome, Redeemed):
            return succeed(AuthResult.failure(outcome.message, counts=outcome.counts))
        voucher = outcome.voucher
        return succeed(
            AuthResult.success(
                voucher.id,
                duration=outcome.remaining,
                quota_bytes=voucher.quota,
                ends=outcome.replaces,
                rate_down=voucher.rate_down,
                rate_up=voucher.rate_up,
            )
        )

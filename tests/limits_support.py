"""Session limits built as the build function builds them: a ledger that observes the table."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from portald.limits import ITrafficSource, SessionLimits, UsageLedger
from portald.table import AuthorizationTable


def observing_limits(
    table: AuthorizationTable, source: ITrafficSource, clock: IReactorTime, interval: float
) -> SessionLimits:
    ledger = UsageLedger(clock)
    table.add_observer(ledger)
    return SessionLimits(table, source, clock, interval, ledger)

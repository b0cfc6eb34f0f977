"""Session ends by reason: a table observer that only counts."""

from __future__ import annotations

from collections import Counter

from zope.interface import implementer

from portald.table import EndReason, IAuthorizationObserver, Session


@implementer(IAuthorizationObserver)
class SessionEndCounts:
    """How many sessions ended, by reason (C{counts}, keyed by the reason's value)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def session_started(self, session: Session) -> None:
        pass

    def session_extended(self, session: Session) -> None:
        pass

    def session_ended(self, session: Session, reason: EndReason) -> None:
        self.counts[reason.value] += 1

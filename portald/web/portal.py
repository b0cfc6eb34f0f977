"""
What the portal's pages share: the table and the devices, the sign-in
method, the replies and the forms, and the hooks into the parts around the
web (the firewall, the limits, the store), each optional.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from portald.auth.interface import Way
from portald.config import Config
from portald.enforced import in_force_soon
from portald.neighbours import Neighbours
from portald.refusals import Refusals
from portald.table import AuthorizationTable, EndReason
from portald.web.forms import FormGuard
from portald.web.intercept import Interception
from portald.web.replies import Replies

# How long a sign-in or sign-out answer waits for the firewall, at most.
ENFORCED_WAIT = 2.0

# Bytes (from, to) a client moved in its current session, if known.
Usage = Callable[[str], "tuple[int, int] | None"]
# Why and when a client's latest session ended (None: never, or still open).
LastEnding = Callable[[str], "tuple[EndReason, float] | None"]


@attrs.frozen
class PortalHooks:
    """
    C{enforced}, if given, fires once every authorization so far is in
    force (the firewall's L{portald.firewall.IFirewall.applied}): sign-in
    and sign-out answers wait for it.  C{usage} (the limits') shows the data used on the
    status page; C{last_ending} (the session store's) lets the sign-in page
    say why a device's last session ended.
    """

    usage: Usage | None = None
    enforced: Callable[[], Deferred[None]] | None = None
    last_ending: LastEnding | None = None


NO_HOOKS = PortalHooks()


@attrs.define
class Portal:
    """
    Everything a portal page may need, made once for them all.  C{config}
    and C{ways} change on a reload (L{reconfigure}); pages read
    them per request.
    """

    config: Config
    table: AuthorizationTable
    neighbours: Neighbours
    clock: IReactorTime
    # The ways in, in the page's order (one, or several side by side).
    ways: tuple[Way, ...]
    interception: Interception
    replies: Replies
    forms: FormGuard
    hooks: PortalHooks = NO_HOOKS
    # Where every input bound of the pages counts what it refused.
    refusals: Refusals = attrs.field(
        default=attrs.Factory(lambda self: Refusals(self.clock), takes_self=True)
    )
    # Sign-in attempts by (method, result): ok, refused, declined, incomplete, limited, not_recorded, error.
    logins: Counter[tuple[str, str]] = attrs.field(factory=Counter)

    def reconfigure(self, config: Config, ways: tuple[Way, ...]) -> None:
        """The reloaded configuration's ways in, session settings, venue and terms."""
        self.config = config
        self.ways = ways
        self.replies.venue = config.portal.venue

    def way(self, name: str | None) -> Way | None:
        """The way in called C{name}; with no name, the only one there is."""
        if name is None:
            return self.ways[0] if len(self.ways) == 1 else None
        for way in self.ways:
            if way.name == name:
                return way
        return None

    def enforced_soon(self, ip: str, what: str) -> Deferred[None]:
        """
        Fires once the firewall has what the table says now, or after
        L{ENFORCED_WAIT} (logged); never fails.  An answer waits for it so
        that the browser's next request meets the firewall as it will be.
        """
        if self.hooks.enforced is None:
            return succeed(None)
        return in_force_soon(self.hooks.enforced, self.clock, ENFORCED_WAIT, f"{ip}'s {what}")

    def count_login(self, method: str, result: str) -> None:
        self.logins[(method, result)] += 1

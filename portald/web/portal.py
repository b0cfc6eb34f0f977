"""
What the portal's pages share: the table and the devices, the sign-in
method, the replies and the forms, and the hooks into the parts around the
web (the firewall, the limits, the store), each optional.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from portald.auth.interface import IAuthenticator
from portald.config import Config
from portald.neighbours import Neighbours
from portald.refusals import Refusals
from portald.table import AuthorizationTable, EndReason
from portald.web.forms import FormGuard
from portald.web.intercept import Interception
from portald.web.replies import Replies

# Bytes (from, to) a client moved in its current session, if known.
Usage = Callable[[str], "tuple[int, int] | None"]
# Why and when a client's latest session ended (None: never, or still open).
LastEnding = Callable[[str], "tuple[EndReason, float] | None"]


@attrs.frozen
class PortalHooks:
    """
    C{enforced}, if given, fires once every authorization so far is in
    force (the firewall's L{portald.firewall.IFirewall.applied}): sign-in
    answers wait for it.  C{usage} (the limits') shows the data used on the
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
    and C{authenticator} change on a reload (L{reconfigure}); pages read
    them per request.
    """

    config: Config
    table: AuthorizationTable
    neighbours: Neighbours
    clock: IReactorTime
    authenticator: IAuthenticator
    interception: Interception
    replies: Replies
    forms: FormGuard
    hooks: PortalHooks = NO_HOOKS
    # Where every input bound of the pages counts what it refused.
    refusals: Refusals = attrs.field(
        default=attrs.Factory(lambda self: Refusals(self.clock), takes_self=True)
    )
    # Sign-in attempts by (method, result): ok, refused, incomplete, limited, not_recorded, error.
    logins: Counter[tuple[str, str]] = attrs.field(factory=Counter)

    def reconfigure(self, config: Config, authenticator: IAuthenticator) -> None:
        """The reloaded configuration's sign-in method, session settings, venue and terms."""
        self.config = config
        self.authenticator = authenticator
        self.replies.venue = config.portal.venue

    def count_login(self, result: str) -> None:
        self.logins[(self.authenticator.name, result)] += 1

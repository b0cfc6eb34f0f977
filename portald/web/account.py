"""A signed-in device's own session: its status page, extending it, signing out."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET, Request

from portald.config import Config
from portald.table import EndReason, JournalRefused
from portald.web.forms import EXTEND, LOGOUT
from portald.web.page import DevicePage, FormTarget
from portald.web.pages import StatusBody, StatusView
from portald.web.words import describe_duration

log = Logger()


def extension(config: Config, remaining: float | None) -> float | None:
    """
    The time the extend button adds, or C{None} where it is not offered:
    not configured, a session without an end, or one that already has
    more than a session's length left (so presses do not pile up).
    """
    length = config.session_timeout()
    if not config.sessions.extendable or remaining is None or remaining > length:
        return None
    return length


class Status(DevicePage):
    """C{/status}: time and data left, and the extend and sign-out buttons."""

    def show(self, request: Request, ip: str, mac: str) -> Any:
        portal = self.portal
        session = portal.table.session(mac)
        if session is None:
            return portal.replies.see_other(request, "/")
        usage = portal.hooks.usage
        now = portal.clock.seconds()
        view = StatusView(
            session=session,
            now=now,
            warn_before=portal.config.sessions.warn_before,
            csrf=portal.forms.token(ip),
            used=usage(mac) if usage is not None else None,
            extension=extension(portal.config, session.remaining(now)),
        )
        body = StatusBody(portal.replies.theme, view)
        return portal.replies.page(request, "You are online", body, refresh=60)


class Extend(FormTarget):
    """C{POST /extend}: one more session length, where the configuration allows it."""

    form = EXTEND

    def submitted(self, request: Request, ip: str, mac: str | None) -> Any:
        portal = self.portal
        if mac is None:
            return portal.replies.no_lease(request, 403)
        session = portal.table.session(mac)
        if session is None:
            return portal.replies.message(
                request,
                "You are not signed in",
                ["Your session has already ended, so there is nothing to extend. Sign in again."],
                ("/", "Sign in"),
                409,
            )
        back = self.form.back
        added = extension(portal.config, session.remaining(portal.clock.seconds()))
        if added is None:
            why = (
                "Sessions on this network cannot be extended."
                if not portal.config.sessions.extendable or session.expires is None
                else "Your session has plenty of time left; you can extend it later."
            )
            return portal.replies.message(request, "Your session was not extended", [why], back, 403)
        try:
            extended = portal.table.extend(mac, added)
        except JournalRefused as e:
            log.error("could not extend {mac}'s session: {why}", mac=mac, why=str(e))
            return portal.replies.not_recorded(
                request,
                "We could not extend your session",
                "The network could not record the extension; your session ends as before.",
                back,
            )
        remaining = extended.remaining(portal.clock.seconds()) if extended is not None else None
        left = "" if remaining is None else f" You now have {describe_duration(remaining)} left."
        return portal.replies.message(request, "Your session was extended", [f"Thank you.{left}"], back)


class Logout(FormTarget):
    """C{POST /logout}: the device's session ends."""

    form = LOGOUT

    def submitted(self, request: Request, ip: str, mac: str | None) -> Any:
        portal = self.portal
        if mac is not None:
            portal.table.deauthorize(mac, EndReason.LOGOUT)
        # Answered once the firewall has cut the device off: a page opened
        # after "signed out" meets the portal, and is not cut by the flush.
        gone: list[object] = []
        request.notifyFinish().addBoth(gone.append)

        def answer(_: None) -> None:
            if gone:
                return
            body = portal.replies.message(
                request, "You are signed out", ["This device no longer has access."], ("/", "Sign in again")
            )
            if body is not NOT_DONE_YET:
                request.write(body)
                request.finish()

        portal.enforced_soon(ip, "sign-out").addCallback(answer)
        return NOT_DONE_YET

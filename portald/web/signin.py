"""Signing in: the landing page with its form, and the login that the form posts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from portald.auth.interface import METHOD_FIELD, AuthResult, Credentials, Way
from portald.auth.limits import AttemptLimiter, GuessingBudget
from portald.table import EndReason, JournalRefused
from portald.web.forms import CSRF, LOGIN, form_value
from portald.web.intercept import NEXT
from portald.web.page import DevicePage, FormTarget
from portald.web.pages import LandingBody, LandingView
from portald.web.portal import Portal
from portald.web.replies import TRY_AGAIN
from portald.web.urls import is_http_url
from portald.web.words import describe_duration, describe_ending

log = Logger()

# A value filled in from the query string is at most this long (a code, not a document).
LONGEST_PREFILL = 64

# The landing page says why the last session ended if it ended this recently.
ENDING_SHOWN_FOR = 24 * 3600.0


def landing_page(
    portal: Portal,
    request: Request,
    ip: str,
    next_token: str | None,
    message: str = "",
    code: int = 200,
    ending: str = "",
    prefill: Mapping[str, str] | None = None,
) -> Any:
    """
    The terms and a sign-in form for each way in, with a message (a
    refusal) or a notice (the last ending); C{prefill}: field values (a
    voucher code from the slip's QR code).
    """
    view = LandingView(
        terms=portal.config.portal.terms,
        ways=portal.ways,
        csrf=portal.forms.token(ip),
        next_token=next_token,
        message=message,
        ending=ending,
        prefill=dict(prefill or {}),
    )
    body = LandingBody(portal.replies.theme, view)
    return portal.replies.page(request, f"Welcome to {portal.config.portal.venue}", body, code)


def valid_next(portal: Portal, ip: str, token: str | None) -> str | None:
    """C{token} if it genuinely carries a destination for this client, else C{None}."""
    destination = portal.interception.destination(ip, token)
    return token if destination is not None and is_http_url(destination) else None


class Landing(DevicePage):
    """C{/}: the sign-in form, or the way to the session of a device signed in already."""

    def show(self, request: Request, ip: str, mac: str) -> Any:
        portal = self.portal
        if portal.table.is_authorized(mac):
            return portal.replies.see_other(request, "/status")
        next_token = valid_next(portal, ip, form_value(request, NEXT))
        # A voucher slip's QR code opens /?voucher=CODE: a way's text field named in the query comes filled in.
        prefill = {}
        for way in portal.ways:
            for field in way.authenticator.fields:
                value = form_value(request, field.name) if field.kind == "text" else None
                if value:
                    prefill[field.name] = value[:LONGEST_PREFILL]
        return landing_page(
            portal, request, ip, next_token, ending=self._ending_notice(mac), prefill=prefill or None
        )

    def _ending_notice(self, mac: str) -> str:
        """ "Your session ended … because …" for a recent ending, else nothing."""
        last_ending = self.portal.hooks.last_ending
        if last_ending is None:
            return ""
        try:
            ending = last_ending(mac)
        except Exception:
            # A notice is a courtesy: the sign-in form matters more.
            log.failure("could not look up how {mac}'s last session ended", mac=mac)
            return ""
        if ending is None:
            return ""
        reason, ended = ending
        ago = max(0.0, self.portal.clock.seconds() - ended)
        sessions = self.portal.config.sessions
        because = describe_ending(reason, idle_timeout=sessions.idle_timeout, quota=sessions.quota)
        if because is None or ago > ENDING_SHOWN_FOR:
            return ""
        return f"Your session ended {describe_duration(ago)} ago {because}."


class Login(FormTarget):
    """
    C{POST /login}: the sign-in method's answer, rate limited per device;
    once the journal has it, the answer waits (a little) for the firewall.
    """

    def __init__(self, portal: Portal) -> None:
        super().__init__(portal)
        auth = portal.config.auth
        self._limiter = AttemptLimiter(portal.clock, auth.max_attempts, auth.attempt_window)
        self._budget = GuessingBudget(portal.clock, auth.max_attempts_total, auth.attempt_window)

    form = LOGIN

    def submitted(self, request: Request, ip: str, mac: str | None) -> Any:
        portal = self.portal
        if mac is None:
            return portal.replies.no_lease(request, 403)
        next_token = valid_next(portal, ip, form_value(request, NEXT))
        if portal.table.is_authorized(mac):
            return self._signed_in(request, next_token, ip)
        way = portal.way(form_value(request, METHOD_FIELD))
        if way is None:
            message = "Please choose a way to sign in below."
            return landing_page(portal, request, ip, next_token, message, 400)
        guessable = way.authenticator.guessable
        wait = self._limiter.retry_after(mac)
        if wait > 0:
            portal.refusals.refuse("auth.max_attempts", ip, mac)
        elif guessable:
            # Every device's guesses together, counted from the start of each attempt.
            wait = self._budget.take(mac)
            if wait > 0:
                portal.refusals.refuse("auth.max_attempts_total", ip, mac)
        if wait > 0:
            portal.count_login(way.name, "limited")
            request.setHeader(b"Retry-After", str(int(wait) + 1).encode())
            message = f"Too many attempts. Please wait {int(wait) + 1} seconds and try again."
            return landing_page(portal, request, ip, next_token, message, 429)
        # Field names and values as the browser sent them, whatever bytes.
        fields = {
            name.decode("utf-8", "replace"): values[0].decode("utf-8", "replace") if values else ""
            for name, values in (request.args or {}).items()
        }
        fields.pop(CSRF, None)
        fields.pop(NEXT, None)
        fields.pop(METHOD_FIELD, None)
        attempt: Deferred[AuthResult] = way.authenticator.authenticate(Credentials(mac, ip, fields))
        finished: list[bool] = []
        request.notifyFinish().addBoth(finished.append)
        attempt.addCallback(self._attempted, way, request, ip, mac, next_token, finished)
        attempt.addErrback(self._failed, way, request, finished)
        return NOT_DONE_YET

    def _attempted(
        self,
        result: AuthResult,
        way: Way,
        request: Request,
        ip: str,
        mac: str,
        next_token: str | None,
        finished: list[bool],
    ) -> None:
        portal = self.portal
        if not result.ok:
            # refused: a wrong code (a guess); declined: a right one that cannot be used now.
            outcome = "refused" if result.counts else "incomplete" if result.incomplete else "declined"
            portal.count_login(way.name, outcome)
            if result.counts:
                self._limiter.record_failure(mac)
            elif way.authenticator.guessable:
                # Not a guess (an empty field, or a right code that cannot be used now).
                self._budget.give_back()
            log.info("sign-in refused for {mac} ({ip}): {why}", mac=mac, ip=ip, why=result.message)
            if not finished:
                landing_page(portal, request, ip, next_token, result.message, 403)
            return
        self._limiter.clear(mac)
        duration, idle_timeout, quota = portal.config.session_settings(way.settings)
        try:
            portal.table.authorize(
                mac,
                ip=ip,
                method=way.name,
                user=result.user,
                duration=result.duration if result.duration is not None else duration,
                idle_timeout=result.idle_timeout if result.idle_timeout is not None else idle_timeout,
                quota_bytes=result.quota_bytes if result.quota_bytes is not None else quota,
                rate_down=result.rate_down,
                rate_up=result.rate_up,
            )
        except JournalRefused as e:
            # Not on disk, so not granted: a login must survive a restart.
            portal.count_login(way.name, "not_recorded")
            log.error("could not sign in {mac} ({ip}): {why}", mac=mac, ip=ip, why=str(e))
            if not finished:
                portal.replies.not_recorded(
                    request,
                    "We could not sign you in",
                    "The network could not record your sign-in, so you are not online yet.",
                    ("/", "Try again"),
                )
            return
        portal.count_login(way.name, "ok")
        for other in result.ends:
            # The voucher's oldest device makes room for this one.
            portal.table.deauthorize(other, EndReason.VOUCHER_ELSEWHERE)
        if finished:
            return
        # Answer once the firewall lets the client out, so that the browser's
        # next request (often the page it wanted) is not intercepted again;
        # but never keep a person waiting long on a slow firewall.
        waiting = portal.enforced_soon(ip, "sign-in")
        waiting.addCallback(lambda _: self._answer_signed_in(request, next_token, ip, finished))

    def _answer_signed_in(
        self, request: Request, next_token: str | None, ip: str, finished: list[bool]
    ) -> None:
        if finished:
            return
        body = self._signed_in(request, next_token, ip)
        if body is not NOT_DONE_YET:
            request.write(body)
            request.finish()

    def _failed(self, failure: Failure, way: Way, request: Request, finished: list[bool]) -> None:
        self.portal.count_login(way.name, "error")
        log.failure("sign-in failed", failure)
        if not finished:
            self.portal.replies.message(request, "Something went wrong", [TRY_AGAIN], ("/", "Back"), 500)

    def _signed_in(self, request: Request, next_token: str | None, ip: str) -> Any:
        destination = self.portal.interception.destination(ip, next_token)
        if destination is not None:
            return self.portal.replies.see_other(request, destination)
        return self.portal.replies.message(
            request,
            "You are online",
            ["You are signed in. You can close this page, or open any website."],
            ("/status", "Your session: time left and sign out"),
        )

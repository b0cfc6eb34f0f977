"""
The admin page's web site: staff sign in, then use the same operations as
portald-ctl (L{Operations}, L{VoucherOperations}) through forms.

Every form is a POST carrying the sign-in's CSRF token, from this site's
own origin; a change is answered (with a redirect to the page it came
from) once the firewall has it in force, as portald-ctl's are.  Every
change is logged with the staff member's name.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.template import tags

from portald.addresses import normalise_ip
from portald.admin import pages
from portald.admin.accounts import PasswordHash, StaffAccounts, unknown_name
from portald.admin.chart import HOUR, HOURS, last_day
from portald.admin.layout import CSRF_FIELD, SHEET_POLICY, frame, html_answer, secure_headers
from portald.admin.staff import SignInThrottle, StaffSession, StaffSessions
from portald.config import byte_count, duration_seconds
from portald.control.api import Enforcement
from portald.control.operations import Operations, Refused
from portald.control.vouchers import VoucherOperations
from portald.humane import bytes_text, deadline, duration_text
from portald.rates import rate_bits, rate_in_range
from portald.vouchers.sheet import LAYOUTS, Slip, render_sheet

log = Logger()

SESSION_COOKIE = b"portald_admin"
LOGIN_COOKIE = b"portald_admin_login"
# A wrong password is answered this much later: guessing is slow even before the throttle.
WRONG_PASSWORD_DELAY = 1.0
# Forms are a few short fields.
MAX_BODY = 64 * 1024
# Vouchers made from the page at once (a sheet of fifty A4 pages).
MOST_VOUCHERS = 500

Verify = Callable[[PasswordHash, str], Deferred[bool]]
Answer = bytes | Deferred[bytes]


@attrs.frozen
class AdminParts:
    """What the admin page reads and changes: the operations, and where the day's figures come from."""

    operations: Operations
    vouchers: VoucherOperations
    enforcement: Enforcement
    # (started, ended or None, MAC) of the sessions open between two times.
    history: Callable[[float, float], list[tuple[float, float | None, str]]]
    # Intercepted requests by answer, and sign-ins by (way in, result), since start.
    intercepts: Callable[[], Mapping[str, int]]
    logins: Callable[[], Mapping[tuple[str, str], int]]
    venue: Callable[[], str]


def _arg(request: Request, name: str) -> str:
    values = (request.args or {}).get(name.encode())
    return values[0].decode("utf-8", "replace").strip() if values else ""


def _cookie(request: Request, name: bytes) -> str | None:
    value = request.getCookie(name)
    return value.decode("ascii", "replace") if value else None


def _see_other(request: Request, location: str) -> bytes:
    request.setResponseCode(303)
    request.setHeader(b"Location", location.encode())
    secure_headers(request)
    return b""


def _whole(text: str, what: str, lowest: int, highest: int, default: int | None = None) -> int:
    if not text and default is not None:
        return default
    if not text.isdigit() or not lowest <= int(text) <= highest:
        raise Refused(f"{what}: expected a whole number from {lowest} to {highest}", status=400)
    return int(text)


def _duration(text: str, what: str) -> float:
    seconds = duration_seconds(text)
    if seconds is None or seconds <= 0:
        raise Refused(f"{what}: expected a duration such as 30m, 2h or 1d", status=400)
    return seconds


def _rate(text: str, what: str) -> int | None:
    if not text:
        return None
    bits = rate_bits(text)
    if not rate_in_range(bits):
        raise Refused(f"{what}: expected a rate such as 10Mbit or 500kbit, 0 for unlimited", status=400)
    return bits


@attrs.frozen
class _Route:
    handler: Callable[[Request, StaffSession], Answer]
    # Where a refusal is shown: the page the form is on.
    back: str


class AdminSite(Resource):
    """Every path of the admin page (see the module's docstring)."""

    isLeaf = True

    def __init__(
        self,
        parts: AdminParts,
        accounts: StaffAccounts,
        sessions: StaffSessions,
        verify: Verify,
        clock: IReactorTime,
        *,
        secure: bool,
    ) -> None:
        super().__init__()
        self._parts = parts
        self._accounts = accounts
        self._sessions = sessions
        self._throttle = SignInThrottle(clock)
        self._verify = verify
        self._clock = clock
        # Over HTTPS: cookies are only ever sent back over HTTPS.
        self._secure = secure
        self._css = resources.files("portald.admin").joinpath("static/admin.css").read_bytes()
        self._pages: dict[bytes, Callable[[Request, StaffSession], Answer]] = {
            b"/": self._now,
            b"/vouchers": self._vouchers,
            b"/vouchers/sheet": self._sheet,
            b"/today": self._today,
            b"/allowed": self._allowed,
        }
        self._commands: dict[bytes, _Route] = {
            b"/sessions/end": _Route(self._end, "/"),
            b"/sessions/extend": _Route(self._extend, "/"),
            b"/sessions/auth": _Route(self._let_in, "/"),
            b"/vouchers/create": _Route(self._create, "/vouchers"),
            b"/vouchers/revoke": _Route(self._revoke, "/vouchers"),
            b"/allowed/add": _Route(self._allow, "/allowed"),
            b"/allowed/remove": _Route(self._disallow, "/allowed"),
            b"/logout": _Route(self._logout, "/"),
        }

    # --- dispatch ---

    def render(self, request: Request) -> bytes | int:
        path = request.path
        method = b"GET" if request.method == b"HEAD" else request.method
        if path == b"/admin.css" and method == b"GET":
            request.setHeader(b"Content-Type", b"text/css; charset=utf-8")
            request.setHeader(b"Cache-Control", b"max-age=3600")
            return self._css
        if path == b"/login":
            if method == b"GET":
                return self._login_form(request)
            if method == b"POST":
                return self._finish(request, self._sign_in(request), "/login")
        staff = self._sessions.find(_cookie(request, SESSION_COOKIE))
        if staff is not None and self._accounts.hash_of(staff.name) is None:
            # The account was removed from the users file: its sign-ins end now.
            log.info("staff {staff}'s account is gone: signed out of the admin page", staff=staff.name)
            self._sessions.end(staff.token)
            staff = None
        if method == b"GET" and path in self._pages:
            if staff is None:
                return _see_other(request, "/login")
            return self._finish(request, maybeDeferred(self._pages[path], request, staff), "/")
        if method == b"POST" and path in self._commands:
            refusal = self._refuse_post(request, staff)
            if refusal is not None:
                return refusal
            assert staff is not None
            route = self._commands[path]
            return self._finish(request, maybeDeferred(route.handler, request, staff), route.back, staff)
        allowed = b"POST" if path in self._commands else b"GET, HEAD"
        if path in self._commands or path in self._pages:
            request.setHeader(b"Allow", allowed)
            return self._plain(request, 405, "Not for this method.")
        return self._plain(request, 404, "No such page.")

    def _refuse_post(self, request: Request, staff: StaffSession | None) -> bytes | None:
        """Why a form cannot be taken, answered; None when it can."""
        length = request.getHeader(b"content-length") or b"0"
        if not length.isdigit() or int(length) > MAX_BODY:
            return self._plain(request, 413, "That form is too large.")
        origin = request.getHeader(b"origin")
        if origin is not None and origin != self._origin(request):
            log.warn(
                "admin page: a form from another site ({origin}) was refused",
                origin=origin.decode("ascii", "replace"),
            )
            return self._plain(request, 403, "That form did not come from this page.")
        if staff is None:
            return self._plain(request, 403, "Your sign-in has ended: sign in again.")
        if not staff.csrf_matches(_arg(request, CSRF_FIELD) or None):
            log.warn("admin page: a form without {name}'s token was refused", name=staff.name)
            return self._plain(request, 403, "That form is out of date: go back, reload the page, try again.")
        return None

    def _origin(self, request: Request) -> bytes:
        host = request.getHeader(b"host") or b""
        return (b"https://" if request.isSecure() else b"http://") + host

    def _finish(
        self, request: Request, answer: Deferred[bytes] | bytes, back: str, staff: StaffSession | None = None
    ) -> bytes | int:
        """Write C{answer} when it comes; a refusal goes back to the page with its reason."""
        if isinstance(answer, bytes):
            return answer
        finished: list[object] = []
        request.notifyFinish().addBoth(finished.append)

        def refused(failure: Failure) -> bytes:
            if failure.check(Refused) and staff is not None:
                staff.error = failure.value.message
                return _see_other(request, back)
            if failure.check(Refused):
                return self._plain(request, failure.value.status, failure.value.message)
            log.failure("admin page {path} failed", failure, path=request.path.decode("ascii", "replace"))
            return self._plain(request, 500, "portald failed to do this; its log says why.")

        def write(body: bytes) -> None:
            if not finished:
                request.write(body)
                request.finish()

        answer.addErrback(refused).addCallback(write)
        return NOT_DONE_YET

    def _plain(self, request: Request, status: int, message: str) -> bytes:
        page = frame("Not done", self._parts.venue(), tags.p(message), tags.p(tags.a("Back", href="/")))
        return html_answer(request, page, status)

    def _page(
        self, request: Request, staff: StaffSession, title: str, here: str, content: list[Any]
    ) -> bytes:
        notice, error = staff.notice, staff.error
        staff.notice = staff.error = None
        page = frame(title, self._parts.venue(), *content, staff=staff, here=here, notice=notice, error=error)
        return html_answer(request, page)

    # --- signing in and out ---

    def _login_form(self, request: Request, error: str | None = None, status: int = 200) -> bytes:
        token = secrets.token_urlsafe(24)
        request.addCookie(
            LOGIN_COOKIE, token.encode(), path=b"/login", max_age=b"3600",
            httpOnly=True, sameSite="strict", secure=self._secure,
        )  # fmt: skip
        page = frame("Staff sign-in", self._parts.venue(), *pages.login_page(token), error=error)
        return html_answer(request, page, status)

    def _sign_in(self, request: Request) -> bytes | Deferred[bytes]:
        name, password = _arg(request, "name"), (request.args or {}).get(b"password", [b""])[0]
        address = normalise_ip(request.getClientAddress().host)
        sent = _arg(request, CSRF_FIELD)
        expected = _cookie(request, LOGIN_COOKIE)
        if not sent or expected is None or not secrets.compare_digest(sent, expected):
            return self._login_form(request, "The sign-in form was out of date: try again.", 403)
        wait = self._throttle.wait(address, name)
        if wait:
            log.warn(
                "admin sign-in for {name!r} from {address} refused: too many wrong passwords",
                name=name,
                address=address,
            )
            minutes = max(1, round(wait / 60))
            return self._login_form(
                request,
                f"Too many wrong passwords. Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
                429,
            )
        hashed = self._accounts.hash_of(name)
        checking = self._verify(hashed or unknown_name(), password.decode("utf-8", "replace"))

        def checked(right: bool) -> Deferred[bytes] | bytes:
            if right and hashed is not None:
                self._throttle.succeeded(address, name)
                staff = self._sessions.begin(name)
                request.addCookie(
                    SESSION_COOKIE, staff.token.encode(), path=b"/", max_age=str(int(self._sessions.lifetime)).encode(),
                    httpOnly=True, sameSite="strict", secure=self._secure,
                )  # fmt: skip
                log.info(
                    "staff {staff} signed in to the admin page from {address}", staff=name, address=address
                )
                return _see_other(request, "/")
            self._throttle.failed(address, name)
            log.warn(
                "admin sign-in refused: wrong name or password for {name!r} from {address}",
                name=name,
                address=address,
            )
            return deferLater(
                self._clock,
                WRONG_PASSWORD_DELAY,
                lambda: self._login_form(request, "That name and password do not match an account.", 403),
            )

        return checking.addCallback(checked)

    def _logout(self, request: Request, staff: StaffSession) -> bytes:
        self._sessions.end(staff.token)
        request.addCookie(
            SESSION_COOKIE,
            b"",
            path=b"/",
            max_age=b"0",
            httpOnly=True,
            sameSite="strict",
            secure=self._secure,
        )
        log.info("staff {staff} signed out of the admin page", staff=staff.name)
        return _see_other(request, "/login")

    # --- pages ---

    def _now(self, request: Request, staff: StaffSession) -> bytes:
        ops = self._parts.operations
        content = pages.now_page(ops.status(), ops.clients(every_device=True), staff.csrf)
        return self._page(request, staff, "Now", "/", content)

    def _vouchers(self, request: Request, staff: StaffSession) -> Deferred[bytes]:
        batch, state = _arg(request, "batch") or None, _arg(request, "state") or None
        listing = self._parts.vouchers.listing(batch, state)

        def show(encoded: Any) -> bytes:
            rows = json.loads(encoded.data)
            content = pages.vouchers_page(
                rows, staff.csrf, batch=batch, state=state, now=self._clock.seconds()
            )
            return self._page(request, staff, "Vouchers", "/vouchers", content)

        return listing.addCallback(show)

    def _sheet(self, request: Request, staff: StaffSession) -> bytes:
        sheet = staff.sheets.get(_arg(request, "batch"))
        if sheet is None:
            return self._plain(
                request,
                404,
                "That sheet is not here: a sheet is kept only for the sign-in that made its vouchers "
                "(portald keeps no code it could print again).",
            )
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        secure_headers(request, SHEET_POLICY)
        return sheet.encode()

    def _today(self, request: Request, staff: StaffSession) -> bytes:
        now = self._clock.seconds()
        hours = last_day(self._parts.history(now - (HOURS + 1) * HOUR, now), now)
        content = pages.today_page(hours, self._parts.intercepts(), self._parts.logins())
        return self._page(request, staff, "Today", "/today", content)

    def _allowed(self, request: Request, staff: StaffSession) -> bytes:
        content = pages.allowed_page(self._parts.operations.allowed(), staff.csrf)
        return self._page(request, staff, "Allowed devices", "/allowed", content)

    # --- changes ---

    def _enforced(self, request: Request, location: str) -> Deferred[bytes]:
        """The redirect, once the firewall has the change (or after the control API's wait)."""
        return self._parts.enforcement.settled().addCallback(lambda _: _see_other(request, location))

    def _end(self, request: Request, staff: StaffSession) -> Deferred[bytes]:
        answer = self._parts.operations.deauthorize(_arg(request, "device"))
        log.info(
            "staff {staff} ended the session of {mac} ({ip})",
            staff=staff.name,
            mac=answer["mac"],
            ip=answer["ip"],
        )
        staff.notice = f"{answer['mac']}'s session has ended; it is cut off."
        return self._enforced(request, "/")

    def _extend(self, request: Request, staff: StaffSession) -> Deferred[bytes]:
        seconds = _duration(_arg(request, "duration"), "Extend by")
        answer = self._parts.operations.extend(_arg(request, "device"), seconds)
        log.info(
            "staff {staff} extended the session of {mac} by {seconds:.0f} s",
            staff=staff.name,
            mac=answer["mac"],
            seconds=seconds,
        )
        staff.notice = f"{answer['mac']}'s session now ends in {duration_text(answer['seconds_remaining'])}."
        return self._enforced(request, "/")

    def _let_in(self, request: Request, staff: StaffSession) -> Deferred[bytes]:
        answer = self._parts.operations.authorize(_arg(request, "device"), note=f"let in by {staff.name}")
        log.info("staff {staff} let {mac} in", staff=staff.name, mac=answer["mac"])
        staff.notice = f"{answer['mac']} is signed in for {duration_text(answer['seconds_remaining'])}."
        return self._enforced(request, "/")

    def _create(self, request: Request, staff: StaffSession) -> Deferred[bytes]:
        count = _whole(_arg(request, "count"), "How many", 1, MOST_VOUCHERS)
        duration = _duration(_arg(request, "duration"), "Each lasts")
        devices = _whole(_arg(request, "devices"), "Devices each", 1, 100, default=1)
        quota_text = _arg(request, "quota")
        quota = None
        if quota_text and quota_text.lower() != "none":
            quota = byte_count(quota_text)
            if not quota:
                raise Refused("Data each: expected an amount such as 500MB or 2GB, or nothing", status=400)
        valid_text = _arg(request, "valid_until")
        try:
            valid_until = deadline(valid_text) if valid_text else None
        except ValueError as e:
            raise Refused(f"Usable until: {e}", status=400) from None
        layout = _arg(request, "layout") or "a4"
        if layout not in LAYOUTS:
            raise Refused(f"Print as: expected one of {', '.join(LAYOUTS)}", status=400)
        note = _arg(request, "note") or None
        rate_down = _rate(_arg(request, "rate_down"), "Download rate")
        rate_up = _rate(_arg(request, "rate_up"), "Upload rate")
        made = self._parts.vouchers.create(
            count, duration, devices, quota, valid_until, note, rate_down=rate_down, rate_up=rate_up
        )

        def show(encoded: Any) -> bytes:
            answer = json.loads(encoded.data)
            staff.keep_sheet(
                answer["batch"], render_sheet(Slip.from_dict(answer["slip"]), answer["vouchers"], layout)
            )
            log.info(
                "staff {staff} made {count} voucher(s) in batch {batch}: {duration}, {devices} device(s), quota {quota}",
                staff=staff.name, count=count, batch=answer["batch"], duration=duration_text(duration),
                devices=devices, quota=bytes_text(quota),
            )  # fmt: skip
            content = pages.created_page(answer, layout)
            return self._page(request, staff, f"Batch {answer['batch']}", "/vouchers", content)

        return made.addCallback(show)

    def _revoke(self, request: Request, staff: StaffSession) -> Deferred[bytes]:
        code, batch = _arg(request, "code") or None, _arg(request, "batch") or None
        answer = self._parts.vouchers.revoke(code, batch)
        log.info(
            "staff {staff} revoked voucher(s) {ids} ({what})", staff=staff.name, ids=", ".join(answer["revoked"]),
            what=f"batch {batch}" if batch else "one",
        )  # fmt: skip
        staff.notice = f"{len(answer['revoked'])} voucher(s) revoked; their devices are cut off."
        return self._enforced(
            request, "/vouchers" + (f"?{urllib.parse.urlencode({'batch': batch})}" if batch else "")
        )

    def _allow(self, request: Request, staff: StaffSession) -> Deferred[bytes]:
        note = _arg(request, "note") or None
        answer = self._parts.operations.allow(_arg(request, "mac"), note)
        log.info(
            "staff {staff} always allows {mac} ({note})",
            staff=staff.name,
            mac=answer["mac"],
            note=note or "no note",
        )
        staff.notice = f"{answer['mac']} is always allowed."
        return self._enforced(request, "/allowed")

    def _disallow(self, request: Request, staff: StaffSession) -> Deferred[bytes]:
        answer = self._parts.operations.disallow(_arg(request, "mac"))
        log.info("staff {staff} no longer always allows {mac}", staff=staff.name, mac=answer["mac"])
        staff.notice = f"{answer['mac']} is no longer always allowed."
        return self._enforced(request, "/allowed")

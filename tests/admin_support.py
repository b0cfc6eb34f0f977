"""The admin page in memory: the real site on a real twisted.web Site, fed HTTP bytes, on a Clock."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.server import Site

from portald.admin.accounts import PasswordHash, StaffAccounts, set_account
from portald.admin.site import AdminParts, AdminSite
from portald.admin.staff import StaffSessions
from portald.control.api import Enforcement
from portald.control.operations import Operations, Sources
from portald.control.vouchers import VoucherOperations
from portald.leases.model import Lease
from portald.neighbours import Neighbours
from portald.store import SessionStore
from portald.table import AuthorizationTable
from portald.vouchers.book import VoucherBook
from portald.vouchers.codes import VoucherKey
from portald.vouchers.sheet import Slip
from tests.web_support import Reply, parse_replies

STAFF_IP = "198.51.100.20"
GUEST_IP = "192.0.2.10"
GUEST_MAC = "02:00:00:00:00:0a"
OTHER_IP = "192.0.2.11"
OTHER_MAC = "02:00:00:00:00:0b"
# A hostname a guest chose for their phone: shown as text, never as markup.
HOSTILE_NAME = '<script>alert("x")</script>'
NAME, PASSWORD = "frontdesk", "correct horse"
# scrypt at a low cost: the same function, fast enough for many tests.
TEST_COST = 2**10


def verify_now(hashed: PasswordHash, password: str) -> Deferred[bool]:
    """The real check, in the test's thread (portald runs it in the reactor's thread pool)."""
    return succeed(hashed.matches(password))


class Browser:
    """One staff member's browser: keeps its cookies, sends forms, follows nothing by itself."""

    def __init__(self, harness: AdminHarness, ip: str = STAFF_IP) -> None:
        self.harness = harness
        self.ip = ip
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        body = urlencode(form).encode() if form is not None else b""
        head = [f"{method} {path} HTTP/1.1", "Host: 198.51.100.1:8081", f"Content-Length: {len(body)}"]
        if form is not None:
            head.append("Content-Type: application/x-www-form-urlencoded")
        if self.cookies:
            head.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        peer = IPv4Address("TCP", self.ip, 50000)
        transport = StringTransport(peerAddress=peer, hostAddress=IPv4Address("TCP", "198.51.100.1", 8081))
        protocol = self.harness.site.buildProtocol(peer)
        protocol.makeConnection(transport)
        protocol.dataReceived(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        # Work done a chunk per turn of the reactor (voucher lists) takes a few turns.
        for _ in range(100):
            if transport.value():
                break
            self.harness.clock.advance(0)
        self.harness.pending = lambda: transport.value()
        if not transport.value():
            return None  # type: ignore[return-value]  # answered later: see AdminHarness.later
        return self._take(transport.value())

    def _take(self, raw: bytes) -> Reply:
        (reply,) = parse_replies(raw)
        for line in raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n"):
            if line.lower().startswith("set-cookie:"):
                text = line.split(":", 1)[1].strip()
                self.set_cookies.append(text)
                cookie = SimpleCookie()
                cookie.load(text)
                for key, morsel in cookie.items():
                    if morsel["max-age"] == "0" or not morsel.value:
                        self.cookies.pop(key, None)
                    else:
                        self.cookies[key] = morsel.value
        return reply

    def later(self) -> Reply:
        """The answer that was not ready when the request was sent."""
        return self._take(self.harness.pending())

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, **form: str) -> Reply:
        return self.request("POST", path, form)

    def csrf(self, path: str = "/") -> str:
        match = re.search(r'name="csrf" value="([^"]+)"', self.get(path).body)
        assert match, "no CSRF token on the page"
        return match.group(1)

    def send(self, path: str, page: str = "/", **form: str) -> Reply:
        """A form on C{page} sent as the page would send it (with its token)."""
        return self.post(path, csrf=self.csrf(page), **form)

    def sign_in(self, name: str = NAME, password: str = PASSWORD) -> Reply | None:
        token = re.search(r'name="csrf" value="([^"]+)"', self.get("/login").body)
        assert token
        return self.post("/login", csrf=token.group(1), name=name, password=password)


class AdminHarness:
    """One portald's admin page: a table with two leased guests, a store, a voucher book, all on a Clock."""

    def __init__(self, tmp_path: Path, *, secure: bool = False) -> None:
        self.tmp = tmp_path
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = SessionStore.open(tmp_path / "sessions.sqlite3")
        self.table = AuthorizationTable(self.clock, journal=self.store)
        self.neighbours = Neighbours()
        self.neighbours.replace({GUEST_IP: GUEST_MAC, OTHER_IP: OTHER_MAC})
        self.leases = {
            GUEST_IP: Lease(GUEST_IP, GUEST_MAC, HOSTILE_NAME, None),
            OTHER_IP: Lease(OTHER_IP, OTHER_MAC, "bobs-laptop", None),
        }
        self.operations = Operations(
            self.table,
            self.neighbours,
            self.clock,
            Sources(leases=lambda: self.leases, usage=lambda mac: None),
            session_timeout=3600.0,
        )
        book = VoucherBook(
            self.store, self.table, self.clock, VoucherKey.load_or_create(tmp_path / "vouchers.key"), "refuse"
        )
        self.book = book
        self.vouchers = VoucherOperations(book, self.clock, Slip("Café <Test>", "http://portal.example/"))
        # The firewall's confirmation: fired by the test, as the kernel would.
        self.waiting: list[Deferred[None]] = []
        self.intercepts = {"511 Network Authentication Required": 7}
        self.logins = {("voucher", "ok"): 2}
        parts = AdminParts(
            operations=self.operations,
            vouchers=self.vouchers,
            enforcement=Enforcement(self._applied, self.clock),
            history=self.store.sessions_between,
            intercepts=lambda: self.intercepts,
            logins=lambda: self.logins,
            venue=lambda: "Café <Test>",
        )
        self.users = tmp_path / "admin-users"
        set_account(self.users, NAME, PASSWORD, cost=TEST_COST)
        self.accounts = StaffAccounts(self.users)
        self.sessions = StaffSessions(self.clock, lifetime=12 * 3600, idle=3600)
        self.admin = AdminSite(parts, self.accounts, self.sessions, verify_now, self.clock, secure=secure)
        self.site = Site(self.admin, reactor=self.clock)
        self.pending = lambda: b""
        self.auto_apply = True

    def _applied(self) -> Deferred[None]:
        if self.auto_apply:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self.waiting.append(waiting)
        return waiting

    def browser(self, ip: str = STAFF_IP) -> Browser:
        return Browser(self, ip)

    def signed_in(self) -> Browser:
        browser = self.browser()
        reply = browser.sign_in()
        assert reply is not None and reply.status == 303, reply
        return browser

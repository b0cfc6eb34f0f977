"""
What a request for someone else's site gets: the decision and its bytes.

Kept apart from any HTTP machinery so that the fast front door and the
full twisted.web path give exactly the same answers.
"""

from __future__ import annotations

import enum
from collections import Counter

import attrs
from twisted.internet.interfaces import IReactorTime

from portald.config import Config, ProbeRule
from portald.memo import BoundedMemo, PerSecondMemo
from portald.neighbours import Neighbours
from portald.table import AuthorizationTable
from portald.web.interceptlog import InterceptLog, tally
from portald.web.prerendered import Prerendered
from portald.web.security import COMMON_HEADERS, HTML, INTERCEPT_CSP, NO_STORE
from portald.web.theme import Theme
from portald.web.tokens import Signer
from portald.web.urls import original_url, portal_hosts, split_host

NEXT = "next"  # the token purpose and query parameter that carry a destination
NEXT_MAX_AGE = 3600.0
NETWORK_AUTHENTICATION_REQUIRED = b"Network Authentication Required"


# (client IP, Host header, request target): what a captive answer depends on.
_AnswerKey = tuple[str, bytes, bytes]


class Answer(enum.Enum):
    PROBE_REDIRECT = "302 to the portal (probe)"
    NETWORK_AUTH = "511 Network Authentication Required"
    ONLINE = "200 online page (authorized)"


@attrs.frozen
class Response:
    """
    A complete answer; the body is sent for every method but HEAD.
    C{wire_head} is the status line and C{headers} as bytes, ready to send.
    With C{closes}, the connection it goes out on is closed after it, on
    either path (the front door's or twisted.web's).
    """

    answer: Answer
    code: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    wire_head: bytes = b""
    closes: bool = False


def wire_head(code: int, reason: bytes, headers: tuple[tuple[bytes, bytes], ...]) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (code, reason) + b"".join(b"%s: %s\r\n" % header for header in headers)


_HEADERS = (
    (b"Content-Type", HTML),
    (b"Cache-Control", NO_STORE),
    (b"Content-Security-Policy", INTERCEPT_CSP),
)
_HEADERS += COMMON_HEADERS
_ONLINE_HEAD = wire_head(200, b"OK", _HEADERS)
_NETWORK_AUTH_HEAD = wire_head(511, NETWORK_AUTHENTICATION_REQUIRED, _HEADERS)
_REDIRECT_HEAD = wire_head(302, b"Found", _HEADERS)
_REDIRECT_BODY = b'<!DOCTYPE html>\n<html lang="en"><head><title>Sign in</title></head><body><p>Sign in first.</p></body></html>\n'


class Interception:
    """
    Decides, logs (see L{InterceptLog}) and counts the answer to every
    intercepted request.

    @ivar counts: intercepted requests so far, by L{Answer}.
    """

    def __init__(
        self,
        config: Config,
        table: AuthorizationTable,
        neighbours: Neighbours,
        signer: Signer,
        theme: Theme,
        clock: IReactorTime,
    ) -> None:
        self._table = table
        self._neighbours = neighbours
        self._signer = signer
        self.portal_url = config.portal_url
        self._portal_hosts = portal_hosts(config.portal)
        self.counts: Counter[Answer] = Counter()
        self.log = InterceptLog(clock)
        # Hot-path memos: Host header -> "is it the portal?", and this
        # second's answers to captive clients (a link's token carries its
        # second, so an answer made again within it would be the same).
        self._portal_host_memo: BoundedMemo[bytes, bool] = BoundedMemo(1024)
        self._answers: PerSecondMemo[_AnswerKey, tuple[str | None, Response]] = PerSecondMemo(clock, 1024)
        self.reconfigure(config, theme)

    def reconfigure(self, config: Config, theme: Theme) -> None:
        """
        The probes, venue and theme of a reloaded configuration (the portal's
        address and port are not live): the pages made again, and this
        second's answers forgotten so that none is made from the old ones.
        """
        probes: dict[str, list[ProbeRule]] = {}
        for rule in config.http.probes:
            probes.setdefault(rule.host, []).append(rule)
        venue = config.portal.venue
        self._network_auth = Prerendered(theme.loader("network-auth"), {"venue": venue}, ["portal_link"])
        self._online = Prerendered(
            theme.loader("online"),
            {"venue": venue, "status_link": self.portal_url + "status"},
            ["destination"],
        )
        self._probes = probes
        self._answers.clear()

    def is_portal_host(self, host_header: bytes | None) -> bool:
        if not host_header:
            return False
        known = self._portal_host_memo.get(host_header)
        if known is None:
            host = split_host(host_header)
            known = self._portal_host_memo.remember(
                host_header, host is not None and host[0] in self._portal_hosts
            )
        return known

    def is_probe(self, host: str, path: str) -> bool:
        rules = self._probes.get(host)
        return rules is not None and any(rule.matches(host, path) for rule in rules)

    def portal_link(self, client_ip: str, destination: str | None) -> str:
        """The portal's URL, carrying C{destination} signed for this client only."""
        if destination is None:
            return self.portal_url
        return f"{self.portal_url}?{NEXT}={self._signer.sign(NEXT, client_ip, destination)}"

    def destination(self, client_ip: str, token: str | None) -> str | None:
        """The URL a C{next} token carries, if it is genuine and was issued to this client."""
        if not token:
            return None
        return self._signer.verify(NEXT, client_ip, token, NEXT_MAX_AGE)

    def answer(self, client_ip: str, method: bytes, host_header: bytes, target: bytes) -> Response:
        """The answer to C{method target} with C{Host: host_header} from C{client_ip}."""
        mac = self._neighbours.mac_for(client_ip)
        if self._table.may_pass(mac):
            url = original_url(host_header, target)
            response = Response(
                Answer.ONLINE,
                200,
                b"OK",
                _HEADERS,
                self._online.render({"destination": url or self.portal_url + "status"}),
                _ONLINE_HEAD,
                # A signed-in browser reached us on a connection it opened
                # for another site before signing in: close it, or its next
                # request for that site (the page's link) comes back here.
                closes=True,
            )
        else:
            # The memo looked up here, not in _captive_answer: a hit costs
            # no call more than the memo's own.
            key = (client_ip, host_header, target)
            known = self._answers.current().get(key)
            url, response = known if known is not None else self._captive_answer(key)
        self.counts[response.answer] += 1
        self.log.record(client_ip, mac, method, url, host_header + target, response.answer.value)
        return response

    def _captive_answer(self, key: _AnswerKey) -> tuple[str | None, Response]:
        """
        The 302 or 511 for a client that has not signed in.  Probes and apps
        ask the same URL over and over: the answer is kept for the rest of
        the second (its portal link is signed per second anyway).
        """
        client_ip, host_header, target = key
        url = original_url(host_header, target)
        if url is not None and self._is_probe_url(url):
            link = self.portal_link(client_ip, url).encode("ascii")
            response = Response(
                Answer.PROBE_REDIRECT,
                302,
                b"Found",
                ((b"Location", link), *_HEADERS),
                _REDIRECT_BODY,
                _REDIRECT_HEAD + b"Location: " + link + b"\r\n",
            )
        else:
            body = self._network_auth.render({"portal_link": self.portal_link(client_ip, url)})
            response = Response(
                Answer.NETWORK_AUTH, 511, NETWORK_AUTHENTICATION_REQUIRED, _HEADERS, body, _NETWORK_AUTH_HEAD
            )
        return self._answers.remember(key, (url, response))

    def summary(self) -> str:
        """The intercepted requests so far, by answer, for the log."""
        total = sum(self.counts.values())
        if not total:
            return "no request intercepted"
        return f"{total} requests intercepted: {tally(self.counts)}"

    def _is_probe_url(self, url: str) -> bool:
        # url is http://host[:port]/path[?query], built by original_url.
        rest = url[7:]
        authority, _, path = rest.partition("/")
        host = authority.rsplit(":", 1)[0] if not authority.endswith("]") else authority
        return self.is_probe(host, "/" + path.split("?", 1)[0])

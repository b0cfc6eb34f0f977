"""
The Captive Portal API (RFC 8908): a phone told its URI by DHCP option 114
(or RA option 37, RFC 8910) asks it whether it is captive, where to sign
in, and how long its session has left, instead of guessing from probes.
It answers per device, from the same table everything else asks.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from portald.web.account import extension
from portald.web.page import client_ip
from portald.web.portal import Portal

CAPTIVE_JSON = b"application/captive+json"
# Android ignores a larger answer.
MOST_BYTES = 4096


def _quality(parameters: list[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value.strip())))
            except ValueError:
                return 0.0
    return 1.0


def accepts_captive_json(accept: bytes | None) -> bool:
    """Whether an Accept header (RFC 9110 media ranges with q values) allows application/captive+json."""
    if accept is None or not accept.strip():
        return True
    best: tuple[int, float] | None = None  # (how specific the match is, its q)
    for media_range in accept.decode("latin-1").split(","):
        kind, *parameters = media_range.split(";")
        kind = kind.strip().lower()
        specificity = {"application/captive+json": 3, "application/*": 2, "*/*": 1}.get(kind)
        if specificity is None:
            continue
        quality = _quality(parameters)
        if best is None or specificity > best[0]:
            best = (specificity, quality)
    return best is not None and best[1] > 0


def captive_state(portal: Portal, mac: str | None) -> dict[str, Any]:
    """The API's answer for the device C{mac} (C{None}: no lease, so captive)."""
    config = portal.config
    state: dict[str, Any] = {"captive": True, "user-portal-url": config.portal_url}
    if config.portal.venue_info_url is not None:
        state["venue-info-url"] = config.portal.venue_info_url
    if mac is None or not portal.table.may_pass(mac):
        return state
    state["captive"] = False
    session = portal.table.session(mac)
    if session is None:
        return state  # always allowed: no session, no limits
    remaining = session.remaining(portal.clock.seconds())
    state["can-extend-session"] = extension(config, remaining) is not None
    if remaining is not None:
        state["seconds-remaining"] = max(0, int(remaining))
    usage = portal.hooks.usage
    used = usage(mac) if usage is not None else None
    if session.quota_bytes and used is not None:
        state["bytes-remaining"] = max(0, session.quota_bytes - sum(used))
    return state


class CaptiveAPI(Resource):
    """C{GET <http.api_path>} on the portal's own name."""

    isLeaf = True

    def __init__(self, portal: Portal) -> None:
        super().__init__()
        self._portal = portal

    def render(self, request: Request) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"Allow", b"GET, HEAD")
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"The Captive Portal API answers GET.\n"
        return self.render_GET(request)

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Cache-Control", b"private, no-store")
        if not accepts_captive_json(request.getHeader(b"accept")):
            request.setResponseCode(406)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"This is the Captive Portal API (RFC 8908): it answers application/captive+json.\n"
        ip = client_ip(request)
        state = captive_state(self._portal, self._portal.neighbours.mac_for(ip))
        # Well under MOST_BYTES: the configuration bounds both URLs.
        body = json.dumps(state, separators=(",", ":")).encode()
        request.setHeader(b"Content-Type", CAPTIVE_JSON)
        return body

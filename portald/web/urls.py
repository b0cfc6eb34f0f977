"""
The URL a client was going to, rebuilt from its request line and Host
header, or nothing: only names and paths that parse are ever carried, and
they are percent-encoded so that they can be shown and redirected to safely.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from portald.config import PortalSettings

_LABEL = rb"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST = re.compile(
    rb"(?P<name>" + _LABEL + rb"(?:\." + _LABEL + rb")*\.?|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>\d{1,5}))?"
)
# What may stay as it is in a path and query; everything else (spaces,
# quotes, angle brackets, bytes above 0x7e) is percent-encoded.
_PATH_SAFE = "/?&=:;@!$'()*+,~%-._"
MAX_URL_LENGTH = 2048


def portal_hosts(portal: PortalSettings) -> frozenset[str]:
    """
    The Host names the portal answers on: its name and its addresses (an
    IPv6 one in brackets, as it stands in a Host header), lower case.
    """
    hosts = {portal.hostname, str(portal.address)}
    if portal.address6 is not None:
        hosts.add(f"[{portal.address6}]")
    return frozenset(hosts)


def split_host(host_header: bytes) -> tuple[str, int | None] | None:
    """C{(lower-case name without a trailing dot, port)} of a Host header, if it is one."""
    match = _HOST.fullmatch(host_header.strip())
    if match is None:
        return None
    port = int(match.group("port")) if match.group("port") else None
    if port is not None and not 1 <= port <= 65535:
        return None
    return match.group("name").decode("ascii").lower().rstrip("."), port


def original_url(host_header: bytes, target: bytes) -> str | None:
    """
    C{http://host[:port]/path?query} for an intercepted request, or C{None}
    if the Host or the request target is not something to send anyone to.
    """
    if target.startswith((b"http://", b"HTTP://")):
        # Absolute form (as sent to a proxy): its authority wins over Host.
        authority, slash, rest = target[7:].partition(b"/")
        host_header, target = authority, slash + rest if slash else b"/"
    if not target.startswith(b"/") or target.startswith(b"//"):
        return None
    host = split_host(host_header)
    if host is None:
        return None
    name, port = host
    path = quote(target.split(b"#", 1)[0], safe=_PATH_SAFE)
    url = f"http://{name}{'' if port in (None, 80) else f':{port}'}{path}"
    return url if len(url) <= MAX_URL_LENGTH else None


def is_http_url(url: str) -> bool:
    """A plain C{http://name/...} URL and nothing else (no scripts, no scheme-relative)."""
    if not url.startswith("http://") or len(url) > MAX_URL_LENGTH:
        return False
    parts = urlsplit(url)
    return (
        parts.scheme == "http"
        and split_host(parts.netloc.encode("ascii", "replace")) is not None
        and all(33 <= ord(c) < 127 for c in url)
    )

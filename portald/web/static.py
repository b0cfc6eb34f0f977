"""The theme's static files, with validators (ETag, Last-Modified) and an hour of caching."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from twisted.web.http import CACHED
from twisted.web.resource import Resource
from twisted.web.server import Request

from portald.web.page import MissingFile
from portald.web.portal import Portal

STATIC_MAX_AGE = 3600


class StaticFiles(Resource):
    """C{/static/NAME}: the theme's file C{NAME}, or not found."""

    def __init__(self, portal: Portal) -> None:
        super().__init__()
        self._portal = portal  # its theme may change on a reload
        self._missing = MissingFile(portal)

    def render(self, request: Request) -> bytes:
        # C{/static} itself is no file: not found, whatever the method
        # (twisted.web would answer GET with 405 and HEAD with a 500).
        return self._missing.render(request)  # type: ignore[no-any-return]

    def getChild(self, name: bytes, request: Request) -> Resource:
        path = (
            self._portal.replies.theme.static_file(name.decode("utf-8", "replace"))
            if not request.postpath
            else None
        )
        if path is None:
            return self._missing
        return _StaticFile(path)


class _StaticFile(Resource):
    """
    One small file (a stylesheet, a logo), read whole at each request: no
    producer to pump, and an edit to a theme shows at the next reload.
    """

    isLeaf = True

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path

    def render_GET(self, request: Request) -> bytes:
        try:
            stat = self._path.stat()
            content = self._path.read_bytes()
        except OSError:
            request.setResponseCode(404)
            return b""
        request.setHeader(b"Cache-Control", f"public, max-age={STATIC_MAX_AGE}".encode())
        kind = mimetypes.guess_type(self._path.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("image/svg+xml", "application/javascript"):
            kind += "; charset=utf-8"
        request.setHeader(b"Content-Type", kind.encode())
        tag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'.encode()
        if request.setETag(tag) is CACHED or request.setLastModified(stat.st_mtime) is CACHED:
            return b""
        return content

    render_HEAD = render_GET

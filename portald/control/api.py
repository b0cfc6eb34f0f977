"""
The control API: L{Operations} as JSON over HTTP (twisted.web), for the
control socket.

    GET  /v1/status              GET  /v1/clients[?all=1]     GET /v1/allowed
    POST /v1/auth     {"device", "duration"?, "note"?}
    POST /v1/deauth   {"device"}
    POST /v1/extend   {"device", "duration"}
    POST /v1/allow    {"mac", "note"?}
    POST /v1/disallow {"mac"}

Durations are seconds.  A refusal is its HTTP status with
C{{"error": "..."}}; nothing was changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from portald.control.operations import Operations, Refused

log = Logger()

# A command is a few short fields.
MAX_BODY = 16 * 1024

Handler = Callable[[dict[str, Any]], object]


def _json(request: Request, status: int, value: object) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(value, indent=2).encode() + b"\n"


def _body(request: Request) -> dict[str, Any]:
    data = request.content.read(MAX_BODY + 1) if request.content is not None else b""
    if len(data) > MAX_BODY:
        raise Refused(f"the request body is over {MAX_BODY} bytes", status=413)
    if not data.strip():
        return {}
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Refused("the request body is not JSON", status=400) from None
    if not isinstance(value, dict):
        raise Refused("the request body is not a JSON object", status=400)
    return value


def _field(body: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise Refused(f"missing field {name!r}", status=400)
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise Refused(f"field {name!r}: expected {'a number' if kind is float else 'text'}", status=400)
    return value


class _Call(Resource):
    """One API call: a GET question or a POST command."""

    isLeaf = True

    def __init__(self, method: bytes, handler: Callable[[Request], object]) -> None:
        super().__init__()
        self._method = method
        self._handler = handler

    def render(self, request: Request) -> bytes:
        if request.method != self._method:
            request.setHeader(b"Allow", self._method)
            return _json(request, 405, {"error": f"use {self._method.decode()}"})
        try:
            return _json(request, 200, self._handler(request))
        except Refused as e:
            return _json(request, e.status, {"error": e.message})
        except Exception:
            log.failure("control API {path} failed", path=request.path.decode("ascii", "replace"))
            return _json(request, 500, {"error": "portald failed to do this; its log says why"})


class _Branch(Resource):
    """A path with calls under it: anything else there is a JSON 404."""

    def getChild(self, path: bytes, request: Request) -> Resource:
        return _NotFound()


class ControlAPI(_Branch):
    """The root of the control socket's web site."""

    def __init__(self, operations: Operations) -> None:
        super().__init__()
        ops = operations
        version = _Branch()
        self.putChild(b"v1", version)

        def command(handler: Handler) -> Callable[[Request], object]:
            return lambda request: handler(_body(request))

        calls: dict[bytes, _Call] = {
            b"status": _Call(b"GET", lambda request: ops.status()),
            b"clients": _Call(
                b"GET", lambda request: ops.clients(every_device=request.args.get(b"all", [b"0"])[0] == b"1")
            ),
            b"allowed": _Call(b"GET", lambda request: ops.allowed()),
            b"auth": _Call(
                b"POST",
                command(
                    lambda body: ops.authorize(
                        _field(body, "device", str),
                        _field(body, "duration", float, required=False),
                        _field(body, "note", str, required=False),
                    )
                ),
            ),
            b"deauth": _Call(b"POST", command(lambda body: ops.deauthorize(_field(body, "device", str)))),
            b"extend": _Call(
                b"POST",
                command(
                    lambda body: ops.extend(_field(body, "device", str), _field(body, "duration", float))
                ),
            ),
            b"allow": _Call(
                b"POST",
                command(
                    lambda body: ops.allow(
                        _field(body, "mac", str), _field(body, "note", str, required=False)
                    )
                ),
            ),
            b"disallow": _Call(b"POST", command(lambda body: ops.disallow(_field(body, "mac", str)))),
        }
        for name, call in calls.items():
            version.putChild(name, call)


class _NotFound(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        return _json(request, 404, {"error": f"no such call: {request.path.decode('ascii', 'replace')}"})

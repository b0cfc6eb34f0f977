"""
The control API: L{Operations} as JSON over HTTP (twisted.web), for the
control socket.

    GET  /v1/status              GET  /v1/clients[?all=1]     GET /v1/allowed
    POST /v1/auth     {"device", "duration"?, "note"?}
    POST /v1/deauth   {"device"}
    POST /v1/extend   {"device", "duration"}
    POST /v1/rate     {"device", "down", "up"}   (bit/s, 0 unlimited, null: the way in's)
    POST /v1/allow    {"mac", "note"?}
    POST /v1/disallow {"mac"}
    POST /v1/reload   {}           (as SIGHUP)
    GET  /v1/vouchers[?batch=B&state=S]    GET /v1/voucher?code=CODE
    POST /v1/vouchers/create {"count", "duration", "devices"?, "quota"?, "valid_until"?, "note"?, "batch"?,
                              "rate_down"?, "rate_up"?}
    POST /v1/vouchers/revoke {"code"} or {"batch"}
    POST /v1/vouchers/prune  {}

Durations are seconds.  A refusal is its HTTP status with
C{{"error": "..."}}; nothing was changed.  A command is answered once the
firewall has it in force (as a guest's sign-in is), or after
L{ENFORCED_WAIT} seconds at most.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from portald.control.operations import EncodedJSON, Operations, Refused
from portald.control.vouchers import VoucherOperations
from portald.enforced import in_force_soon
from portald.reload import Reloader, ReloadRefused

log = Logger()

# A command is a few short fields.
MAX_BODY = 16 * 1024
# How long a command's answer waits for the firewall at most.
ENFORCED_WAIT = 5.0

Handler = Callable[[dict[str, Any]], object]


def _json(request: Request, status: int, value: object) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    if isinstance(value, EncodedJSON):
        return value.data + b"\n"
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


@attrs.frozen
class Enforcement:
    """How a command waits for the firewall: its C{applied}, on C{clock}."""

    applied: Callable[[], Deferred[None]]
    clock: IReactorTime

    def settled(self) -> Deferred[None]:
        """Fires once the firewall has what was just changed, or after L{ENFORCED_WAIT} (logged); never fails."""
        return in_force_soon(self.applied, self.clock, ENFORCED_WAIT, "a staff command")


class _Call(Resource):
    """One API call: a GET question, or a POST command answered once it is in force."""

    isLeaf = True

    def __init__(
        self, method: bytes, handler: Callable[[Request], object], enforcement: Enforcement | None = None
    ) -> None:
        super().__init__()
        self._method = method
        self._handler = handler
        self._enforcement = enforcement

    def render(self, request: Request) -> bytes | int:
        if request.method != self._method:
            request.setHeader(b"Allow", self._method)
            return _json(request, 405, {"error": f"use {self._method.decode()}"})
        try:
            answer = self._handler(request)
        except Refused as e:
            return _json(request, e.status, {"error": e.message})
        except Exception:
            log.failure("control API {path} failed", path=request.path.decode("ascii", "replace"))
            return _json(request, 500, {"error": "portald failed to do this; its log says why"})
        if isinstance(answer, Deferred):
            return self._later(request, answer)
        if self._enforcement is None:
            return _json(request, 200, answer)
        waiting = self._enforcement.settled()
        finished: list[object] = []
        request.notifyFinish().addBoth(finished.append)

        def answered(_: object) -> None:
            if not finished:
                request.write(_json(request, 200, answer))
                request.finish()

        waiting.addCallback(answered)
        return NOT_DONE_YET

    def _later(self, request: Request, answer: Deferred[object]) -> int:
        """An answer that takes a while (a big batch of vouchers)."""
        finished: list[object] = []
        request.notifyFinish().addBoth(finished.append)

        def write(status: int, value: object) -> None:
            if not finished:
                request.write(_json(request, status, value))
                request.finish()

        def failed(failure: Failure) -> None:
            if failure.check(Refused):
                write(failure.value.status, {"error": failure.value.message})
                return
            log.failure("control API {path} failed", failure, path=request.path.decode("ascii", "replace"))
            write(500, {"error": "portald failed to do this; its log says why"})

        answer.addCallbacks(lambda value: write(200, value), failed)
        return NOT_DONE_YET


class _Branch(Resource):
    """A path with calls under it: anything else there is a JSON 404."""

    def getChild(self, path: bytes, request: Request) -> Resource:
        return _NotFound()


class ControlAPI(_Branch):
    """The root of the control socket's web site."""

    def __init__(
        self,
        operations: Operations,
        enforcement: Enforcement | None = None,
        vouchers: VoucherOperations | None = None,
    ) -> None:
        super().__init__()
        ops = operations
        # The configuration's reloader, once there is one (a daemon started from a file).
        self.reloader: Reloader | None = None
        version = _Branch()
        self.putChild(b"v1", version)

        def command(handler: Handler) -> _Call:
            # A change: answered once the firewall has it.
            return _Call(b"POST", lambda request: handler(_body(request)), enforcement)

        calls: dict[bytes, _Call] = {
            b"status": _Call(b"GET", lambda request: ops.status()),
            b"clients": _Call(
                b"GET", lambda request: ops.clients(every_device=request.args.get(b"all", [b"0"])[0] == b"1")
            ),
            b"allowed": _Call(b"GET", lambda request: ops.allowed()),
            b"auth": command(
                lambda body: ops.authorize(
                    _field(body, "device", str),
                    _field(body, "duration", float, required=False),
                    _field(body, "note", str, required=False),
                )
            ),
            b"deauth": command(lambda body: ops.deauthorize(_field(body, "device", str))),
            b"extend": command(
                lambda body: ops.extend(_field(body, "device", str), _field(body, "duration", float))
            ),
            b"rate": command(
                lambda body: ops.rate(
                    _field(body, "device", str),
                    _whole(body, "down", default=None),
                    _whole(body, "up", default=None),
                )
            ),
            b"allow": command(
                lambda body: ops.allow(_field(body, "mac", str), _field(body, "note", str, required=False))
            ),
            b"disallow": command(lambda body: ops.disallow(_field(body, "mac", str))),
            b"reload": command(lambda body: self._reload()),
        }
        for name, call in calls.items():
            version.putChild(name, call)
        if vouchers is not None:
            version.putChild(b"vouchers", _VoucherCalls(vouchers, enforcement))
            version.putChild(
                b"voucher",
                _Call(b"GET", lambda request: vouchers.show(_query(request, "code", required=True))),
            )

    def _reload(self) -> dict[str, object]:
        if self.reloader is None:
            raise Refused("this portald was not started from a file: nothing to reload")
        try:
            return {"changed": self.reloader.reload()}
        except ReloadRefused as e:
            raise Refused(str(e)) from None


def _query(request: Request, name: str, *, required: bool = False) -> Any:
    values = (request.args or {}).get(name.encode())
    if not values:
        if required:
            raise Refused(f"missing {name}", status=400)
        return None
    return values[0].decode("utf-8", "replace")


class _VoucherCalls(Resource):
    """C{/v1/vouchers}: the list (GET), and create, revoke and prune under it (POST)."""

    def __init__(self, vouchers: VoucherOperations, enforcement: Enforcement | None) -> None:
        super().__init__()
        self._list = _Call(
            b"GET", lambda request: vouchers.listing(_query(request, "batch"), _query(request, "state"))
        )

        def create(body: dict[str, Any]) -> object:
            return vouchers.create(
                _whole(body, "count"),
                _field(body, "duration", float),
                _whole(body, "devices", default=1),
                _whole(body, "quota", default=None),
                _field(body, "valid_until", float, required=False),
                _field(body, "note", str, required=False),
                _field(body, "batch", str, required=False),
                _whole(body, "rate_down", default=None),
                _whole(body, "rate_up", default=None),
            )

        self.putChild(b"create", _Call(b"POST", lambda request: create(_body(request))))
        revoke = _Call(
            b"POST",
            lambda request: (lambda body: vouchers.revoke(
                _field(body, "code", str, required=False), _field(body, "batch", str, required=False)
            ))(_body(request)),
            enforcement,
        )  # fmt: skip
        self.putChild(b"revoke", revoke)
        self.putChild(b"prune", _Call(b"POST", lambda request: vouchers.prune()))

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return self._list
        return _NotFound()

    def render(self, request: Request) -> bytes | int:
        return self._list.render(request)


def _whole(body: dict[str, Any], name: str, *, default: Any = ...) -> Any:
    value = body.get(name)
    if value is None:
        if default is ...:
            raise Refused(f"missing field {name!r}", status=400)
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise Refused(f"field {name!r}: expected a whole number", status=400)
    return value


class _NotFound(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        return _json(request, 404, {"error": f"no such call: {request.path.decode('ascii', 'replace')}"})

"""The metrics listener: C{/metrics} on C{metrics.listen}, the staff's side only."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from twisted.application.internet import TCPServer
from twisted.internet.interfaces import IReactorTCP
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from portald.config import Endpoint

log = Logger()


class MetricsPage(Resource):
    """The exposition, made in the reactor's thread (the figures are its own)."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self._registry)


class MetricsService(TCPServer):
    name = "metrics"

    def __init__(self, listen: Endpoint, registry: CollectorRegistry, reactor: IReactorTCP) -> None:
        root = Resource()
        root.putChild(b"metrics", MetricsPage(registry))
        site = Site(root)
        site.log = lambda request: None  # type: ignore[method-assign]
        self._listen = listen
        super().__init__(listen.port, site, interface=str(listen.host), reactor=reactor)

    def startService(self) -> None:
        super().startService()
        log.info("metrics at http://{address}/metrics", address=str(self._listen))

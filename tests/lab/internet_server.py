"""
The lab's "internet" web server: example sites and the operating systems'
connectivity probes, each answered exactly as the real endpoint answers when
the network is online (see ../shared/CLIENTS.md).

Run inside the internet namespace by tests/lab/internet.py:

    python internet_server.py --port 80 [--tls-port 443 --cert C --key K]

Every other request gets a small page that names the host and path it was
asked for, so a test can tell the real site from the portal.
"""

from __future__ import annotations

import argparse
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

APPLE_SUCCESS = b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
FIREFOX_CANONICAL = (
    b'<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>'
)

# (host, path) -> (status, headers, body); path None: any path on the host.
PROBE_ANSWERS: dict[tuple[str, str | None], tuple[int, dict[str, str], bytes]] = {
    ("connectivitycheck.gstatic.com", "/generate_204"): (204, {}, b""),
    ("connectivitycheck.android.com", "/generate_204"): (204, {}, b""),
    ("clients3.google.com", "/generate_204"): (204, {}, b""),
    ("www.google.com", "/generate_204"): (204, {}, b""),
    ("www.gstatic.com", "/generate_204"): (204, {}, b""),
    ("captive.apple.com", None): (200, {"Content-Type": "text/html"}, APPLE_SUCCESS),
    ("www.apple.com", "/library/test/success.html"): (200, {"Content-Type": "text/html"}, APPLE_SUCCESS),
    ("netcts.cdn-apple.com", None): (200, {"Content-Type": "text/html"}, APPLE_SUCCESS),
    ("www.msftconnecttest.com", "/connecttest.txt"): (
        200,
        {"Content-Type": "text/plain"},
        b"Microsoft Connect Test",
    ),
    ("ipv6.msftconnecttest.com", "/connecttest.txt"): (
        200,
        {"Content-Type": "text/plain"},
        b"Microsoft Connect Test",
    ),
    ("www.msftncsi.com", "/ncsi.txt"): (200, {"Content-Type": "text/plain"}, b"Microsoft NCSI"),
    ("detectportal.firefox.com", "/success.txt"): (200, {"Content-Type": "text/plain"}, b"success\n"),
    ("detectportal.firefox.com", "/canonical.html"): (200, {"Content-Type": "text/html"}, FIREFOX_CANONICAL),
    ("connectivity-check.ubuntu.com", None): (204, {"X-NetworkManager-Status": "online"}, b""),
    ("nmcheck.gnome.org", "/check_network_status.txt"): (
        200,
        {"Content-Type": "text/plain"},
        b"NetworkManager is online\n",
    ),
    ("fedoraproject.org", "/static/hotspot.txt"): (200, {"Content-Type": "text/plain"}, b"OK\n"),
}


def answer_for(host: str, path: str) -> tuple[int, dict[str, str], bytes]:
    host = host.split(":")[0].lower()
    path = path.split("?")[0]
    for key in ((host, path), (host, None)):
        if key in PROBE_ANSWERS:
            return PROBE_ANSWERS[key]
    body = (
        f"<!DOCTYPE html><html><head><title>{host}</title></head>"
        f"<body><h1>The real {host}</h1><p>EXAMPLE-SITE {host}{path}</p></body></html>"
    ).encode()
    return 200, {"Content-Type": "text/html; charset=utf-8"}, body


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status, headers, body = answer_for(self.headers.get("Host", ""), self.path)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status != 204:
            self.wfile.write(body)

    do_HEAD = do_GET
    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.client_address[0]} {self.headers.get('Host', '-')} {format % args}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--tls-port", type=int)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    servers = [ThreadingHTTPServer((args.address, args.port), Handler)]
    if args.tls_port:
        tls = ThreadingHTTPServer((args.address, args.tls_port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        tls.socket = context.wrap_socket(tls.socket, server_side=True)
        servers.append(tls)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("serving", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()

"""
Tiny servers for the firewall's kernel tests, run inside a namespace:

    python3 firewall_servers.py udp-echo ADDRESS PORT NAME READY_FILE
    python3 firewall_servers.py udp-log  ADDRESS PORT LOG_FILE READY_FILE
    python3 firewall_servers.py http     ADDRESS PORT NAME READY_FILE

Each binds, then creates READY_FILE, and serves until killed.
"""

from __future__ import annotations

import socket
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


def udp_echo(address: str, port: int, name: str, ready: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    ready.touch()
    while True:
        data, peer = sock.recvfrom(2048)
        sock.sendto(name.encode() + b":" + data, peer)


def udp_log(address: str, port: int, log: str, ready: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    ready.touch()
    while True:
        data, _ = sock.recvfrom(2048)
        with open(log, "ab") as f:
            f.write(data + b"\n")


def http(address: str, port: int, name: str, ready: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"{name}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer((address, port), Handler)
    ready.touch()
    server.serve_forever()


if __name__ == "__main__":
    kind, address, port, arg, ready = sys.argv[1:6]
    {"udp-echo": udp_echo, "udp-log": udp_log, "http": http}[kind](address, int(port), arg, Path(ready))

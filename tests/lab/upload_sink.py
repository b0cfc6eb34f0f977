"""
An upload sink for the lab's internet: ``python upload_sink.py ADDRESS PORT``
takes any PUT or POST body whole, answers 200 with its size, and keeps
nothing.  Serving files is http.server's; this is its other half.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink(BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        left = int(self.headers.get("Content-Length", "0"))
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)
        body = f"{self.headers.get('Content-Length', '0')} bytes\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT


if __name__ == "__main__":
    server = ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Sink)
    print("sink ready", flush=True)
    server.serve_forever()

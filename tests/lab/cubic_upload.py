"""
An upload as a phone's TCP makes it (CUBIC, which fills a link's buffer;
this machine's default, BBR, keeps queues short by itself):

    python cubic_upload.py ADDRESS PORT BYTES

PUTs BYTES zero bytes to the lab's upload sink and prints the bit/s.
"""

from __future__ import annotations

import socket
import sys
import time


def main() -> None:
    address, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    connection = socket.socket()
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
    connection.settimeout(30)
    connection.connect((address, port))
    started = time.monotonic()
    connection.sendall(f"PUT / HTTP/1.1\r\nHost: {address}\r\nContent-Length: {size}\r\n\r\n".encode())
    chunk = bytes(65536)
    left = size
    while left > 0:
        sent = connection.send(chunk[: min(left, len(chunk))])
        left -= sent
    reply = connection.recv(4096)
    elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0], reply
    print(f"{8 * size / elapsed:.0f}")


if __name__ == "__main__":
    main()

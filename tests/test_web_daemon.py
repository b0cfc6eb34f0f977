"""
The real daemon on the development configuration, asked over loopback what
the README tells a new user to try (the requests curl would make), and put
through the attacks a guest can make on port 80, its memory measured.

The configuration is etc/dev/portald.yaml with free ports instead of
8053/8080 (so that it can run beside a `make run`) and the database in the
test's tmp dir.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from tests.daemon_support import READY, Twistd, ask, dev_config, ports_of


@pytest.fixture
def daemon(tmp_path: Path):
    path = dev_config(tmp_path)
    _, port = ports_of(path)
    twistd = Twistd.start(path, cwd=tmp_path)
    try:
        twistd.wait_for(READY)
        yield port, twistd
        twistd.stop()
    finally:
        twistd.kill()
    assert "Traceback" not in twistd.output, twistd.output


def test_what_the_readme_says_to_try(daemon) -> None:
    port, twistd = daemon
    status, reason, headers, body = ask(port, "GET", "example.com", "/")
    assert (status, reason) == (511, "Network Authentication Required")
    assert headers["Cache-Control"] == "no-store" and "<form" not in body

    status, _, headers, _ = ask(port, "GET", "connectivitycheck.gstatic.com", "/generate_204")
    assert status == 302 and headers["Location"].startswith(f"http://portal.example:{port}/?next=")

    # 127.0.0.1 is 02:00:00:00:00:01 in the development lease file.
    status, _, _, page = ask(port, "GET", "portal.example", "/")
    assert status == 200 and "portald development" in page
    token = re.search(r'name="csrf" value="([^"]*)"', page).group(1)
    status, _, _, page = ask(
        port, "POST", "portal.example", "/login", {"csrf": token, "method": "click-through", "accept": "yes"}
    )
    assert status == 200 and "You are online" in page
    status, _, _, page = ask(port, "GET", "portal.example", "/status")
    assert status == 200 and "02:00:00:00:00:01" in page
    assert re.search(r"<dd>(1 h 00|59) min</dd>", page), page
    token = re.search(r'name="csrf" value="([^"]*)"', page).group(1)
    status, _, _, page = ask(port, "POST", "portal.example", "/logout", {"csrf": token})
    assert status == 200 and "signed out" in page
    assert ask(port, "GET", "example.com", "/")[0] == 511
    twistd.wait_for("authorized 02:00:00:00:00:01 (127.0.0.1) by click-through")


# --- the attacks a guest can make on port 80, the daemon's memory measured ---
# (a generous bound: what matters is that it does not grow with the attack)

PAGE = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
# Growth allowed while an attack runs; before these bounds the same attacks
# took the daemon up by 250 MB and more.
GENEROUS = 60 * 2**20


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def established_to(port: int) -> int:
    """Established TCP connections whose local end is C{port} (the daemon's side), from the kernel."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if int(local.split(":")[1], 16) == port and state == "01":
            count += 1
    return count


def send_for(sock: socket.socket, data: bytes, seconds: float) -> int:
    """Send C{data} until it is all gone or C{seconds} pass (the peer stops reading); bytes sent."""
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + seconds
    view = memoryview(data)
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += sock.send(view[sent : sent + 65536])
        except BlockingIOError:
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            break
    return sent


def test_pipelined_requests_never_read_do_not_grow_the_daemon(daemon) -> None:
    port, twistd = daemon
    before = rss(twistd.process.pid)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sent = send_for(sock, PAGE * 170_000, seconds=5)  # 6.5 MB of requests
        time.sleep(0.5)
        grown = rss(twistd.process.pid) - before
        # The daemon stopped reading once its answers were not taken away...
        assert sent < len(PAGE) * 170_000
        assert grown < GENEROUS, f"RSS grew by {grown / 2**20:.0f} MB"
        # ...and does not keep the connection for it: cut off by the idle
        # sweep (5-10 s), not left waiting to flush what is never read.
        assert established_to(port) == 1
        deadline = time.monotonic() + 20
        while established_to(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert established_to(port) == 0


def test_a_huge_body_is_refused_at_its_head_and_not_read(daemon) -> None:
    port, twistd = daemon
    before = rss(twistd.process.pid)
    for host in (b"portal.example", b"example.com"):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            head = b"POST /login HTTP/1.1\r\nHost: %s\r\nContent-Length: 200000000\r\n\r\n" % host
            sock.sendall(head)
            sock.settimeout(5)
            answer = sock.recv(65536)
            assert answer.split(b" ", 2)[1] in (b"413", b"511"), answer[:100]
            send_for(sock, b"a" * 20_000_000, seconds=3)
    assert rss(twistd.process.pid) - before < GENEROUS

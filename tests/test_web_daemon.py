"""
The real daemon on the development configuration, asked over loopback what
the README tells a new user to try (the requests curl would make).

The configuration is etc/dev/portald.yaml with free ports instead of
8053/8080 (so that it can run beside a `make run`) and the database in the
test's tmp dir.
"""

from __future__ import annotations

import http.client
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEV_CONFIG = ROOT / "etc" / "dev" / "portald.yaml"
TWISTD = Path(sys.executable).parent / "twistd"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def daemon(tmp_path: Path):
    config = yaml.safe_load(DEV_CONFIG.read_text())
    port = free_port(socket.SOCK_STREAM)
    config["http"]["port"] = port
    config["dns"]["port"] = free_port(socket.SOCK_DGRAM)
    for source in config["leases"]["sources"]:
        source["path"] = str(DEV_CONFIG.parent / source["path"])
    config["state"]["database"] = str(tmp_path / "sessions.sqlite3")
    path = tmp_path / "portald.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [str(TWISTD), "--nodaemon", "--pidfile=", "portald", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen: list[str] = []
    ended = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for_line(seen, "try Portal:", ended)
        yield port, seen, ended
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    output = "".join(seen)
    assert "Traceback" not in output, output


def wait_for_line(seen: list[str], text: str, ended: threading.Event, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in list(seen)):
        if ended.is_set() or time.monotonic() > deadline:
            pytest.fail(f"no {text!r} from twistd: " + "".join(seen))
        ended.wait(0.05)


def ask(port: int, method: str, host: str, path: str, form: dict[str, str] | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        body = urlencode(form).encode() if form is not None else None
        headers = {"Host": host}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.reason, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def test_what_the_readme_says_to_try(daemon) -> None:
    port, output, ended = daemon
    status, reason, headers, body = ask(port, "GET", "example.com", "/")
    assert (status, reason) == (511, "Network Authentication Required")
    assert headers["Cache-Control"] == "no-store" and "<form" not in body

    status, _, headers, _ = ask(port, "GET", "connectivitycheck.gstatic.com", "/generate_204")
    assert status == 302 and headers["Location"].startswith(f"http://portal.example:{port}/?next=")

    # 127.0.0.1 is 02:00:00:00:00:01 in the development lease file.
    status, _, _, page = ask(port, "GET", "portal.example", "/")
    assert status == 200 and "portald development" in page
    token = re.search(r'name="csrf" value="([^"]*)"', page).group(1)
    status, _, _, page = ask(port, "POST", "portal.example", "/login", {"csrf": token, "accept": "yes"})
    assert status == 200 and "You are online" in page
    status, _, _, page = ask(port, "GET", "portal.example", "/status")
    assert status == 200 and "02:00:00:00:00:01" in page
    assert re.search(r"<dd>(1 h 00|59) min</dd>", page), page
    token = re.search(r'name="csrf" value="([^"]*)"', page).group(1)
    status, _, _, page = ask(port, "POST", "portal.example", "/logout", {"csrf": token})
    assert status == 200 and "signed out" in page
    assert ask(port, "GET", "example.com", "/")[0] == 511
    wait_for_line(output, "authorized 02:00:00:00:00:01 (127.0.0.1) by click-through", ended)

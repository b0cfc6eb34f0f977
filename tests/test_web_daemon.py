"""
The real daemon on the development configuration, asked over loopback what
the README tells a new user to try (the requests curl would make).

The configuration is etc/dev/portald.yaml with free ports instead of
8053/8080 (so that it can run beside a `make run`) and the database in the
test's tmp dir.
"""

from __future__ import annotations

import re
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
    status, _, _, page = ask(port, "POST", "portal.example", "/login", {"csrf": token, "accept": "yes"})
    assert status == 200 and "You are online" in page
    status, _, _, page = ask(port, "GET", "portal.example", "/status")
    assert status == 200 and "02:00:00:00:00:01" in page
    assert re.search(r"<dd>(1 h 00|59) min</dd>", page), page
    token = re.search(r'name="csrf" value="([^"]*)"', page).group(1)
    status, _, _, page = ask(port, "POST", "portal.example", "/logout", {"csrf": token})
    assert status == 200 and "signed out" in page
    assert ask(port, "GET", "example.com", "/")[0] == 511
    twistd.wait_for("authorized 02:00:00:00:00:01 (127.0.0.1) by click-through")

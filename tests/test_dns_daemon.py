"""
What `make run` promises about DNS, against the real daemon on loopback:
``twistd portald`` with the development configuration (on a free port, so
that it can run beside a `make run`), asked with the real ``dig``.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.daemon_support import READY, Twistd, dev_config, ports_of


@pytest.fixture
def dev_daemon(tmp_path: Path):
    if shutil.which("dig") is None:
        pytest.skip("dig (dnsutils) is not installed; `make test` as root installs it")
    path = dev_config(tmp_path)
    port, _ = ports_of(path)
    twistd = Twistd.start(path, cwd=tmp_path)
    try:
        twistd.wait_for(READY)
        yield port
        twistd.stop(signal.SIGTERM)
    finally:
        twistd.kill()
    assert "Traceback" not in twistd.output


def dig(port: int, *args: str) -> str:
    result = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+time=2", "+tries=1", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_make_run_dns_answers_as_the_readme_says(dev_daemon: int) -> None:
    port = dev_daemon
    assert dig(port, "anything.example", "A", "+noall", "+answer").split() == [
        "anything.example.", "5", "IN", "A", "127.0.0.1",
    ]  # fmt: skip
    assert "status: NXDOMAIN" in dig(port, "use-application-dns.net")
    assert dig(port, "+tcp", "anything.example", "A", "+short").split() == ["127.0.0.1"]
    aaaa = dig(port, "anything.example", "AAAA")
    assert "status: NOERROR" in aaaa and "ANSWER: 0" in aaaa
    assert dig(port, "portal.example", "A", "+short").split() == ["127.0.0.1"]

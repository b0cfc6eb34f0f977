"""
What `make run` promises about DNS, against the real daemon on loopback:
``twistd portald`` with the development configuration (on a free port, so
that it can run beside a `make run`), asked with the real ``dig``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEV_CONFIG = ROOT / "etc" / "dev" / "portald.yaml"
TWISTD = Path(sys.executable).parent / "twistd"


def free_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@pytest.fixture
def dev_daemon(tmp_path: Path):
    if shutil.which("dig") is None:
        pytest.skip("dig (dnsutils) is not installed; `make test` as root installs it")
    config = yaml.safe_load(DEV_CONFIG.read_text())
    port = free_port()
    config["dns"]["port"] = port
    config["http"]["port"] = free_port()
    config["leases"]["sources"][0]["path"] = str(DEV_CONFIG.parent / "dnsmasq.leases")
    config["state"]["database"] = str(tmp_path / "sessions.sqlite3")
    path = tmp_path / "portald.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [str(TWISTD), "--nodaemon", "--pidfile=", "portald", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    seen: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:  # bounded: the daemon logs "try Portal:" once every listener is open
            seen.append(line)
            if "try Portal:" in line:
                break
        else:
            pytest.fail("twistd ended before it started: " + "".join(seen))
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            rest, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, _ = process.communicate()
    assert "Traceback" not in "".join(seen) + rest


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

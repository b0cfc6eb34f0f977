"""
/metrics as Prometheus scrapes it: the real daemon on the development
configuration, some guest traffic and staff commands, then one scrape,
parsed by prometheus_client's own parser.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from twisted.names import dns

from portald.config import ConfigError, parse_config
from tests.daemon_support import READY, ROOT, Twistd, ask, dev_config, ports_of, running

CTL = ROOT / ".venv" / "bin" / "portald-ctl"


def query(port: int, name: str, query_id: int) -> bytes:
    """One UDP question to portald on loopback; its answer's bytes."""
    message = dns.Message(id=query_id, recDes=True)
    message.queries = [dns.Query(name, dns.A, dns.IN)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.sendto(message.toStr(), ("127.0.0.1", port))
        return udp.recv(4096)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def daemon(tmp_path: Path):
    path = dev_config(tmp_path)
    with running(path, tmp_path, signal.SIGTERM) as twistd:
        yield path, twistd
    assert "Traceback" not in twistd.output


def test_a_scrape_counts_what_happened(daemon) -> None:
    path, twistd = daemon
    dns_port, http_port = ports_of(path)
    url = f"http://{yaml.safe_load(path.read_text())['metrics']['listen']}/metrics"
    twistd.wait_for("metrics at http://")
    for query_id in range(3):
        query(dns_port, "anything.example", query_id)  # the fast path's redirect
    assert ask(http_port, "GET", "example.com", "/")[0] == 511
    assert ask(http_port, "GET", "connectivitycheck.gstatic.com", "/generate_204")[0] == 302
    for command in (["auth", "127.0.0.1"], ["deauth", "127.0.0.1"]):
        done = subprocess.run([str(CTL), "--config", str(path), *command], capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
    metrics = scrape(url)
    # Nobody is signed in now: each way in still has its sample, at 0.
    assert metrics[("portald_sessions", (("method", "click-through"),))] == 0
    assert metrics[("portald_sessions", (("method", "staff"),))] == 0
    assert metrics[("portald_dns_queries_total", (("answer", "redirect"),))] == 3
    assert metrics[("portald_dns_queries_total", (("answer", "servfail"),))] == 0
    assert metrics[("portald_http_intercepts_total", (("answer", "511"),))] == 1
    assert metrics[("portald_http_intercepts_total", (("answer", "redirect"),))] == 1
    assert metrics[("portald_logins_total", (("method", "staff"), ("result", "ok")))] == 1
    assert metrics[("portald_session_ends_total", (("reason", "admin"),))] == 1
    assert metrics[("portald_always_allowed", ())] == 0
    lease_file = str(ROOT / "etc" / "dev" / "dnsmasq.leases")
    assert metrics[("portald_leases", (("source", lease_file),))] == 1
    assert 0 <= metrics[("portald_reactor_lag_seconds", ())] < 1
    # The process's own, from prometheus_client.
    assert metrics[("process_open_fds", ())] > 0
    # No MAC or IP is ever a label.
    assert not any(
        "02:00:00" in value or "127.0.0.1" in value for _, labels in metrics for _, value in labels
    )


def test_metrics_are_off_unless_listen_is_given(tmp_path: Path) -> None:
    path = dev_config(tmp_path, metrics={"listen": None})
    twistd = Twistd.start(path, cwd=tmp_path)
    try:
        twistd.wait_for(READY)
    finally:
        twistd.stop(signal.SIGTERM)
    assert "metrics at" not in twistd.output


BASE = """\
portal: {address: 192.0.2.1, subnets: [192.0.2.0/24]}
leases: {sources: [{format: dnsmasq, path: leases}]}
"""


@pytest.mark.parametrize("listen", ["192.0.2.1:9120", "192.0.2.7", "0.0.0.0:9120"])
def test_metrics_on_the_guests_side_are_refused(listen: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + f"metrics: {{listen: '{listen}'}}\n", "test.yaml")
    assert str(caught.value).startswith(
        "test.yaml, line 3: metrics.listen: expected an address on the staff's side"
    )
    config = parse_config(BASE + f"metrics: {{listen: '{listen}', allow_guest_side: true}}\n", "test.yaml")
    assert config.metrics.listen is not None


def test_metrics_on_the_staff_side_are_accepted() -> None:
    config = parse_config(BASE + "metrics: {listen: '198.51.100.1'}\n", "test.yaml")
    assert str(config.metrics.listen) == "198.51.100.1:9120"

"""
The lab's internet services: a web server playing example sites and the OS
connectivity probes, and an authoritative DNS server for their names.

    net = start_internet(lab)          # in lab.internet(), cleaned up with the lab
    net.web                            # "203.0.113.10": HTTP :80 and HTTPS :443
    net.dns                            # "203.0.113.53": dnsmasq answering NAMES
    net.upstream_yaml()                # for a portald config: dns.upstream

Every name in L{NAMES} (the example sites and every probe host of
../shared/CLIENTS.md) resolves to the web server; any other name is NXDOMAIN.
The web server answers each probe exactly as the real endpoint does when
online, and every other request with a page containing
``EXAMPLE-SITE <host><path>`` (see internet_server.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import attrs

from tests.lab.internet_server import PROBE_ANSWERS
from tests.lab.netlab import Lab, LabError, Process, require, wait_for

WEB_ADDRESS = "203.0.113.10"
DNS_ADDRESS = "203.0.113.53"
EXAMPLE_SITES = ("example.test", "www.example.test", "news.example.test")
NAMES = tuple(sorted(set(EXAMPLE_SITES) | {host for host, _ in PROBE_ANSWERS}))
SERVER_SCRIPT = Path(__file__).with_name("internet_server.py")


@attrs.frozen
class Internet:
    web: str
    dns: str
    web_process: Process
    dns_process: Process
    ca_certificate: Path

    def upstream_yaml(self) -> str:
        return f"[{self.dns}]"


def _self_signed(lab: Lab) -> tuple[Path, Path]:
    """A certificate for every example name, for HTTPS to the example sites."""
    require("openssl")
    cert, key = lab.tmp / "internet-cert.pem", lab.tmp / "internet-key.pem"
    names = ",".join(f"DNS:{name}" for name in NAMES) + f",IP:{WEB_ADDRESS}"
    lab.gateway()  # the lab's namespaces exist before anything runs in them
    lab.internet().run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=example.test", "-addext", f"subjectAltName={names}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
    )  # fmt: skip
    return cert, key


def start_internet(lab: Lab) -> Internet:
    require("dnsmasq")
    internet = lab.internet()
    for address in (WEB_ADDRESS, DNS_ADDRESS):
        lab.add_internet_host(address)
    cert, key = _self_signed(lab)
    web = internet.spawn(
        [
            sys.executable, str(SERVER_SCRIPT), "--address", WEB_ADDRESS,
            "--port", "80", "--tls-port", "443", "--cert", str(cert), "--key", str(key),
        ],
        name="web",
    )  # fmt: skip
    dns = internet.spawn(
        [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--user=root", "--group=root", f"--listen-address={DNS_ADDRESS}", "--bind-interfaces",
            "--log-queries", "--log-facility=-", f"--pid-file={lab.tmp / 'internet-dns.pid'}",
            *(f"--host-record={name},{WEB_ADDRESS}" for name in NAMES),
            # Every other name: NXDOMAIN, authoritatively, without forwarding anywhere.
            "--address=/#/",
        ],
        name="dns",
    )  # fmt: skip
    wait_for(lambda: "serving" in web.log() or not web.running(), 10, what="the internet web server")
    wait_for(lambda: _answers(lab, "example.test") or not dns.running(), 10, what="the internet DNS server")
    for process in (web, dns):
        if not process.running():
            raise LabError(f"{process!r} exited at start:\n{process.log()}")
    return Internet(WEB_ADDRESS, DNS_ADDRESS, web, dns, cert)


def serve_files(lab: Lab, files: dict[str, bytes], port: int) -> str:
    """Serve C{files} (name -> content) from the internet's web address on C{port}; their base URL."""
    directory = lab.tmp / f"files-{port}"
    directory.mkdir()
    for name, content in files.items():
        (directory / name).write_bytes(content)
    server = lab.internet().spawn(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            WEB_ADDRESS,
            "--directory",
            str(directory),
        ],
        name=f"files-{port}",
    )
    wait_for(lambda: "Serving HTTP" in server.log() or not server.running(), 10, what="the file server")
    if not server.running():
        raise LabError(f"the file server exited at start:\n{server.log()}")
    return f"http://{WEB_ADDRESS}:{port}/"


def _answers(lab: Lab, name: str) -> bool:
    result = lab.internet().run(
        ["dig", "+short", "+time=1", "+tries=1", f"@{DNS_ADDRESS}", name, "A"], check=False
    )
    return result.stdout.strip() == WEB_ADDRESS

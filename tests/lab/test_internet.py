"""The lab's internet answers like the real one, for clients behind the gateway."""

from __future__ import annotations

import pytest

from tests.lab.internet import DNS_ADDRESS, NAMES, WEB_ADDRESS, start_internet
from tests.lab.internet_server import PROBE_ANSWERS


def curl(namespace, url: str, *extra: str) -> tuple[str, str]:
    result = namespace.run(
        ["curl", "-sS", "-i", "--max-time", "5", *extra, url],
        check=True,
    )
    head, _, body = result.stdout.partition("\n\n")  # text mode: CRLF arrives as LF
    return head, body


def test_probes_sites_and_names(lab) -> None:
    net = start_internet(lab)
    client = lab.client("c1")
    lab.dnsmasq_dhcp()
    client.dhclient()

    answers = client.run(["dig", "+short", f"@{DNS_ADDRESS}", "example.test", "A"]).stdout.split()
    assert answers == [WEB_ADDRESS]
    nx = client.run(["dig", f"@{DNS_ADDRESS}", "not-a-test-name.invalid", "A"]).stdout
    assert "status: NXDOMAIN" in nx
    assert "connectivitycheck.gstatic.com" in NAMES

    for (host, path), (status, headers, body) in PROBE_ANSWERS.items():
        head, got = curl(client, f"http://{host}{path or '/'}", "--resolve", f"{host}:80:{WEB_ADDRESS}")
        assert head.split("\n")[0] == f"HTTP/1.1 {status} " + ("No Content" if status == 204 else "OK")
        assert got.encode() == body
        for name, value in headers.items():
            assert f"{name}: {value}" in head

    head, body = curl(client, "http://example.test/some/page", "--resolve", f"example.test:80:{WEB_ADDRESS}")
    assert "EXAMPLE-SITE example.test/some/page" in body

    _, body = curl(
        client,
        "https://example.test/",
        "--resolve",
        f"example.test:443:{WEB_ADDRESS}",
        "--cacert",
        str(net.ca_certificate),
    )
    assert "EXAMPLE-SITE example.test/" in body


@pytest.mark.parametrize("name", ["captive.apple.com", "www.msftconnecttest.com"])
def test_probe_names_resolve(lab, name: str) -> None:
    start_internet(lab)
    answer = lab.internet().run(["dig", "+short", f"@{DNS_ADDRESS}", name, "A"]).stdout.split()
    assert answer == [WEB_ADDRESS]

"""
The portal on the web, end to end: a client with a real DHCP lease meets the
511 and the probe redirects of the real daemon, signs in by posting the form
as a browser does, and is then treated as online.

Names are pinned with curl's ``--resolve``: to the internet's real web
server (where nftables' DNAT must catch the request for portald while the
client is not signed in), or to the gateway (as a DNS answer from the portal
sends it there).
"""

from __future__ import annotations

import html
import re
import time

from portald.config import DEFAULT_PROBES
from tests.lab.daemon import start_portald
from tests.lab.guest import curl, curl_response, hidden, resolve
from tests.lab.internet import WEB_ADDRESS, start_internet
from tests.lab.netlab import GATEWAY_ADDRESS, wait_for


def test_a_client_is_intercepted_signs_in_and_is_online(lab) -> None:
    started = time.monotonic()
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns])
    phone = lab.client("c1")
    phone.dhclient()
    address = phone.address()
    # portald has read the lease once the landing page offers the form.
    wait_for(
        lambda: 'name="csrf"' in curl(phone, "http://portal.example/")[2], 10, what="portald to see the lease"
    )
    ready = time.monotonic() - started

    assert resolve(phone, "example.test") == [GATEWAY_ADDRESS]  # not signed in: the portal

    # Someone's browser, going to a real internet address: the 511, with a
    # link to the portal and no form.
    status, headers, body = curl(phone, "http://example.test/news?id=7", to=WEB_ADDRESS)
    assert status == 511 and headers["cache-control"] == "no-store"
    assert "<form" not in body
    (link,) = re.findall(r'href="([^"]*)"', body)
    assert link.startswith("http://portal.example/?next=")

    # Every probe of the default list: 302 to the portal.
    for rule in DEFAULT_PROBES:
        url = f"http://{rule.host}{rule.path or '/hotspot-detect.html'}"
        status, headers, _ = curl(phone, url, to=WEB_ADDRESS)
        assert status == 302, url
        assert headers["location"].startswith("http://portal.example/?next="), url

    # Follow the link, post the form as a browser does (its token, its destination).
    status, _, page = curl(phone, html.unescape(link))
    assert status == 200 and "Lab Café" in page
    form = [
        "-d",
        f"csrf={hidden(page, 'csrf')}",
        "-d",
        "accept=yes",
        "--data-urlencode",
        f"next={hidden(page, 'next')}",
    ]
    signing_in = time.monotonic()
    status, headers, _ = curl(phone, "http://portal.example/login", *form)
    sign_in_seconds = time.monotonic() - signing_in
    assert status == 303 and headers["location"] == "http://example.test/news?id=7", portal.log()
    assert f"authorized {phone.mac_address} ({address}) by click-through" in portal.log()

    # Online: a request that still lands on the portal (an old DNS answer)
    # gets the online page, no loop; the real address gets the real site.
    status, headers, body = curl(phone, "http://example.test/news?id=7")
    assert status == 200 and "You are online" in body and "location" not in headers
    assert resolve(phone, "example.test") == [WEB_ADDRESS]  # its next DNS answer is real
    try:
        wait_for(
            lambda: (
                "EXAMPLE-SITE example.test/news"
                in curl(phone, "http://example.test/news?id=7", to=WEB_ADDRESS)[2]
            ),
            5,
        )
    except TimeoutError:
        raise AssertionError(
            repr(curl(phone, "http://example.test/news?id=7", to=WEB_ADDRESS))
            + portal.log()
            + lab.gateway().run(["nft", "list", "ruleset"]).stdout
        ) from None
    assert curl(phone, "http://connectivitycheck.gstatic.com/generate_204", to=WEB_ADDRESS)[0] == 204
    status, _, body = curl(phone, "http://portal.example/status")
    assert status == 200 and "Time left" in body and phone.mac_address in body

    # Sign out, and the 511 is back.
    status, _, _ = curl(phone, "http://portal.example/logout", "-d", f"csrf={hidden(body, 'csrf')}")
    assert status == 200
    assert curl(phone, "http://example.test/")[0] == 511
    # A connection opened while the grant was being withdrawn is cut by the
    # conntrack flush that follows it (as sign-out means to): "not yet".
    wait_for(
        lambda: curl_response(phone, "http://example.test/", to=WEB_ADDRESS, timeout=2).status == 511,
        10,
        what="interception again",
    )
    assert "Traceback" not in portal.log()
    print(
        f"lab: lease to portal ready {ready:.2f}s; sign-in POST answered in {sign_in_seconds * 1000:.0f} ms"
    )

"""
Per-device rates on a real gateway (HTB on the LAN bridge and the uplink,
classified by MAC in nftables): a signed-in phone downloads at its
rate_down and uploads at its rate_up, within 10 %; two phones with
different rates get theirs at the same time.  Transfers are a few MB,
inside the lab's namespaces.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from tests.lab.daemon import start_portald
from tests.lab.internet import WEB_ADDRESS, start_internet
from tests.lab.netlab import wait_for
from tests.lab.test_enforcement import PORTAL, curl, form_token, wait_for_enforcement, wait_for_leases

FILES, SINK = 8000, 9000
SINK_SCRIPT = Path(__file__).with_name("upload_sink.py")


def sign_in(phone, **fields: str) -> None:
    landing = curl(phone, *PORTAL[:-1], PORTAL[-1] + "/").stdout
    form = [arg for name, value in fields.items() for arg in ("--data-urlencode", f"{name}={value}")]
    done = curl(phone, "-o", "/dev/null", "-w", "%{http_code}", *PORTAL[:-1], PORTAL[-1] + "/login",
                "--data-urlencode", f"csrf={form_token(landing)}", *form)  # fmt: skip
    assert done.stdout in ("200", "303"), done


def rate(phone, *args: str) -> float:
    """bit/s of one bounded transfer (curl's own figure)."""
    done = phone.run(["curl", "-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{speed_download} %{speed_upload}",
                      *args], timeout=40)  # fmt: skip
    down, up = (float(x) for x in done.stdout.split())
    return 8 * max(down, up)


def within(measured: float, expected: float, tolerance: float = 0.10) -> bool:
    return abs(measured - expected) <= tolerance * expected


def test_each_phone_gets_its_rate_both_ways(lab) -> None:
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    files = lab.tmp / "files"
    files.mkdir()
    (files / "2mb.bin").write_bytes(bytes(2_000_000))
    (lab.tmp / "1mb.bin").write_bytes(bytes(1_000_000))
    internet = lab.internet()
    web = internet.spawn([sys.executable, "-m", "http.server", str(FILES), "--bind", WEB_ADDRESS, "--directory",
                          str(files)], name="files")  # fmt: skip
    sink = internet.spawn([sys.executable, str(SINK_SCRIPT), WEB_ADDRESS, str(SINK)], name="sink")
    wait_for(lambda: "Serving HTTP" in web.log() and "sink ready" in sink.log(), 10, what="the file server")
    phones = lab.client("c1"), lab.client("c2")
    for phone in phones:
        phone.dhclient()
    settings = {
        "auth": {"methods": [
            {"method": "click-through", "rate_down": "4Mbit", "rate_up": "2Mbit"},
            {"method": "access-code", "codes": ["room-7"], "rate_down": "8Mbit", "rate_up": "1Mbit"},
        ]},
        "shaping": {"uplink": "wan"},
    }  # fmt: skip
    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns], settings=settings)
    wait_for_leases(*phones)
    wait_for_enforcement(lab)
    wait_for(lambda: "shaping 0 device(s)" in portal.log(), 10, what="the shaping tree")
    first, second = phones
    sign_in(first, method="click-through", accept="yes")
    big = f"http://{WEB_ADDRESS}:{FILES}/2mb.bin"
    upload = ["-T", str(lab.tmp / "1mb.bin"), "-H", "Expect:", f"http://{WEB_ADDRESS}:{SINK}/"]

    down = rate(first, big)
    assert within(down, 4e6), down
    up = rate(first, *upload)
    assert within(up, 2e6), up

    # Two phones, two rates, at the same time.
    sign_in(second, method="access-code", code="room-7")
    results: dict[str, float] = {}
    threads = [threading.Thread(target=lambda p=p, n=n: results.__setitem__(n, rate(p, big)))
               for p, n in ((first, "first"), (second, "second"))]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert within(results["first"], 4e6) and within(results["second"], 8e6), results
    classes = lab.gateway().run(["tc", "-s", "class", "show", "dev", "lan"]).stdout
    print(f"  rates: alone {down / 1e6:.2f} down, {up / 1e6:.2f} up; together {results['first'] / 1e6:.2f} and "
          f"{results['second'] / 1e6:.2f} Mbit/s\n{classes}")  # fmt: skip
    assert "rate 4Mbit" in classes and "rate 8Mbit" in classes
    assert "Traceback" not in portal.log()

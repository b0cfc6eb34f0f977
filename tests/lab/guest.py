"""
A guest's view of the lab: requests made from a client namespace with curl
and dig, the portal's forms filled in as a browser fills them, and each step
narrated (printed; pytest shows it with ``-s`` or on failure).

    guest = Guest(lab.client("c1"), "phone")
    guest.get("http://example.test/")            # through the client's own resolver
    guest.get(url, to=WEB_ADDRESS)               # the name pinned to an address
    guest.sign_in(accept="yes")                  # landing page -> its form -> POST
    guest.probes()                               # every OS probe: {os: Response}

The lower-level ``curl``, ``resolve`` and ``hidden`` are shared by the other
lab tests.
"""

from __future__ import annotations

import html
import re
import time

import attrs

from tests.lab.internet_server import answer_for
from tests.lab.netlab import GATEWAY_ADDRESS, Client

PORTAL_URL = "http://portal.example/"

# What each operating system asks to decide whether it is online
# (../shared/CLIENTS.md): its name and the URL.
PROBES = (
    ("Android", "http://connectivitycheck.gstatic.com/generate_204"),
    ("ChromeOS", "http://www.gstatic.com/generate_204"),
    ("Apple", "http://captive.apple.com/hotspot-detect.html"),
    ("Windows", "http://www.msftconnecttest.com/connecttest.txt"),
    ("Firefox", "http://detectportal.firefox.com/success.txt"),
    ("NetworkManager", "http://nmcheck.gnome.org/check_network_status.txt"),
    ("Ubuntu", "http://connectivity-check.ubuntu.com/"),
)


def online_answer(url: str) -> tuple[int, bytes]:
    """The status and body the real endpoint sends for C{url} when the network is online."""
    _, _, host, path = url.split("/", 3)
    status, _, body = answer_for(host, "/" + path)
    return status, body


@attrs.frozen
class Response:
    """What curl got: a status, or (status None) curl's error exit code."""

    status: int | None
    headers: dict[str, str] = attrs.field(factory=dict)
    body: str = ""
    curl_exit: int = 0
    error: str = ""

    def summary(self) -> str:
        if self.status is None:
            kinds = {7: "connection refused/reset", 28: "timed out", 6: "name not resolved"}
            kind = kinds.get(self.curl_exit, "error")
            return f"curl failed: exit {self.curl_exit} ({kind}) {self.error.strip()}".rstrip()
        text = f"{self.status}"
        if "location" in self.headers:
            text += f" -> {short_url(self.headers['location'])}"
        title = re.search(r"<title>([^<]*)</title>", self.body)
        if title:
            text += f" «{html.unescape(title.group(1)).strip()}»"
        elif self.body.strip():
            text += f" {self.body.strip()[:40]!r}"
        return text


def curl_response(
    client: Client, url: str, *extra: str, to: str | None = None, timeout: float = 5
) -> Response:
    """One request from C{client}; C{to} pins the URL's host name to an address."""
    argv = ["curl", "-sS", "-i", "--max-time", str(timeout)]
    if to is not None:
        host = url.split("/", 3)[2]
        port = 443 if url.startswith("https:") else 80
        argv += ["--resolve", f"{host}:{port}:{to}"]
    result = client.run([*argv, *extra, url], check=False, timeout=timeout + 5)
    if result.returncode != 0:
        return Response(None, curl_exit=result.returncode, error=result.stderr)
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    status_line, *lines = head.split("\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return Response(int(status_line.split(" ")[1]), headers, body)


def curl(client: Client, url: str, *extra: str, to: str = GATEWAY_ADDRESS) -> tuple[int, dict[str, str], str]:
    """One request from C{client}, its host name resolved to C{to}; it must get an answer."""
    response = curl_response(client, url, *extra, to=to)
    assert response.status is not None, f"{url}: {response.summary()}"
    return response.status, response.headers, response.body


def resolve(client: Client, name: str, server: str = GATEWAY_ADDRESS) -> list[str]:
    """The A records C{server} (by default portald's DNS) gives C{client} for C{name}."""
    argv = ["dig", "+time=2", "+tries=1", "+short", f"@{server}", name, "A"]
    return client.run(argv, timeout=10).stdout.split()


def hidden(page: str, name: str) -> str | None:
    """The value of the page's hidden input C{name}."""
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', page)
    return html.unescape(match.group(1)) if match else None


def narrate(text: str) -> None:
    """A heading in the story the lab tests tell."""
    print(f"\n== {text}", flush=True)


def short_url(url: str) -> str:
    """The URL without its signed way back, which is long and says nothing to a reader."""
    return url.split("?next=")[0] + "?next=…" if "?next=" in url else url


class Guest:
    """One client namespace, used as a person with a phone would, saying what happens."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name

    def say(self, text: str) -> None:
        print(f"  [{self.name}] {text}", flush=True)

    @property
    def mac(self) -> str:
        return self.client.mac_address

    def join(self) -> str:
        """Real dhclient; the address the DHCP server gave."""
        started = time.monotonic()
        self.client.dhclient()
        address = self.client.address()
        assert address is not None
        resolver = self.client.resolv_conf.read_text().split()[-1]
        self.say(
            f"joins the Wi-Fi as {self.mac}: DHCP gave {address}, resolver {resolver} "
            f"({time.monotonic() - started:.2f}s)"
        )
        return address

    def get(self, url: str, *extra: str, to: str | None = None, quiet: bool = False) -> Response:
        response = curl_response(self.client, url, *extra, to=to)
        if not quiet:
            via = f" (at {to})" if to else ""
            method = "POST" if "-d" in extra or "--data-urlencode" in extra else "GET"
            self.say(f"{method} {short_url(url)}{via}: {response.summary()}")
        return response

    def lookup(self, name: str, server: str = GATEWAY_ADDRESS) -> list[str]:
        answer = resolve(self.client, name, server)
        self.say(f"DNS {name} A @{server}: {' '.join(answer) or '(none)'}")
        return answer

    def probes(self) -> dict[str, Response]:
        """Every operating system's probe, through the client's own resolver."""
        return {os_name: self.get(url) for os_name, url in PROBES}

    def assert_captive(self) -> None:
        """Every probe is sent to the portal (so the device shows its sign-in sheet)."""
        for os_name, response in self.probes().items():
            assert response.status == 302, (os_name, response)
            assert response.headers["location"].startswith(PORTAL_URL + "?next="), (os_name, response)

    def assert_online(self) -> None:
        """
        Every probe gets the real endpoint's online answer, byte for byte.
        A probe that gets no answer at all is retried once, as the OSes do
        (and said loudly: it is a stall worth knowing about).
        """
        for os_name, url in PROBES:
            response = self.get(url)
            if response.status is None:
                self.say(f"STALLED: {os_name}'s probe got no answer; retrying it once")
                response = self.get(url)
            status, body = online_answer(url)
            assert (response.status, response.body.encode()) == (status, body), (os_name, response)

    def sign_in(self, *, landing: str = PORTAL_URL, **fields: str) -> Response:
        """Open C{landing} (the portal, or the 511's link), fill its form with C{fields}, post it."""
        page = self.get(landing)
        assert page.status == 200 and 'name="csrf"' in page.body, page
        form = ["--data-urlencode", f"csrf={hidden(page.body, 'csrf')}"]
        if hidden(page.body, "next") is not None:
            form += ["--data-urlencode", f"next={hidden(page.body, 'next')}"]
        for name, value in fields.items():
            form += ["--data-urlencode", f"{name}={value}"]
        self.say(f"fills in the form: {fields}")
        return self.get(PORTAL_URL + "login", *form)

    def sign_out(self) -> Response:
        status = self.get(PORTAL_URL + "status")
        assert status.status == 200 and hidden(status.body, "csrf"), status
        return self.get(PORTAL_URL + "logout", "--data-urlencode", f"csrf={hidden(status.body, 'csrf')}")

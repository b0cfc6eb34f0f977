"""The small parts of the web: tokens, URLs, durations, pre-rendered pages."""

from __future__ import annotations

from twisted.internet.task import Clock

from portald.web.tokens import Signer
from portald.web.urls import is_http_url, original_url, split_host
from portald.web.words import describe_bytes, describe_duration


def test_tokens_are_bound_to_purpose_client_and_time() -> None:
    clock = Clock()
    clock.advance(1000)
    signer = Signer(clock, key=b"k" * 32)
    token = signer.sign("next", "192.0.2.10", "http://example.com/é")
    assert signer.verify("next", "192.0.2.10", token, 60) == "http://example.com/é"
    assert signer.verify("csrf", "192.0.2.10", token, 60) is None
    assert signer.verify("next", "192.0.2.11", token, 60) is None
    assert Signer(clock).verify("next", "192.0.2.10", token, 60) is None  # another process's key
    clock.advance(61)
    assert signer.verify("next", "192.0.2.10", token, 60) is None
    for junk in ("", "...", "a.b.c", "a.1.c", "x" * 9000, "\x00.1.\xff"):
        assert signer.verify("next", "192.0.2.10", junk, 60) is None


def test_original_url() -> None:
    assert original_url(b"Example.COM.", b"/a b?c=<d>") == "http://example.com/a%20b?c=%3Cd%3E"
    assert original_url(b"example.com:8080", b"/") == "http://example.com:8080/"
    assert original_url(b"example.com:80", b"/") == "http://example.com/"
    assert original_url(b"[2001:db8::1]", b"/x") == "http://[2001:db8::1]/x"
    assert original_url(b"ignored.example", b"http://proxy.example/p") == "http://proxy.example/p"
    assert original_url(b"example.com", b"/\xc3\xa9\"'") == "http://example.com/%C3%A9%22'"
    for host, target in [
        (b"example.com", b"//evil.example/"),
        (b"example.com", b"*"),
        (b"exa mple.com", b"/"),
        (b'"><script>', b"/"),
        (b"example.com:99999", b"/"),
        (b"", b"/"),
        (b"example.com", b"/" + b"a" * 3000),
    ]:
        assert original_url(host, target) is None, (host, target)


def test_split_host_and_is_http_url() -> None:
    assert split_host(b"Portal.Example:80") == ("portal.example", 80)
    assert split_host(b"portal.example/x") is None
    assert is_http_url("http://example.com/a?b")
    for url in (
        "https://example.com/",
        "//evil.example",
        "javascript:alert(1)",
        "http://exa mple/",
        "http:///x",
    ):
        assert not is_http_url(url), url


def test_describe() -> None:
    assert describe_duration(3600) == "1 h 00 min"
    assert describe_duration(299) == "4 min"
    assert describe_duration(59) == "less than a minute"
    assert describe_bytes(500 * 10**6) == "500.0 MB" and describe_bytes(12) == "12 bytes"

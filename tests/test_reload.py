"""
Live reload: the same file read again, on the real service tree (memory
reactor), each live key taking effect and each other key refused.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from twisted.internet.testing import MemoryReactorClock

from portald.config import load_config
from portald.reload import LIVE_KEYS, ReloadRefused, changed_keys
from portald.tap import build_service
from tests.daemon_support import TWISTD, dev_config

NEW_MAC = "02:00:00:00:00:99"


@pytest.fixture
def running(tmp_path: Path):
    path = dev_config(tmp_path)
    # One way in (auth.method), as most of these tests change it.
    config = yaml.safe_load(path.read_text())
    config["auth"] = {"method": "click-through"}
    path.write_text(yaml.safe_dump(config))
    service = build_service(load_config(path), MemoryReactorClock())
    service.startService()
    yield path, service
    service.stopService()


def rewrite(path: Path, **sections: dict) -> None:
    config = yaml.safe_load(path.read_text())
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(config))


def reloader(service):
    return service.getServiceNamed("reload").reloader


def test_live_keys_take_effect(running) -> None:
    path, service = running
    session = service.table.authorize(
        "02:00:00:00:00:01", ip="127.0.0.1", method="click-through", duration=3600
    )
    rewrite(
        path,
        portal={"venue": "The New Café", "terms": "Be nice."},
        auth={"method": "access-code", "codes": ["room-12"]},
        sessions={"timeout": "2h"},
        dns={"walled_garden": ["bank.example"], "upstream": ["127.0.0.1:5454"]},
        firewall={"allowed_macs": [NEW_MAC]},
    )
    changed = reloader(service).reload()
    assert changed == [
        "auth.codes", "auth.method", "dns.upstream", "dns.walled_garden", "firewall.allowed_macs",
        "portal.terms", "portal.venue", "sessions.timeout",
    ]  # fmt: skip
    web = service.getServiceNamed("http").web
    assert web.portal.config.portal.venue == "The New Café"
    assert web.portal.replies.venue == "The New Café"
    assert [way.name for way in web.portal.ways] == ["access-code"]
    assert web.portal.config.session_timeout() == 7200
    dns = service.getServiceNamed("dns")
    assert dns.factory.policy.classify("127.0.0.1", b"www.bank.example").value == "walled-garden"
    assert [str(u) for u in dns.forwarder._upstreams] == ["127.0.0.1:5454"]
    assert service.table.may_pass(NEW_MAC)
    # No session dropped.
    assert service.table.session("02:00:00:00:00:01") == session
    # And back: the configured MAC goes, nothing else.
    rewrite(path, firewall={"allowed_macs": []})
    assert reloader(service).reload() == ["firewall.allowed_macs"]
    assert not service.table.may_pass(NEW_MAC)
    assert reloader(service).reload() == []


def test_the_ways_in_change_in_place(running) -> None:
    path, service = running
    config = yaml.safe_load(path.read_text())
    config["auth"] = {"methods": [{"method": "click-through", "timeout": "30m"}, {"method": "voucher"}]}
    path.write_text(yaml.safe_dump(config))
    assert "auth.methods" in reloader(service).reload()
    ways = service.getServiceNamed("http").web.portal.ways
    assert [(way.name, way.settings.timeout) for way in ways] == [("click-through", 1800), ("voucher", None)]


@pytest.mark.parametrize(
    ("section", "values", "key"),
    [
        ("http", {"port": 1}, "http.port"),
        ("dns", {"listen": ["127.0.0.2"]}, "dns.listen"),
        ("portal", {"interface": "eth9"}, "portal.interface"),
        ("firewall", {"table": "other"}, "firewall.table"),
        ("state", {"database": "/tmp/elsewhere.sqlite3"}, "state.database"),
    ],
)
def test_restart_only_keys_are_refused_and_nothing_changes(running, section, values, key) -> None:
    path, service = running
    sections = {"portal": {"venue": "Changed"}}
    sections.setdefault(section, {}).update(values)
    rewrite(path, **sections)
    with pytest.raises(ReloadRefused) as caught:
        reloader(service).reload()
    assert str(caught.value) == f"{key}: cannot change without a restart (nothing was changed)"
    # The live key beside it did not change either: all or nothing.
    assert service.getServiceNamed("http").web.portal.config.portal.venue == "portald development"


def test_a_broken_file_changes_nothing(running) -> None:
    path, service = running
    before = reloader(service).running
    good = path.read_text()
    path.write_text(good + "dns:\n  port: 70000\n")
    with pytest.raises(ReloadRefused) as caught:
        reloader(service).reload()
    assert "given twice" in str(caught.value) and str(path) in str(caught.value)
    path.write_text(good)
    rewrite(path, auth={"method": "access-code"})  # no codes
    with pytest.raises(ReloadRefused) as caught:
        reloader(service).reload()
    assert "auth.method: access-code needs at least one code in auth.codes" in str(caught.value)
    assert reloader(service).running is before
    assert [way.name for way in service.getServiceNamed("http").web.portal.ways] == ["click-through"]


def test_changed_keys_names_the_leaves(tmp_path: Path) -> None:
    old = load_config(dev_config(tmp_path))
    path = dev_config(tmp_path, sessions={"quota": "1GB"}, http={"probes": ["captive.apple.com"]})
    new = load_config(path)
    assert set(changed_keys(old, new)) >= {"sessions.quota", "http.probes"}
    assert "sessions.quota" in LIVE_KEYS and "http.port" not in LIVE_KEYS


def intercepted(service, host: bytes = b"example.com", target: bytes = b"/"):
    """What a captive guest asking C{host}/C{target} is answered now."""
    return service.getServiceNamed("http").web.interception.answer("127.0.0.1", b"GET", host, target)


def test_the_interceptions_page_and_probes_follow_a_reload(running) -> None:
    path, service = running
    assert b"portald development" in intercepted(service).body
    assert intercepted(service, b"captive.apple.com", b"/hotspot-detect.html").code == 302
    rewrite(path, portal={"venue": "The New Caf\u00e9"}, http={"probes": ["probe.example/check"]})
    assert reloader(service).reload() == ["http.probes", "portal.venue"]
    # Asked again within the same second: not this second's old answer.
    assert "The New Café".encode() in intercepted(service).body
    assert intercepted(service, b"probe.example", b"/check").code == 302
    assert intercepted(service, b"captive.apple.com", b"/hotspot-detect.html").code == 511


def write_theme(directory: Path, heading: str) -> None:
    (directory / "templates").mkdir(parents=True, exist_ok=True)
    built_in = Path("portald/web/templates/network-auth.xhtml").read_text()
    page = built_in.replace("Sign in to use this network", heading)
    (directory / "templates" / "network-auth.xhtml").write_text(page)


def test_a_theme_is_read_again_on_a_reload(running, tmp_path: Path) -> None:
    path, service = running
    theme = tmp_path / "theme"
    write_theme(theme, "Welcome aboard")
    rewrite(path, http={"theme": str(theme)})
    assert reloader(service).reload() == ["http.theme"]
    assert b"Welcome aboard" in intercepted(service).body
    # The same directory, an edited template: the next reload shows it.
    write_theme(theme, "Welcome back")
    assert reloader(service).reload() == []
    assert b"Welcome back" in intercepted(service).body


def test_a_broken_theme_refuses_the_reload_and_changes_nothing(running, tmp_path: Path) -> None:
    path, service = running
    theme = tmp_path / "theme"
    write_theme(theme, "Welcome aboard")
    (theme / "templates" / "status.xhtml").write_text("<html><p>unclosed</html>")
    rewrite(path, http={"theme": str(theme)}, portal={"venue": "Changed"})
    with pytest.raises(ReloadRefused) as caught:
        reloader(service).reload()
    assert f"http.theme: the template {theme / 'templates' / 'status.xhtml'} cannot be used" in str(
        caught.value
    )
    assert b"portald development" in intercepted(service).body
    assert b"Welcome aboard" not in intercepted(service).body
    rewrite(path, http={"theme": str(tmp_path / "nowhere")})
    with pytest.raises(ReloadRefused) as caught:
        reloader(service).reload()
    assert f"http.theme: expected a directory (with templates/ and static/): {tmp_path / 'nowhere'}" in str(
        caught.value
    )
    assert service.getServiceNamed("http").web.portal.config.portal.venue == "portald development"


def test_a_broken_theme_stops_the_daemon_before_it_starts(tmp_path: Path) -> None:
    theme = tmp_path / "theme"
    write_theme(theme, "<b>unclosed")
    path = dev_config(tmp_path, http={"theme": str(theme)})
    done = subprocess.run(
        [str(TWISTD), "portald", "--config", str(path), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "portald: configuration error:" in done.stderr
    assert (
        f"http.theme: the template {theme / 'templates' / 'network-auth.xhtml'} cannot be used" in done.stderr
    )

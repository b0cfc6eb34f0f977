"""``twistd portald``: the plugin, its options, and the service it builds."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.application.service import IService
from twisted.internet.testing import MemoryReactorClock

from portald.config import load_config
from portald.tap import Options, build_service
from tests.daemon_support import READY, Twistd, dev_config, ports_of

ROOT = Path(__file__).resolve().parent.parent
DEV_CONFIG = ROOT / "etc" / "dev" / "portald.yaml"
TWISTD = Path(sys.executable).parent / "twistd"

BROKEN = """\
portal:
  address: 192.0.2.1
  subnets: [192.0.2.0/24]
leases:
  sources: [{format: dnsmasq, path: /var/lib/misc/dnsmasq.leases}]
dns:
  port: 70000
"""


def test_options_load_the_configuration() -> None:
    options = Options()
    options.parseOptions(["--config", str(DEV_CONFIG)])
    assert options.config == load_config(DEV_CONFIG)


def test_broken_configuration_stops_with_the_key(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    with pytest.raises(SystemExit) as caught:
        Options().parseOptions(["--config", str(path)])
    assert str(caught.value) == (
        f"portald: configuration error: {path}, line 7: dns.port: expected a port number from 1 to 65535, got 70000"
    )


def test_service_starts_and_stops_cleanly(tmp_path: Path) -> None:
    reactor = MemoryReactorClock()
    # Its own database: a `make run` may have left sessions in etc/dev/state.
    service = build_service(load_config(dev_config(tmp_path)), reactor)
    assert IService.providedBy(service)
    service.startService()
    assert service.running
    assert service.table is not None and len(service.table) == 0
    # The lease watcher has read etc/dev/dnsmasq.leases.
    assert service.neighbours.mac_for("127.0.0.1") == "02:00:00:00:00:01"
    result = service.stopService()
    if result is not None:
        failures: list = []
        result.addErrback(failures.append)
        assert failures == []
    assert not service.running
    assert reactor.getDelayedCalls() == []


# --- real processes ---


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kwargs)


def test_twistd_lists_the_plugin() -> None:
    result = run(str(TWISTD), "--help")
    assert result.returncode == 0
    assert "portald" in result.stdout


def test_check_validates_and_exits(tmp_path: Path) -> None:
    good = run(str(TWISTD), "portald", "--check", "--config", str(DEV_CONFIG), cwd=tmp_path)
    assert good.returncode == 0 and f"{DEV_CONFIG}: configuration OK" in good.stdout
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    bad = run(str(TWISTD), "portald", "--check", "--config", str(path), cwd=tmp_path)
    assert bad.returncode != 0 and "dns.port: expected a port number" in bad.stderr


def test_check_warns_of_no_tls_and_refuses_a_certificate_for_another_name(tmp_path: Path) -> None:
    from tests.daemon_support import dev_config
    from tests.tls_support import LabCA

    good = run(str(TWISTD), "portald", "--check", "--config", str(DEV_CONFIG), cwd=tmp_path)
    assert "warning: http.tls is not set: phones use the Captive Portal API" in good.stdout
    certificate, key = LabCA.make().issue(tmp_path, "other.example")
    path = dev_config(
        tmp_path, http={"tls": {"certificate": str(certificate), "key": str(key), "port": 8443}}
    )
    bad = run(str(TWISTD), "portald", "--check", "--config", str(path), cwd=tmp_path)
    assert bad.returncode != 0
    assert "http.tls.certificate: the certificate in" in bad.stderr
    assert "is for other.example, not portal.hostname portal.example" in bad.stderr
    certificate, key = LabCA.make().issue(tmp_path, "portal.example")
    path = dev_config(
        tmp_path, http={"tls": {"certificate": str(certificate), "key": str(key), "port": 8443}}
    )
    fine = run(str(TWISTD), "portald", "--check", "--config", str(path), cwd=tmp_path)
    assert fine.returncode == 0 and "warning" not in fine.stdout, fine.stdout


def test_twistd_portald_help_documents_every_option() -> None:
    result = run(str(TWISTD), "portald", "--help")
    assert result.returncode == 0
    for option in ("--config", "--check", "--version", "--help"):
        assert option in result.stdout
    assert "/etc/portald/portald.yaml" in result.stdout


def test_twistd_refuses_a_broken_config_before_daemonizing(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN.replace("dns:\n  port: 70000\n", "dsn:\n  port: 53\n"))
    # No --nodaemon: had it got as far as daemonizing, it would exit 0 and
    # leave a pid file behind.
    result = run(
        str(TWISTD), "--pidfile", str(tmp_path / "twistd.pid"), "portald", "--config", str(path), cwd=tmp_path
    )
    assert result.returncode != 0
    assert f"{path}, line 6: dsn: unknown key (did you mean 'dns'?)" in result.stderr
    assert not (tmp_path / "twistd.pid").exists()


def test_twistd_runs_the_development_config_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    # The development configuration on free ports, so it runs beside `make run`.
    path = dev_config(tmp_path)
    dns_port, _ = ports_of(path)
    twistd = Twistd.start(path, cwd=tmp_path)
    try:
        twistd.wait_for(READY)
        returncode = twistd.stop(signal.SIGINT)
    finally:
        twistd.kill()
    # twistd ends by re-raising the signal it stopped for, as shells expect.
    assert returncode in (0, -signal.SIGINT), twistd.output
    assert f"try DNS:   dig @127.0.0.1 -p {dns_port}" in twistd.output
    assert "Traceback" not in twistd.output
    assert "Main loop terminated." in twistd.output


def test_plugin_is_found_after_a_normal_install(tmp_path: Path) -> None:
    target = tmp_path / "site"
    # From a copy without build/ (setuptools would reuse what an earlier
    # build left there) or the environment.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", "build", "*.egg-info", ".git", "__pycache__", ".*_cache", ".hypothesis", "*.sock"
        ),
    )
    install = run(
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)
    )
    assert install.returncode == 0, install.stderr
    assert (target / "twisted" / "plugins" / "portald_plugin.py").exists()
    assert not (target / "twisted" / "plugins" / "__init__.py").exists()
    assert not (target / "twisted" / "__init__.py").exists()
    probe = (
        "import twisted.plugins, twisted.plugins.portald_plugin as p\n"
        "from twisted.plugin import getPlugins\n"
        "from twisted.application.service import IServiceMaker\n"
        "print(p.__file__)\n"
        "print(sorted(m.tapname for m in getPlugins(IServiceMaker)))\n"
        # Every part of portald, and its templates, came with the install.
        "import portald, portald.tap, portald.web.portal, portald.auth, portald.firewall.nftables\n"
        "from importlib.resources import files\n"
        "assert (files('portald.web') / 'templates' / 'landing.xhtml').is_file()\n"
        "print(portald.__file__)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    result = run(sys.executable, "-c", probe, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    plugin_file, names, package_file = result.stdout.splitlines()
    assert plugin_file.startswith(str(target))
    assert package_file.startswith(str(target))
    assert "'portald'" in names and "'dns'" in names  # Twisted's own plugins still there


def test_an_empty_upstream_list_is_warned_about(tmp_path: Path) -> None:
    from twisted.logger import globalLogPublisher

    from portald.config import parse_config
    from portald.welcome import WelcomeService

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for upstream in ("[]", "[198.51.100.53]"):
            config = parse_config(BROKEN.replace("port: 70000", f"upstream: {upstream}"))
            reactor = MemoryReactorClock()
            WelcomeService(config, reactor).startService()
            for hook, args, kwargs in reactor.whenRunningHooks:
                hook(*args, **kwargs)
    finally:
        globalLogPublisher.removeObserver(events.append)
    warnings = [e for e in events if "dns.upstream is empty" in e.get("log_format", "")]
    assert len(warnings) == 1

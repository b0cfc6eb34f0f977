"""
``python -m portald.cli.leases``: the real watcher on the real reactor and
inotify, in a child process, on files in a tmp dir (no root needed).

Every wait is bounded; with the poll set to 60 s, a change seen within the
wait can only have come through inotify.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest

LINE = "0 02:00:00:00:00:{n:02x} 192.0.2.{n} phone-{n} *\n"


def run_once(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "portald.cli.leases", *args], capture_output=True, text=True, timeout=60
    )


class Follower:
    def __init__(self, tmp_path: Path, lease_file: Path, poll: str) -> None:
        self.out = tmp_path / "follow.out"
        self.err = tmp_path / "follow.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "portald.cli.leases",
                    "--follow",
                    "--json",
                    "--poll-interval",
                    poll,
                    "dnsmasq",
                    str(lease_file),
                ],
                stdout=out,
                stderr=err,
            )

    def maps(self) -> list[dict]:
        return [json.loads(line)["leases"] for line in self.out.read_text().splitlines() if line.strip()]

    def log(self) -> str:
        return self.err.read_text()

    def wait(self, predicate, what: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"leasetool exited: {self.log()}")
            found = predicate()
            if found:
                return found
            time.sleep(0.02)
        pytest.fail(f"timed out waiting for {what}; log:\n{self.log()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def follow(tmp_path: Path):
    followers: list[Follower] = []

    def start(lease_file: Path, poll: str = "60") -> Follower:
        follower = Follower(tmp_path, lease_file, poll)
        followers.append(follower)
        return follower

    yield start
    for follower in followers:
        follower.stop()


def test_once_prints_the_active_leases(tmp_path: Path) -> None:
    path = tmp_path / "dnsmasq.leases"
    path.write_text(LINE.format(n=5) + "nonsense\n")
    result = run_once("dnsmasq", str(path))
    assert result.returncode == 0
    assert "192.0.2.5       02:00:00:00:00:05  phone-5" in result.stdout
    assert f"{path}, line 2: expected 'expiry mac ip hostname client-id'" in result.stderr


def test_once_rejects_an_unknown_format(tmp_path: Path) -> None:
    result = run_once("udhcpd", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "unknown format 'udhcpd' (expected one of dnsmasq, isc-dhcpd, kea)" in result.stderr


def test_console_scripts_run_the_tools(tmp_path: Path) -> None:
    scripts = {
        ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.name.startswith("portald-")
    }
    assert scripts == {
        "portald-leases": "portald.cli.leases:main",
        "portald-export": "portald.cli.export:main",
        "portald-firewall": "portald.cli.firewall:main",
        "portald-ctl": "portald.cli.ctl:main",
    }
    path = tmp_path / "dnsmasq.leases"
    path.write_text(LINE.format(n=5))
    script = Path(sys.executable).parent / "portald-leases"
    result = subprocess.run([script, "dnsmasq", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "192.0.2.5 " in result.stdout
    usage = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60).stdout
    assert usage.startswith("usage: portald-leases ")
    assert run_once("--help").stdout.startswith("usage: python -m portald.cli.leases ")


def test_follow_sees_changes_through_inotify(tmp_path: Path, follow) -> None:
    path = tmp_path / "dnsmasq.leases"
    path.write_text(LINE.format(n=5))
    follower = follow(path)
    follower.wait(lambda: follower.maps(), "the first map")
    assert "with inotify" in follower.log()
    path.write_text(LINE.format(n=5) + LINE.format(n=6))  # truncate and rewrite, like dnsmasq
    follower.wait(lambda: "192.0.2.6" in follower.maps()[-1], "the new lease")
    new = tmp_path / "dnsmasq.leases.new"
    new.write_text(LINE.format(n=7))
    new.replace(path)  # rename over it, like ISC dhcpd
    follower.wait(lambda: list(follower.maps()[-1]) == ["192.0.2.7"], "the renamed-over file")
    assert "Traceback" not in follower.log()


def test_follow_survives_its_directory_being_deleted_and_recreated(tmp_path: Path, follow) -> None:
    directory = tmp_path / "leases"
    path = directory / "dnsmasq.leases"
    follower = follow(path, poll="0.2")  # the directory does not exist yet
    follower.wait(lambda: "does not exist (yet); waiting for it" in follower.log(), "the missing-file note")
    directory.mkdir()
    path.write_text(LINE.format(n=8))
    follower.wait(lambda: follower.maps() and "192.0.2.8" in follower.maps()[-1], "the file once it appeared")
    follower.wait(lambda: "now watching" in follower.log(), "inotify on the directory once it exists")
    # Twisted's INotify closes itself when a watched directory is deleted.
    shutil.rmtree(directory)
    directory.mkdir()
    path.write_text(LINE.format(n=9))
    follower.wait(lambda: list(follower.maps()[-1]) == ["192.0.2.9"], "the file in the new directory")
    follower.wait(lambda: follower.log().count("now watching") >= 2, "inotify back on the new directory")
    assert "Traceback" not in follower.log()

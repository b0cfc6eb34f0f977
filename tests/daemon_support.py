"""
The real ``twistd portald`` on loopback, for tests that run the daemon as a
user does (no namespaces, no root).

    path = dev_config(tmp_path)              # etc/dev/portald.yaml on free ports,
                                             # its database in tmp_path
    daemon = Twistd.start(path, cwd=tmp_path)
    daemon.wait_for("try Portal:")          # every listener is open
    ask(daemon_http_port, "GET", "example.com", "/")
    daemon.stop()                            # SIGINT, as Ctrl-C; returns the exit status

Ports are free ones, so that these tests can run beside a ``make run``.
"""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEV_CONFIG = ROOT / "etc" / "dev" / "portald.yaml"
TWISTD = Path(sys.executable).parent / "twistd"
READY = "try Portal:"  # logged once the reactor runs, every listener open


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def dev_config(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    """
    The development configuration with free DNS and HTTP ports, absolute
    lease paths and the database in C{tmp_path}; C{sections} override keys.
    """
    config = yaml.safe_load(DEV_CONFIG.read_text())
    config["dns"]["port"] = free_port()
    config["http"]["port"] = free_port()
    for source in config["leases"]["sources"]:
        source["path"] = str(DEV_CONFIG.parent / source["path"])
    config["state"]["database"] = str(tmp_path / "sessions.sqlite3")
    config["control"]["socket"] = str(tmp_path / "control.sock")
    config["metrics"]["listen"] = f"127.0.0.1:{free_port()}"
    config["admin"]["listen"] = f"127.0.0.1:{free_port()}"
    config["admin"]["users_file"] = str(DEV_CONFIG.parent / config["admin"]["users_file"])
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path = tmp_path / "portald.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ports_of(config_path: Path) -> tuple[int, int]:
    """(DNS port, HTTP port) of a configuration written by L{dev_config}."""
    config = yaml.safe_load(config_path.read_text())
    return config["dns"]["port"], config["http"]["port"]


class Twistd:
    """One ``twistd --nodaemon portald`` process, its output collected."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.lines: list[str] = []
        self.ended = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, config_path: Path, cwd: Path) -> Twistd:
        process = subprocess.Popen(
            [str(TWISTD), "--nodaemon", "--pidfile=", "portald", "--config", str(config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            # As from a terminal: a shell that started us in the background
            # may have left SIGINT ignored, and Twisted then leaves it alone.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        return cls(process)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
        self.ended.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        """Wait, bounded, until the daemon has logged C{text}."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.lines)):
            if self.ended.is_set() or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} from twistd:\n{self.output}")
            self.ended.wait(0.05)

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            self.process.wait(timeout=timeout)
        finally:
            self.kill()
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)


def ask(
    port: int,
    method: str,
    host: str,
    path: str,
    form: dict[str, str] | None = None,
    source: str | None = None,
) -> tuple[int, str, dict[str, str], str]:
    """One HTTP request to 127.0.0.1:C{port}, optionally from another loopback C{source} address."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(source, 0) if source else None
    )
    try:
        body = urlencode(form).encode() if form is not None else None
        headers = {"Host": host}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.reason, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


@contextlib.contextmanager
def running(config_path: Path, cwd: Path, stop_signal: int = signal.SIGINT) -> Iterator[Twistd]:
    """A daemon with every listener open, stopped (with C{stop_signal}) when the block ends."""
    twistd = Twistd.start(config_path, cwd=cwd)
    try:
        twistd.wait_for(READY)
        yield twistd
    finally:
        twistd.stop(stop_signal)

"""``log.format: json``: the real daemon's output is one JSON object per line."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import yaml

from tests.daemon_support import ROOT, Twistd, ask, dev_config, ports_of

CTL = ROOT / ".venv" / "bin" / "portald-ctl"


def test_json_lines_carry_each_events_fields(tmp_path: Path) -> None:
    path = dev_config(tmp_path, log={"format": "json"})
    _, http_port = ports_of(path)
    twistd = Twistd.start(path, cwd=tmp_path)
    try:
        twistd.wait_for('"line": "Portal:')  # the welcome's last line: every listener is open
        assert ask(http_port, "GET", "example.com", "/")[0] == 511
        done = subprocess.run(
            [str(CTL), "--config", str(path), "auth", "127.0.0.1"], capture_output=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        twistd.wait_for("authorized {mac}")
    finally:
        twistd.stop(signal.SIGTERM)
    events = [json.loads(line) for line in twistd.lines]
    assert events, twistd.output
    signed_in = [e for e in events if e.get("log_format", "").startswith("authorized {mac}")]
    assert [(e["mac"], e["method"]) for e in signed_in] == [("02:00:00:00:00:01", "staff")]
    assert all("log_time" in e and "log_level" in e for e in events)
    intercepted = [e for e in events if e.get("log_namespace") == "portald.web.intercept"]
    assert [(e["ip"], e["answer"]) for e in intercepted] == [
        ("127.0.0.1", "511 Network Authentication Required")
    ]


def test_a_reload_switches_the_format(tmp_path: Path) -> None:
    path = dev_config(tmp_path)
    _, http_port = ports_of(path)
    twistd = Twistd.start(path, cwd=tmp_path)
    try:
        twistd.wait_for("Portal:")
        config = yaml.safe_load(path.read_text())
        config["log"] = {"format": "json"}
        path.write_text(yaml.safe_dump(config))
        twistd.process.send_signal(signal.SIGHUP)
        twistd.wait_for('"log_format": "reloaded {path}: {changed}"')
        assert ask(http_port, "GET", "example.com", "/")[0] == 511
        twistd.wait_for('"log_namespace": "portald.web.intercept"')
    finally:
        twistd.stop(signal.SIGTERM)
    # Text up to the reload, one JSON object per line from it on.
    reloaded = next(i for i, line in enumerate(twistd.lines) if '"reloaded {path}' in line)
    assert all(not line.startswith("{") for line in twistd.lines[:reloaded])
    after = [json.loads(line) for line in twistd.lines[reloaded:]]
    assert after[0]["changed"] == "log.format"
    assert any(event.get("answer") == "511 Network Authentication Required" for event in after)

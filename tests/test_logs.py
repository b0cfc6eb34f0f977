"""``log.format: json``: the real daemon's output is one JSON object per line."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

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

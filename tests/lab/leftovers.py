"""
What a lab run left behind, found by the run's own marks only (other test
runs on the same machine are alive and are not ours to judge):

* namespaces and /etc/netns entries named with this process's prefix
  (``pd<pid>n<k>-``); the veths live inside them;
* links and nftables tables in the host's namespace carrying that prefix;
* processes: this process's children that are still running, and any
  process whose command line names this run's tmp directory or prefix
  (every lab daemon has its files there: dnsmasq, dhclient, portald,
  chromium's profile).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.lab.netlab import NETNS_ETC

_NETNS_RUN = Path("/run/netns")


def run_prefix(pid: int | None = None) -> str:
    return f"pd{pid or os.getpid()}n"


def leftovers(tmp_root: Path, pid: int | None = None) -> list[str]:
    """Everything of this run still present, one line each; empty when clean."""
    pid = pid or os.getpid()
    ours = re.compile(rf"^{re.escape(run_prefix(pid))}\d+-")
    found = []
    for directory in (_NETNS_RUN, NETNS_ETC):
        if directory.is_dir():
            found += [f"namespace {directory / e.name}" for e in directory.iterdir() if ours.match(e.name)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines() if run_prefix(pid) in line]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False).stdout
    found += [f"nft {line}" for line in tables.splitlines() if run_prefix(pid) in line]
    found += [f"process {p}" for p in _processes(pid, (str(tmp_root), run_prefix(pid)))]
    return found


def _processes(pid: int, marks: tuple[str, ...]) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pid:
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError):
            continue  # ended while we looked
        state, parent = stat[0], int(stat[1])
        if state == "Z" or not argv:
            continue
        if parent == pid or any(mark in argv for mark in marks):
            found.append(f"{entry.name} {argv[:200]}")
    return found

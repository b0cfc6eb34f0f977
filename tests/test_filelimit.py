"""The daemon's open-file limit, raised within the hard limit (in a child process: limits are per process)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import resource
from portald.filelimit import raise_open_file_limit
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 512))
print(raise_open_file_limit(300), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
print(raise_open_file_limit(5000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
print(raise_open_file_limit(10), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def test_the_soft_limit_is_raised_to_what_is_needed_but_never_past_the_hard_one() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:3] == ["300 300", "512 512", "512 512"]

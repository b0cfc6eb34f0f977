"""
Command-line tools beside the daemon (``portald-NAME``, or ``python -m
portald.cli.NAME``): each a thin face on a package that does the work.  None
runs inside twistd.
"""

from __future__ import annotations

import sys
from pathlib import Path


def prog(module: str) -> str:
    """The tool's name for its usage line: the console script's, or ``python -m`` and the module."""
    name = Path(sys.argv[0]).name
    return name if name.startswith("portald-") else f"python -m {module}"

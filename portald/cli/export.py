"""
``portald-export`` (or ``python -m portald.cli.export``): every authorization
and its end, as CSV or JSON.

    portald-export --database /var/lib/portald/sessions.sqlite3 --format csv
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from portald.cli import prog
from portald.store import SessionStore, StoreError, export


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("portald.cli.export"), description="Every authorization and its end, as CSV or JSON."
    )
    parser.add_argument("--database", type=Path, default=Path("/var/lib/portald/sessions.sqlite3"))
    parser.add_argument("--format", choices=("csv", "json"), default="csv")
    args = parser.parse_args(argv)
    if not args.database.exists():
        print(f"portald: no session database at {args.database}", file=sys.stderr)
        return 1
    try:
        # Read-only: never migrate or write a database a daemon may be using.
        store = SessionStore.open_read_only(args.database)
        try:
            sys.stdout.write(export(store.history(), args.format))
        finally:
            store.close()
    except (StoreError, sqlite3.Error) as e:
        print(f"portald: cannot export {args.database}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""
Fixtures of the network lab (see netlab.py for the API).

* ``lab``: a fresh L{netlab.Lab} for one test, everything it made removed
  afterwards, pass or fail.  Skips (with the reason) where the machine cannot
  make namespaces; tests/conftest.py turns that skip into a failure under CI.
* Every test in tests/lab/ is marked ``lab`` (so ``make unit`` leaves it out).
* At the end of the run, nothing the run made may be left: no namespace,
  veth, nft table or process (``leftovers.py``); the last test errors if so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import netlab
from tests.lab.leftovers import leftovers

_swept = False


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(tmp_path_factory) -> Iterator[None]:
    yield
    if netlab.unavailable_reason() is None:
        # Processes being stopped may take a moment to go.
        try:
            netlab.wait_for(lambda: not leftovers(tmp_path_factory.getbasetemp()), 5, interval=0.1)
        except TimeoutError:
            left = leftovers(tmp_path_factory.getbasetemp())
            raise AssertionError("the lab run left behind:\n" + "\n".join(left)) from None


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[netlab.Lab]:
    global _swept
    reason = netlab.unavailable_reason()
    if reason:
        pytest.skip(reason)
    if not _swept:
        # Only what dead runs left: other runs on this machine are alive.
        netlab.sweep_stale()
        _swept = True
    the_lab = netlab.Lab(tmp_path)
    try:
        yield the_lab
    finally:
        the_lab.cleanup()


@pytest.fixture
def second_lab(lab: netlab.Lab, tmp_path: Path) -> Iterator[netlab.Lab]:
    """Another gateway's network beside C{lab}'s (its own prefix, its own namespaces)."""
    directory = tmp_path / "second"
    directory.mkdir()
    other = netlab.Lab(directory)
    try:
        yield other
    finally:
        other.cleanup()

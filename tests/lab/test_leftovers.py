"""The suite-end check (conftest.py) sees what a lab leaves, and nothing once it is cleaned up."""

from __future__ import annotations

from tests.lab.leftovers import leftovers


def test_a_namespace_and_a_process_are_seen_until_the_lab_cleans_up(lab) -> None:
    root = lab.tmp.parent
    gateway = lab.gateway()
    sleeper = gateway.spawn(["sleep", "30"], name="sleeper")
    found = leftovers(root)
    assert f"namespace /run/netns/{gateway.name}" in found
    assert any(line.startswith(f"process {sleeper.pid} sleep 30") for line in found), found
    lab.cleanup()
    assert leftovers(root) == []

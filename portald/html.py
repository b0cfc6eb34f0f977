"""Pages built as twisted.web.template trees and flattened at once (nothing in them waits)."""

from __future__ import annotations

from twisted.web.template import Tag, flattenString


def flatten_now(tree: Tag) -> bytes:
    """C{tree} as an HTML5 document; it must hold no Deferred."""
    flattened: list[bytes] = []
    failures: list[object] = []
    flattenString(None, tree).addCallbacks(flattened.append, failures.append)
    if failures:
        failures[0].raiseException()  # type: ignore[attr-defined]
    (html,) = flattened
    return b"<!DOCTYPE html>\n" + html

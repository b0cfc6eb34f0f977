"""
The interception pages, flattened once to bytes with holes for what changes:
on the hot path a page costs a join, not a template flatten.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from twisted.web.template import Element, Tag, XMLFile, flattenString, renderer


class _SlotFiller(Element):
    def __init__(self, loader: XMLFile, slots: Mapping[str, str]) -> None:
        super().__init__(loader=loader)
        self._slots = slots

    @renderer
    def page(self, request: Any, tag: Tag) -> Tag:
        return tag.fillSlots(**self._slots)


class Prerendered:
    """
    A template flattened once, with the slots named in C{dynamic} left as
    holes that L{render} fills with escaped text: the page costs a join per
    request, not a flatten.
    """

    def __init__(self, loader: XMLFile, fixed: Mapping[str, str], dynamic: Iterable[str]) -> None:
        markers = {name: f"portaldslot{secrets.token_hex(8)}" for name in dynamic}
        results: list[bytes] = []
        failures: list[Any] = []
        flattenString(None, _SlotFiller(loader, {**fixed, **markers})).addCallbacks(
            results.append, failures.append
        )
        if failures:
            failures[0].raiseException()
        if not results:
            raise RuntimeError("a pre-rendered template must render synchronously")
        document = b"<!DOCTYPE html>\n" + results[0]
        by_marker = {marker.encode(): name for name, marker in markers.items()}
        pattern = b"(" + b"|".join(re.escape(m) for m in by_marker) + b")" if by_marker else None
        pieces = re.split(pattern, document) if pattern else [document]
        # Even positions are literal bytes, odd ones name a slot.
        self._pieces: list[bytes | str] = [
            by_marker[piece] if index % 2 else piece for index, piece in enumerate(pieces)
        ]

    def render(self, values: Mapping[str, str]) -> bytes:
        return b"".join(
            piece if isinstance(piece, bytes) else html.escape(values[piece], quote=True).encode("utf-8")
            for piece in self._pieces
        )

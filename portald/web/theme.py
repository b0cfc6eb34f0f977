"""
Where templates and static files come from: the operator's theme directory
first (``templates/NAME.xhtml``, ``static/NAME``), the built-in ones after.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.python.filepath import FilePath
from twisted.web.template import XMLFile

BUILT_IN = Path(__file__).resolve().parent
_STATIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class Theme:
    def __init__(self, directory: Path | None = None) -> None:
        self._roots = ([directory] if directory is not None else []) + [BUILT_IN]
        self._loaders: dict[str, XMLFile] = {}

    def _find(self, kind: str, name: str) -> Path | None:
        for root in self._roots:
            candidate = root / kind / name
            if candidate.is_file():
                return candidate
        return None

    def loader(self, name: str) -> XMLFile:
        """The template C{name}.xhtml, parsed once."""
        loader = self._loaders.get(name)
        if loader is None:
            path = self._find("templates", f"{name}.xhtml")
            if path is None:
                raise FileNotFoundError(f"no template {name}.xhtml")
            loader = self._loaders[name] = XMLFile(FilePath(str(path)))
        return loader

    def static_file(self, name: str) -> Path | None:
        """The static file C{name} (a plain file name: no directories, no dot files)."""
        if not _STATIC_NAME.fullmatch(name) or ".." in name:
            return None
        return self._find("static", name)

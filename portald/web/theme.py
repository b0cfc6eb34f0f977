"""
Where templates and static files come from: the operator's theme directory
first (``templates/NAME.xhtml``, ``static/NAME``), the built-in ones after.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.python.filepath import FilePath
from twisted.web.template import XMLFile

from portald.config import Config, ConfigError

BUILT_IN = Path(__file__).resolve().parent
# Every template a page asks for: a theme may replace any of them.
TEMPLATES = tuple(sorted(path.stem for path in (BUILT_IN / "templates").glob("*.xhtml")))
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

    def template_path(self, name: str) -> Path:
        """Where the template C{name}.xhtml comes from: the theme's, else the built-in one."""
        path = self._find("templates", f"{name}.xhtml")
        if path is None:
            raise FileNotFoundError(f"no template {name}.xhtml")
        return path

    def loader(self, name: str) -> XMLFile:
        """The template C{name}.xhtml, parsed once."""
        loader = self._loaders.get(name)
        if loader is None:
            loader = self._loaders[name] = XMLFile(FilePath(str(self.template_path(name))))
        return loader

    def static_file(self, name: str) -> Path | None:
        """The static file C{name} (a plain file name: no directories, no dot files)."""
        if not _STATIC_NAME.fullmatch(name) or ".." in name:
            return None
        return self._find("static", name)


def load_theme(config: Config) -> Theme:
    """
    C{http.theme} (or the built-in pages), every template parsed now: a
    missing directory or a broken template stops portald at start, or
    refuses a reload, naming the file, instead of failing a guest's page.

    @raise ConfigError: keyed C{http.theme}.
    """
    directory = config.http.theme
    source = str(config.source) if config.source is not None else ""

    def fail(message: str) -> ConfigError:
        return ConfigError(message, key="http.theme", source=source)

    if directory is not None and not directory.is_dir():
        raise fail(f"expected a directory (with templates/ and static/): {directory} is not one")
    theme = Theme(directory)
    for name in TEMPLATES:
        try:
            theme.loader(name).load()
        except Exception as e:  # whatever the XML parser or the file system says
            raise fail(f"the template {theme.template_path(name)} cannot be used: {e}") from None
    return theme

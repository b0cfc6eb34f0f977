"""The portal's pages as twisted.web.template elements (escaping by default)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
from twisted.web.template import Element, Tag, TagLoader, renderer, tags

from portald.auth.interface import METHOD_FIELD, FormField, Way
from portald.table import Session
from portald.web.theme import Theme
from portald.web.words import describe_bytes, describe_duration, describe_period


class Layout(Element):
    """Every portal page: venue, title, and a body element."""

    def __init__(self, theme: Theme, venue: str, title: str, body: Element, refresh: int | None = None):
        super().__init__(loader=theme.loader("layout"))
        self._venue = venue
        self._title = title
        self._body = body
        self._refresh = refresh

    @renderer
    def page(self, request: Any, tag: Tag) -> Tag:
        return tag.fillSlots(title=self._title, venue=self._venue)

    @renderer
    def refresh(self, request: Any, tag: Tag) -> Tag | str:
        if self._refresh is None:
            return ""
        return tags.meta(**{"http-equiv": "refresh", "content": str(self._refresh)})

    @renderer
    def content(self, request: Any, tag: Tag) -> Element:
        return self._body


def _field(field: FormField, value: str | None = None) -> Tag:
    ident = f"field-{field.name}"
    if field.kind == "checkbox":
        box = tags.input(type="checkbox", name=field.name, value="yes", id=ident, required="required")
        return tags.label(box, tags.span(field.label), **{"for": ident, "class": "check"})
    entry = tags.input(
        type=field.kind,
        name=field.name,
        id=ident,
        required="required",
        autocomplete=field.autocomplete,
        autocapitalize="none",
        spellcheck="false",
    )
    if value:
        entry(value=value)
    return tags.label(field.label, entry, **{"for": ident})


@attrs.frozen
class LandingView:
    """What the landing page shows: the terms, a form per way in (with its tokens) and a message or notice."""

    terms: str
    ways: tuple[Way, ...]
    csrf: str
    next_token: str | None
    message: str = ""
    ending: str = ""
    prefill: dict[str, str] = attrs.field(factory=dict)


class LandingBody(Element):
    """The terms and the login form of each way in."""

    def __init__(self, theme: Theme, view: LandingView) -> None:
        super().__init__(loader=theme.loader("landing"))
        self._view = view

    @renderer
    def message(self, request: Any, tag: Tag) -> Tag | str:
        return tag(self._view.message) if self._view.message else ""

    @renderer
    def ending(self, request: Any, tag: Tag) -> Tag | str:
        return tag(self._view.ending) if self._view.ending else ""

    @renderer
    def terms(self, request: Any, tag: Tag) -> Tag:
        return tag(self._view.terms)

    @renderer
    def form(self, request: Any, tag: Tag) -> list[Element]:
        # The theme's form once per way in, each rendered by its own element.
        return [WayForm(self._view, way, tag.clone()) for way in self._view.ways]


class WayForm(Element):
    """The theme's login form for one way in (its heading when the page offers several)."""

    def __init__(self, view: LandingView, way: Way, form: Tag) -> None:
        # C{form} is the theme's form tag (its renderer already taken off):
        # its slots filled here, its inner renderers (fields, next_field) ours.
        form.fillSlots(csrf=view.csrf, submit=way.authenticator.submit_label)
        if len(view.ways) > 1:
            form.attributes.setdefault("class", f"way way-{way.name}")
        super().__init__(loader=TagLoader(form))
        self._view = view
        self._way = way

    @renderer
    def next_field(self, request: Any, tag: Tag) -> Tag | str:
        if self._view.next_token is None:
            return ""
        return tags.input(type="hidden", name="next", value=self._view.next_token)

    @renderer
    def fields(self, request: Any, tag: Tag) -> list[Tag]:
        shown: list[Tag] = [tags.input(type="hidden", name=METHOD_FIELD, value=self._way.name)]
        if len(self._view.ways) > 1:
            shown.append(tags.h2(self._way.label))
        prefill = self._view.prefill
        shown += [_field(field, prefill.get(field.name)) for field in self._way.authenticator.fields]
        return shown


@attrs.frozen
class StatusView:
    """
    What the status page shows: the session at C{now}, the data C{used}
    (if known) and the C{extension} the extend button adds (if offered).
    """

    session: Session
    now: float
    warn_before: float
    csrf: str
    used: tuple[int, int] | None = None
    extension: float | None = None


class StatusBody(Element):
    """Time left, data allowance, the expiry notice, and the sign-out button."""

    def __init__(self, theme: Theme, view: StatusView) -> None:
        super().__init__(loader=theme.loader("status"))
        self._view = view

    def _remaining(self) -> float | None:
        return self._view.session.remaining(self._view.now)

    @renderer
    def expiry_notice(self, request: Any, tag: Tag) -> Tag | str:
        remaining = self._remaining()
        if remaining is None or remaining > self._view.warn_before:
            return ""
        return tag(
            f"Your session ends in {describe_duration(remaining)}. "
            "After that, sign in again on this page to stay online."
        )

    @renderer
    def session(self, request: Any, tag: Tag) -> Tag:
        remaining = self._remaining()
        return tag.fillSlots(
            mac=self._view.session.mac,
            method=self._view.session.method,
            time_left="no time limit" if remaining is None else describe_duration(remaining),
        )

    @renderer
    def data(self, request: Any, tag: Tag) -> list[Tag] | str:
        quota = self._view.session.quota_bytes
        if not quota:
            return ""
        if self._view.used is None:
            return [tags.dt("Data allowance"), tags.dd(describe_bytes(quota))]
        used = sum(self._view.used)
        return [tags.dt("Data used"), tags.dd(f"{describe_bytes(used)} of {describe_bytes(quota)}")]

    @renderer
    def extend_form(self, request: Any, tag: Tag) -> Tag | str:
        if self._view.extension is None:
            return ""
        return tag.fillSlots(csrf=self._view.csrf, length=describe_period(self._view.extension))

    @renderer
    def logout_form(self, request: Any, tag: Tag) -> Tag:
        return tag.fillSlots(csrf=self._view.csrf)


class MessageBody(Element):
    """A few sentences and an optional link: signed in, signed out, no lease, errors."""

    def __init__(self, theme: Theme, paragraphs: Iterable[str], link: tuple[str, str] | None = None):
        super().__init__(loader=theme.loader("message"))
        self._paragraphs = tuple(paragraphs)
        self._link = link

    @renderer
    def paragraphs(self, request: Any, tag: Tag) -> list[Tag]:
        return [tag.clone()(text) for text in self._paragraphs]

    @renderer
    def link(self, request: Any, tag: Tag) -> Tag | str:
        if self._link is None:
            return ""
        href, text = self._link
        return tag(tags.a(text, href=href))

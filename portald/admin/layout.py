"""The admin page's frame: navigation, forms that carry the CSRF token, and the headers every answer gets."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.web.server import Request
from twisted.web.template import Tag, tags

from portald.admin.staff import StaffSession
from portald.html import flatten_now

# No script at all, no frames, forms only to this site, styles only from it.
PAGE_POLICY = (
    b"default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    b"frame-ancestors 'none'; base-uri 'none'"
)
# A voucher sheet carries its own styles and its QR codes as data: images.
SHEET_POLICY = (
    b"default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'"
)

NAVIGATION = (("/", "Now"), ("/vouchers", "Vouchers"), ("/today", "Today"), ("/allowed", "Allowed devices"))
CSRF_FIELD = "csrf"


def secure_headers(request: Request, policy: bytes = PAGE_POLICY) -> None:
    request.setHeader(b"Content-Security-Policy", policy)
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"X-Frame-Options", b"DENY")
    # same-origin: the Origin a form sends is checked; no other site learns the page's address.
    request.setHeader(b"Referrer-Policy", b"same-origin")
    request.setHeader(b"Cache-Control", b"no-store")


def html_answer(request: Request, tree: Tag, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    secure_headers(request)
    return flatten_now(tree)


def form(csrf: str, action: str, *fields: object, button: str, danger: bool = False) -> Tag:
    """A POST form to C{action} carrying the sign-in's CSRF token."""
    return tags.form(method="post", action=action, class_="inline")(
        tags.input(type="hidden", name=CSRF_FIELD, value=csrf),
        *fields,
        tags.button(button, type="submit", **({"class": "danger"} if danger else {})),
    )


def field(
    label: str, name: str, *, kind: str = "text", value: str = "", required: bool = False, **more: str
) -> Tag:
    attributes = {"type": kind, "name": name, "value": value, **more}
    if required:
        attributes["required"] = "required"
    return tags.label(label, " ", tags.input(**attributes))


def choice(label: str, name: str, options: Sequence[tuple[str, str]], selected: str = "") -> Tag:
    choices = [
        tags.option(text, value=value, **({"selected": "selected"} if value == selected else {}))
        for value, text in options
    ]
    return tags.label(label, " ", tags.select(*choices, name=name))


def frame(
    title: str,
    venue: str,
    *content: object,
    staff: StaffSession | None = None,
    here: str = "",
    notice: str | None = None,
    error: str | None = None,
) -> Tag:
    """A whole page: the venue and the navigation, who is signed in, a notice if any, then C{content}."""
    header = [tags.p(venue, " · portald", class_="venue")]
    if staff is not None:
        links = [
            tags.li(tags.a(text, href=path, **({"aria-current": "page"} if path == here else {})))
            for path, text in NAVIGATION
        ]
        header.append(
            tags.nav(
                tags.ul(*links),
                tags.div(
                    tags.span(staff.name, class_="who"),
                    form(staff.csrf, "/logout", button="Sign out"),
                    class_="account",
                ),
            )
        )
    body = [tags.header(*header)]
    main = [tags.h1(title)]
    if notice:
        main.append(tags.p(notice, class_="notice", role="status"))
    if error:
        main.append(tags.p(error, class_="error", role="alert"))
    body.append(Tag("main")(*main, *content))
    return tags.html(
        tags.head(
            tags.meta(charset="utf-8"),
            tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
            tags.title(f"{title} · {venue}"),
            tags.link(rel="stylesheet", href="/admin.css"),
        ),
        tags.body(*body),
        lang="en",
    )

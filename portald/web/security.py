"""Response headers every page carries, and the few that differ by page kind."""

from __future__ import annotations

# The portal's own pages: its stylesheet, its images, nothing else; no
# scripts at all, no framing by another site.
# Forms post to the portal only; but browsers hold the redirect that answers
# a sign-in (to the site the guest wanted, any http or https one) to
# form-action too, so those schemes stay allowed (no javascript:, no data:).
PORTAL_CSP = (
    b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' http: https:; "
    b"frame-ancestors 'none'; base-uri 'none'"
)
# Answers with no page at all (refusals, errors): nothing may load or frame them.
PLAIN_CSP = b"default-src 'none'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
# Interception pages are served under a foreign Host, so they can load
# nothing from it: their little style is inline, and they hold no form.
INTERCEPT_CSP = b"default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

COMMON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"X-Frame-Options", b"DENY"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"X-Content-Type-Options", b"nosniff"),
)

NO_STORE = b"no-store"
HTML = b"text/html; charset=utf-8"

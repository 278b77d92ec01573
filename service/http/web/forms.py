"""Web: how a private page is rendered, and the email-and-password form that the caregiver's
sign-in and account deletion share.

Both pages ask the same thing of a person — who they are — and must answer the same way to
a forged form (a double-submit cookie), to guessing (the per-address and per-account rate
limits of ``service/http/ratelimit.py``) and to a wrong password (one message for both an
unknown email and a wrong password, so the page never tells whether an email has an account).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from litestar import Response

from service.accounts.service import AccountService
from service.errors import RateLimited
from service.http.deps import AnyRequest
from service.http.ratelimit import RateLimiter

__all__ = ["EXPIRED", "PasswordForm", "page", "secure"]

EXPIRED = "This form expired. Please try again."
MISMATCH = "That email and password don't match."


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_HEADERS = {
    # No scripts, no frames, forms only to ourselves; the data is private: never cached.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def page(name: str, status: int = 200, **context: Any) -> Response[str]:
    """A template rendered with the private-page headers (no scripts, never cached)."""
    html = _env.get_template(name).render(**context)
    return Response(html, status_code=status, media_type="text/html", headers=_HEADERS)


def secure(request: AnyRequest) -> bool:
    return request.url.scheme == "https"


@dataclass(frozen=True, slots=True)
class PasswordForm:
    """A page (``template``) whose form is tied to a cookie (``cookie``, scoped to ``path``)."""

    template: str
    cookie: str
    path: str

    def render(
        self, request: AnyRequest, error: str = "", status: int = 200, email: str = ""
    ) -> Response[str]:
        """The page with a fresh form: its token is both in the form and in the cookie."""
        csrf = secrets.token_urlsafe(24)
        response = page(self.template, status, csrf=csrf, error=error, email=email)
        response.set_cookie(
            self.cookie,
            csrf,
            path=self.path,
            max_age=3600,
            httponly=True,
            samesite="strict",
            secure=secure(request),
        )
        return response

    def genuine(self, request: AnyRequest, csrf: str) -> bool:
        """The form was sent from the page this browser was given (not forged, not stale)."""
        expected = request.cookies.get(self.cookie, "")
        return bool(expected) and hmac.compare_digest(expected, csrf)

    async def sign_in(
        self,
        request: AnyRequest,
        limits: RateLimiter,
        accounts: AccountService,
        email: str,
        password: str,
    ) -> str | Response[str]:
        """The person's user id, or the page to answer with: too many attempts (429 with
        ``Retry-After``) or an email and password that don't match (401)."""
        email = email[:320]
        try:
            await limits.check_web_sign_in(request, email)
        except RateLimited as exc:
            wait = exc.headers.get("Retry-After", "60")
            refused = self.render(
                request,
                f"Too many sign-in attempts. Please wait {wait} seconds and try again.",
                429,
                email,
            )
            refused.headers["Retry-After"] = wait
            return refused
        user_id = await accounts.check_password(email, password[:1024])
        if user_id is None:
            return self.render(request, MISMATCH, 401, email)
        return user_id

"""The web page for deleting an account (the link app stores ask for): sign in with the
email and password, tick that you understand, and everything is erased — the same erasure
as ``DELETE /v1/account``.

Server-rendered like the caregiver page (no scripts, large type, labelled fields). The form
carries a CSRF token checked against a double-submit cookie (SameSite=Strict, HttpOnly,
path /account); the password is checked under the same rate limits as any sign-in, and a
wrong one says only that the email and password do not match.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body
from msgspec import Struct

from service.accounts.service import AccountService
from service.errors import RateLimited
from service.http.ratelimit import RateLimiter
from service.http.web.pages import page, secure
from service.lifecycle.erasure import Erasure

__all__ = ["AccountPages"]

FORM_COOKIE = "kith_account_form"


class DeleteForm(Struct):
    email: str = ""
    password: str = ""
    confirm: str = ""
    csrf: str = ""


DeleteBody = Annotated[DeleteForm, Body(media_type=RequestEncodingType.URL_ENCODED)]


class AccountPages(Controller):
    path = "/account"
    include_in_schema = False

    @get("/delete")
    async def delete_page(self, request: Request[Any, Any, Any]) -> Response[str]:
        return self._form(request)

    @post("/delete", status_code=200)
    async def delete_account(
        self,
        request: Request[Any, Any, Any],
        accounts: NamedDependency[AccountService],
        erasure: NamedDependency[Erasure],
        limits: NamedDependency[RateLimiter],
        data: DeleteBody,
    ) -> Response[str]:
        expected = request.cookies.get(FORM_COOKIE, "")
        if not expected or not hmac.compare_digest(expected, data.csrf):
            return self._form(request, "This form expired. Please try again.", 403)
        email = data.email[:320]
        if data.confirm != "yes":
            return self._form(
                request, "Tick the box to confirm that everything should be deleted.", 422, email
            )
        try:
            await limits.check_web_sign_in(request, email)
        except RateLimited as exc:
            wait = exc.headers.get("Retry-After", "60")
            refused = self._form(
                request, f"Too many attempts. Please wait {wait} seconds and try again.", 429, email
            )
            refused.headers["Retry-After"] = wait
            return refused
        user_id = await accounts.check_password(email, data.password[:1024])
        if user_id is None:
            return self._form(request, "That email and password don't match.", 401, email)
        await erasure.request(user_id)
        response = page("account_deleted.html")
        response.delete_cookie(FORM_COOKIE, path="/account")
        return response

    @staticmethod
    def _form(
        request: Request[Any, Any, Any], error: str = "", status: int = 200, email: str = ""
    ) -> Response[str]:
        csrf = secrets.token_urlsafe(24)
        response = page("account_delete.html", status, csrf=csrf, error=error, email=email)
        response.set_cookie(
            FORM_COOKIE,
            csrf,
            path="/account",
            max_age=3600,
            httponly=True,
            samesite="strict",
            secure=secure(request),
        )
        return response

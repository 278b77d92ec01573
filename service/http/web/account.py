"""The web page for deleting an account (the link app stores ask for): sign in with the
email and password, tick that you understand, and everything is erased — the same erasure
as ``DELETE /v1/account``.

Server-rendered like the caregiver page (no scripts, large type, labelled fields). The form
carries a CSRF token checked against a double-submit cookie (SameSite=Strict, HttpOnly,
path /account); the password is checked under the same rate limits as any sign-in, and a
wrong one says only that the email and password do not match.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from msgspec import Struct

from service.http.deps import AccountsDep, AnyRequest, ErasureDep, LimitsDep
from service.http.web.forms import EXPIRED, PasswordForm, page

__all__ = ["AccountPages"]

FORM = PasswordForm("account_delete.html", "kith_account_form", "/account")


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
    async def delete_page(self, request: AnyRequest) -> Response[str]:
        return FORM.render(request)

    @post("/delete", status_code=200)
    async def delete_account(
        self,
        request: AnyRequest,
        accounts: AccountsDep,
        erasure: ErasureDep,
        limits: LimitsDep,
        data: DeleteBody,
    ) -> Response[str]:
        if not FORM.genuine(request, data.csrf):
            return FORM.render(request, EXPIRED, 403)
        if data.confirm != "yes":
            return FORM.render(
                request,
                "Tick the box to confirm that everything should be deleted.",
                422,
                data.email[:320],
            )
        user_id = await FORM.sign_in(request, limits, accounts, data.email, data.password)
        if not isinstance(user_id, str):
            return user_id  # too many attempts, or not the person
        await erasure.request(user_id)
        response = page("account_deleted.html")
        response.delete_cookie(FORM.cookie, path=FORM.path)
        return response

"""HTTP: the person's own account — delete it, export it."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete
from litestar.di import NamedDependency, Provide

from schemas.account import DeleteAccountRequest, DeletionStarted
from service.accounts.service import AccountService
from service.errors import Code, InvalidInput, Malformed, field_errors_from_msgspec
from service.http.guard import Caller, resolve_caller
from service.http.ratelimit import RateLimiter
from service.lifecycle.erasure import Erasure

__all__ = ["AccountController"]

_decode_delete = msgspec.json.Decoder(DeleteAccountRequest).decode


class AccountController(Controller):
    path = "/v1/account"
    tags = ["account"]
    dependencies = {"caller": Provide(resolve_caller)}
    security = [{"bearer": []}]

    @delete(
        "/",
        status_code=202,
        summary="Delete my account and everything in it",
        description=(
            'Body (optional within five minutes of a sign-in): `{"password": "…"}`. '
            "Every device is signed out at once; the erasure completes in the background."
        ),
    )
    async def delete_account(
        self,
        request: Request[Any, Any, Any],
        caller: NamedDependency[Caller],
        accounts: NamedDependency[AccountService],
        erasure: NamedDependency[Erasure],
        limits: NamedDependency[RateLimiter],
    ) -> DeletionStarted:
        body = await request.body()
        try:
            req = _decode_delete(body) if body.strip() else DeleteAccountRequest()
        except msgspec.ValidationError as exc:
            raise InvalidInput(str(exc), errors=field_errors_from_msgspec(exc)) from None
        except msgspec.DecodeError:
            raise Malformed("the body is not valid JSON", code=Code.MALFORMED_JSON) from None
        if req.password is not None:
            await limits.check_password_confirmation(caller.user_id)
        await accounts.confirm_identity(caller.user_id, caller.family_id, req.password)
        await erasure.request(caller.user_id)
        return DeletionStarted()

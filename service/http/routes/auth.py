"""HTTP: accounts and sessions."""

from __future__ import annotations

from litestar import Controller, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from schemas.auth import (
    LoginRequest,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
)
from service.accounts.recovery import Recovery
from service.accounts.service import AccountService
from service.errors import Code
from service.http.guard import Caller, resolve_caller
from service.http.openapi import problems
from service.http.ratelimit import RateLimiter

__all__ = ["AuthController"]


class AuthController(Controller):
    path = "/v1/auth"
    tags = ["auth"]

    @post(
        "/register",
        status_code=201,
        summary="Create an account and sign in this device",
        responses=problems(Code.EMAIL_TAKEN),
    )
    async def register(
        self, data: JSONBody[RegisterRequest], accounts: NamedDependency[AccountService]
    ) -> TokenResponse:
        return await accounts.register(data)

    @post(
        "/login",
        status_code=200,
        summary="Sign in a device",
        responses=problems(Code.INVALID_CREDENTIALS),
    )
    async def login(
        self,
        data: JSONBody[LoginRequest],
        accounts: NamedDependency[AccountService],
        limits: NamedDependency[RateLimiter],
    ) -> TokenResponse:
        # Per client address is checked by the app's guard; per account needs the body.
        await limits.check_login_email(data.email)
        return await accounts.login(data)

    @post(
        "/refresh",
        status_code=200,
        summary="Rotate the refresh token, get a new access token",
        responses=problems(Code.INVALID_REFRESH_TOKEN, Code.REFRESH_TOKEN_REUSED),
    )
    async def refresh(
        self, data: JSONBody[RefreshRequest], accounts: NamedDependency[AccountService]
    ) -> TokenResponse:
        return await accounts.refresh(data.refresh_token)

    @post(
        "/password-reset",
        status_code=202,
        summary="Email a one-time code to reset the password (the same answer for any email)",
    )
    async def password_reset(
        self,
        data: JSONBody[PasswordResetRequest],
        recovery: NamedDependency[Recovery],
        limits: NamedDependency[RateLimiter],
    ) -> None:
        await limits.check_login_email(data.email)
        await recovery.request_reset(data.email)

    @post(
        "/password-reset/confirm",
        status_code=204,
        summary="Set a new password with the emailed code; every session is signed out",
        responses=problems(Code.INVALID_CODE),
    )
    async def password_reset_confirm(
        self,
        data: JSONBody[PasswordResetConfirm],
        recovery: NamedDependency[Recovery],
        limits: NamedDependency[RateLimiter],
    ) -> None:
        await limits.check_login_email(data.email)
        await recovery.confirm_reset(data.email, data.code, data.new_password)

    @post(
        "/logout",
        status_code=204,
        summary="Sign this device out",
        dependencies={"caller": Provide(resolve_caller)},
        security=[{"bearer": []}],
    )
    async def logout(
        self, caller: NamedDependency[Caller], accounts: NamedDependency[AccountService]
    ) -> None:
        await accounts.logout(caller.family_id, user_id=caller.user_id, device_id=caller.device_id)

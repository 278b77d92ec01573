"""HTTP: accounts and sessions."""

from __future__ import annotations

from litestar import Controller, post
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.params import JSONBody

from schemas.auth import (
    LoginRequest,
    PasswordResetConfirm,
    PasswordResetRequest,
    ProviderSignInRequest,
    RefreshRequest,
    RegisterRequest,
    SignInResponse,
    TokenResponse,
)
from service.errors import Code
from service.http.deps import AccountsDep, CallerDep, IdentitiesDep, LimitsDep, RecoveryDep
from service.http.guard import resolve_caller
from service.http.openapi import operation

__all__ = ["AuthController"]

_PROVIDER_SIGN_IN = (
    "The same tokens as `/v1/auth/login`, for the device in `device`. Start the sign-in "
    "with a fresh random nonce, give {provider}'s SDK {nonce}, and send the raw nonce here. "
    "A new {provider} account creates a Kith account (`created: true`): then `time_zone`, "
    "a `display_name` (unless the token has a name) and, when the server requires consent, "
    "`terms_version` and `wellbeing_consent` are needed. `409 link_required`: the email "
    "has a Kith account — sign in to it and link {provider} (`POST /v1/account/identities`)."
)


def _sign_in_with(provider: str, nonce: str) -> HTTPRouteHandler:
    """The route of one identity provider's sign-in: ``POST /v1/auth/{provider}``."""
    return operation(
        post,
        f"/{provider.lower()}",
        f"Sign in (or up) with {provider}: its ID token and the raw nonce",
        Code.INVALID_ID_TOKEN,
        Code.PROVIDER_DISABLED,
        Code.LINK_REQUIRED,
        Code.PROVIDER_UNAVAILABLE,
        description=_PROVIDER_SIGN_IN.format(provider=provider, nonce=nonce),
    )


class AuthController(Controller):
    path = "/v1/auth"
    tags = ["auth"]

    @operation(
        post,
        "/register",
        "Create an account and sign in this device",
        Code.EMAIL_TAKEN,
        status_code=201,
    )
    async def register(
        self, data: JSONBody[RegisterRequest], accounts: AccountsDep
    ) -> TokenResponse:
        return await accounts.register(data)

    @operation(post, "/login", "Sign in a device", Code.INVALID_CREDENTIALS)
    async def login(
        self, data: JSONBody[LoginRequest], accounts: AccountsDep, limits: LimitsDep
    ) -> TokenResponse:
        # Per client address is checked by the app's guard; per account needs the body.
        await limits.check_login_email(data.email)
        return await accounts.login(data)

    @_sign_in_with("Apple", nonce="its SHA-256 in hex")
    async def apple(
        self, data: JSONBody[ProviderSignInRequest], identities: IdentitiesDep
    ) -> SignInResponse:
        return await identities.sign_in("apple", data)

    @_sign_in_with("Google", nonce="as is")
    async def google(
        self, data: JSONBody[ProviderSignInRequest], identities: IdentitiesDep
    ) -> SignInResponse:
        return await identities.sign_in("google", data)

    @operation(
        post,
        "/refresh",
        "Rotate the refresh token, get a new access token",
        Code.INVALID_REFRESH_TOKEN,
        Code.REFRESH_TOKEN_REUSED,
    )
    async def refresh(self, data: JSONBody[RefreshRequest], accounts: AccountsDep) -> TokenResponse:
        return await accounts.refresh(data.refresh_token)

    @operation(
        post,
        "/password-reset",
        "Email a one-time code to reset the password (the same answer for any email)",
        status_code=202,
    )
    async def password_reset(
        self, data: JSONBody[PasswordResetRequest], recovery: RecoveryDep, limits: LimitsDep
    ) -> None:
        await limits.check_login_email(data.email)
        await recovery.request_reset(data.email)

    @operation(
        post,
        "/password-reset/confirm",
        "Set a new password with the emailed code; every session is signed out",
        Code.INVALID_CODE,
        status_code=204,
    )
    async def password_reset_confirm(
        self, data: JSONBody[PasswordResetConfirm], recovery: RecoveryDep, limits: LimitsDep
    ) -> None:
        await limits.check_login_email(data.email)
        await recovery.confirm_reset(data.email, data.code, data.new_password)

    @operation(
        post,
        "/logout",
        "Sign this device out",
        status_code=204,
        dependencies={"caller": Provide(resolve_caller)},
        security=[{"bearer": []}],
    )
    async def logout(self, caller: CallerDep, accounts: AccountsDep) -> None:
        await accounts.logout(caller.family_id, user_id=caller.user_id, device_id=caller.device_id)

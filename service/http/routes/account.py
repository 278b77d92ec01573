"""HTTP: the person's own account — see it, its sign-in methods, delete it, export it."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import delete, get, post
from litestar.params import JSONBody, Parameter
from litestar.response import Stream

from schemas.account import (
    AccountOut,
    ConsentRequest,
    ConsentResponse,
    DeleteAccountRequest,
    DeletionStarted,
    EmailChangeConfirm,
    EmailChanged,
    EmailChangeRequest,
)
from schemas.auth import IdentityOut, LinkIdentityRequest
from schemas.common import described
from service.accounts.tokens import AccessClaims
from service.errors import Code, InvalidInput, Malformed, field_errors_from_msgspec
from service.http.deps import (
    AccountsDep,
    AnyRequest,
    CallerDep,
    ErasureDep,
    ExporterDep,
    IdentitiesDep,
    LimitsDep,
    RecoveryDep,
    SignedIn,
)
from service.http.openapi import operation

__all__ = ["AccountController"]

_decode_delete = msgspec.json.Decoder(DeleteAccountRequest).decode


class AccountController(SignedIn):
    path = "/v1/account"
    tags = ["account"]

    @operation(get, "/", "My account and every way I can sign in (password, Apple, Google)")
    async def account(self, caller: CallerDep, identities: IdentitiesDep) -> AccountOut:
        return await identities.account(caller.user_id)

    @operation(
        post,
        "/identities",
        "Link Apple or Google to my account (sign in with it from then on)",
        Code.INVALID_ID_TOKEN,
        Code.WRONG_PASSWORD,
        Code.REAUTHENTICATION_REQUIRED,
        Code.PROVIDER_DISABLED,
        Code.IDENTITY_TAKEN,
        Code.PROVIDER_ALREADY_LINKED,
        Code.PROVIDER_UNAVAILABLE,
        description=(
            "The provider's ID token and the raw nonce, as for `/v1/auth/apple|google`, and "
            '`{"password": …}` unless this session was started by a sign-in within five '
            "minutes. Linking the same identity again changes nothing."
        ),
    )
    async def link_identity(
        self,
        caller: CallerDep,
        identities: IdentitiesDep,
        limits: LimitsDep,
        data: JSONBody[LinkIdentityRequest],
    ) -> IdentityOut:
        if data.password is not None:
            await limits.check_password_confirmation(caller.user_id)
        return await identities.link(caller.user_id, caller.family_id, data)

    @operation(
        delete,
        "/identities/{provider:str}",
        "Unlink Apple or Google from my account",
        Code.NOT_FOUND,
        Code.LAST_SIGN_IN_METHOD,
        status_code=204,
        description="Refused (`409 last_sign_in_method`) if it is the only way left to sign in.",
    )
    async def unlink_identity(
        self,
        caller: CallerDep,
        identities: IdentitiesDep,
        provider: Annotated[
            str,
            Parameter(
                pattern=described(r"^(apple|google)$(?!\n)", "apple or google"),
                description="apple or google",
            ),
        ],
    ) -> None:
        await identities.unlink(caller.user_id, provider)

    @operation(
        delete,
        "/",
        "Delete my account and everything in it",
        Code.MALFORMED_JSON,
        Code.INVALID_FIELD,
        Code.WRONG_PASSWORD,
        Code.REAUTHENTICATION_REQUIRED,
        status_code=202,
        description='Body (optional within five minutes of a sign-in): `{"password": "…"}`. '
        "Every device is signed out at once; the erasure completes in the background.",
    )
    async def delete_account(
        self,
        request: AnyRequest,
        caller: CallerDep,
        accounts: AccountsDep,
        erasure: ErasureDep,
        limits: LimitsDep,
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

    @operation(
        post,
        "/email",
        "Change my email: a one-time code is sent to the new address",
        Code.WRONG_PASSWORD,
        Code.REAUTHENTICATION_REQUIRED,
        Code.EMAIL_TAKEN,
        status_code=202,
    )
    async def change_email(
        self,
        caller: CallerDep,
        accounts: AccountsDep,
        recovery: RecoveryDep,
        limits: LimitsDep,
        data: JSONBody[EmailChangeRequest],
    ) -> None:
        await limits.check_password_confirmation(caller.user_id)
        await accounts.confirm_identity(caller.user_id, caller.family_id, data.password)
        await recovery.request_email_change(caller.user_id, data.new_email)

    @operation(
        post,
        "/email/confirm",
        "Confirm the new email with its code",
        Code.INVALID_CODE,
        Code.EMAIL_TAKEN,
    )
    async def confirm_email(
        self,
        caller: CallerDep,
        recovery: RecoveryDep,
        limits: LimitsDep,
        data: JSONBody[EmailChangeConfirm],
    ) -> EmailChanged:
        await limits.check_password_confirmation(caller.user_id)
        return EmailChanged(await recovery.confirm_email_change(caller.user_id, data.code))

    @operation(
        post,
        "/consent",
        "Accept the privacy terms and consent to the processing of wellbeing data",
        description="After `403 consent_required`: send the current terms version and "
        "`wellbeing_consent: true`; use the access token in the answer and sync again.",
    )
    async def consent(
        self, caller: CallerDep, accounts: AccountsDep, data: JSONBody[ConsentRequest]
    ) -> ConsentResponse:
        claims = AccessClaims(caller.user_id, caller.device_id, caller.space_id, caller.family_id)
        return await accounts.accept_terms(claims, data)

    @operation(
        get,
        "/export",
        "Export everything Kith holds about me (one JSON document, streamed)",
        description=(
            "The document is `AccountExport` (format `kith-export`, version 1): the account "
            "and its consent, devices, every record of every table, the conflict history, "
            "nudges with what became of them, caregiver links both ways and who viewed my "
            "summary. See docs/protocol.md."
        ),
        media_type="application/json",
    )
    async def export(self, caller: CallerDep, exporter: ExporterDep) -> Stream:
        chunks = await exporter.open(caller.user_id, caller.space_id)
        return Stream(
            chunks,
            media_type="application/json",
            headers={
                "Content-Disposition": 'attachment; filename="kith-export.json"',
                "Cache-Control": "no-store",
            },
        )

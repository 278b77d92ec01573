"""Signing in with Apple or Google: sign up, sign in, link, unlink (decision 0020).

A verified ID token (``service/accounts/providers.py``) names a provider identity
(provider, subject). What happens next:

* **known identity** → a session for the device, the same answer as a password login;
* **unknown identity, and its verified email belongs to an account** → ``409
  link_required``: nothing is created and nothing is linked. Whoever controls an Apple or
  Google account with that address does not thereby get into the Kith account; the person
  signs in the way they already can and links the provider from there;
* **unknown identity otherwise** → a new account, recording the privacy terms and the
  wellbeing consent exactly as registration does; no password (``''``: none works) and the
  provider's verified email, if it sent one (an Apple private relay address is kept as is;
  no email at all is allowed).

Linking needs the signed-in person to confirm who they are (the password, or a session
started by a sign-in within five minutes), because a new sign-in method outlives the
access token that added it. One identity per provider per account; an identity belongs to
one account. Unlinking is refused when it would leave no way to sign in. Each account's
methods change one at a time (an advisory lock), so two unlinks at once cannot both succeed.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import msgspec

from schemas.account import AccountOut
from schemas.auth import (
    IdentityOut,
    LinkIdentityRequest,
    ProviderSignInRequest,
    SignInResponse,
)
from schemas.problem import FieldError
from schemas.tables import check_time_zone
from service.accounts.providers import ProviderIdentity, Providers
from service.accounts.service import AccountService
from service.errors import Code, Conflict, InvalidInput, NotFound
from service.store import accounts as accounts_store
from service.store import identities as store
from service.store.accounts import NewUser
from service.store.db import Connection
from service.store.identities import Linked, SignInUser

__all__ = ["Identities"]

#: Shown next to the provider's name in messages.
_NAMES = {"apple": "Apple", "google": "Google"}
#: Sign-ups of one identity racing sign-ups and erasures before giving up (never, in practice).
_ATTEMPTS = 3


class _Raced(Exception):
    """Another sign-in created an account for the same identity first."""


def _new_id() -> str:
    return uuid.uuid4().hex


class Identities:
    def __init__(
        self, pool: asyncpg.Pool[Any], accounts: AccountService, providers: Providers
    ) -> None:
        self._pool = pool
        self._accounts = accounts
        self._providers = providers

    async def sign_in(self, provider: str, req: ProviderSignInRequest) -> SignInResponse:
        """Sign the device in with the provider's token, creating the account if the
        identity is new (``created`` says so)."""
        who = await self._providers.verify(provider, req.id_token, req.nonce)
        user = await store.user_by_identity(self._pool, provider, who.subject)
        if user is not None:
            return await self._open(user, who, req)
        for _ in range(_ATTEMPTS):
            try:
                return await self._sign_up(who, req)
            except _Raced:
                # Another sign-in with this identity made the account first: sign in to it
                # (unless it was erased in between, then sign up again).
                user = await store.user_by_identity(self._pool, provider, who.subject)
                if user is not None:
                    return await self._open(user, who, req)
        raise Conflict(
            f"this {_NAMES[provider]} account is being signed in elsewhere; try again",
            code=Code.IDENTITY_TAKEN,
        )

    async def _open(
        self, user: SignInUser, who: ProviderIdentity, req: ProviderSignInRequest
    ) -> SignInResponse:
        family_id = _new_id()
        async with self._pool.acquire() as conn, conn.transaction():
            await store.touch_identity(
                conn, who.provider, who.subject, who.email, who.private_email
            )
            tokens = await self._accounts.open_session(
                conn, user.id, user.space_id, req.device, family_id, user.terms_version
            )
        await self._accounts.session_replaced(user.id, req.device.id, family_id)
        return SignInResponse(**msgspec.structs.asdict(tokens), created=False)

    async def _sign_up(self, who: ProviderIdentity, req: ProviderSignInRequest) -> SignInResponse:
        name = _NAMES[who.provider]
        if who.email is not None and await accounts_store.email_taken(self._pool, who.email):
            raise Conflict(
                f"a Kith account already uses this {name} account's email: sign in to it "
                f"(password, or a provider already linked), then link {name} in settings",
                code=Code.LINK_REQUIRED,
                errors=[FieldError("id_token", "its email belongs to an existing account")],
            )
        time_zone, display_name = self._new_account_fields(who, req)
        self._accounts.consent.check_acceptance(req.terms_version, req.wellbeing_consent)
        async with self._pool.acquire() as conn, conn.transaction():
            new = NewUser(
                email=who.email,
                password_hash="",  # no password: none verifies against ''
                display_name=display_name,
                time_zone=time_zone,
                terms_version=req.terms_version,
                wellbeing_consent=req.wellbeing_consent,
            )
            created = await self._accounts.create_account(conn, new)
            if created is None:  # the address was registered since the check above
                raise Conflict(
                    f"a Kith account already uses this {name} account's email: sign in to "
                    f"it, then link {name} in settings",
                    code=Code.LINK_REQUIRED,
                    errors=[FieldError("id_token", "its email belongs to an existing account")],
                )
            user_id, space_id = created
            linked = await _insert(conn, user_id, who, signed_in=True)
            if linked is not Linked.LINKED:
                raise _Raced  # the transaction rolls back: no second account
            tokens = await self._accounts.open_session(
                conn, user_id, space_id, req.device, terms_version=req.terms_version
            )
        return SignInResponse(**msgspec.structs.asdict(tokens), created=True)

    @staticmethod
    def _new_account_fields(who: ProviderIdentity, req: ProviderSignInRequest) -> tuple[str, str]:
        """What a new account needs beyond the token, or 422 naming each missing field."""
        errors = []
        if req.time_zone is None:
            errors.append(FieldError("time_zone", "required when the sign-in creates the account"))
        else:
            try:
                check_time_zone(req.time_zone)
            except ValueError as exc:
                errors.append(FieldError("time_zone", str(exc)))
        display_name = req.display_name or who.name
        if not display_name:
            errors.append(
                FieldError(
                    "display_name",
                    f"required when the sign-in creates the account ({_NAMES[who.provider]}'s "
                    "token carries no name)",
                )
            )
        if errors or req.time_zone is None or not display_name:
            raise InvalidInput("this sign-in creates an account: fill in its fields", errors=errors)
        return req.time_zone, display_name

    async def link(self, user_id: str, family_id: str, req: LinkIdentityRequest) -> IdentityOut:
        """Add the provider to the signed-in account (idempotent for the same identity)."""
        await self._accounts.confirm_identity(user_id, family_id, req.password)
        who = await self._providers.verify(req.provider, req.id_token, req.nonce)
        name = _NAMES[who.provider]
        async with self._pool.acquire() as conn, conn.transaction():
            await store.lock_sign_in_methods(conn, user_id)
            linked = await _insert(conn, user_id, who, signed_in=False)
            identities = await store.identities_of(conn, user_id)
        if linked is Linked.TAKEN:
            raise Conflict(
                f"this {name} account is linked to another Kith account; unlink it there first",
                code=Code.IDENTITY_TAKEN,
                errors=[FieldError("id_token", f"its {name} account has another Kith account")],
            )
        if linked is Linked.PROVIDER_TAKEN:
            raise Conflict(
                f"another {name} account is linked already; unlink it first",
                code=Code.PROVIDER_ALREADY_LINKED,
                errors=[FieldError("provider", f"{name} is linked already")],
            )
        [identity] = [i for i in identities if i.provider == who.provider]
        return identity

    async def unlink(self, user_id: str, provider: str) -> None:
        """Remove the provider from the account, unless it is the last way to sign in."""
        name = _NAMES.get(provider, provider)
        async with self._pool.acquire() as conn, conn.transaction():
            await store.lock_sign_in_methods(conn, user_id)
            identities = await store.identities_of(conn, user_id)
            if provider not in {i.provider for i in identities}:
                raise NotFound(f"{name} is not linked to this account")
            if len(identities) == 1 and not await store.password_set(conn, user_id):
                raise Conflict(
                    f"{name} is the only way to sign in to this account: link another "
                    "provider or set a password (password reset) first",
                    code=Code.LAST_SIGN_IN_METHOD,
                )
            await store.delete_identity(conn, user_id, provider)

    async def account(self, user_id: str) -> AccountOut:
        """The signed-in person's account and every way they can sign in."""
        async with self._pool.acquire() as conn:
            profile = await store.account_of(conn, user_id)
            if profile is None:
                raise NotFound("there is no such account")
            identities = await store.identities_of(conn, user_id)
        return AccountOut(**profile, identities=identities)


async def _insert(
    conn: Connection, user_id: str, who: ProviderIdentity, *, signed_in: bool
) -> Linked:
    """Link ``who`` to the account (``signed_in``: this sign-in is the identity's first)."""
    return await store.insert_identity(
        conn,
        user_id=user_id,
        provider=who.provider,
        subject=who.subject,
        email=who.email,
        private_email=who.private_email,
        signed_in=signed_in,
    )

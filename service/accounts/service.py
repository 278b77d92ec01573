"""Accounts and sessions: register, log in, rotate refresh tokens, log out.

A session is a token family bound to one device. Refresh tokens rotate on every use; a
refresh token presented a second time means it was stolen or replayed, so the whole
family is revoked and the device must log in again (OAuth 2.0 Security BCP §4.14).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import asyncpg

from schemas.account import ConsentRequest, ConsentResponse
from schemas.auth import DeviceInfo, LoginRequest, RegisterRequest, TokenResponse
from schemas.problem import FieldError
from schemas.tables import SETTINGS_ID, TABLES, check_time_zone
from service.accounts.consent import Consent
from service.accounts.passwords import Passwords
from service.accounts.tokens import AccessClaims, TokenIssuer, hash_refresh_token
from service.errors import Code, Conflict, Forbidden, InvalidInput, NotAuthenticated
from service.store import accounts as store
from service.store import sync as sync_store
from service.store.accounts import NewUser
from service.store.db import Connection
from sync.hlc import Clock
from sync.merge import RecordState

__all__ = ["RECENT_SIGN_IN_S", "AccountService", "OnRevoke"]

#: A session started by a sign-in this recently may delete its account without the password.
RECENT_SIGN_IN_S = 300

#: Told after a device's sessions were revoked and committed: ``(user_id, device_id,
#: keep)`` where ``keep`` is a family of that device that stays live (a new login's).
#: The app wires it to ``Realtime.session_revoked`` (caches, open streams, other processes).
OnRevoke = Callable[[str, str, str | None], Awaitable[None]]


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(eq=False)
class AccountService:
    pool: asyncpg.Pool[Any]
    passwords: Passwords
    tokens: TokenIssuer
    clock: Clock
    _: KW_ONLY
    refresh_ttl_s: int
    on_revoke: OnRevoke | None = None
    consent: Consent = field(default_factory=lambda: Consent(None))

    async def register(self, req: RegisterRequest) -> TokenResponse:
        try:
            check_time_zone(req.time_zone)
        except ValueError as exc:
            raise InvalidInput(str(exc), errors=[FieldError("time_zone", str(exc))]) from None
        self.consent.check_acceptance(req.terms_version, req.wellbeing_consent)
        password_hash = await self.passwords.hash(req.password)
        async with self.pool.acquire() as conn, conn.transaction():
            new = NewUser(
                email=req.email,
                password_hash=password_hash,
                display_name=req.display_name,
                time_zone=req.time_zone,
                terms_version=req.terms_version,
                wellbeing_consent=req.wellbeing_consent,
            )
            created = await self.create_account(conn, new)
            if created is None:
                raise Conflict(
                    "an account with this email already exists; log in instead",
                    code=Code.EMAIL_TAKEN,
                    errors=[FieldError("email", "already registered")],
                )
            user_id, space_id = created
            return await self.open_session(
                conn, user_id, space_id, req.device, terms_version=req.terms_version
            )

    async def create_account(self, conn: Connection, user: NewUser) -> tuple[str, str] | None:
        """A new account, its space and its settings in the caller's transaction: the
        (user id, space id), or None when the email has an account already."""
        user_id, space_id = _new_id(), _new_id()
        created = await store.insert_user(conn, user_id, space_id, user)
        if not created:
            return None
        await self.create_settings(conn, space_id, user.time_zone)
        return user_id, space_id

    async def create_settings(self, conn: Connection, space_id: str, time_zone: str) -> None:
        """The settings row is a synced record like any other (a server write, seq 1), so
        the first pull of every device brings the person's defaults and time zone."""
        position = await sync_store.lock_space(conn, space_id)
        hlc = self.clock.now()
        fields = dict(TABLES["settings"].defaults)
        fields["time_zone"] = time_zone
        state = RecordState(fields, {"time_zone": hlc})
        seq = position.seq + 1
        await sync_store.write_records(
            conn, space_id, "settings", [sync_store.RecordWrite(SETTINGS_ID, state, seq)]
        )
        await sync_store.advance_seq(conn, space_id, seq)

    async def check_password(self, email: str, password: str) -> str | None:
        """The user id if the password is right (the web page's sign-in), else None —
        in the same time whether or not the email exists."""
        user = await store.user_by_email(self.pool, email)
        ok = await self.passwords.verify(user.password_hash if user else None, password)
        return user.id if user is not None and ok else None

    async def accept_terms(self, claims: AccessClaims, req: ConsentRequest) -> ConsentResponse:
        """Record the person's acceptance of the current terms and their wellbeing consent;
        answer with an access token for this session that carries it."""
        self.consent.check_acceptance(req.terms_version, req.wellbeing_consent)
        if not req.wellbeing_consent:
            raise InvalidInput(
                "consent to the processing of wellbeing data is needed to use Kith",
                errors=[FieldError("wellbeing_consent", "must be true")],
            )
        accepted_at = await store.record_consent(self.pool, claims.user_id, req.terms_version)
        token = self.tokens.mint_access(
            dataclasses.replace(claims, terms_version=req.terms_version, expires_at=0)
        )
        return ConsentResponse(
            req.terms_version, accepted_at, token, expires_in=self.tokens.access_ttl_s
        )

    async def confirm_identity(self, user_id: str, family_id: str, password: str | None) -> None:
        """Before an irreversible act (deleting the account): the password, or a session
        started by a sign-in within :data:`RECENT_SIGN_IN_S` — refreshing tokens does not
        count, so a leaked refresh token alone cannot delete an account. Raises 403
        ``wrong_password`` or ``reauthentication_required``."""
        if password is not None:
            stored = await store.password_hash_of(self.pool, user_id)
            if not await self.passwords.verify(stored, password):
                raise Forbidden(
                    "the password is wrong",
                    code=Code.WRONG_PASSWORD,
                    errors=[FieldError("password", "is wrong")],
                )
            return
        age = await store.session_age_s(self.pool, family_id=family_id, user_id=user_id)
        if age is None or age > RECENT_SIGN_IN_S:
            raise Forbidden(
                "confirm with your password (or sign in again and retry within "
                f"{RECENT_SIGN_IN_S // 60} minutes)",
                code=Code.REAUTHENTICATION_REQUIRED,
                errors=[FieldError("password", "required")],
            )

    async def login(self, req: LoginRequest) -> TokenResponse:
        user = await store.user_by_email(self.pool, req.email)
        ok = await self.passwords.verify(user.password_hash if user else None, req.password)
        if user is None or not ok:
            raise NotAuthenticated("email or password is wrong", code=Code.INVALID_CREDENTIALS)
        family_id = _new_id()
        async with self.pool.acquire() as conn, conn.transaction():
            response = await self.open_session(
                conn, user.id, user.space_id, req.device, family_id, user.terms_version
            )
        await self.session_replaced(user.id, req.device.id, family_id)
        return response

    async def session_replaced(self, user_id: str, device_id: str, family_id: str) -> None:
        """After a sign-in committed: the device's previous session is over (its streams
        end, in this process and the others); ``family_id`` is the new one."""
        await self._revoked(user_id, device_id, keep=family_id)

    async def open_session(
        self,
        conn: Connection,
        user_id: str,
        space_id: str,
        device: DeviceInfo,
        family_id: str | None = None,
        terms_version: str | None = None,
    ) -> TokenResponse:
        """A new session (token family) for the device, in the caller's transaction: the
        device's previous one ends (tell it with :meth:`session_replaced` after commit)."""
        await store.upsert_device(
            conn, user_id=user_id, device_id=device.id, platform=device.platform, name=device.name
        )
        family_id = family_id or _new_id()
        await store.start_family(
            conn, family_id=family_id, user_id=user_id, device_id=device.id, space_id=space_id
        )
        claims = AccessClaims(user_id, device.id, space_id, family_id, terms_version=terms_version)
        return await self._issue(conn, claims)

    async def _issue(self, conn: Connection, claims: AccessClaims) -> TokenResponse:
        refresh = self.tokens.new_refresh_token()
        await store.insert_refresh_token(
            conn,
            token_hash=hash_refresh_token(refresh),
            family_id=claims.family_id,
            ttl_s=self.refresh_ttl_s,
        )
        return TokenResponse(
            user_id=claims.user_id,
            device_id=claims.device_id,
            access_token=self.tokens.mint_access(claims),
            refresh_token=refresh,
            expires_in=self.tokens.access_ttl_s,
        )

    async def refresh(self, refresh_token: str) -> TokenResponse:
        token_hash = hash_refresh_token(refresh_token)
        reused = False
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.refresh_token_for_update(conn, token_hash)
            if row is None or row.family_revoked:
                raise NotAuthenticated(
                    "this refresh token is not valid; log in again", code=Code.INVALID_REFRESH_TOKEN
                )
            if row.used:
                # Replay: someone holds a copy. End the session for every holder.
                await store.revoke_family(conn, row.family_id, "refresh_token_reused")
                reused = True
            elif row.expires_at <= dt.datetime.now(dt.UTC):
                raise NotAuthenticated(
                    "this refresh token has expired; log in again", code=Code.INVALID_REFRESH_TOKEN
                )
            else:
                await store.mark_refresh_used(conn, token_hash)
                claims = AccessClaims(
                    row.user_id,
                    row.device_id,
                    row.space_id,
                    row.family_id,
                    terms_version=row.terms_version,
                )
                return await self._issue(conn, claims)
        assert reused
        await self._revoked(row.user_id, row.device_id)
        raise NotAuthenticated(
            "this refresh token was already used; the session has been signed out for safety",
            code=Code.REFRESH_TOKEN_REUSED,
        )

    async def logout(
        self, family_id: str, *, user_id: str | None = None, device_id: str | None = None
    ) -> None:
        await store.revoke_family(self.pool, family_id, "logout")
        if user_id is not None and device_id is not None:
            await self._revoked(user_id, device_id)

    async def device_signed_out(self, user_id: str, device_id: str) -> None:
        """Tell the process (and the others) that a device was removed (its sessions end)."""
        await self._revoked(user_id, device_id)

    async def _revoked(self, user_id: str, device_id: str, *, keep: str | None = None) -> None:
        if self.on_revoke is not None:
            await self.on_revoke(user_id, device_id, keep)

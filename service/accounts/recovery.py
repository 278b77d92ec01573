"""Password reset and email change, by a one-time code sent by email.

* Reset: ``request_reset(email)`` answers the same whether or not the address has an
  account (the code is mailed in the background, so not even the time differs by a
  round trip to the mail server); ``confirm_reset(email, code, password)`` sets the new
  password and ends every session of the person (all devices sign in again).
* Email change: a signed-in person asks with their password; the code goes to the **new**
  address (proving they receive mail there), and ``confirm_email_change`` switches it.

Codes: 6 digits, stored only as a hash bound to the person, valid ``CODE_TTL_S``,
single-use, dead after ``MAX_ATTEMPTS`` wrong tries; a new request replaces the previous
code. Requests and confirmations count against the sign-in rate limits (at the edge).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from dataclasses import KW_ONLY, dataclass
from typing import Any

import asyncpg

from schemas.problem import FieldError
from service.accounts.passwords import Passwords
from service.accounts.service import OnRevoke
from service.errors import Code, Conflict, Forbidden
from service.infra.mail import Mailer
from service.store import accounts as store

__all__ = ["CODE_TTL_S", "MAX_ATTEMPTS", "Recovery", "code_hash"]

CODE_TTL_S = 15 * 60
MAX_ATTEMPTS = 5
RESET, EMAIL_CHANGE = "password_reset", "email_change"
log = logging.getLogger("kith.accounts")


def _code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def code_hash(user_id: str, code: str) -> bytes:
    """What is stored of a code: bound to its person, so it works for nobody else."""
    return hashlib.sha256(f"{user_id}:{code.strip()}".encode()).digest()


def _invalid() -> Forbidden:
    return Forbidden(
        "this code is wrong, used, expired or was tried too often; ask for a new one",
        code=Code.INVALID_CODE,
        errors=[FieldError("code", "not valid")],
    )


@dataclass(eq=False)
class Recovery:
    pool: asyncpg.Pool[Any]
    passwords: Passwords
    mailer: Mailer
    _: KW_ONLY
    on_revoke: OnRevoke | None = None

    def __post_init__(self) -> None:
        self._sending: set[asyncio.Task[None]] = set()

    # -- password reset ------------------------------------------------------------------

    async def request_reset(self, email: str) -> None:
        user = await store.user_by_email(self.pool, email)
        if user is None:
            return  # the same answer: whether an address has an account is not told
        code = _code()
        await store.put_code(
            self.pool,
            user_id=user.id,
            purpose=RESET,
            code_hash=code_hash(user.id, code),
            ttl_s=CODE_TTL_S,
        )
        self._mail(
            email,
            "Your Kith password reset code",
            f"Your code to reset your Kith password is {code}.\n\n"
            f"It works once, for {CODE_TTL_S // 60} minutes. If you did not ask for it, "
            "ignore this message: your password stays as it is.",
        )

    async def confirm_reset(self, email: str, code: str, new_password: str) -> None:
        user = await store.user_by_email(self.pool, email)
        if user is None:
            raise _invalid()
        password_hash = await self.passwords.hash(new_password)
        async with self.pool.acquire() as conn, conn.transaction():
            check = await store.take_code(
                conn,
                user_id=user.id,
                purpose=RESET,
                code_hash=code_hash(user.id, code),
                max_attempts=MAX_ATTEMPTS,
            )
            devices = await store.set_password(conn, user.id, password_hash) if check.ok else []
        if not check.ok:
            raise _invalid()
        if self.on_revoke is not None:
            for device_id in devices:
                await self.on_revoke(user.id, device_id, None)

    # -- email change ----------------------------------------------------------------------

    async def request_email_change(self, user_id: str, new_email: str) -> None:
        """(The caller's identity is confirmed by the edge first: the password.)"""
        if await store.email_taken(self.pool, new_email):
            raise Conflict(
                "another account uses this email",
                code=Code.EMAIL_TAKEN,
                errors=[FieldError("new_email", "already registered")],
            )
        code = _code()
        await store.put_code(
            self.pool,
            user_id=user_id,
            purpose=EMAIL_CHANGE,
            code_hash=code_hash(user_id, code),
            ttl_s=CODE_TTL_S,
            new_email=new_email,
        )
        self._mail(
            new_email,
            "Confirm your new Kith email address",
            f"Your code to confirm this address for your Kith account is {code}.\n\n"
            f"It works once, for {CODE_TTL_S // 60} minutes.",
        )

    async def confirm_email_change(self, user_id: str, code: str) -> str:
        async with self.pool.acquire() as conn, conn.transaction():
            check = await store.take_code(
                conn,
                user_id=user_id,
                purpose=EMAIL_CHANGE,
                code_hash=code_hash(user_id, code),
                max_attempts=MAX_ATTEMPTS,
            )
            if not check.ok or check.new_email is None:
                raise _invalid()
            old = await store.email_of(conn, user_id)
            if not await store.set_email(conn, user_id, check.new_email):
                raise Conflict("another account took this email meanwhile", code=Code.EMAIL_TAKEN)
        if old is not None:
            self._mail(
                old,
                "Your Kith email address was changed",
                "The email address of your Kith account was just changed. If this was not "
                "you, reset your password from the app or contact support.",
            )
        return check.new_email

    # -- sending ---------------------------------------------------------------------------

    def _mail(self, to: str, subject: str, body: str) -> None:
        """Send in the background: the answer does not wait for (or reveal) the mail."""
        task = asyncio.create_task(self._send(to, subject, body))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, to: str, subject: str, body: str) -> None:
        try:
            await self.mailer.send(to, subject, body)
        except Exception as exc:  # never the message or the address: they are private
            log.warning("a one-time code could not be mailed: %s", type(exc).__name__)

"""Password reset and email change by a one-time code, mailed through a real SMTP server
(aiosmtpd, requiring STARTTLS and AUTH, with a certificate the API trusts through
KITH_SMTP_CA_FILE): codes single-use, tried a limited number of times, answers that never
tell whether an email has an account, every session ended by a reset."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import ApiProcess
from tests.fakes.tls import make_certs
from tests.helpers import PASSWORD, Account, expect_problem, login, new_id, register

SMTP_USER, SMTP_PASSWORD = "kith-mailer", "smtp secret"
NEW_PASSWORD = "a brand new long passphrase"


@dataclass
class Inbox:
    """What the SMTP server accepted, and who signed in to send it."""

    messages: list[tuple[list[str], Message]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASSWORD.encode(),
        )
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok)

    async def code_for(self, address: str, within_s: float = 10) -> str:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            for rcpt, message in reversed(self.messages):
                if address in rcpt:
                    found = re.search(r"\b(\d{6})\b", str(message.get_payload()))
                    assert found is not None, message
                    return found[1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no mail to {address} within {within_s} s")

    async def arrives(self, address: str, within_s: float = 10) -> Message:
        deadline = time.monotonic() + within_s
        while not self.to(address):
            assert time.monotonic() < deadline, f"no mail to {address} within {within_s} s"
            await asyncio.sleep(0.05)
        return self.to(address)[-1]

    def to(self, address: str) -> list[Message]:
        return [m for rcpt, m in self.messages if address in rcpt]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Inbox, int, Path]]:
    certs = make_certs(tmp_path_factory.mktemp("smtp-certs"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert_file, certs.key_file)
    inbox = Inbox()
    port = _free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=inbox,
        auth_required=True,
    )
    controller.start()
    yield inbox, port, certs.ca_file
    controller.stop()


@pytest.fixture(scope="module")
def mailing_api(api_process: Callable[..., ApiProcess], smtp: tuple[Inbox, int, Path]) -> str:
    _, port, ca_file = smtp
    return (
        api_process(
            "api-mail",
            KITH_SMTP_HOST="127.0.0.1",
            KITH_SMTP_PORT=str(port),
            KITH_SMTP_TLS="starttls",
            KITH_SMTP_CA_FILE=str(ca_file),
            KITH_SMTP_USERNAME=SMTP_USER,
            KITH_SMTP_PASSWORD=SMTP_PASSWORD,
            KITH_MAIL_FROM="Kith <no-reply@kith.test>",
        )
        .wait_ready()
        .base
    )


async def test_a_password_reset_by_emailed_code_signs_every_device_out(
    mailing_api: str, smtp: tuple[Inbox, int, Path], db: asyncpg.Connection
) -> None:
    inbox = smtp[0]
    async with httpx.AsyncClient(base_url=mailing_api, timeout=30) as http:
        ana = await register(http)
        tablet = await login(http, ana.email, new_id("tab"))
        nobody = f"{new_id('nobody')}@example.org"

        mine = await http.post("/v1/auth/password-reset", json={"email": ana.email})
        theirs = await http.post("/v1/auth/password-reset", json={"email": nobody})
        # The same answer whether or not the address has an account.
        assert (mine.status_code, mine.content) == (theirs.status_code, theirs.content)
        assert mine.status_code == 202
        code = await inbox.code_for(ana.email)
        [mail] = inbox.to(ana.email)
        assert mail["From"] == "Kith <no-reply@kith.test>"
        assert inbox.logins  # it signed in to the server (after STARTTLS: aiosmtpd insists)
        await asyncio.sleep(0.3)
        assert inbox.to(nobody) == []  # and nothing went to an address without an account

        wrong = "000000" if code != "000000" else "111111"
        r = await http.post(
            "/v1/auth/password-reset/confirm",
            json={"email": ana.email, "code": wrong, "new_password": NEW_PASSWORD},
        )
        assert expect_problem(r, 403, "invalid_code")["errors"][0]["field"] == "code"
        r = await http.post(
            "/v1/auth/password-reset/confirm",
            json={"email": nobody, "code": code, "new_password": NEW_PASSWORD},
        )
        expect_problem(r, 403, "invalid_code")  # unknown address: the same answer
        r = await http.post(
            "/v1/auth/password-reset/confirm",
            json={"email": ana.email, "code": "12", "new_password": "short"},
        )
        fields = {e["field"] for e in expect_problem(r, 422, "invalid_field")["errors"]}
        assert fields & {"code", "new_password"}

        r = await http.post(
            "/v1/auth/password-reset/confirm",
            json={"email": ana.email, "code": code, "new_password": NEW_PASSWORD},
        )
        assert r.status_code == 204, r.text
        for device in (ana, tablet):  # every session ended
            r = await http.get("/v1/devices", headers=device.headers)
            expect_problem(r, 401, "session_revoked")
        r = await http.post(  # single use
            "/v1/auth/password-reset/confirm",
            json={"email": ana.email, "code": code, "new_password": "yet another passphrase"},
        )
        expect_problem(r, 403, "invalid_code")
        r = await http.post(
            "/v1/auth/login",
            json={"email": ana.email, "password": PASSWORD, "device": _device(ana)},
        )
        expect_problem(r, 401, "invalid_credentials")
        r = await http.post(
            "/v1/auth/login",
            json={"email": ana.email, "password": NEW_PASSWORD, "device": _device(ana)},
        )
        assert r.status_code == 200, r.text
    stored = await db.fetchval(
        "SELECT code_hash FROM account_codes WHERE user_id = $1", ana.user_id
    )
    assert stored is None  # used codes are gone


async def test_a_code_dies_after_five_wrong_tries(
    mailing_api: str, smtp: tuple[Inbox, int, Path], db: asyncpg.Connection
) -> None:
    inbox = smtp[0]
    async with httpx.AsyncClient(base_url=mailing_api, timeout=30) as http:
        ana = await register(http)
        await http.post("/v1/auth/password-reset", json={"email": ana.email})
        code = await inbox.code_for(ana.email)
        wrong = [f"{(int(code) + n) % 10**6:06d}" for n in range(1, 6)]
        for guess in wrong:
            r = await http.post(
                "/v1/auth/password-reset/confirm",
                json={"email": ana.email, "code": guess, "new_password": NEW_PASSWORD},
            )
            expect_problem(r, 403, "invalid_code")
        r = await http.post(
            "/v1/auth/password-reset/confirm",
            json={"email": ana.email, "code": code, "new_password": NEW_PASSWORD},
        )
        expect_problem(r, 403, "invalid_code")  # even the right code, now
        assert (await http.get("/v1/devices", headers=ana.headers)).status_code == 200


async def test_changing_the_email_needs_the_password_and_a_code_sent_to_the_new_address(
    mailing_api: str, smtp: tuple[Inbox, int, Path]
) -> None:
    inbox = smtp[0]
    async with httpx.AsyncClient(base_url=mailing_api, timeout=30) as http:
        ana = await register(http)
        ben = await register(http)
        new = f"{new_id('ana-new')}@example.org"
        r = await http.post(
            "/v1/account/email", headers=ana.headers, json={"new_email": new, "password": "nope"}
        )
        expect_problem(r, 403, "wrong_password")
        r = await http.post(
            "/v1/account/email",
            headers=ana.headers,
            json={"new_email": ben.email, "password": PASSWORD},
        )
        assert expect_problem(r, 409, "email_taken")["errors"][0]["field"] == "new_email"
        r = await http.post(
            "/v1/account/email", headers=ana.headers, json={"new_email": "not-an-email"}
        )
        expect_problem(r, 422, "invalid_field")
        r = await http.post(
            "/v1/account/email", headers=ana.headers, json={"new_email": new, "password": PASSWORD}
        )
        assert r.status_code == 202, r.text
        code = await inbox.code_for(new)
        # Ben cannot use Ana's code (codes are bound to their person).
        r = await http.post("/v1/account/email/confirm", headers=ben.headers, json={"code": code})
        expect_problem(r, 403, "invalid_code")
        r = await http.post("/v1/account/email/confirm", headers=ana.headers, json={"code": code})
        assert r.status_code == 200, r.text
        assert r.json() == {"email": new}
        notice = await inbox.arrives(ana.email)  # the old address is told of the change
        assert "changed" in str(notice["Subject"])
        r = await http.post(
            "/v1/auth/login", json={"email": new, "password": PASSWORD, "device": _device(ana)}
        )
        assert r.status_code == 200, r.text
        r = await http.post(
            "/v1/auth/login",
            json={"email": ana.email, "password": PASSWORD, "device": _device(ana)},
        )
        expect_problem(r, 401, "invalid_credentials")


def _device(account: Account) -> dict[str, str]:
    return {"id": account.device_id, "platform": "ios", "name": "phone"}

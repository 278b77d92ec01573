"""Outgoing email: one message at a time over SMTP (STARTTLS or implicit TLS, optional AUTH).

``SmtpMailer`` speaks to a real SMTP server with the standard library's ``smtplib`` in a
thread (a message is rare: a one-time code), verifying the server's certificate against
the system's CAs or ``KITH_SMTP_CA_FILE``. ``NoMailer`` is what runs when no server is
configured: it sends nothing and says so in the log (never the message: it holds a code).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from email.message import EmailMessage
from typing import Protocol

from service.config import MailSettings

__all__ = ["Mailer", "NoMailer", "SmtpMailer", "build_mailer"]

log = logging.getLogger("kith.mail")


class Mailer(Protocol):
    async def send(self, to: str, subject: str, body: str) -> None:
        """Send one plain-text message; raises ``OSError``/``smtplib.SMTPException``."""


class NoMailer:
    async def send(self, to: str, subject: str, body: str) -> None:
        log.warning("no SMTP server configured (KITH_SMTP_HOST): a message was not sent")


class SmtpMailer:
    def __init__(self, settings: MailSettings) -> None:
        if not settings.smtp_host:
            raise ValueError("SmtpMailer needs KITH_SMTP_HOST")
        self._s = settings
        self._host = settings.smtp_host
        self._context = ssl.create_default_context(
            cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None
        )

    async def send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self._s.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        s = self._s
        smtp: smtplib.SMTP
        if s.smtp_tls == "tls":
            smtp = smtplib.SMTP_SSL(
                self._host, s.smtp_port, timeout=s.smtp_timeout_s, context=self._context
            )
        else:
            smtp = smtplib.SMTP(self._host, s.smtp_port, timeout=s.smtp_timeout_s)
        with smtp:
            if s.smtp_tls == "starttls":
                smtp.starttls(context=self._context)
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password or "")
            smtp.send_message(message)


def build_mailer(settings: MailSettings) -> Mailer:
    return SmtpMailer(settings) if settings.smtp_host else NoMailer()

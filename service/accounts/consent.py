"""Consent to the privacy terms: which version sync requires, and the check it makes.

Registration records the version of the privacy terms a person accepted and their explicit
consent to the processing of wellbeing data (``users.terms_version``,
``terms_accepted_at``, ``wellbeing_consent_at``). Every access token carries the accepted
version (claim ``tv``), so the check before a push or pull reads no database; when the
operator publishes new terms (``KITH_TERMS_VERSION``), sync answers ``403
consent_required`` until the person accepts them (``POST /v1/account/consent``, which
answers with an access token that carries the new version).
"""

from __future__ import annotations

from schemas.problem import FieldError
from service.errors import Code, Forbidden, InvalidInput

__all__ = ["Consent"]


class Consent:
    """The required terms version (None: consent is recorded when given, not required)."""

    def __init__(self, required: str | None) -> None:
        self.required = required

    def satisfied(self, accepted: str | None) -> bool:
        return self.required is None or accepted == self.required

    def check(self, accepted: str | None) -> None:
        """Before sync: 403 ``consent_required`` unless the current terms were accepted."""
        if not self.satisfied(accepted):
            raise Forbidden(
                f"accept the privacy terms version {self.required} and consent to the "
                "processing of wellbeing data (POST /v1/account/consent), then sync again",
                code=Code.CONSENT_REQUIRED,
            )

    def check_acceptance(self, terms_version: str | None, wellbeing_consent: bool) -> None:
        """What a registration or a consent request accepts: with terms required, exactly
        the current version, and the explicit wellbeing consent (422 naming the field)."""
        if self.required is None:
            return
        errors = []
        if terms_version != self.required:
            errors.append(FieldError("terms_version", f"must be {self.required!r}"))
        if not wellbeing_consent:
            errors.append(FieldError("wellbeing_consent", "must be true"))
        if errors:
            raise InvalidInput(
                "accept the current privacy terms and consent to wellbeing data", errors=errors
            )

"""The API fuzzed against its own OpenAPI document with schemathesis (issue 18, item 7).

Every operation the served ``/docs/openapi.json`` documents gets generated requests, valid
ones (positive) and ones that break the schema (negative), sent over HTTP to the real
server as a registered person. Seeded (Hypothesis ``derandomize``), so a run is repeatable;
bounded by example counts that keep it well under three minutes. Asserted:

* no 5xx, ever;
* every status code and content type answered is documented for that operation, and every
  documented body matches its schema;
* a request that breaks the schema is refused with a 4xx;
* a request the schema allows is not refused — except for the refusals listed in
  ``STATE_DEPENDENT``, which depend on what the server holds (an id that does not exist, a
  cursor it never issued) or on a check the schema names but cannot list (a calendar date,
  an IANA zone). Each is counted and printed, so a growing share is visible.

The figures go to ``test-output/reliability-fuzz.json`` (docs/reliability.md).
"""

from __future__ import annotations

import json
import time
import zlib
import zoneinfo
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err, Ok
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import OUTPUT, ROOT
from tests.helpers import PASSWORD, new_id

#: Generated requests per operation and mode; 28 operations x (90 + 35) ~ 3,200 requests.
EXAMPLES = {GenerationMode.POSITIVE: 90, GenerationMode.NEGATIVE: 35}
#: Zone names the server accepts (the tz database's files that are not zones left out).
ZONES = sorted(zoneinfo.available_timezones() - {"localtime", "posixrules", "Factory"})

#: Refusals of schema-valid requests that the schema cannot rule out, by (status, code),
#: with the message fragments that identify them where the code alone is too broad.
STATE_DEPENDENT: dict[tuple[int, str], tuple[str, ...]] = {
    (401, "invalid_credentials"): (),  # login: an email/password pair nobody registered
    (401, "invalid_refresh_token"): (),  # refresh: a token this server never issued
    # Sign in with Apple or Google: a generated string is never a token the provider signed.
    (401, "invalid_id_token"): (),
    (404, "not_found"): (),  # an id (device, nudge, care link) the caller does not have
    (404, "invitation_invalid"): (),  # a code nobody issued
    (409, "email_taken"): (),
    (409, "batch_id_reused"): (),  # a batch id the fuzzer already used for other changes
    (409, "own_invitation"): (),
    (403, "wrong_password"): (),  # a password that is not the account's
    (403, "invalid_code"): (),  # an emailed code nobody was sent
    (403, "alerts_not_shared"): (),  # what the person chose to share
    (404, "alert_not_found"): (),
    (409, "alert_resolved"): (),
    (400, "invalid_cursor"): (),  # a cursor is opaque: only one the server issued is valid
    # WatermelonDB's pull takes synchronize()'s migration as JSON text in the query: the
    # document describes it (contentSchema), which validators do not check.
    (400, "bad_request"): ("not synchronize()'s migration object",),
    (422, "invalid_field"): (
        "required when creating",  # the first change to a record must carry these fields
        "no insights record with this id",  # clients update insights, never create them
        "unknown IANA time zone",  # a zone name: checked against the tz database
        "is not a calendar date",  # a birthday like 2001-02-30 has the right shape
        # An event time later than the server's clock plus the skew allowance (issue 18,
        # item 1): the bound moves with the clock, so no schema can state it.
        "to the server's time plus the clock-skew allowance",
        # JSON Schema counts 1.0 as an integer; Kith wants integers written as integers
        # (every JSON encoder writes a whole number without a fraction).
        "got `float`",
    ),
}
#: WatermelonDB's push rows are typed by WatermelonDB's column kinds (text, number), not by
#: Kith's field limits and enums, which the push applies after mapping: a schema-valid row
#: can be refused. Its answers are still held to the document (status, type, body, no
#: 5xx); its refusals are counted, not judged, until its row types carry Kith's limits.
LOOSE_BODIES = {"POST /v1/watermelon/push"}
#: After its first sign-out the fuzzer's session is over: later sign-outs answer 401.
AFTER_LOGOUT = ("POST /v1/auth/logout", 401, "session_revoked")

#: How a request that breaks the schema may be refused (426: a schema_version outside the
#: documented range).
REFUSALS = ["400", "401", "403", "404", "409", "413", "422", "426", "429"]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@dataclass
class Tally:
    requests: int = 0
    server_errors: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    state_dependent: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def _register(base: str) -> tuple[dict[str, str], str, str]:
    """A new person: their auth header, device id and email."""
    device, email = new_id("fuzzdev"), f"{new_id('fuzz')}@example.org"
    r = httpx.post(
        f"{base}/v1/auth/register",
        json={
            "email": email,
            "password": PASSWORD,
            "display_name": "Fuzz",
            "time_zone": "Europe/Lisbon",
            "device": {"id": device, "platform": "ios", "name": "fuzz"},
        },
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}, device, email


def _link(base: str, older_adult: dict[str, str], caregiver: dict[str, str]) -> str:
    r = httpx.post(f"{base}/v1/care/invitations", headers=older_adult, json={})
    assert r.status_code == 201, r.text
    r = httpx.post(
        f"{base}/v1/care/invitations/accept", headers=caregiver, json={"code": r.json()["code"]}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["link_id"])


def _own_ids(base: str, auth: dict[str, str], email: str) -> dict[str, dict[str, str]]:
    """Ids of the fuzzer's own that the schema-valid requests name (by path prefix): a
    second device, a caregiver's link, and a person it cares for. Without them every
    request to these routes would be a 404 and their handlers would never run."""
    second = new_id("fuzzdev")
    r = httpx.post(
        f"{base}/v1/auth/login",
        json={
            "email": email,
            "password": PASSWORD,
            "device": {"id": second, "platform": "android", "name": "second"},
        },
    )
    assert r.status_code == 200, r.text
    other, _, _ = _register(base)
    return {
        "/v1/devices/": {"device_id": second},
        "/v1/care/caregivers/": {"link_id": _link(base, auth, other)},
        "/v1/care/people/": {"link_id": _link(base, other, auth)},
    }


def _refused_for_state(label: str, response: Response) -> str | None:
    """The STATE_DEPENDENT entry explaining this refusal, if one does."""
    if not response.headers.get("content-type", [""])[0].startswith("application/problem+json"):
        return None
    body = json.loads(response.content)
    key = (response.status_code, str(body.get("code")))
    if (label, *key) == AFTER_LOGOUT or (label in ENDINGS and key[0] == 401):
        return "401 (the session was ended)"
    if key not in STATE_DEPENDENT:
        return None
    fragments = STATE_DEPENDENT[key]
    if not fragments:
        return f"{key[0]} {key[1]}"
    messages = [str(body.get("detail", ""))] + [str(e.get("message")) for e in body["errors"]]
    for fragment in fragments:
        if any(fragment in message for message in messages):
            return f"{key[0]} {fragment}"
    return None


#: Operations that end the fuzzer's session: signing out, deleting the account, a new
#: password (every session signed out).
ENDINGS = ("POST /v1/auth/logout", "DELETE /v1/account", "POST /v1/auth/password-reset/confirm")


def _order(label: str) -> tuple[bool, bool, str]:
    # Deleting ends what the other routes use, and the endings end the session: last.
    return (label in ENDINGS, label.startswith("DELETE"), label)


def test_the_api_holds_its_openapi_contract_under_generated_requests(live_server: str) -> None:
    auth, device, email = _register(live_server)
    own = _own_ids(live_server, auth, email)
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {
            "max-stream-events": 1,  # the event stream: its first event is enough
            "request-timeout": 10,
            "checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}},
        }
    )
    schema = schemathesis.openapi.from_url(f"{live_server}/docs/openapi.json", config=config)
    results = list(schema.get_all_operations())
    invalid = [result.err() for result in results if isinstance(result, Err)]
    assert invalid == [], "the served OpenAPI document has invalid operations"
    operations = sorted(
        (result.ok() for result in results if isinstance(result, Ok)),
        key=lambda op: _order(op.label),
    )
    assert len(operations) >= 28, [op.label for op in operations]
    tally = Tally()
    session = requests.Session()
    started = time.monotonic()
    unbreakable: list[str] = []

    def send(case: Any, mode: GenerationMode) -> None:
        if mode is GenerationMode.POSITIVE and case.operation.label == "POST /v1/sync/push":
            # A push must name the signed-in device (403 device_mismatch otherwise, which
            # would stop every generated batch before its changes are even looked at).
            case.body["device_id"] = device
        if mode is GenerationMode.POSITIVE and case.operation.label == "POST /v1/auth/register":
            # A zone name is checked against the tz database, which a pattern cannot list:
            # a real one, picked by the generated text, lets the rest of the body be tried.
            zone = str(case.body["time_zone"])
            if zone not in ZONES:
                case.body["time_zone"] = ZONES[zlib.crc32(zone.encode()) % len(ZONES)]
                tally.state_dependent["a real zone name substituted (register)"] += 1
        # The token goes into the case itself, so the checks see the request as sent.
        case.headers = {**(case.headers or {}), **auth}
        response = case.call(base_url=live_server, session=session)
        tally.requests += 1
        tally.by_status[response.status_code] += 1
        tally.by_operation[f"{case.operation.label} {mode.value} {response.status_code}"] += 1
        label = f"{mode.value} {case.operation.label} -> {response.status_code}"
        if response.status_code >= 500:
            tally.server_errors += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as exc:
            tally.failures.append(f"{label}: {str(exc)[:3000]}")
            return
        if mode is GenerationMode.POSITIVE and 400 <= response.status_code < 500:
            reason = _refused_for_state(case.operation.label, response)
            if reason is None and case.operation.label in LOOSE_BODIES:
                reason = f"{case.operation.label} {response.status_code} (not judged)"
            if reason is None:
                tally.failures.append(
                    f"{label}: a schema-valid request refused: {response.content[:800]!r}"
                )
            else:
                tally.state_dependent[reason] += 1

    for operation in operations:
        for mode, count in EXAMPLES.items():
            known = next((v for k, v in own.items() if operation.path.startswith(k)), None)
            strategy = operation.as_strategy(
                generation_mode=mode,
                path_parameters=known if mode is GenerationMode.POSITIVE else None,
            )
            run: Callable[[], None] = settings(
                max_examples=count,
                derandomize=True,  # seeded: the same requests every run
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(case=strategy, mode=st.just(mode))(send))
            try:
                run()
            except Unsatisfiable:
                # No parameters and no body: nothing a request could get wrong.
                assert mode is GenerationMode.NEGATIVE, operation.label
                unbreakable.append(operation.label)
    seconds = time.monotonic() - started

    OUTPUT.mkdir(exist_ok=True)
    figures = {
        "operations": len(operations),
        "requests": tally.requests,
        "server_errors": tally.server_errors,
        "failures": len(tally.failures),
        "state_dependent_refusals": dict(tally.state_dependent),
        "by_status": {str(k): v for k, v in sorted(tally.by_status.items())},
        "seconds": round(seconds, 1),
        "nothing_to_negate": unbreakable,
    }
    figures["by_operation"] = dict(sorted(tally.by_operation.items()))
    (OUTPUT / "reliability-fuzz.json").write_text(json.dumps(figures, indent=2))
    print(f"\nfuzz: {json.dumps({k: v for k, v in figures.items() if k != 'by_operation'})}")
    assert tally.server_errors == 0, "\n\n".join(tally.failures[:400])
    assert tally.failures == [], f"{len(tally.failures)} failures:\n\n" + "\n\n".join(
        tally.failures[:400]
    )


def test_the_served_document_is_the_finished_one(live_server: str) -> None:
    """The fuzzer (and every client generator) reads ``/docs/openapi.json``: it must be the
    finished document (service/http/openapi.py), the same as ``schemas/openapi.json``."""
    served = httpx.get(f"{live_server}/docs/openapi.json").json()
    committed = json.loads((ROOT / "schemas" / "openapi.json").read_text())
    assert served == committed, "the served document differs: run `make openapi`"
    push = served["components"]["schemas"]["ChangeIn"]
    assert push["discriminator"]["propertyName"] == "table"

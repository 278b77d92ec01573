"""The caregiver web page: sign in, the people I care for, one page per person.

Server-rendered (Jinja2 with autoescaping; no scripts at all), large type, labelled forms,
keyboard focus visible, a chart with a text alternative. A cookie session (HttpOnly,
SameSite=Lax, Secure over HTTPS, path /care) whose token is stored only as a hash; every
form carries a CSRF token (the session's, or a double-submit cookie before sign-in). Every
person page is a summary read, audited like the API's. A paused or revoked link shows
nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import zoneinfo
from typing import Annotated, Any

import asyncpg
from litestar import Controller, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from litestar.response import Redirect
from msgspec import Struct

from schemas.care import ALERT_ID_PATTERN
from service.errors import Conflict, Forbidden, NotFound
from service.http.deps import AccountsDep, AlertsDep, AnyRequest, CareDep, LimitsDep, PoolDep
from service.http.web.chart import weekly_chart
from service.http.web.forms import EXPIRED, PasswordForm, page, secure
from service.nudges.budget import Budget
from service.store import sync as sync_store
from service.store import web as store

__all__ = ["CarePages"]

SESSION_COOKIE = "kith_care"
LOGIN = PasswordForm("login.html", "kith_care_login", "/care")
SESSION_TTL = dt.timedelta(hours=12)


class LoginForm(Struct):
    email: str = ""
    password: str = ""
    csrf: str = ""


class CsrfForm(Struct):
    csrf: str = ""


class AlertForm(Struct):
    csrf: str = ""
    alert_id: str = ""


LoginBody = Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
CsrfBody = Annotated[CsrfForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
AlertBody = Annotated[AlertForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
#: The alert ids the API takes.
ALERT_ID = re.compile(ALERT_ID_PATTERN)


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def _session(request: AnyRequest, pool: asyncpg.Pool[Any]) -> tuple[str, str] | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 100:
        return None
    return await store.session_user(pool, _hash(token))


class _SignedOut(Exception):
    """No caregiver session: the page answers with the sign-in page."""


async def _signed_in(request: AnyRequest, pool: asyncpg.Pool[Any]) -> tuple[str, str]:
    """The caregiver's user id and form token; :class:`_SignedOut` without a session."""
    session = await _session(request, pool)
    if session is None:
        raise _SignedOut
    return session


def _to_sign_in(_: AnyRequest, __: _SignedOut) -> Response[Any]:
    return Redirect("/care/login", status_code=303)


def _link_id(value: str) -> bool:
    """Shaped like a care link id (``cl`` + 16 hex digits); anything else is not found."""
    return value.startswith("cl") and len(value) == 18


class CarePages(Controller):
    path = "/care"
    include_in_schema = False
    exception_handlers = {_SignedOut: _to_sign_in}

    @get("/login")
    async def login_page(self, request: AnyRequest) -> Response[str]:
        return LOGIN.render(request)

    @post("/login", status_code=200)
    async def login(
        self,
        request: AnyRequest,
        pool: PoolDep,
        accounts: AccountsDep,
        limits: LimitsDep,
        data: LoginBody,
    ) -> Response[Any]:
        if not LOGIN.genuine(request, data.csrf):
            return LOGIN.render(request, EXPIRED, 403)
        user_id = await LOGIN.sign_in(request, limits, accounts, data.email, data.password)
        if not isinstance(user_id, str):
            return user_id  # too many attempts, or not the person
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        await store.insert_session(
            pool, _hash(token), user_id, csrf, dt.datetime.now(dt.UTC) + SESSION_TTL
        )
        response: Response[Any] = Redirect("/care", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            path="/care",
            max_age=int(SESSION_TTL.total_seconds()),
            httponly=True,
            samesite="lax",
            secure=secure(request),
        )
        response.delete_cookie(LOGIN.cookie, path=LOGIN.path)
        return response

    @post("/logout", status_code=200)
    async def logout(self, request: AnyRequest, pool: PoolDep, data: CsrfBody) -> Response[Any]:
        session = await _session(request, pool)
        if session is not None and hmac.compare_digest(session[1], data.csrf):
            await store.delete_session(pool, _hash(request.cookies[SESSION_COOKIE]))
        response: Response[Any] = Redirect("/care/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/care")
        return response

    @get("/")
    async def people(self, request: AnyRequest, pool: PoolDep, care: CareDep) -> Response[Any]:
        user_id, csrf = await _signed_in(request, pool)
        return page("people.html", people=await care.people(user_id), csrf=csrf)

    @get("/{link_id:str}")
    async def person(
        self,
        request: AnyRequest,
        pool: PoolDep,
        care: CareDep,
        link_id: str = Parameter(description="A care link id"),
    ) -> Response[Any]:
        user_id, csrf = await _signed_in(request, pool)
        if not _link_id(link_id):
            return page("gone.html", 404, csrf=csrf)
        try:
            link, summary, now = await care.summary_for(user_id, link_id, "web")
        except NotFound:
            return page("gone.html", 404, csrf=csrf)
        settings = await sync_store.settings_of(pool, link.space_id) or {}
        zone = Budget.from_settings(settings).zone
        return page(
            "person.html",
            csrf=csrf,
            label=link.label,
            link_id=link.id,
            computed_at=_when(now, zone),
            alerts=_alerts(summary.get("alerts"), zone),
            check_ins=_check_ins(summary.get("check_ins"), zone),
            trend=_trend(summary.get("contact_trend")),
            nothing_shared=not summary,
        )

    @post("/{link_id:str}/{action:str}", status_code=200)
    async def act(
        self,
        request: AnyRequest,
        pool: PoolDep,
        alerts: AlertsDep,
        data: AlertBody,
        link_id: str = Parameter(description="A care link id"),
        action: str = Parameter(description='acknowledge (the large "I\'m on it") or resolve'),
    ) -> Response[Any]:
        """An alert's buttons: acknowledged or resolved through the web page (audited)."""
        user_id, csrf = await _signed_in(request, pool)
        if not hmac.compare_digest(csrf, data.csrf):
            return page("gone.html", 403, csrf=csrf)  # a forged or stale form: nothing done
        if not _link_id(link_id) or not ALERT_ID.match(data.alert_id):
            return page("gone.html", 404, csrf=csrf)
        acts = {"acknowledge": alerts.acknowledge, "resolve": alerts.resolve_for_caregiver}
        if action not in acts:
            return page("gone.html", 404, csrf=csrf)
        try:
            await acts[action](user_id, link_id, data.alert_id, "web")
        except (NotFound, Forbidden):
            return page("gone.html", 404, csrf=csrf)
        except Conflict:
            pass  # resolved meanwhile: the page shows how
        return Redirect(f"/care/{link_id}#alerts", status_code=303)


def _when(at: dt.datetime | str, zone: zoneinfo.ZoneInfo) -> str:
    moment = dt.datetime.fromisoformat(at) if isinstance(at, str) else at
    return moment.astimezone(zone).strftime("%H:%M on %a %d %b") + " (their time)"


_TODAY = {
    "ok": ("Checked in today: doing OK", "status-ok"),
    "not_great": ("Checked in today: not feeling great", "status-warn"),
    "need_help": ("Asked for help today", "status-alert"),
}


def _check_ins(section: dict[str, Any] | None, zone: zoneinfo.ZoneInfo) -> dict[str, Any] | None:
    if section is None:
        return None
    status = section["today"]
    if status in _TODAY:
        text, css = _TODAY[status]
    elif section["overdue"]:
        text, css = "No check-in yet today — it is overdue", "status-alert"
    else:
        text, css = "Not checked in yet today", ""
    last = section["last_check_in_at"]
    return {
        "today": text,
        "css": css,
        "last": _when(last, zone) if last else None,
        "mood": section["last_mood"],
        "deadline": section["deadline"],
    }


def _alerts(section: dict[str, Any] | None, zone: zoneinfo.ZoneInfo) -> dict[str, Any] | None:
    if section is None:
        return None
    texts = {"missed_check_in": "No check-in yet today", "need_help": "Asked for help"}
    return {
        "open": [
            {
                "alert_id": a["alert_id"],
                "text": texts.get(a["kind"], a["kind"]),
                "when": _when(a["raised_at"], zone),
                "priority": a["priority"],
                "mine": a["acknowledged_by_me"],
                "on_it": _on_it(a, zone),
                "no_response": a["status"] == "no_response",
            }
            for a in section["open"]
        ],
        "resolved": [
            {
                "text": texts.get(a["kind"], a["kind"]),
                "when": _when(a["resolved_at"], zone),
                "how": _how(a),
            }
            for a in section.get("resolved", [])
        ],
        "isolation_risk": section["isolation_risk"],
    }


def _on_it(a: dict[str, Any], zone: zoneinfo.ZoneInfo) -> str | None:
    """ "Carol is on it (since 05:03)" — or "You are on it"."""
    if a["acknowledged_by"] is None:
        return None
    since = dt.datetime.fromisoformat(a["acknowledged_at"]).astimezone(zone).strftime("%H:%M")
    who = "You are" if a["acknowledged_by_me"] else f"{a['acknowledged_by']} is"
    others = a["also_acknowledged_by"]
    also = f" ({', '.join(others)} too)" if others else ""
    return f"{who} on it since {since}{also}."


def _how(a: dict[str, Any]) -> str:
    if a["resolved_by"] == "person":
        return "they said all is well"
    if a["resolved_by"] == "check_in":
        return "they checked in"
    return f"{a['resolved_by_name'] or 'a caregiver'} marked it resolved"


def _trend(section: dict[str, Any] | None) -> dict[str, Any] | None:
    if section is None:
        return None
    days = section["days_since_in_person"]
    if days is None:
        since = "No in-person meetings recorded"
    elif days == 0:
        since = "Met someone in person today"
    else:
        since = f"Last met someone in person {days} day{'s' if days != 1 else ''} ago"
    weeks = [
        {
            "label": dt.date.fromisoformat(w["week_start"]).strftime("%d %b"),
            "in_person": w["in_person"],
            "remote": w["remote"],
        }
        for w in section["weeks"]
    ]
    return {
        "since": since,
        "declining": section["declining"],
        "svg": weekly_chart(section["weeks"]),
        "weeks": weeks,
    }

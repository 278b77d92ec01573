"""The caregiver web page: sign-in with a cookie session and CSRF, exactly the granted
sections, nothing private anywhere, nothing at all once sharing stops — and a real
browser (Debian's Chromium, driven by Playwright) reading it."""

from __future__ import annotations

import itertools
import os
import re
import shutil
from pathlib import Path

import httpx
import pytest

from tests.helpers import PASSWORD, Account
from tests.integration.test_care import ALL_SCOPES, SECRETS, linked

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
SECTIONS = {
    "check_ins": 'id="check-ins"',
    "contact_trend": 'id="contact-trend"',
    "alerts": 'id="alerts"',
}


async def sign_in(base_url: str, who: Account) -> httpx.AsyncClient:
    """A browser-like client (it keeps cookies) signed in to the caregiver page."""
    web = httpx.AsyncClient(base_url=base_url, timeout=30)
    form = await web.get("/care/login")
    assert form.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    r = await web.post(
        "/care/login", data={"email": who.email, "password": PASSWORD, "csrf": csrf.group(1)}
    )
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/care" in cookie
    return web


async def test_the_page_shows_exactly_the_granted_sections_and_nothing_private(
    http: httpx.AsyncClient, live_server: str
) -> None:
    mum, carer, link_id = await linked(http, [])
    web = await sign_in(live_server, carer)
    try:
        listing = await web.get("/care")
        assert f'href="/care/{link_id}"' in listing.text
        assert ">Mum<" in listing.text
        for n in range(len(ALL_SCOPES) + 1):
            for combo in itertools.combinations(ALL_SCOPES, n):
                r = await http.put(
                    f"/v1/care/caregivers/{link_id}/scopes",
                    headers=mum.headers,
                    json={"scopes": list(combo)},
                )
                assert r.status_code == 200
                page = await web.get(f"/care/{link_id}")
                assert page.status_code == 200
                assert page.headers["cache-control"] == "no-store"
                for scope, marker in SECTIONS.items():
                    assert (marker in page.text) == (scope in combo), (combo, scope)
                assert ("nothing-shared" in page.text) == (not combo)
                for secret in SECRETS:
                    assert secret not in page.text
        assert "<svg" in page.text  # the chart, with its table alternative
        assert "<caption>Each week</caption>" in page.text
        # Every page view was audited, as a web view.
        audit = await http.get("/v1/care/audit", headers=mum.headers)
        channels = {v["channel"] for v in audit.json()["views"]}
        assert channels == {"web"}
    finally:
        await web.aclose()


async def test_a_revoked_caregiver_sees_nothing(http: httpx.AsyncClient, live_server: str) -> None:
    mum, carer, link_id = await linked(http, list(ALL_SCOPES))
    web = await sign_in(live_server, carer)
    try:
        assert (await web.get(f"/care/{link_id}")).status_code == 200
        await http.delete(f"/v1/care/caregivers/{link_id}", headers=mum.headers)
        page = await web.get(f"/care/{link_id}")
        assert page.status_code == 404
        assert 'id="gone"' in page.text
        assert "Mum" not in page.text
        listing = await web.get("/care")
        assert 'id="nobody"' in listing.text
    finally:
        await web.aclose()


async def test_forms_refuse_requests_without_their_csrf_token(
    http: httpx.AsyncClient, live_server: str
) -> None:
    _, carer, link_id = await linked(http, ["check_ins"])
    async with httpx.AsyncClient(base_url=live_server) as web:
        r = await web.post("/care/login", data={"email": carer.email, "password": PASSWORD})
        assert r.status_code == 403
        assert "set-cookie" not in r.headers or "kith_care=" not in r.headers["set-cookie"]
    web = await sign_in(live_server, carer)
    try:
        r = await web.post("/care/logout", data={"csrf": "forged"})
        assert r.status_code == 303
        # The forged sign-out did not end the session on the server (the browser dropped
        # its cookie; a replay of the cookie still works).
        token = r.request.headers["cookie"].split("kith_care=")[1].split(";")[0]
        async with httpx.AsyncClient(base_url=live_server, cookies={"kith_care": token}) as again:
            assert (await again.get(f"/care/{link_id}")).status_code == 200
        # Not signed in: to the sign-in form.
        async with httpx.AsyncClient(base_url=live_server) as anonymous:
            r = await anonymous.get(f"/care/{link_id}")
            assert (r.status_code, r.headers["location"]) == (303, "/care/login")
    finally:
        await web.aclose()


def _chromium() -> str:
    found = (
        os.environ.get("KITH_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not found:
        pytest.fail(
            "the browser test needs Chromium: `apt-get install chromium` (what `make test` "
            "does as root) or set KITH_CHROMIUM to a Chromium/Chrome binary"
        )
    return found


async def test_a_caregiver_reads_the_page_in_a_real_browser(
    http: httpx.AsyncClient, live_server: str
) -> None:
    from playwright.async_api import async_playwright

    _, carer, link_id = await linked(http, ["check_ins", "contact_trend"])
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            await page.goto(f"{live_server}/care/{link_id}")
            assert page.url.endswith("/care/login")  # not signed in yet
            await page.get_by_label("Email").fill(carer.email)
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("link", name="Mum").click()
            await page.wait_for_url(f"**/care/{link_id}")
            assert await page.get_by_role("heading", level=1).inner_text() == "Mum"
            assert await page.locator("#check-ins").is_visible()
            days = await page.locator("#days-since").inner_text()
            assert re.fullmatch(r"Last met someone in person \d+ days? ago", days)
            assert (
                await page.get_by_role("img", name=re.compile("In-person and remote")).count() == 1
            )
            assert await page.locator("#alerts").count() == 0  # not granted
            text = await page.locator("body").inner_text()
            for secret in SECRETS:
                assert secret not in text
            OUTPUT.mkdir(exist_ok=True)
            await page.screenshot(path=str(OUTPUT / "care-page.png"), full_page=True)
            # Sign out: back to the form, and the page is gone for this browser.
            await page.get_by_role("button", name="Sign out").click()
            await page.wait_for_url("**/care/login")
            await page.goto(f"{live_server}/care/{link_id}")
            assert page.url.endswith("/care/login")
        finally:
            await browser.close()

"""The API reference page runs no third-party script (issue 18, item 6): ``/docs`` and
everything it loads come from Kith's own origin, at a pinned version, under a
Content-Security-Policy as strict as the caregiver page's — so it works with no internet
and nothing a CDN serves tomorrow runs where a developer pastes a bearer token.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx

from tests.integration.test_care_page import _chromium

URL_ATTRIBUTE = re.compile(r"""(?:src|href|data-spec-url)=["']([^"']+)["']""")


def _check_headers(r: httpx.Response) -> None:
    csp = r.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "http" not in csp  # no other origin allowed for anything
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_the_reference_page_and_its_assets_are_served_from_our_origin(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    _check_headers(page)
    assert "http://" not in page.text
    assert "https://" not in page.text
    assert "<script>" not in page.text  # no inline script: the CSP allows none
    references = URL_ATTRIBUTE.findall(page.text)
    assert len(references) == 5, references
    types = {}
    for ref in references:
        assert ref.startswith("/docs/"), ref  # this origin, this server
        r = await http.get(ref)
        assert r.status_code == 200, ref
        _check_headers(r)
        types[ref.rsplit("/", 1)[-1]] = r.headers["content-type"].split(";")[0]
    assert types == {
        "favicon-32x32.png": "image/png",
        "swagger-ui.css": "text/css",
        "openapi.json": "application/vnd.oai.openapi+json",
        "swagger-ui-bundle.js": "text/javascript",
        "api-docs.js": "text/javascript",
    }
    bundle = await http.get("/docs/assets/swagger-ui-bundle.js")
    assert len(bundle.content) > 1_000_000  # the real Swagger UI, not a stub
    for missing in ("/docs/assets/VERSION", "/docs/assets/..%2F..%2Fpyproject.toml"):
        assert (await http.get(missing)).status_code == 404


async def test_the_reference_page_works_in_a_browser_with_no_other_origin_reachable(
    live_server: str,
) -> None:
    from playwright.async_api import Request, Route, async_playwright

    origin = urlsplit(live_server).netloc
    elsewhere: list[str] = []
    refused: list[str] = []

    async def only_ours(route: Route, request: Request) -> None:
        if urlsplit(request.url).netloc == origin or request.url.startswith("data:"):
            await route.continue_()
        else:
            elsewhere.append(request.url)  # as if offline: nothing else answers
            await route.abort()

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            page.on("console", lambda m: refused.append(m.text) if "Refused" in m.text else None)
            await page.route("**/*", only_ours)
            await page.goto(f"{live_server}/docs")
            push = page.locator('.opblock-summary-path[data-path="/v1/sync/push"]')
            await push.wait_for(timeout=15_000)
            assert await page.locator(".opblock").count() >= 25  # every operation listed
            assert "Kith API" in await page.locator(".info .title").inner_text()
        finally:
            await browser.close()
    assert elsewhere == []
    assert refused == []  # nothing the page does is blocked by its own CSP

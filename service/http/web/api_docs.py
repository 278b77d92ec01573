"""The API reference page (``/docs``): Swagger UI at a pinned version, served from Kith's
own origin, with no third-party script, style or request.

The UI's files come from the ``flask-swagger-ui`` wheel, pinned in ``pyproject.toml``
(only its ``dist/`` folder is read; the package itself is never imported), so ``make run``
shows the page without internet access and an upgrade is a reviewed version bump, never
whatever a CDN serves that day. The page starts the UI with a script file of its own (no
inline script), so its Content-Security-Policy allows scripts and connections to this
origin only — this is where a developer pastes a bearer token to try the API (decision
0015). Paths: ``/docs`` (the UI), ``/docs/openapi.json`` (the document), ``/docs/assets/*``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get
from litestar.datastructures import ResponseHeader
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.params import FromPath

__all__ = ["CSP", "SWAGGER_UI_DIST", "ApiDocs", "docs_router"]


def _dist() -> Path:
    spec = importlib.util.find_spec("flask_swagger_ui")  # located, not imported (no Flask)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("flask-swagger-ui is not installed: `pip install -e .`")
    return Path(next(iter(spec.submodule_search_locations))) / "dist"


SWAGGER_UI_DIST = _dist()
_OWN = Path(__file__).parent / "static"
#: The files the page may load, and their types; anything else is a 404.
_ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui.css": (SWAGGER_UI_DIST / "swagger-ui.css", "text/css; charset=utf-8"),
    "swagger-ui-bundle.js": (
        SWAGGER_UI_DIST / "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
    ),
    "favicon-32x32.png": (SWAGGER_UI_DIST / "favicon-32x32.png", "image/png"),
    "api-docs.js": (_OWN / "api-docs.js", "text/javascript; charset=utf-8"),
}

#: Like the caregiver page's: nothing from anywhere but this origin. Swagger UI sets
#: inline style attributes and draws a few icons as data: images, hence those two.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    ResponseHeader(name="Content-Security-Policy", value=CSP),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="no-referrer"),
]

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Kith API reference</title>
<link rel="icon" type="image/png" href="{base}/assets/favicon-32x32.png">
<link rel="stylesheet" href="{base}/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-spec-url="{base}/openapi.json"></div>
<script src="{base}/assets/swagger-ui-bundle.js"></script>
<script src="{base}/assets/api-docs.js"></script>
</body>
</html>
"""


class ApiDocs(OpenAPIRenderPlugin):
    """Swagger UI from the pinned files; the page itself references this origin only."""

    def __init__(self, base: str = "/docs") -> None:
        super().__init__(path="/swagger", favicon="")
        self._page = _PAGE.format(base=base).encode()

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self._page


@get("/assets/{name:str}", include_in_schema=False, sync_to_thread=False)
def _asset(name: FromPath[str]) -> Response[bytes]:
    found = _ASSETS.get(name)
    if found is None:
        raise NotFoundException()
    path, media_type = found
    return Response(
        path.read_bytes(),
        media_type=media_type,
        # Versioned with the pinned wheel; a day is short enough for our own api-docs.js.
        headers={"Cache-Control": "public, max-age=86400"},
    )


def docs_router(path: str = "/docs") -> Router:
    """The router the OpenAPI config serves its pages from, with the assets and headers."""
    return Router(path, route_handlers=[_asset], include_in_schema=False, response_headers=_HEADERS)

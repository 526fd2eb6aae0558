"""``/docs`` (Swagger UI) and ``/redoc``, served with their assets from this process.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank on an air-gapped
cluster. The assets here come from the pinned ``fastapi-offline`` package (it ships
``swagger-ui-bundle.js``, ``swagger-ui.css`` and ``redoc.standalone.js`` and depends on
nothing but FastAPI); only its files are used, mounted under :data:`ASSETS_PATH`.

The Swagger page is written here rather than taken from ``get_swagger_ui_html`` because it needs
a JavaScript ``requestInterceptor``: Swagger UI's ``additionalQueryStringParams`` would put
Auth0's ``audience`` in the token request's query string, which Auth0 ignores, so the
interceptor adds it to the form body instead.

The three pages carry a Content-Security-Policy (:func:`content_security_policy`, spelled out
in docs/hostile-input.md): scripts only from this origin plus the pages' own inline scripts
(by hash), images from this origin or ``data:``, requests to this origin and the issuer's
(Swagger's Authorize posts to its token endpoint), and no framing, since ``/docs`` holds the
client-credentials dialog. ReDoc's sidebar logo, which it loads from Redocly's CDN, is blocked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from cats_dogs_other.api.settings import Settings

ASSETS_PATH = "/docs-assets"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"

_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - Swagger UI</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" href="{assets}/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>
const config = {config};
// Auth0 reads `audience` only from the token request's body: put it there.
function audienceInBody(request) {{
  if (typeof request.body === "string" && request.method &&
      request.method.toUpperCase() === "POST") {{
    const form = new URLSearchParams(request.body);
    if (form.get("grant_type") === "client_credentials" && !form.has("audience")) {{
      form.set("audience", config.audience);
      request.body = form.toString();
    }}
  }}
  return request;
}}
const ui = SwaggerUIBundle({{
  url: config.openapiUrl,
  validatorUrl: null,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  persistAuthorization: false,
  oauth2RedirectUrl: window.location.origin + config.redirectPath,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  requestInterceptor: audienceInBody,
}});
ui.initOAuth({{scopes: config.scope}});
window.ui = ui;
</script>
</body>
</html>
"""


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def assets_directory() -> Path:
    """The static files of the installed ``fastapi-offline`` distribution."""
    return Path(str(files("fastapi_offline") / "static"))


def swagger_page(title: str, openapi_url: str, settings: Settings) -> str:
    config = {
        "openapiUrl": openapi_url,
        "redirectPath": OAUTH2_REDIRECT_PATH,
        "audience": settings.oauth2_audience,
        "scope": settings.oauth2_scope,
    }
    # json.dumps output is a JS literal; "</" is escaped so no value can close the script.
    literal = json.dumps(config).replace("</", "<\\/")
    return _SWAGGER_PAGE.format(title=title, assets=ASSETS_PATH, config=literal)


def script_hashes(*pages: str) -> list[str]:
    """CSP sources for each inline script of ``pages``: the SHA-256 of its exact text."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for page in pages
        for script in _INLINE_SCRIPT.findall(page)
    ]


def content_security_policy(settings: Settings, *pages: str) -> str:
    """The policy of the documentation pages; ``pages`` are the HTML whose inline scripts run."""
    token_url = urlsplit(settings.swagger_token_url)
    issuer = f" {token_url.scheme}://{token_url.netloc}" if token_url.netloc else ""
    directives = {
        "default-src": "'none'",
        "script-src": " ".join(["'self'", *script_hashes(*pages)]),
        "style-src": "'self' 'unsafe-inline'",  # Swagger UI and ReDoc set inline styles
        "img-src": "'self' data:",
        "connect-src": "'self'" + issuer,
        "worker-src": "blob:",  # ReDoc's search index
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "form-action": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def install_docs(app: FastAPI, settings: Settings) -> None:
    """Mount the assets and add ``/docs``, its OAuth2 redirect page and ``/redoc``."""
    app.mount(ASSETS_PATH, StaticFiles(directory=assets_directory()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    swagger = swagger_page(app.title, openapi_url, settings)
    redirect = bytes(get_swagger_ui_oauth2_redirect_html().body).decode()
    redoc_page = get_redoc_html(
        openapi_url=openapi_url,
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
        with_google_fonts=False,
    )
    redoc = bytes(redoc_page.body).decode()
    headers = {
        "Content-Security-Policy": content_security_policy(settings, swagger, redirect, redoc),
        "X-Frame-Options": "DENY",  # frame-ancestors, for browsers that predate it
    }

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger, headers=headers)

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return HTMLResponse(redirect, headers=headers)

    @app.get("/redoc", include_in_schema=False)
    async def redoc_ui() -> HTMLResponse:
        return HTMLResponse(redoc, headers=headers)

"""The API documentation: Swagger UI and ReDoc for the public API, Swagger UI for the operator
API behind the operator key, all from assets installed with the backend.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so offline or behind a strict proxy
they are blank. The assets come from `fastapi-offline`, which ships exactly the three files
these pages need (current Swagger UI 5, which renders OpenAPI 3.1, and ReDoc 2) and depends on
FastAPI alone. Its peers were worse fits: `swagger-ui-bundle` ships Swagger UI 4, which cannot
render the OpenAPI 3.1 documents FastAPI writes, and no ReDoc; `drf-spectacular-sidecar`
brings Django. Only its files are used (FastAPI's documented "self-hosting JavaScript and CSS
for docs" pattern), not its app factory.

The operator document is served to an operator key only. A browser has no way to send an
`X-API-Key` header on navigation, so these two routes also take the key as the password of
HTTP Basic, and their 401 carries a Basic challenge: the browser asks for it (any user name)
and sends it with the page's own request for the document.
"""

import functools
from pathlib import Path
from typing import Annotated, Any

import fastapi_offline
from fastapi import APIRouter, Depends, FastAPI, Request, Response, Security
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from fastapi.staticfiles import StaticFiles

from app.api import internal
from app.api.deps import BearerKey, HeaderKey, resources_of
from app.api.errors import app_error_response
from app.api.internal.deps import require_operator
from app.core.exceptions import AuthenticationError

ASSETS_URL = "/docs-assets"
ASSETS_DIRECTORY = Path(fastapi_offline.__file__).parent / "static"
BASIC_REALM = "operator API documentation"

# No validator badge: Swagger UI would send the document to validator.swagger.io for it.
_SWAGGER_PARAMETERS = {"validatorUrl": None}

_basic = HTTPBasic(auto_error=False, realm=BASIC_REALM)


def _swagger_page(openapi_url: str, title: str) -> Response:
    return get_swagger_ui_html(
        openapi_url=openapi_url,
        title=title,
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        swagger_ui_parameters=_SWAGGER_PARAMETERS,
    )


async def _operator_key(
    request: Request,
    bearer: BearerKey,
    api_key: HeaderKey,
    basic: Annotated[HTTPBasicCredentials | None, Security(_basic)],
) -> Response | None:
    """None for an operator key (Bearer, X-API-Key or Basic password); otherwise the refusal,
    a 401 with a Basic challenge so that a browser asks for the key."""
    presented = bearer.credentials if bearer else api_key or (basic.password if basic else None)
    try:
        await require_operator(await resources_of(request).authenticator.authenticate(presented))
    except AuthenticationError as exc:
        refusal = app_error_response(exc)
        refusal.headers["WWW-Authenticate"] = f'Basic realm="{BASIC_REALM}", charset="UTF-8"'
        return refusal
    return None


OperatorOnly = Annotated[Response | None, Depends(_operator_key)]


def mount_assets(app: FastAPI) -> None:
    """Serves the pages' scripts and styles under ASSETS_URL."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIRECTORY), name="docs-assets")


# `/docs`, `/redoc`, and `/internal/openapi.json` and `/internal/docs` (the operator API's own
# document, kept out of the public one). The pages find their app in the request: one router
# serves every app of the process, and FastAPI keeps each endpoint it has classified in a cache
# of 4,096, where a closure over an app would keep that app alive.
router = APIRouter(include_in_schema=False)


def _public_openapi_url(app: FastAPI) -> str:
    return app.openapi_url or "/openapi.json"


@router.get("/docs")
async def public_docs(request: Request) -> Response:
    app: FastAPI = request.app
    return _swagger_page(_public_openapi_url(app), f"{app.title}: API documentation")


@router.get("/redoc")
async def public_redoc(request: Request) -> Response:
    app: FastAPI = request.app
    return get_redoc_html(
        openapi_url=_public_openapi_url(app),
        title=f"{app.title}: API reference",
        redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )


@functools.cache
def _internal_schema(title: str, version: str) -> dict[str, Any]:
    """The operator API's document: the same for every app of the process."""
    return get_openapi(
        title=f"{title} (internal)",
        version=version,
        summary="Operator API: readiness, cache, circuit breakers, accounts, metrics.",
        routes=internal.router.routes,
    )


@router.get("/internal/openapi.json")
async def internal_openapi(request: Request, refusal: OperatorOnly) -> Any:
    if refusal is not None:
        return refusal
    return _internal_schema(request.app.title, request.app.version)


@router.get("/internal/docs")
async def internal_docs(request: Request, refusal: OperatorOnly) -> Response:
    return refusal or _swagger_page("/internal/openapi.json", f"{request.app.title}: operator API")

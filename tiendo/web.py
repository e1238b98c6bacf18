"""HTTP plumbing the three FastAPI services share: problem+json errors, request ids, /metrics,
API docs served from the package."""

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any

import fastapi_standalone_docs
import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM_TYPE_BASE = "https://tiendo.example/problems/"
PROBLEM_JSON = "application/problem+json"


class FieldProblem(BaseModel):
    index: int | None = Field(None, description="position in `events`; null for the body itself")
    field: str = Field(description="the offending field, empty for the whole event")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """An `application/problem+json` response."""
    title = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + (slug or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {})
    )


def body_too_large(limit: int) -> Response:
    """The 413 of a body over `limit` bytes (ingest words its own the same way)."""
    return problem(413, f"the body is larger than {limit} bytes")


class ProblemError(Exception):
    """Raised by a route to answer problem+json with an `errors` list (every problem found)."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[dict[str, Any]],
        *,
        slug: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.slug = slug
        self.headers = headers


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting problem+json errors."""
    return {
        s: {
            "model": Problem,
            "description": HTTPStatus(s).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for s in statuses
    }


def install_problem_handlers(app: FastAPI) -> None:
    """Every error the framework raises leaves as problem+json too."""

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers = exc.headers
        if exc.status_code == 405:
            # Starlette names the methods of the first route of the path only; one path
            # served by several routes (GET and PUT) allows them all
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(app, request))}
        return problem(exc.status_code, str(exc.detail), headers=headers)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"index": None, "field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]}
            for e in exc.errors()
        ]
        return problem(
            422, "the request parameters are invalid", errors=errors, slug="invalid-parameters"
        )

    async def problem_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return problem(
            exc.status, exc.detail, slug=exc.slug, errors=exc.errors, headers=exc.headers
        )

    app.add_exception_handler(ProblemError, problem_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    document_problems(app)


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method a route of the request's path answers."""
    path = request.scope.get("path", "")
    return sorted(
        {
            method
            for route in app.routes
            if isinstance(route, Route) and route.path_regex.match(path)
            for method in route.methods or ()
        }
    )


def document_problems(app: FastAPI) -> None:
    """The app's OpenAPI says what the handlers above answer: every 422 is problem+json
    (FastAPI documents its own JSON body), and an operation that takes a body may answer
    400 (a body that is not JSON). A service that builds its schema itself (ingest)
    documents its own."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        if "Problem" not in schemas:
            problem_schema = Problem.model_json_schema(ref_template=_SCHEMA_REF + "{model}")
            schemas.update(problem_schema.pop("$defs", {}))
            schemas["Problem"] = problem_schema
        content = {PROBLEM_JSON: {"schema": {"$ref": _SCHEMA_REF + "Problem"}}}
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                responses = operation.get("responses", {})
                if "422" in responses:  # (its description, the route's own, stays)
                    responses["422"]["content"] = content
                if "requestBody" in operation and "400" not in responses:
                    responses["400"] = {"description": "Bad Request", "content": content}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_SCHEMA_REF = "#/components/schemas/"


# Probes and scrapes arrive every few seconds; their lines are for debugging only.
_QUIET_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
_log = structlog.stdlib.get_logger("tiendo.web")
# Two or more digits with nothing but separators between them ("001203004567",
# "001-203-004567", "12/34"): a lone digit (`/v1/`) says nothing about anyone.
_DIGITS = re.compile(r"\d(?:[\W_]*\d)+")
REDACTED = "#"


def loggable_path(scope: Scope) -> str:
    """The request's path as its log line shows it: the matched route's template, or else
    the path with its digits replaced. A path is the client's text, and an identity number
    put in a URL (`/v1/event/001203004567`, a route that does not exist) is personal data
    no log line carries (contract §7). Stricter than ingest's raw ID rule
    (services/ingest/rawids.py), which refuses what it is sure of and lets hex tokens be:
    a log loses nothing it needs with every digit run gone, and this library cannot
    import a service's rule."""
    template = getattr(scope.get("route"), "path_format", None)
    if template:
        return str(template)
    return _DIGITS.sub(REDACTED, scope.get("path", ""))


class RequestIdMiddleware:
    """Binds a request id (the caller's X-Request-ID or a new one) to every log line of the
    request, returns it as X-Request-ID, and logs one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = (
            incoming
            if 0 < len(incoming) <= 64 and incoming.isprintable() and " " not in incoming
            else uuid.uuid4().hex
        )
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                # Logged here, once, with the request id; the server's own line is dropped
                # (tiendo.logs) and the framework answers 500.
                _log.exception(
                    "request_failed", method=scope.get("method"), path=loggable_path(scope)
                )
                raise
            path = loggable_path(scope)
            _log.log(
                logging.DEBUG if path in _QUIET_PATHS else logging.INFO,
                "request_handled",
                method=scope.get("method"),
                path=path,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )


def add_ops_routes(app: FastAPI, registry: CollectorRegistry) -> None:
    """GET /healthz (process alive), GET /metrics (Prometheus text format), and the API docs
    (`/docs`, `/redoc`) with every asset served by the service itself."""
    serve_docs_offline(app)

    @app.get("/healthz", tags=["ops"], summary="Process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


# Swagger UI 5 (Apache-2.0) and ReDoc 2 (MIT) as a pip-installed bundle, licences beside them.
DOCS_ASSETS = Path(fastapi_standalone_docs.__file__).parent / "static"
DOCS_ASSETS_PATH = "/docs-assets"


def serve_docs_offline(app: FastAPI) -> None:
    """Replace FastAPI's `/docs` and `/redoc` pages, which load their scripts, styles and
    fonts from public CDNs, with pages whose every asset the service serves itself."""
    if not app.openapi_url:
        return
    openapi_url = app.openapi_url
    pages: dict[str, Callable[[str, str], HTMLResponse]] = {}
    if app.docs_url:
        oauth2_redirect = app.swagger_ui_oauth2_redirect_url
        pages[app.docs_url] = lambda root, assets: get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger/swagger-ui.css",
            swagger_favicon_url=f"{assets}/fastapi/favicon.png",
            # FastAPI's redirect page is inline HTML with no asset: it stays as registered.
            oauth2_redirect_url=root + oauth2_redirect if oauth2_redirect else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
    if app.redoc_url:
        pages[app.redoc_url] = lambda root, assets: get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{assets}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/fastapi/favicon.png",
            with_google_fonts=False,
        )

    def is_cdn_page(route: BaseRoute) -> bool:
        return isinstance(route, Route) and route.path in pages

    app.router.routes[:] = [r for r in app.router.routes if not is_cdn_page(r)]
    for path, page in pages.items():
        app.add_route(path, _docs_endpoint(page), include_in_schema=False)
    if app.redoc_url:
        # The bundle asks for its logo beside the page rather than beside the script.
        logo = DOCS_ASSETS / "redoc" / "logo-mini.svg"

        async def redoc_logo(_: Request) -> FileResponse:
            return FileResponse(logo, media_type="image/svg+xml")

        app.add_route(f"{app.redoc_url}/logo-mini.svg", redoc_logo, include_in_schema=False)
    app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")


def _docs_endpoint(
    page: Callable[[str, str], HTMLResponse],
) -> Callable[[Request], Awaitable[HTMLResponse]]:
    async def endpoint(request: Request) -> HTMLResponse:
        # Behind a proxy that strips a prefix, every URL the page loads carries it back.
        root = request.scope.get("root_path", "").rstrip("/")
        return page(root, root + DOCS_ASSETS_PATH)

    return endpoint

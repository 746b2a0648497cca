"""The one place where the specialist.errors hierarchy becomes HTTP status codes and JSON bodies."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.logs import request_id_var
from specialist import errors as E

log = logging.getLogger("specialist.serve")

# Most specific first; the first class an error is an instance of decides its status.
STATUS_BY_ERROR: list[tuple[type[E.SpecialistError], int]] = [
    (E.KnowledgeBaseUnavailable, 503),
    (E.ModelUnavailable, 503),
    (E.BackendUnavailable, 503),
    (E.RateLimited, 429),
    (E.GateFailed, 409),
    (E.Conflict, 409),
    (E.Unauthorized, 401),
    (E.Forbidden, 403),
    (E.PolicyViolation, 403),
    (E.ToolDenied, 403),
    (E.NotFound, 404),
    (E.InvalidDocument, 422),
    (E.InvalidTranscript, 422),
    (E.InvalidInput, 422),
    (E.SpecialistError, 500),
]

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def status_for(exc: E.SpecialistError) -> int:
    """The HTTP status of one of our errors."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(status: int, message: str, **extra: object) -> dict[str, object]:
    """The JSON body every error response shares: code, message, request id."""
    body: dict[str, object] = {"error": {"code": _CODES.get(status, "error"), "message": message, **extra}}
    body["request_id"] = request_id_var.get()
    return body


def error_response(exc: E.SpecialistError) -> JSONResponse:
    """The response for one of our errors, with Retry-After where retrying helps."""
    status = status_for(exc)
    headers = {}
    if status in (429, 503):
        headers["Retry-After"] = str(int(getattr(exc, "retry_after_s", 5)))
    message = str(exc) if status != 500 else "internal error; quote the request id when reporting it"
    return JSONResponse(
        error_body(status, message, type=type(exc).__name__), status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers: ours, validation and HTTP (anything unexpected: RequestContext's 500)."""

    async def on_specialist(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, E.SpecialistError)
        response = error_response(exc)
        if response.status_code >= 500:
            log.error("request failed: %s", exc, extra={"status": response.status_code})
        return response

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append({"field": where, "problem": err.get("msg", "invalid")})
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
        return JSONResponse(error_body(422, f"invalid request: {summary}", fields=problems), status_code=422)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs"
        return JSONResponse(
            error_body(exc.status_code, message), status_code=exc.status_code, headers=exc.headers
        )

    app.add_exception_handler(E.SpecialistError, on_specialist)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)

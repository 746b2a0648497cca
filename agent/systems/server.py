"""A small HTTP server exposing any CRM and billing under the contract of `agent.systems.http`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agent.systems.billing import Billing
from agent.systems.crm import CRM
from agent.systems.http import BILLING_OPERATIONS, CRM_OPERATIONS, WRITES
from specialist import errors
from specialist.errors import InvalidInput, SpecialistError


def systems_app(crm: CRM, billing: Billing) -> FastAPI:
    """A FastAPI app serving both systems under the contract above."""
    app = FastAPI(title="demo CRM and billing")

    async def call(system: Any, allowed: tuple[str, ...], operation: str, request: Request) -> JSONResponse:
        if operation not in allowed:
            return _error(errors.NotFound(f"Unknown operation {operation}."))
        try:
            body = await request.json()
        except ValueError:
            return _error(InvalidInput("The body must be a JSON object."))
        if not isinstance(body, dict):
            return _error(InvalidInput("The body must be a JSON object."))
        kwargs = dict(body)
        if operation in WRITES and request.headers.get("idempotency-key"):
            kwargs["idempotency_key"] = request.headers["idempotency-key"]
        try:
            result = getattr(system, operation)(**kwargs)
        except TypeError as exc:
            return _error(InvalidInput(f"Bad arguments for {operation}: {exc}"))
        except SpecialistError as exc:
            return _error(exc)
        return JSONResponse({"result": result})

    def _error(exc: SpecialistError) -> JSONResponse:
        return JSONResponse(
            {"error": {"type": type(exc).__name__, "message": str(exc)}}, status_code=exc.status_code
        )

    @app.post("/crm/v1/{operation}")
    async def crm_route(operation: str, request: Request) -> JSONResponse:
        return await call(crm, CRM_OPERATIONS, operation, request)

    @app.post("/billing/v1/{operation}")
    async def billing_route(operation: str, request: Request) -> JSONResponse:
        return await call(billing, BILLING_OPERATIONS, operation, request)

    return app

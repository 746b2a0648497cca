"""Operations: liveness, readiness (knowledge base and model reachable) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from serve.api.errors import error_body
from serve.api.security import services
from serve.services import Services

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness", responses={503: {"description": "a backend is down"}})
def readyz(svc: Services = Depends(services)) -> Any:
    """Ready when the knowledge base and the model backend answer; 503 with Retry-After otherwise."""
    checks = svc.readiness()
    if all(c["ok"] for c in checks.values()):
        return {"status": "ready", "checks": checks}
    retry = str(svc.settings.serve.retry_after_s)
    body = error_body(503, "not ready: " + ", ".join(k for k, c in checks.items() if not c["ok"]) + " down")
    body["checks"] = checks
    return JSONResponse(body, status_code=503, headers={"Retry-After": retry})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(svc: Services = Depends(services)) -> Response:
    """Request and turn latency, tokens, tool calls, retrieval latency, hand-offs, guard removals, errors."""
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)

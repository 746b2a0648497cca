"""Engineers: refunds waiting for human approval, and hand-off tickets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from serve.api.protocol import ApprovalList, DecisionIn, TicketList
from serve.api.security import engineer_only, services
from serve.auth import Principal
from serve.services import Services, jsonable

router = APIRouter(prefix="/api", tags=["engineers"])


@router.get("/approvals", response_model=ApprovalList, summary="Refunds waiting for approval")
def pending_approvals(
    who: Principal = Depends(engineer_only), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Refunds above the approval threshold, paused until an engineer decides."""
    return {"approvals": [jsonable(a) for a in svc.agent().pending_approvals()]}


@router.post("/approvals/{approval_id}", summary="Approve or reject a refund")
def decide(
    approval_id: str,
    body: DecisionIn,
    who: Principal = Depends(engineer_only),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Resume the paused conversation with the decision; returns what the agent did."""
    reviewer = who.name or who.key_id
    result = svc.agent().decide_approval(approval_id, approved=body.approved, reviewer=reviewer)
    out = jsonable(result)
    return out if isinstance(out, dict) else {"approval_id": approval_id, "result": out}


@router.get("/tickets", response_model=TicketList, summary="Hand-off tickets")
def tickets(who: Principal = Depends(engineer_only), svc: Services = Depends(services)) -> dict[str, Any]:
    """Conversations handed to a human, with their summaries."""
    return {"tickets": [jsonable(t) for t in svc.agent().tickets()]}

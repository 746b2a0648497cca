"""Engineers: the review queue of flagged conversations, step verdicts and corrections, export, erasure."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from serve.api.protocol import ErasureOut, ReviewOut, ReviewQueue, StepReviewIn, StepReviewOut
from serve.api.security import engineer_only, services
from serve.auth import Principal
from serve.feedback import REASONS
from serve.review import (
    check_step,
    corrected_reply,
    corrected_tool_call,
    review_view,
    scrubber_for,
    transcript_messages,
)
from serve.services import Services
from serve.transcript_export import export_transcripts, parse_since
from specialist.errors import InvalidInput

router = APIRouter(prefix="/api", tags=["engineers"])


def _transcript(svc: Services, conversation_id: str) -> tuple[Any, list[dict[str, Any]]]:
    conv = svc.conversations.get(conversation_id)  # NotFound for an unknown (or erased) conversation
    return conv, transcript_messages(svc.agent().history(conv.id, include_tools=True))


@router.get("/review", response_model=ReviewQueue, summary="Flagged conversations")
def review_queue(
    reason: str | None = Query(None, description=f"only conversations flagged for: {', '.join(REASONS)}"),
    limit: int = Query(100, ge=1, le=1000),
    who: Principal = Depends(engineer_only),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Flagged conversations, the most recently flagged first, each with its flags' reasons."""
    return {"conversations": svc.feedback.queue(reason=reason, limit=limit)}


@router.get("/review/export", summary="Live conversations as training transcripts (JSONL)")
def export(
    since: str | None = Query(None, description="only conversations updated on or after this ISO date"),
    flagged: bool = Query(False, description="only flagged conversations"),
    reviewed: bool = Query(False, description="only conversations with a reviewed step"),
    who: Principal = Depends(engineer_only),
    svc: Services = Depends(services),
) -> Response:
    """The transcripts, PII scrubbed, with ratings, outcome and corrections (as `transcripts export`)."""
    when = parse_since(since)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export.jsonl"
        report = export_transcripts(
            conversations=svc.conversations,
            feedback=svc.feedback,
            history=lambda cid: svc.agent().history(cid, include_tools=True),
            out=out,
            since=when,
            flagged=flagged,
            reviewed=reviewed,
        )
        body = out.read_bytes()
    headers = {"X-Export-SHA256": report.sha256, "X-Export-Conversations": str(report.conversations)}
    return Response(body, media_type="application/x-ndjson", headers=headers)


@router.get("/review/{conversation_id}", response_model=ReviewOut, summary="A conversation under review")
def review_one(
    conversation_id: str, who: Principal = Depends(engineer_only), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Every turn with its tool calls and results, PII as the scrub leaves it, and each step's choices."""
    conv, messages = _transcript(svc, conversation_id)
    return review_view(
        conversation=conv.to_dict(),
        messages=messages,
        flags=[f.to_dict() for f in svc.feedback.flags(conv.id)],
        ratings=[r.to_dict() for r in svc.feedback.ratings(conv.id)],
        reviews=[r.to_dict() for r in svc.feedback.reviews(conv.id)],
        user_id=conv.customer_id,
    )


@router.post(
    "/review/{conversation_id}/steps/{step}",
    response_model=StepReviewOut,
    summary="Mark a step good or correct it",
)
def review_step(
    conversation_id: str,
    step: int,
    body: StepReviewIn,
    who: Principal = Depends(engineer_only),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Store a verdict on one assistant step: good, or the tool call / reply it should have been."""
    conv, messages = _transcript(svc, conversation_id)
    message: dict[str, Any] | None = None
    if body.verdict == "good":
        if body.tool_call is not None or body.reply is not None:
            raise InvalidInput("a step marked good takes no tool_call or reply")
        check_step(messages, step)
    elif (body.tool_call is None) == (body.reply is None):
        raise InvalidInput("a correction needs exactly one of tool_call (a tool and its arguments) or reply")
    elif body.tool_call is not None:
        message = corrected_tool_call(
            messages,
            step,
            name=body.tool_call.name,
            arguments=body.tool_call.arguments,
            user_id=conv.customer_id,
            scrubber=scrubber_for(conv.id, messages),
        )
    else:
        message = corrected_reply(messages, step, text=body.reply or "")
    review = svc.feedback.review(
        conv.id, step=step, verdict=body.verdict, message=message, reviewer=who.name or who.key_id
    )
    shown = review.to_dict()
    if message is not None:
        shown["message"] = scrubber_for(conv.id, messages).message(message)
    return {"conversation_id": conv.id, **shown}


@router.delete(
    "/customers/{customer_id}/data", response_model=ErasureOut, summary="Delete a customer's account data"
)
def erase_customer(
    customer_id: str, who: Principal = Depends(engineer_only), svc: Services = Depends(services)
) -> dict[str, Any]:
    """The account policy's deletion: the customer's conversations, ratings and reviews, everywhere."""
    return {"customer_id": customer_id, "conversations": len(svc.erase_customer(customer_id))}

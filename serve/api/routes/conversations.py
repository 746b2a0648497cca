"""Customers: conversations, messages streamed back as Server-Sent Events, history."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from serve.api.protocol import (
    ConversationList,
    ConversationOut,
    HistoryOut,
    MessageIn,
    RatingIn,
    RatingOut,
    TurnOut,
)
from serve.api.security import customer_only, customer_or_engineer, services
from serve.auth import Principal
from serve.logs import conversation_id_var
from serve.services import Services, jsonable
from serve.turns import Turn, TurnEvent
from specialist.errors import InvalidInput

router = APIRouter(prefix="/api/conversations", tags=["customers"])

_STREAM_DOC = (
    "Server-Sent Events, one per agent event: `event:` is the type (token, tool_start, tool_end, "
    "citation, handoff, approval_pending, message, error, done), `data:` its JSON. The last event is "
    "`done`. With `?stream=false` the whole turn comes back as one JSON object."
)


@router.post("", status_code=201, response_model=ConversationOut, summary="Start a conversation")
def create_conversation(
    who: Principal = Depends(customer_only), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Create a conversation owned by the calling customer."""
    conv = svc.conversations.create(customer_id=who.customer_id)
    return conv.to_dict()


@router.get("", response_model=ConversationList, summary="List conversations")
def list_conversations(
    who: Principal = Depends(customer_or_engineer), svc: Services = Depends(services)
) -> dict[str, Any]:
    """The caller's conversations (every conversation for an engineer), newest first."""
    return {"conversations": [c.to_dict() for c in svc.conversations.list_for(who)]}


@router.get("/{conversation_id}", response_model=HistoryOut, summary="A conversation's history")
def history(
    conversation_id: str, who: Principal = Depends(customer_or_engineer), svc: Services = Depends(services)
) -> dict[str, Any]:
    """The conversation's messages so far (also after a restart of the service)."""
    conv = svc.conversations.get_for(conversation_id, who)
    conversation_id_var.set(conv.id)
    messages = [jsonable(m) for m in svc.agent().history(conv.id)]
    return {"conversation": conv.to_dict(), "messages": messages}


@router.post(
    "/{conversation_id}/messages",
    summary="Send a message; the reply streams back",
    description=_STREAM_DOC,
    response_model=TurnOut,
    responses={200: {"content": {"text/event-stream": {}}, "description": _STREAM_DOC}},
)
async def send_message(
    conversation_id: str,
    body: MessageIn,
    request: Request,
    stream: bool = Query(True, description="false: answer with the whole turn as JSON"),
    who: Principal = Depends(customer_only),
    svc: Services = Depends(services),
) -> Any:
    """Run one agent turn on the customer's message."""
    conv = svc.conversations.get_for(conversation_id, who)
    conversation_id_var.set(conv.id)
    limit = svc.settings.agent.max_message_chars
    if len(body.text) > limit:
        raise InvalidInput(f"message is {len(body.text)} characters; the limit is {limit}")
    if not body.text.strip():
        raise InvalidInput("message is empty")
    svc.check_backends()
    agent = svc.agent()
    model_name = str(getattr(agent.model, "name", "unknown"))  # the model this turn runs on
    svc.turn_gate.enter(conv.id)

    def finish(events: list[TurnEvent]) -> None:
        svc.turn_gate.leave(conv.id)
        turn = svc.conversations.record_turn(conv.id, handed_off=any(e.type == "handoff" for e in events))
        svc.feedback.record_turn(conv.id, turn=turn, text=body.text, events=events)  # flags with reasons

    try:
        turn = Turn(
            # the owner `get_for` vouched for: the agent binds the conversation to it (agent.tools.Session)
            run=lambda: agent.respond(conv.id, body.text, customer_id=conv.customer_id),
            executor=svc.executor,
            metrics=svc.metrics,
            conversation_id=conv.id,
            on_finish=finish,
        )
    except BaseException:
        svc.turn_gate.leave(conv.id)
        raise
    first = await turn.first()

    async def all_events() -> AsyncIterator[TurnEvent]:
        if first is not None:
            yield first
        async for event in turn.events():
            yield event

    if not stream:
        return {
            "model": model_name,
            "conversation_id": conv.id,
            "events": [{"type": e.type, "data": e.data} async for e in all_events()],
        }

    async def sse() -> AsyncIterator[bytes]:
        n = 0

        def encode(batch: list[TurnEvent]) -> bytes:
            nonlocal n
            out = []
            for event in batch:
                n += 1
                data = json.dumps(event.data, default=str)
                out.append(ServerSentEvent(data=data, event=event.type, id=str(n)).encode())
            return b"".join(out)

        if first is not None:
            yield encode([first])
        async for batch in turn.batches():
            yield encode(batch)

    headers = {"X-Conversation-ID": conv.id, "X-Model": model_name}
    return EventSourceResponse(sse(), ping=15, headers=headers)


@router.post("/{conversation_id}/ratings", status_code=201, response_model=RatingOut, summary="Rate a reply")
def rate_reply(
    conversation_id: str,
    body: RatingIn,
    who: Principal = Depends(customer_only),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Thumbs up or down (with an optional comment) on a reply of the caller's own conversation."""
    conv = svc.conversations.get_for(conversation_id, who)
    if conv.turns == 0:
        raise InvalidInput("this conversation has no reply to rate yet")
    turn = body.turn if body.turn is not None else conv.turns
    if turn > conv.turns:
        raise InvalidInput(f"turn {turn} does not exist; this conversation has {conv.turns} turn(s)")
    rating = svc.feedback.rate(conv.id, turn=turn, up=body.value == "up", comment=body.comment)
    return {"conversation_id": conv.id, **rating.to_dict()}

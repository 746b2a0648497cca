"""Request and response bodies of the HTTP API (what /docs shows)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Reject unknown fields so a typo gets a clear 422 instead of being ignored."""

    model_config = ConfigDict(extra="forbid")


# -- customers -------------------------------------------------------------------------------------


class ConversationOut(BaseModel):
    """A conversation's record."""

    id: str
    customer_id: str | None
    created_at: float
    updated_at: float
    handed_off: bool
    turns: int


class ConversationList(BaseModel):
    """The caller's conversations, newest first."""

    conversations: list[ConversationOut]


class MessageIn(Strict):
    """A customer's message."""

    text: str = Field(min_length=1, description="The message; at most settings.agent.max_message_chars")


class EventOut(BaseModel):
    """One event of a turn, as streamed (SSE `event:` is the type, `data:` the JSON data)."""

    type: Literal[
        "token",
        "tool_start",
        "tool_end",
        "citation",
        "handoff",
        "approval_pending",
        "message",
        "error",
        "done",
    ]
    data: dict[str, Any]


class TurnOut(BaseModel):
    """A whole turn's events, for clients that ask for JSON instead of a stream."""

    conversation_id: str
    model: str
    events: list[EventOut]


class HistoryOut(BaseModel):
    """A conversation with its messages so far."""

    conversation: ConversationOut
    messages: list[dict[str, Any]]


class RatingIn(Strict):
    """A customer's rating of one reply."""

    value: Literal["up", "down"] = Field(description="thumbs up or thumbs down")
    comment: str = Field(default="", max_length=2000, description="optional: what was wrong or right")
    turn: int | None = Field(
        default=None, ge=1, description="the turn whose reply is rated (1 = the first); default: the last"
    )


class RatingOut(BaseModel):
    """A recorded rating."""

    conversation_id: str
    turn: int
    value: Literal["up", "down"]
    comment: str
    created_at: float


# -- content owners --------------------------------------------------------------------------------


class DocumentIn(Strict):
    """A policy document's content (its id is in the path)."""

    title: str = Field(min_length=1, max_length=300)
    content: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    effective_from: str | None = Field(default=None, description="ISO date; default: in force now")
    effective_to: str | None = Field(default=None, description="ISO date; default: no end")


class DocumentWithId(DocumentIn):
    """A document with its id, for batch upserts."""

    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class DocumentBatchIn(Strict):
    """Several documents created or replaced in one call."""

    documents: list[DocumentWithId] = Field(min_length=1, max_length=1000)


class RunReportOut(BaseModel):
    """An ingest run's report (added / updated / unchanged / deleted / failed, with reasons)."""

    model_config = ConfigDict(extra="allow")


class KbStatusOut(BaseModel):
    """Documents, chunks, last change and the last run's report."""

    model_config = ConfigDict(extra="allow")
    last_report: dict[str, Any] | None = None


class DocumentList(BaseModel):
    """The documents in the knowledge base."""

    documents: list[dict[str, Any]]


# -- engineers -------------------------------------------------------------------------------------


class PromoteIn(Strict):
    """Which run to make live."""

    run_id: str = Field(min_length=1, max_length=200)


class RunList(BaseModel):
    """Model runs with their gate reports, and which is live."""

    live: dict[str, Any] | None
    runs: list[dict[str, Any]]


class LiveOut(BaseModel):
    """The live model after a promote or roll back."""

    live: dict[str, Any] | None
    model: str


class DecisionIn(Strict):
    """An engineer's decision on a paused refund."""

    approved: bool
    note: str = Field(default="", max_length=2000)


class ApprovalList(BaseModel):
    """Refunds waiting for a human."""

    approvals: list[dict[str, Any]]


class TicketList(BaseModel):
    """Hand-off tickets."""

    tickets: list[dict[str, Any]]


class ReviewQueue(BaseModel):
    """Flagged conversations, the most recently flagged first, with each flag's reason."""

    conversations: list[dict[str, Any]]


class ReviewOut(BaseModel):
    """One conversation under review: its messages and steps as the PII scrub leaves them."""

    conversation: dict[str, Any]
    messages: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    flags: list[dict[str, Any]]
    ratings: list[dict[str, Any]]


class ToolCallIn(Strict):
    """A tool call a reviewer picks: a tool of agent.tool_specs and arguments that fit its schema."""

    name: str = Field(min_length=1, max_length=100)
    arguments: dict[str, Any] = Field(default_factory=dict)


class StepReviewIn(Strict):
    """A verdict on one assistant step: `good`, or `corrected` with the right tool call or reply."""

    verdict: Literal["good", "corrected"]
    tool_call: ToolCallIn | None = None
    reply: str | None = Field(default=None, max_length=4000)


class StepReviewOut(BaseModel):
    """A stored verdict, with who gave it and when."""

    conversation_id: str
    step: int
    verdict: str
    message: dict[str, Any] | None
    reviewer: str
    created_at: float


class ErasureOut(BaseModel):
    """What deleting a customer's account data removed."""

    customer_id: str
    conversations: int


class KeyOut(BaseModel):
    """A key's metadata."""

    id: str
    role: str
    customer_id: str | None

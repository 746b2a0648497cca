"""The support agent's LangGraph `StateGraph`: the graph says what is possible, the model chooses.

intake -> decide -> (tools -> decide)* -> guard -> reply
                 -> tools (search_policies) -> guard: the answer composed from the passages
                 -> gate (a write) -> reply (details + "reply yes")  |  execute (confirmed) -> decide
                 -> handoff -> reply
At each model step `agent.choices` derives the actions possible now and each argument's values; the model's
output is constrained to them (`agent.decoding`). The graph, not the model, checks identity, confirmation,
idempotency, refund approval and groundedness, and says the customer-facing lines itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agent import choices, prompts
from agent.chat_model import ChatMessage, ChatModel, ChatReply, ToolCall
from agent.confirmation import action_key, details_listed, is_explicit_yes
from agent.grounding import Source, check_reply
from agent.settings import AgentSettings
from agent.store.database import AgentRecords
from agent.systems.billing import Billing
from agent.systems.crm import CRM
from agent.tool_specs import TOOL_SPECS, WRITE_TOOLS
from agent.tools import (
    KnowledgeBaseLike,
    Session,
    SupportTools,
    ToolOutcome,
    check_arguments,
    format_error,
    format_result,
)
from specialist.errors import SpecialistError

log = logging.getLogger(__name__)

FIXED_LINES = (
    prompts.NO_INFORMATION,
    prompts.IDENTIFY_FIRST,
    prompts.OFF_TOPIC,
    prompts.NOT_CONFIRMED,
    prompts.TOOL_FAILED,
    prompts.TOO_MANY_STEPS,
)
_OFF_TOPIC = re.compile(
    r"\b(poem|joke|recipe|weather|stock market|bitcoin|crypto|homework|essay|write (?:me )?(?:a|some) code|"
    r"python script|capital of|president|movie|song|lyrics|translate|horoscope|football|election)\b",
    re.IGNORECASE,
)
_ON_TOPIC = re.compile(
    r"\b(order|refund|return|exchange|cancel|item|product|ship|deliver|payment|card|address|account|policy|"
    r"warranty|price|store|help)\b|#W\d",
    re.IGNORECASE,
)


class AgentState(TypedDict, total=False):
    """What a conversation remembers between turns (checkpointed)."""

    messages: Annotated[list[dict[str, Any]], operator.add]  # OpenAI chat format, no system prompt
    incoming: str
    token_user_id: str | None
    user_id: str | None
    pending: dict[str, Any] | None  # a proposed write waiting for the customer's yes
    passages: list[dict[str, Any]]  # every passage seen, each with its citation label
    ticket_id: str | None
    steps: int
    draft: str
    proposal: dict[str, Any] | None  # the model's current tool call
    invalid_calls: int  # calls outside `agent.choices` (only a backend that ignores them can make one)


@dataclass
class AgentContext:
    """What the nodes need, handed in per run (the model can be swapped between turns)."""

    conversation_id: str
    model: ChatModel
    crm: CRM
    billing: Billing
    kb: KnowledgeBaseLike | None
    records: AgentRecords
    settings: AgentSettings
    phrasing_model: ChatModel | None = None
    answerer: Any = None  # agent.answers.PolicyAnswerer: policy answers composed from the passages


def _emit(kind: str, **data: Any) -> None:
    get_stream_writer()({"type": kind, "data": data})


def _customer_texts(state: AgentState) -> list[str]:
    return [m["content"] for m in state.get("messages", []) if m["role"] == "user"]


def _tools(state: AgentState, ctx: AgentContext) -> SupportTools:
    session = Session(
        user_id=state.get("user_id"),
        token_user_id=state.get("token_user_id"),
        customer_texts=_customer_texts(state),
    )
    return SupportTools(crm=ctx.crm, billing=ctx.billing, kb=ctx.kb, session=session)


def _assistant(text: str, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": text, **extra}


def _call_message(call: dict[str, Any]) -> dict[str, Any]:
    return ChatMessage(
        role="assistant", tool_calls=[ToolCall(call["name"], call["arguments"], call["id"])]
    ).to_openai()


def _tool_message(call: dict[str, Any], content: str) -> dict[str, Any]:
    return {"role": "tool", "content": content, "tool_call_id": call["id"], "name": call["name"]}


# --- nodes -------------------------------------------------------------------------------------------------


def intake(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Take the customer's message; answer directly what needs no model (empty, too long, off-topic...)."""
    ctx = runtime.context
    text = (state.get("incoming") or "").strip()
    update: dict[str, Any] = {"steps": 0, "draft": "", "proposal": None}
    token_user = state.get("token_user_id")
    if token_user and not state.get("user_id"):
        update["user_id"] = token_user
    if not text:
        return {**update, "draft": prompts.EMPTY_MESSAGE}
    if len(text) > ctx.settings.max_message_chars:
        return {**update, "draft": prompts.too_long(ctx.settings.max_message_chars)}
    update["messages"] = [{"role": "user", "content": text}]
    if state.get("ticket_id"):
        return {**update, "draft": prompts.STILL_HANDED_OFF.format(ticket_id=state["ticket_id"])}
    pending = state.get("pending")
    if pending:
        if is_explicit_yes(text):
            return update
        update["pending"] = None
    if _OFF_TOPIC.search(text) and not _ON_TOPIC.search(text):
        return {**update, "draft": prompts.OFF_TOPIC}
    return update


def route_next(state: AgentState) -> Literal["decide", "execute", "reply"]:
    """A drafted answer (fixed reply, write details) goes out; a confirmed write executes; else the model.

    Used after intake, the confirmation gate and execution alike."""
    if state.get("draft"):
        return "reply"
    if state.get("pending"):
        return "execute"
    return "decide"


def decide(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Ask the behaviour model for the next step, chosen within what is possible now (`agent.choices`)."""
    ctx = runtime.context
    steps = state.get("steps", 0) + 1
    history = state.get("messages", [])
    if steps > ctx.settings.max_steps_per_turn:
        written = _written_this_turn(history)  # a write done in this turn is reported, not lost in the limit
        text = prompts.write_done(*written) if written else prompts.TOO_MANY_STEPS
        return {"steps": steps, "draft": text, "proposal": None}
    matcher = ctx.settings.variant_choice == "matcher"
    possible = choices.derive(history, user_id=state.get("user_id"), variant_matcher=matcher)
    messages = [ChatMessage(role="system", content=prompts.system_prompt())]
    messages += [ChatMessage.from_openai(prompts.for_model_message(m)) for m in history]
    if not possible.actions and not possible.reply_text:  # nothing for the model to choose or say
        return {"steps": steps, "proposal": None, "draft": _reply_text(state, possible, "")}
    try:
        reply: ChatReply = ctx.model.complete(messages, TOOL_SPECS, possible)
    except Exception as exc:  # a backend failure must not end the conversation
        log.exception("model step failed")
        _emit("error", message=f"model failed: {type(exc).__name__}")
        return {"steps": steps, "draft": prompts.TOOL_FAILED, "proposal": None}
    if reply.tool_calls:
        call = reply.tool_calls[0]
        call_id = call.id or "call_" + hashlib.sha256(f"{len(history)}:{call.name}".encode()).hexdigest()[:8]
        proposal = {"name": call.name, "arguments": call.arguments, "id": call_id}
        if not possible.admits(call):
            # Impossible for the constrained backends; a backend that ignores `choices` is refused here.
            _emit("invalid_call", name=call.name, arguments=call.arguments)
            _emit("tool_start", name=call.name, arguments=call.arguments)
            _emit("tool_end", name=call.name, ok=False, content=prompts.not_possible(call.name))
            return {
                "steps": steps,
                "proposal": None,
                "draft": "",
                "invalid_calls": state.get("invalid_calls", 0) + 1,
                "messages": [
                    _call_message(proposal),
                    _tool_message(proposal, prompts.not_possible(call.name)),
                ],
            }
        return {"steps": steps, "proposal": proposal, "draft": ""}
    return {"steps": steps, "proposal": None, "draft": _reply_text(state, possible, reply.text)}


def _reply_text(state: AgentState, possible: choices.Choices, text: str) -> str:
    """The reply the customer gets when the model chose to reply: the graph's own words where the state
    decides them (identification, a write's outcome), else the model's short text (checked by the guard)."""
    history = state.get("messages", [])
    if not state.get("user_id") and not choices.read_facts(history).user_id:
        return prompts.IDENTIFY_FIRST
    if possible.status_of:  # "where is my order?", every order asked about looked up: their records say it
        facts = choices.read_facts(history, user_id=state.get("user_id"))
        return prompts.order_status([facts.orders[o] for o in possible.status_of])
    written = _written_this_turn(history)
    if written is not None:
        # a write done in this turn: its outcome in the graph's words, alone when it was the last step (the
        # choices then leave the reply to the graph), else before the model's text after more steps
        if not possible.reply_text or not text.strip():
            return prompts.write_done(*written)
        return f"{prompts.write_done_line(*written)} {text.strip()}"
    return text.strip() or prompts.NO_INFORMATION


def _this_turn(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages after the customer's last one (what the graph and the model did in this turn)."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    return messages[last_user + 1 :]


def route_decide(state: AgentState) -> Literal["tools", "gate", "handoff", "guard", "decide"]:
    """Where the model's proposal goes."""
    proposal = state.get("proposal")
    if not proposal:
        return "guard" if state.get("draft") else "decide"
    if proposal["name"] in WRITE_TOOLS:
        return "gate"
    if proposal["name"] == "transfer_to_human_agents":
        return "handoff"
    return "tools"


def tools(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Run a read tool inside the customer's authorization; errors go back to the model as text."""
    ctx = runtime.context
    call = dict(state["proposal"] or {})
    _emit("tool_start", name=call["name"], arguments=call["arguments"])
    toolbox = _tools(state, ctx)
    outcome = _run_read(toolbox, call)
    update: dict[str, Any] = {"proposal": None}
    content = outcome.content
    found: list[dict[str, Any]] = []  # this search's passages, with their citation labels
    if outcome.passages:
        known = list(state.get("passages", []))
        shown = []
        for passage in outcome.passages:
            match = next((p for p in known if p["chunk_id"] == passage["chunk_id"]), None)
            if match is None:
                match = {**passage, "label": f"{passage['doc_id']}-{len(known) + 1}"}
                known.append(match)
            found.append(match)
            title = f"{match['title']} § {match['section']}" if match["section"] else match["title"]
            shown.append({"label": match["label"], "title": title, "text": match["text"]})
        update["passages"] = known
        content = json.dumps(shown, ensure_ascii=False)
    elif call["name"] == "search_policies" and outcome.ok:
        content = "[]"
    if toolbox.session.user_id and toolbox.session.user_id != state.get("user_id"):
        update["user_id"] = toolbox.session.user_id
    _emit("tool_end", name=call["name"], ok=outcome.ok, content=content[:2000])
    update["messages"] = [_call_message(call), _tool_message(call, content)]
    if call["name"] == "get_order_details" and outcome.error == "NotFound":
        # not this customer's order, or none: the graph's answer, the same either way (never confirms that
        # another customer's order exists); the customer can correct the id
        update["draft"] = prompts.orders_not_found([str(call["arguments"].get("order_id", ""))])
    elif call["name"] == "search_policies":
        answer = _policy_answer(ctx, str(call["arguments"].get("query", "")), found)
        latest = next((m["content"] for m in reversed(state.get("messages", [])) if m["role"] == "user"), "")
        if answer != prompts.NO_INFORMATION or not choices.asks_for_changes(latest):
            update["draft"] = answer
        # else no policy answers it, and the message also asks for changes: the model goes on with those
    return update


def _policy_answer(ctx: AgentContext, question: str, passages: list[dict[str, Any]]) -> str:
    """The answer to a policy question, composed by the graph from the passages just found (cited), or the
    honest line when none supports an answer (`agent.answers`, threshold measured on a labelled set)."""
    if ctx.answerer is None or not passages:
        return prompts.NO_INFORMATION
    answer = ctx.answerer.answer(question, passages)
    return answer.text if answer is not None else prompts.NO_INFORMATION


def route_tools(state: AgentState) -> Literal["decide", "guard"]:
    """A read's result goes back to the model, unless the graph answered from it (a policy answer, an order
    that is not the customer's)."""
    return "guard" if state.get("draft") else "decide"


def _run_read(toolbox: SupportTools, call: dict[str, Any]) -> ToolOutcome:
    """Run a read tool; one that crashes is relayed like a refusal (nothing was written)."""
    try:
        return toolbox.run(call["name"], call["arguments"])
    except Exception as exc:
        return ToolOutcome(
            content=f"Error: the {call['name']} tool failed ({type(exc).__name__}).",
            ok=False,
            error=type(exc).__name__,
        )


def gate(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """A proposed write: refuse what is not allowed, execute what was confirmed, else list and ask."""
    ctx = runtime.context
    call = dict(state["proposal"] or {})
    toolbox = _tools(state, ctx)
    malformed = True  # until the arguments match the tool's schema
    try:
        arguments = check_arguments(call["name"], call["arguments"])
        malformed = False
        toolbox.authorize_write(call["name"], arguments)
        key = action_key(ctx.conversation_id, call["name"], arguments)
        # What the system would refuse is never listed for confirmation: the model hears why now.
        toolbox.check_write(call["name"], arguments, idempotency_key=key)
        refund = ctx.billing.refund_amount(call["name"], arguments)
    except Exception as exc:  # a refusal, or a system that failed: relayed, nothing listed or written
        error = format_error(exc) if isinstance(exc, SpecialistError) else _crashed(call["name"], exc)
        _emit("tool_end", name=call["name"], ok=False, content=error)
        refused = [_call_message(call), _tool_message(call, error)]
        if _refused_writes(state.get("messages", [])) >= ctx.settings.retry_refused_writes:
            # the system's own reason, said by the graph; a schema error is the model's slip, not a reason
            # the customer can act on, so they hear it in plain words (the model's history keeps the detail)
            text = prompts.WRITE_MALFORMED if malformed else prompts.write_failed(error)
            return {"proposal": None, "draft": text, "messages": [*refused, _assistant(text)]}
        return {"proposal": None, "messages": refused}
    pending = {
        "name": call["name"],
        "arguments": arguments,
        "id": call["id"],
        "key": key,
        "refund": refund,
    }
    messages = state.get("messages", [])
    last_user = next((m for m in reversed(messages) if m["role"] == "user"), None)
    before = messages[: messages.index(last_user)] if last_user else []
    listing = next((m for m in reversed(before) if m["role"] == "assistant" and m.get("content")), None)
    confirmed = (
        last_user is not None
        and is_explicit_yes(last_user["content"])
        and listing is not None
        and details_listed(listing["content"], call["name"], arguments)
    )
    if confirmed:
        return {"proposal": None, "pending": pending}
    facts = choices.read_facts(messages, user_id=state.get("user_id"))  # each id also in the customer's words
    details = prompts.write_details(call["name"], arguments, refund=refund or None, labels=facts.labels())
    written = _written_this_turn(messages)
    if written:  # the next change of the same request: the customer hears the one just made first
        details = f"{prompts.write_done_line(*written)} {details}"
    # The proposal stays in the history (the model sees what it asked for and that it is not done yet).
    proposed = [_call_message(call), _tool_message(call, prompts.PENDING_CONFIRMATION), _assistant(details)]
    return {"proposal": None, "pending": pending, "draft": details, "messages": proposed}


def _refused_writes(messages: list[dict[str, Any]]) -> int:
    """How many proposed writes the systems refused since the customer's last message."""
    return sum(
        1
        for m in _this_turn(messages)
        if m["role"] == "tool" and m.get("name") in WRITE_TOOLS and m["content"].startswith("Error")
    )


def execute(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Do a confirmed write once (idempotency key), pausing first for human approval of a large refund."""
    ctx = runtime.context
    pending = dict(state.get("pending") or {})
    call = {"name": pending["name"], "arguments": pending["arguments"], "id": pending["id"]}
    if pending["refund"] > ctx.settings.refund_approval_threshold:
        ctx.records.create_approval(
            approval_id=pending["key"],
            conversation_id=ctx.conversation_id,
            tool=pending["name"],
            arguments=pending["arguments"],
            amount=pending["refund"],
        )
        decision = interrupt(
            {
                "approval_id": pending["key"],
                "amount": pending["refund"],
                "tool": pending["name"],
                "arguments": pending["arguments"],
            }
        )
        if not (isinstance(decision, dict) and decision.get("approved")):
            text = prompts.APPROVAL_REJECTED
            return {"pending": None, "draft": text, "messages": [_assistant(text)]}
    _emit("tool_start", name=call["name"], arguments=call["arguments"])
    result: dict[str, Any] = {}
    try:
        result = _tools(state, ctx).write(call["name"], call["arguments"], idempotency_key=pending["key"])
        content, ok = format_result(result), True
    except SpecialistError as exc:
        content, ok = format_error(exc), False
    except Exception as exc:  # the write's transaction rolled back; say so plainly
        content, ok = _crashed(call["name"], exc), False
    _emit("tool_end", name=call["name"], ok=ok, content=content[:2000])
    done = [_call_message(call), _tool_message(call, content)]
    if ok:
        # The model goes on with the rest of the customer's request (another write, or a reply, which the
        # graph then says from the result itself: `_reply_text`).
        return {"pending": None, "messages": done}
    text = prompts.write_failed(content)
    return {"pending": None, "draft": text, "messages": [*done, _assistant(text)]}


def _written_this_turn(messages: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The last write the systems did since the customer's last message: its tool and result."""
    for m in reversed(_this_turn(messages)):
        if m["role"] == "tool" and m.get("name") in WRITE_TOOLS and not m["content"].startswith("Error"):
            result = _parsed(m["content"])
            if isinstance(result, dict):
                return str(m["name"]), result
    return None


def _parsed(text: str) -> Any:
    """A tool result's JSON, or None."""
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def _crashed(tool: str, exc: Exception) -> str:
    return f"Error: the {tool} tool failed ({type(exc).__name__}); nothing was changed."


def handoff(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Open a ticket with a summary of the conversation and mark the conversation handed off."""
    ctx = runtime.context
    call = dict(state["proposal"] or {})
    summary = str((call.get("arguments") or {}).get("summary") or "")[:500]
    said = " | ".join(m["content"][:160] for m in state.get("messages", []) if m["role"] == "user")[-800:]
    full = f"{summary}\ncustomer: {state.get('user_id') or 'not identified'}\ncustomer said: {said}".strip()
    ticket_id = (
        "T-"
        + hashlib.sha256(f"{ctx.conversation_id}:{len(state.get('messages', []))}".encode()).hexdigest()[:8]
    )
    ctx.records.create_ticket(
        ticket_id=ticket_id, conversation_id=ctx.conversation_id, user_id=state.get("user_id"), summary=full
    )
    _emit("handoff", ticket_id=ticket_id, summary=full)
    text = prompts.HANDED_OFF.format(ticket_id=ticket_id)
    return {
        "proposal": None,
        "ticket_id": ticket_id,
        "draft": text,
        "messages": [_call_message(call), _tool_message(call, f"ticket {ticket_id}"), _assistant(text)],
    }


def guard(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Check the drafted reply against tool results, passages and the customer's words; cite passages."""
    ctx = runtime.context
    draft = state.get("draft") or ""
    if ctx.phrasing_model is not None:
        draft = _rephrase(ctx.phrasing_model, draft) or draft
    # Passages come in with their labels below, so search results are not counted twice.
    sources = [
        Source(text=m["content"], from_customer=m["role"] == "user")
        for m in state.get("messages", [])
        if m["role"] == "user" or (m["role"] == "tool" and m.get("name") != "search_policies")
    ]
    sources += [Source(text=p["text"], label=p["label"]) for p in state.get("passages", [])]
    fixed: tuple[str, ...] = FIXED_LINES
    written = _written_this_turn(state.get("messages", []))
    if written:  # the write done in this turn: the graph's own words say so (and only then)
        fixed = (*fixed, prompts.write_done_line(*written))
    result = check_reply(draft, sources, fixed_lines=fixed)
    by_label = {p["label"]: p for p in state.get("passages", [])}
    citations = [{"label": label, **_citation(by_label[label])} for label in result.citations]
    return {
        "draft": result.text,
        "messages": [_assistant(result.text, citations=citations, removed=result.removed)],
    }


def reply(state: AgentState) -> dict[str, Any]:
    """Send the final text (as tokens, then the message) and its citations to the customer."""
    text = state.get("draft") or ""
    messages = state.get("messages", [])
    last = messages[-1] if messages else {}
    citations = last.get("citations", []) if last.get("role") == "assistant" else []
    for i, word in enumerate(text.split(" ")):
        _emit("token", text=word if i == 0 else " " + word)
    for citation in citations:
        _emit("citation", **citation)
    removed = last.get("removed", []) if last.get("role") == "assistant" else []
    _emit("message", text=text, citations=citations, removed=removed)
    update: dict[str, Any] = {"incoming": "", "draft": "", "proposal": None}
    if not last or last.get("role") != "assistant" or last.get("content") != text:
        update["messages"] = [_assistant(text)]
    return update


def _citation(passage: dict[str, Any]) -> dict[str, Any]:
    return {k: passage[k] for k in ("doc_id", "title", "section", "version", "chunk_id")}


def _rephrase(model: ChatModel, draft: str) -> str:
    instruction = prompts.phrasing_prompt(draft)
    try:
        return model.complete([ChatMessage(role="user", content=instruction)], ()).text.strip()
    except Exception:  # the phrasing model is optional polish; the checked draft still stands
        return ""


def build_graph() -> StateGraph[AgentState, AgentContext, AgentState, AgentState]:
    """The uncompiled graph (compile it with a checkpointer)."""
    graph: StateGraph[AgentState, AgentContext, AgentState, AgentState] = StateGraph(
        AgentState, context_schema=AgentContext
    )
    nodes: dict[str, Callable[..., dict[str, Any]]] = {
        "intake": intake,
        "decide": decide,
        "tools": tools,
        "gate": gate,
        "execute": execute,
        "handoff": handoff,
        "guard": guard,
        "reply": reply,
    }
    for name, fn in nodes.items():
        graph.add_node(name, fn)
    graph.add_edge(START, "intake")
    graph.add_conditional_edges("intake", route_next)
    graph.add_conditional_edges("decide", route_decide)
    graph.add_conditional_edges("tools", route_tools)
    graph.add_conditional_edges("gate", route_next)
    graph.add_conditional_edges("execute", route_next)
    graph.add_edge("handoff", "reply")
    graph.add_edge("guard", "reply")
    graph.add_edge("reply", END)
    return graph


def studio_graph() -> Any:
    """The compiled graph for LangGraph Studio (`langgraph.json`)."""
    return build_graph().compile()

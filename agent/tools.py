"""The tool layer: typed tool functions over the CRM, billing and knowledge base, bound to one customer.

Authorization lives here, not in the model: a conversation belongs to the customer it identified (or the
customer of the API token), and every CRM/billing tool refuses any other customer's user id, order or email.
"""

from __future__ import annotations

import ast
import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.systems.billing import Billing
from agent.systems.crm import ADDRESS_FIELDS, CRM
from agent.tool_specs import BILLING_WRITE_TOOLS, CRM_WRITE_TOOLS, TOOL_SPECS, WRITE_TOOLS
from specialist.errors import InvalidInput, NotFound, SpecialistError, ToolDenied

ANOTHER_CUSTOMER = "I can only help the customer I identified in this conversation, with their own account."


class KnowledgeBaseLike(Protocol):
    """The knowledge-base interface of retrieval.open_knowledge_base (search only)."""

    def search(self, query: str, k: int | None = None, filters: Any = None) -> Sequence[Any]:
        """Passages best matching the query."""
        ...


@dataclass
class Session:
    """Who the conversation belongs to, and what the customer has typed (identity must come from them).

    The one place the agent decides ownership: the customer it identified, else the API token's customer.
    Once either is known, no other customer is served in this conversation (`admits`).
    """

    user_id: str | None = None
    token_user_id: str | None = None
    customer_texts: list[str] = field(default_factory=list)

    @property
    def owner(self) -> str | None:
        """The customer this conversation is bound to, if any yet."""
        return self.user_id or self.token_user_id

    def admits(self, customer_id: str | None) -> bool:
        """Whether `customer_id` may act in this conversation (anyone while it is bound to nobody)."""
        return customer_id is None or self.owner is None or self.owner == customer_id


@dataclass
class ToolOutcome:
    """What a tool call produced: the text the model reads, plus structured extras for the graph."""

    content: str
    ok: bool = True
    data: Any = None
    passages: list[dict[str, Any]] = field(default_factory=list)
    user_id: str | None = None
    error: str = ""  # the refusal's or failure's exception class, for a failed call


def format_result(result: Any) -> str:
    """The compact text a tool result is shown to the model as (the training transcripts use the same)."""
    if isinstance(result, str):
        return result
    return json.dumps(result, separators=(",", ":"), ensure_ascii=False)


def format_error(exc: SpecialistError) -> str:
    """The text a refused or failed tool call is shown to the model as."""
    return f"Error: {exc}"


_SCHEMAS = {spec["function"]["name"]: spec["function"]["parameters"] for spec in TOOL_SPECS}


def check_arguments(name: str, arguments: Any) -> dict[str, Any]:
    """Arguments that match the tool's schema, or InvalidInput saying what is wrong."""
    import jsonschema

    if name not in _SCHEMAS:
        raise InvalidInput(f"There is no tool named {name!r}.")
    if not isinstance(arguments, dict):
        raise InvalidInput(f"The arguments of {name} must be an object.")
    schema = dict(_SCHEMAS[name])
    try:
        jsonschema.validate(arguments, schema)
    except jsonschema.ValidationError as exc:
        raise InvalidInput(f"Bad arguments for {name}: {exc.message}.") from exc
    return {k: arguments[k] for k in schema["properties"]}


_OPS: dict[type, Callable[..., float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def calculate(expression: str) -> float:
    """Evaluate + - * / arithmetic safely (no names, no calls), rounded to cents."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.operand))
        raise InvalidInput("Only numbers and + - * / ( ) are allowed.")

    if len(expression) > 200:
        raise InvalidInput("The expression is too long.")
    try:
        return round(walk(ast.parse(expression.strip(), mode="eval").body), 2)
    except (SyntaxError, ZeroDivisionError) as exc:
        raise InvalidInput(f"Cannot calculate {expression!r}.") from exc


class SupportTools:
    """Every tool the model may call, bound to one conversation's customer."""

    def __init__(self, *, crm: CRM, billing: Billing, kb: KnowledgeBaseLike | None, session: Session) -> None:
        self.crm = crm
        self.billing = billing
        self.kb = kb
        self.session = session

    # --- authorization ------------------------------------------------------------------------------

    def _customer(self) -> str:
        if self.session.user_id is None:
            raise ToolDenied(
                "First I need to identify you: your email, or your first and last name and zip code."
            )
        return self.session.user_id

    def _said_by_customer(self, *values: str) -> None:
        typed = " ".join(self.session.customer_texts).lower()
        if not all(str(v).strip().lower() in typed for v in values):
            raise ToolDenied("I can only identify you with details you give me yourself.")

    def _bind(self, user_id: str) -> str:
        if not self.session.admits(user_id):
            raise ToolDenied(ANOTHER_CUSTOMER)
        self.session.user_id = user_id
        return user_id

    def _own_order(self, order_id: str) -> dict[str, Any]:
        user_id = self._customer()
        try:
            order = self.crm.get_order_details(order_id)
        except NotFound as exc:
            raise NotFound(f"I can't find order {order_id} among your orders.") from exc
        if order["user_id"] != user_id:
            # Same answer as a missing order: never confirm that another customer's order exists.
            raise NotFound(f"I can't find order {order_id} among your orders.")
        return order

    def authorize_write(self, name: str, arguments: dict[str, Any]) -> None:
        """Refuse a write on anything that is not the identified customer's own (before asking for a yes)."""
        if name not in WRITE_TOOLS:
            raise InvalidInput(f"{name} is not a write.")
        if name == "modify_user_address":
            if arguments["user_id"] != self._customer():
                raise ToolDenied(ANOTHER_CUSTOMER)
            return
        order = self._own_order(arguments["order_id"])
        method = arguments.get("payment_method_id")
        if method is not None:
            user = self.crm.get_user_details(order["user_id"])
            if method not in user["payment_methods"]:
                raise ToolDenied(f"{method} is not one of your payment methods.")

    # --- the tools ------------------------------------------------------------------------------------

    def find_user_id_by_email(self, email: str) -> str:
        """Identify the customer by the email they gave."""
        self._said_by_customer(email)
        return self._bind(self.crm.find_user_id_by_email(email))

    def find_user_id_by_name_zip(self, first_name: str, last_name: str, zip: str) -> str:
        """Identify the customer by the name and zip they gave."""
        self._said_by_customer(first_name, last_name, zip)
        return self._bind(self.crm.find_user_id_by_name_zip(first_name, last_name, zip))

    def get_user_details(self, user_id: str) -> dict[str, Any]:
        """The identified customer's own profile."""
        if user_id != self._customer():
            raise ToolDenied(ANOTHER_CUSTOMER)
        return self.crm.get_user_details(user_id)

    def get_order_details(self, order_id: str) -> dict[str, Any]:
        """One of the identified customer's own orders."""
        return self._own_order(order_id)

    def get_product_details(self, product_id: str) -> dict[str, Any]:
        """A product of the public catalogue (an item id or a product name is resolved to its product)."""
        try:
            return self.crm.get_product_details(product_id)
        except NotFound:
            pass
        by_name = {name.lower(): pid for name, pid in self.crm.list_all_product_types().items()}
        if product_id.strip().lower() in by_name:
            return self.crm.get_product_details(by_name[product_id.strip().lower()])
        try:
            item = self.crm.get_item_details(product_id)
        except NotFound as exc:
            raise NotFound(
                f"No product or item {product_id}; product ids come from list_all_product_types."
            ) from exc
        return self.crm.get_product_details(str(item["product_id"]))

    def get_item_details(self, item_id: str) -> dict[str, Any]:
        """A variant item of the public catalogue."""
        return self.crm.get_item_details(item_id)

    def list_all_product_types(self) -> dict[str, str]:
        """The public catalogue's product names and ids."""
        return self.crm.list_all_product_types()

    def search_policies(self, query: str) -> list[Any]:
        """Passages of the store's policies that match the query."""
        if self.kb is None:
            raise NotFound("The policy library is not available right now.")
        return list(self.kb.search(query, k=5))

    def calculate(self, expression: str) -> float:
        """Arithmetic for the customer's amounts."""
        return calculate(expression)

    def write(self, name: str, arguments: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """Perform a confirmed write, once per idempotency key."""
        self.authorize_write(name, arguments)
        system = self.crm if name in CRM_WRITE_TOOLS else self.billing
        result: dict[str, Any] = getattr(system, name)(
            **_system_arguments(name, arguments), idempotency_key=idempotency_key
        )
        return result

    def check_write(self, name: str, arguments: dict[str, Any], *, idempotency_key: str) -> None:
        """Raise what billing would refuse about this write now, changing nothing (CRM writes pass)."""
        self.authorize_write(name, arguments)
        if name in BILLING_WRITE_TOOLS:
            self.billing.check_write(
                name, _system_arguments(name, arguments), idempotency_key=idempotency_key
            )

    # --- dispatch ------------------------------------------------------------------------------------

    def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Run one read tool; refusals and failures come back as an error the model relays."""
        try:
            args = check_arguments(name, arguments)
            if name in WRITE_TOOLS or name == "transfer_to_human_agents":
                raise InvalidInput(f"{name} is handled by the conversation, not run directly.")
            if name == "think":
                return ToolOutcome(content="")
            if name == "search_policies":
                found = self.search_policies(args["query"])
                return ToolOutcome(content="", passages=[_passage_dict(p) for p in found])
            result = getattr(self, name)(**args)
            return ToolOutcome(content=format_result(result), data=result, user_id=self.session.user_id)
        except SpecialistError as exc:
            return ToolOutcome(content=format_error(exc), ok=False, error=type(exc).__name__)


def _system_arguments(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The system method's keyword arguments for a tool call: the address fields become one `address`."""
    if name in {"modify_user_address", "modify_pending_order_address"}:
        owner = "user_id" if name == "modify_user_address" else "order_id"
        return {
            owner: arguments[owner],
            "address": {f: arguments[f] for f in ADDRESS_FIELDS if f in arguments},
        }
    return dict(arguments)


def _passage_dict(passage: Any) -> dict[str, Any]:
    citation = passage.citation
    return {
        "text": str(passage.text),
        "score": float(passage.score),
        "chunk_id": str(getattr(passage, "chunk_id", "")),
        "doc_id": str(citation.doc_id),
        "title": str(citation.title),
        "section": str(citation.section),
        "version": int(citation.version),
    }

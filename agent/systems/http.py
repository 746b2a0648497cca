"""HTTP adapters (clients) for the CRM and billing systems; `agent.systems.server` serves the same contract.

Contract (JSON over HTTP, one route per operation):
  POST {base}/crm/v1/{operation}      body: the operation's arguments as an object
  POST {base}/billing/v1/{operation}  body: the arguments; header `Idempotency-Key` makes a write idempotent
  200 -> {"result": <value>}
  4xx/5xx -> {"error": {"type": "PolicyViolation" | "NotFound" | "InvalidInput" | ..., "message": "..."}}
Operations: the method names of `agent.systems.crm.CRM` and `agent.systems.billing.Billing`; addresses are
passed as {"address": {...}}, id lists as JSON arrays.
"""

from __future__ import annotations

from typing import Any

import httpx

from agent.tool_specs import BILLING_WRITE_TOOLS, CRM_WRITE_TOOLS, WRITE_TOOLS
from specialist import errors
from specialist.errors import BackendUnavailable, SpecialistError

CRM_OPERATIONS = (
    "find_user_id_by_email",
    "find_user_id_by_name_zip",
    "get_user_details",
    "get_order_details",
    "get_product_details",
    "get_item_details",
    "list_all_product_types",
    *CRM_WRITE_TOOLS,
)
BILLING_OPERATIONS = (*BILLING_WRITE_TOOLS, "refund_amount", "check_write")
WRITES = WRITE_TOOLS  # the operations that take an Idempotency-Key


class _HttpSystem:
    def __init__(
        self, base_url: str, prefix: str, *, timeout_s: float = 10.0, client: httpx.Client | None = None
    ):
        self._client = client or httpx.Client(timeout=timeout_s)
        self._url = base_url.rstrip("/") + prefix

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def _call(self, operation: str, body: dict[str, Any], idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        try:
            response = self._client.post(f"{self._url}/{operation}", json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"The {operation} service cannot be reached; try again later.") from exc
        try:
            payload = response.json()
        except ValueError as exc:
            raise BackendUnavailable(
                f"The {operation} service answered with something that is not JSON."
            ) from exc
        if response.status_code >= 400 or "error" in payload:
            err = payload.get("error") or {}
            cls = getattr(errors, str(err.get("type", "")), None)
            if not (isinstance(cls, type) and issubclass(cls, SpecialistError)):
                cls = BackendUnavailable if response.status_code >= 500 else SpecialistError
            raise cls(str(err.get("message", f"{operation} failed with HTTP {response.status_code}.")))
        return payload["result"]


class HttpCRM(_HttpSystem):
    """The CRM interface over HTTP."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, client: httpx.Client | None = None):
        super().__init__(base_url, "/crm/v1", timeout_s=timeout_s, client=client)

    def find_user_id_by_email(self, email: str) -> str:
        """The user id with this email, or NotFound."""
        return str(self._call("find_user_id_by_email", {"email": email}))

    def find_user_id_by_name_zip(self, first_name: str, last_name: str, zip: str) -> str:
        """The user id with this name and zip, or NotFound."""
        body = {"first_name": first_name, "last_name": last_name, "zip": zip}
        return str(self._call("find_user_id_by_name_zip", body))

    def get_user_details(self, user_id: str) -> dict[str, Any]:
        """Profile, default address, payment methods and order ids."""
        return dict(self._call("get_user_details", {"user_id": user_id}))

    def get_order_details(self, order_id: str) -> dict[str, Any]:
        """An order with items, status, fulfilments and payment history."""
        return dict(self._call("get_order_details", {"order_id": order_id}))

    def get_product_details(self, product_id: str) -> dict[str, Any]:
        """A product with its variant items."""
        return dict(self._call("get_product_details", {"product_id": product_id}))

    def get_item_details(self, item_id: str) -> dict[str, Any]:
        """One variant item with its product's name and id."""
        return dict(self._call("get_item_details", {"item_id": item_id}))

    def list_all_product_types(self) -> dict[str, str]:
        """Product name -> product id."""
        return dict(self._call("list_all_product_types", {}))

    def modify_user_address(
        self, user_id: str, address: dict[str, str], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Change a user's default address; returns the user."""
        body = {"user_id": user_id, "address": address}
        return dict(self._call("modify_user_address", body, idempotency_key))


class HttpBilling(_HttpSystem):
    """The billing interface over HTTP."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, client: httpx.Client | None = None):
        super().__init__(base_url, "/billing/v1", timeout_s=timeout_s, client=client)

    def cancel_pending_order(
        self, order_id: str, reason: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Cancel a pending order and refund its payments."""
        return dict(
            self._call("cancel_pending_order", {"order_id": order_id, "reason": reason}, idempotency_key)
        )

    def modify_pending_order_address(
        self, order_id: str, address: dict[str, str], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Change the shipping address of a pending order."""
        body = {"order_id": order_id, "address": address}
        return dict(self._call("modify_pending_order_address", body, idempotency_key))

    def modify_pending_order_items(
        self,
        order_id: str,
        item_ids: list[str],
        new_item_ids: list[str],
        payment_method_id: str,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Swap items of a pending order for other variants of the same products (once)."""
        body = {
            "order_id": order_id,
            "item_ids": item_ids,
            "new_item_ids": new_item_ids,
            "payment_method_id": payment_method_id,
        }
        return dict(self._call("modify_pending_order_items", body, idempotency_key))

    def modify_pending_order_payment(
        self, order_id: str, payment_method_id: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Pay a pending order with another of the customer's payment methods."""
        body = {"order_id": order_id, "payment_method_id": payment_method_id}
        return dict(self._call("modify_pending_order_payment", body, idempotency_key))

    def return_delivered_order_items(
        self,
        order_id: str,
        item_ids: list[str],
        payment_method_id: str,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Request the return of delivered items, refunded to the original method or a gift card."""
        body = {"order_id": order_id, "item_ids": item_ids, "payment_method_id": payment_method_id}
        return dict(self._call("return_delivered_order_items", body, idempotency_key))

    def exchange_delivered_order_items(
        self,
        order_id: str,
        item_ids: list[str],
        new_item_ids: list[str],
        payment_method_id: str,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Request the exchange of delivered items for other variants of the same products."""
        body = {
            "order_id": order_id,
            "item_ids": item_ids,
            "new_item_ids": new_item_ids,
            "payment_method_id": payment_method_id,
        }
        return dict(self._call("exchange_delivered_order_items", body, idempotency_key))

    def refund_amount(self, tool: str, arguments: dict[str, Any]) -> float:
        """How much money this write would refund (for the human-approval threshold)."""
        return float(self._call("refund_amount", {"tool": tool, "arguments": arguments}))

    def check_write(
        self, tool: str, arguments: dict[str, Any], *, idempotency_key: str | None = None
    ) -> None:
        """Raise the error this write would raise now, changing nothing."""
        body = {"tool": tool, "arguments": arguments, "idempotency_key": idempotency_key}
        self._call("check_write", body)

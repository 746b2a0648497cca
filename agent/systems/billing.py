"""Billing and orders: cancel, modify, return and exchange, with the store's policy enforced here."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol, runtime_checkable

from agent.store.database import RetailDatabase
from agent.systems.crm import check_address
from agent.tool_specs import BILLING_WRITE_TOOLS
from specialist.errors import InvalidInput, PolicyViolation

CANCEL_REASONS = ("no longer needed", "ordered by mistake")
WRITE_OPERATIONS = BILLING_WRITE_TOOLS  # the writes billing owns
_DRY_RUN: ContextVar[bool] = ContextVar("billing_dry_run", default=False)


class _RolledBack(Exception):
    """Ends a dry run's transaction: everything it changed is rolled back."""


@runtime_checkable
class Billing(Protocol):
    """What the agent needs from billing; every method is idempotent under `idempotency_key`."""

    def cancel_pending_order(
        self, order_id: str, reason: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Cancel a pending order and refund its payments."""
        ...

    def modify_pending_order_address(
        self, order_id: str, address: dict[str, str], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Change the shipping address of a pending order."""
        ...

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
        ...

    def modify_pending_order_payment(
        self, order_id: str, payment_method_id: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Pay a pending order with another of the customer's payment methods."""
        ...

    def return_delivered_order_items(
        self,
        order_id: str,
        item_ids: list[str],
        payment_method_id: str,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Request the return of delivered items, refunded to the original method or a gift card."""
        ...

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
        ...

    def refund_amount(self, tool: str, arguments: dict[str, Any]) -> float:
        """How much money this write would refund (for the human-approval threshold)."""
        ...

    def check_write(
        self, tool: str, arguments: dict[str, Any], *, idempotency_key: str | None = None
    ) -> None:
        """Raise the error this write would raise now, changing nothing (a write already done under
        `idempotency_key` passes: repeating it returns the recorded result)."""
        ...


_REFUNDING = frozenset(
    ["cancel_pending_order", "return_delivered_order_items", "modify_pending_order_payment"]
)


def _require_status(order: dict[str, Any], status: str, action: str) -> None:
    if order["status"] != status:
        raise PolicyViolation(
            f"Order {order['order_id']} is '{order['status']}'; only {status} orders can be {action}."
        )


def _require_items(order: dict[str, Any], item_ids: list[str]) -> None:
    if not item_ids:
        raise InvalidInput("Name at least one item.")
    have = Counter(item["item_id"] for item in order["items"])
    for item_id, count in Counter(item_ids).items():
        if have[item_id] < count:
            raise PolicyViolation(f"Item {item_id} is not in order {order['order_id']}.")


def _payment_method(user: dict[str, Any], payment_method_id: str) -> dict[str, Any]:
    method = user["payment_methods"].get(payment_method_id)
    if method is None:
        raise PolicyViolation(
            f"Payment method {payment_method_id} is not one of the customer's payment methods."
        )
    return dict(method)


def _price(order: dict[str, Any], item_id: str) -> float:
    return float(next(item["price"] for item in order["items"] if item["item_id"] == item_id))


class SqliteBilling:
    """Billing over the SQLite demo store; each rule of the store policy is checked before any write."""

    def __init__(self, db: RetailDatabase) -> None:
        self.db = db

    # --- the write protocol: check, change, record under the idempotency key, in one transaction -------

    def _write(
        self,
        tool: str,
        arguments: dict[str, Any],
        key: str | None,
        change: Callable[[sqlite3.Connection], dict[str, Any]],
    ) -> dict[str, Any]:
        with self.db.transaction() as conn:
            if key is not None and (done := self.db.recorded_action(key)) is not None:
                return dict(done)
            result = change(conn)
            if _DRY_RUN.get():
                raise _RolledBack
            if key is not None:
                self.db.record_action(conn, key=key, tool=tool, arguments=arguments, result=result)
        return result

    def check_write(
        self, tool: str, arguments: dict[str, Any], *, idempotency_key: str | None = None
    ) -> None:
        """Raise the error this write would raise now, changing nothing.

        The write runs with all its checks inside a transaction that is then rolled back, so the check
        and the write can never disagree.
        """
        if tool not in WRITE_OPERATIONS:
            raise InvalidInput(f"{tool} is not a billing write.")
        token = _DRY_RUN.set(True)
        try:
            getattr(self, tool)(**arguments, idempotency_key=idempotency_key)
        except _RolledBack:
            pass
        except TypeError as exc:
            raise InvalidInput(f"Bad arguments for {tool}: {exc}") from None
        finally:
            _DRY_RUN.reset(token)

    def _adjust_gift_card(self, conn: sqlite3.Connection, user_id: str, method_id: str, delta: float) -> None:
        user = self.db.get_user(user_id)
        method = user["payment_methods"][method_id]
        if method["source"] != "gift_card":
            return
        method["balance"] = round(float(method["balance"]) + delta, 2)
        self.db.put_user(conn, user_id, user)

    # --- the operations -----------------------------------------------------------------------------

    def cancel_pending_order(
        self, order_id: str, reason: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Cancel a pending order and refund its payments."""
        if reason not in CANCEL_REASONS:
            raise PolicyViolation("The reason must be 'no longer needed' or 'ordered by mistake'.")

        def change(conn: sqlite3.Connection) -> dict[str, Any]:
            order = self.db.get_order(order_id)
            _require_status(order, "pending", "cancelled")
            refunds = [
                {
                    "transaction_type": "refund",
                    "amount": p["amount"],
                    "payment_method_id": p["payment_method_id"],
                }
                for p in order["payment_history"]
                if p["transaction_type"] == "payment"
            ]
            for refund in refunds:
                self._adjust_gift_card(conn, order["user_id"], refund["payment_method_id"], refund["amount"])
            order["payment_history"].extend(refunds)
            order["status"] = "cancelled"
            order["cancel_reason"] = reason
            self.db.put_order(conn, order)
            return order

        return self._write(
            "cancel_pending_order", {"order_id": order_id, "reason": reason}, idempotency_key, change
        )

    def modify_pending_order_address(
        self, order_id: str, address: dict[str, str], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Change the shipping address of a pending order."""
        clean = check_address(address)

        def change(conn: sqlite3.Connection) -> dict[str, Any]:
            order = self.db.get_order(order_id)
            _require_status(order, "pending", "modified")
            order["address"] = clean
            self.db.put_order(conn, order)
            return order

        return self._write(
            "modify_pending_order_address", {"order_id": order_id, **clean}, idempotency_key, change
        )

    def _swap_checks(
        self, order: dict[str, Any], item_ids: list[str], new_item_ids: list[str], payment_method_id: str
    ) -> tuple[float, dict[str, Any]]:
        _require_items(order, item_ids)
        if len(item_ids) != len(new_item_ids):
            raise InvalidInput("Give one new item for each item to change.")
        diff = 0.0
        for old_id, new_id in zip(item_ids, new_item_ids, strict=True):
            product = self.db.product_of_item(old_id)
            variant = product["variants"].get(new_id)
            if variant is None:
                raise PolicyViolation(
                    f"Item {new_id} is not a variant of {product['name']}; items stay within a product."
                )
            if not variant["available"]:
                raise PolicyViolation(f"Item {new_id} is not available.")
            diff += float(variant["price"]) - _price(order, old_id)
        user = self.db.get_user(order["user_id"])
        method = _payment_method(user, payment_method_id)
        diff = round(diff, 2)
        if method["source"] == "gift_card" and float(method["balance"]) < diff:
            raise PolicyViolation(
                f"Gift card {payment_method_id} does not cover the price difference of {diff:.2f}."
            )
        return diff, method

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

        def change(conn: sqlite3.Connection) -> dict[str, Any]:
            order = self.db.get_order(order_id)
            if order["status"] == "pending (item modified)":
                raise PolicyViolation(f"The items of order {order_id} were already modified once.")
            _require_status(order, "pending", "modified")
            diff, _ = self._swap_checks(order, item_ids, new_item_ids, payment_method_id)
            for old_id, new_id in zip(item_ids, new_item_ids, strict=True):
                item = next(i for i in order["items"] if i["item_id"] == old_id)
                variant = self.db.product_of_item(old_id)["variants"][new_id]
                item.update(item_id=new_id, price=variant["price"], options=dict(variant["options"]))
            order["payment_history"].append(
                {
                    "transaction_type": "payment" if diff > 0 else "refund",
                    "amount": abs(diff),
                    "payment_method_id": payment_method_id,
                }
            )
            self._adjust_gift_card(conn, order["user_id"], payment_method_id, -diff)
            order["status"] = "pending (item modified)"
            self.db.put_order(conn, order)
            return order

        args = {
            "order_id": order_id,
            "item_ids": item_ids,
            "new_item_ids": new_item_ids,
            "payment_method_id": payment_method_id,
        }
        return self._write("modify_pending_order_items", args, idempotency_key, change)

    def modify_pending_order_payment(
        self, order_id: str, payment_method_id: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Pay a pending order with another of the customer's payment methods."""

        def change(conn: sqlite3.Connection) -> dict[str, Any]:
            order = self.db.get_order(order_id)
            _require_status(order, "pending", "modified")
            payments = order["payment_history"]
            if len(payments) != 1 or payments[0]["transaction_type"] != "payment":
                raise PolicyViolation(f"The payment of order {order_id} can no longer be changed.")
            old = payments[0]
            if old["payment_method_id"] == payment_method_id:
                raise PolicyViolation("The new payment method must differ from the current one.")
            method = _payment_method(self.db.get_user(order["user_id"]), payment_method_id)
            amount = float(old["amount"])
            if method["source"] == "gift_card" and float(method["balance"]) < amount:
                raise PolicyViolation(
                    f"Gift card {payment_method_id} does not cover the order total {amount:.2f}."
                )
            payments.extend(
                [
                    {"transaction_type": "payment", "amount": amount, "payment_method_id": payment_method_id},
                    {
                        "transaction_type": "refund",
                        "amount": amount,
                        "payment_method_id": old["payment_method_id"],
                    },
                ]
            )
            self._adjust_gift_card(conn, order["user_id"], payment_method_id, -amount)
            self._adjust_gift_card(conn, order["user_id"], old["payment_method_id"], amount)
            self.db.put_order(conn, order)
            return order

        args = {"order_id": order_id, "payment_method_id": payment_method_id}
        return self._write("modify_pending_order_payment", args, idempotency_key, change)

    def return_delivered_order_items(
        self,
        order_id: str,
        item_ids: list[str],
        payment_method_id: str,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Request the return of delivered items, refunded to the original method or a gift card."""

        def change(conn: sqlite3.Connection) -> dict[str, Any]:
            order = self.db.get_order(order_id)
            _require_status(order, "delivered", "returned")
            _require_items(order, item_ids)
            method = _payment_method(self.db.get_user(order["user_id"]), payment_method_id)
            original = order["payment_history"][0]["payment_method_id"]
            if payment_method_id != original and method["source"] != "gift_card":
                raise PolicyViolation(
                    f"Refunds go to the original payment method ({original}) or an existing gift card."
                )
            order["status"] = "return requested"
            order["return_items"] = sorted(item_ids)
            order["return_payment_method_id"] = payment_method_id
            self.db.put_order(conn, order)
            return order

        args = {"order_id": order_id, "item_ids": item_ids, "payment_method_id": payment_method_id}
        return self._write("return_delivered_order_items", args, idempotency_key, change)

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

        def change(conn: sqlite3.Connection) -> dict[str, Any]:
            order = self.db.get_order(order_id)
            _require_status(order, "delivered", "exchanged")
            diff, _ = self._swap_checks(order, item_ids, new_item_ids, payment_method_id)
            order["status"] = "exchange requested"
            order["exchange_items"] = sorted(item_ids)
            order["exchange_new_items"] = sorted(new_item_ids)
            order["exchange_payment_method_id"] = payment_method_id
            order["exchange_price_difference"] = diff
            self.db.put_order(conn, order)
            return order

        args = {
            "order_id": order_id,
            "item_ids": item_ids,
            "new_item_ids": new_item_ids,
            "payment_method_id": payment_method_id,
        }
        return self._write("exchange_delivered_order_items", args, idempotency_key, change)

    def refund_amount(self, tool: str, arguments: dict[str, Any]) -> float:
        """How much money this write would refund (for the human-approval threshold)."""
        if (
            tool not in _REFUNDING
        ):  # an address or item change refunds nothing here (nor has an order to read)
            return 0.0
        order = self.db.get_order(str(arguments.get("order_id", "")))
        if tool == "cancel_pending_order":
            return round(
                sum(p["amount"] for p in order["payment_history"] if p["transaction_type"] == "payment"), 2
            )
        if tool == "return_delivered_order_items":
            ids = [str(i) for i in arguments.get("item_ids") or []]
            return round(
                sum(_price(order, i) for i in ids if any(x["item_id"] == i for x in order["items"])), 2
            )
        if tool == "modify_pending_order_payment":
            return round(float(order["payment_history"][0]["amount"]), 2)
        return 0.0

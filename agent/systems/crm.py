"""The CRM: identify a customer; user, order, product and item details; change the default address."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from agent.store.database import RetailDatabase
from specialist.errors import InvalidInput, NotFound

ADDRESS_FIELDS = ("address1", "address2", "city", "state", "country", "zip")


@runtime_checkable
class CRM(Protocol):
    """What the agent needs from a CRM; a real one can be plugged in behind this interface."""

    def find_user_id_by_email(self, email: str) -> str:
        """The user id with this email, or NotFound."""
        ...

    def find_user_id_by_name_zip(self, first_name: str, last_name: str, zip: str) -> str:
        """The user id with this name and zip, or NotFound."""
        ...

    def get_user_details(self, user_id: str) -> dict[str, Any]:
        """Profile, default address, payment methods and order ids."""
        ...

    def get_order_details(self, order_id: str) -> dict[str, Any]:
        """An order with items, status, fulfilments and payment history."""
        ...

    def get_product_details(self, product_id: str) -> dict[str, Any]:
        """A product with its variant items."""
        ...

    def get_item_details(self, item_id: str) -> dict[str, Any]:
        """One variant item with its product's name and id."""
        ...

    def list_all_product_types(self) -> dict[str, str]:
        """Product name -> product id."""
        ...

    def modify_user_address(
        self, user_id: str, address: dict[str, str], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Change a user's default address; returns the user."""
        ...


def check_address(address: dict[str, Any]) -> dict[str, str]:
    """A complete address with string fields, or InvalidInput."""
    missing = [f for f in ADDRESS_FIELDS if f not in address]
    if missing:
        raise InvalidInput(f"The address lacks {', '.join(missing)}.")
    clean = {f: str(address[f]).strip() for f in ADDRESS_FIELDS}
    if not all(clean[f] for f in ADDRESS_FIELDS if f != "address2"):
        raise InvalidInput("Address line 1, city, state, country and zip must not be empty.")
    return clean


class SqliteCRM:
    """The CRM over the SQLite demo store."""

    def __init__(self, db: RetailDatabase) -> None:
        self.db = db

    def find_user_id_by_email(self, email: str) -> str:
        """The user id with this email, or NotFound."""
        ids = self.db.find_user_ids(email=email)
        if not ids:
            raise NotFound("No customer has that email.")
        return ids[0]

    def find_user_id_by_name_zip(self, first_name: str, last_name: str, zip: str) -> str:
        """The user id with this name and zip, or NotFound."""
        ids = self.db.find_user_ids(name_zip=(first_name, last_name, zip))
        if not ids:
            raise NotFound("No customer has that name and zip code.")
        return ids[0]

    def get_user_details(self, user_id: str) -> dict[str, Any]:
        """Profile, default address, payment methods and order ids."""
        return self.db.get_user(user_id)

    def get_order_details(self, order_id: str) -> dict[str, Any]:
        """An order with items, status, fulfilments and payment history."""
        return self.db.get_order(order_id.strip())

    def get_product_details(self, product_id: str) -> dict[str, Any]:
        """A product with its variant items."""
        return self.db.get_product(product_id.strip())

    def get_item_details(self, item_id: str) -> dict[str, Any]:
        """One variant item with its product's name and id."""
        product = self.db.product_of_item(item_id.strip())
        variant = dict(product["variants"][item_id.strip()])
        return {**variant, "product_id": product["product_id"], "name": product["name"]}

    def list_all_product_types(self) -> dict[str, str]:
        """Product name -> product id."""
        return self.db.product_list()

    def modify_user_address(
        self, user_id: str, address: dict[str, str], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Change a user's default address; returns the user."""
        clean = check_address(address)
        with self.db.transaction() as conn:
            if idempotency_key is not None and (done := self.db.recorded_action(idempotency_key)) is not None:
                return dict(done)
            user = self.db.get_user(user_id)
            user["address"] = clean
            self.db.put_user(conn, user_id, user)
            if idempotency_key is not None:
                self.db.record_action(
                    conn,
                    key=idempotency_key,
                    tool="modify_user_address",
                    arguments={"user_id": user_id, **clean},
                    result=user,
                )
        return user

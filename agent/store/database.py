"""The demo store in SQLite: users, orders, products (each row keeps its retail-format JSON), plus the
agent's own records (idempotent actions, tickets, approvals)."""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from specialist.errors import InvalidInput, NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY, email TEXT NOT NULL, first_name TEXT NOT NULL, last_name TEXT NOT NULL,
    zip TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS users_email ON users (lower(email));
CREATE INDEX IF NOT EXISTS users_name_zip ON users (lower(first_name), lower(last_name), zip);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, status TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS orders_user ON orders (user_id);
CREATE TABLE IF NOT EXISTS products (product_id TEXT PRIMARY KEY, name TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (item_id TEXT PRIMARY KEY, product_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
    idempotency_key TEXT PRIMARY KEY, tool TEXT NOT NULL, arguments TEXT NOT NULL, result TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tickets (
    ticket_id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, user_id TEXT, summary TEXT NOT NULL,
    status TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, tool TEXT NOT NULL, arguments TEXT NOT NULL,
    amount REAL NOT NULL, status TEXT NOT NULL, reviewer TEXT, created_at REAL NOT NULL,
    decided_at REAL);
"""

KINDS = ("users", "orders", "products")


class RetailDatabase:
    """One SQLite file holding the demo store; safe to share between threads."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together or not at all."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read query."""
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    # --- loading and exporting -------------------------------------------------------------------

    def replace_all(self, data: dict[str, Any]) -> dict[str, int]:
        """Replace users, orders and products with `data` (retail JSON format); agent records stay."""
        validate_data(data)
        with self.transaction() as conn:
            for table in ("users", "orders", "products", "items"):
                conn.execute(f"DELETE FROM {table}")
            for user_id, user in data["users"].items():
                self._put_user(conn, user_id, user)
            for order in data["orders"].values():
                self._put_order(conn, order)
            for product in data["products"].values():
                conn.execute(
                    "INSERT INTO products VALUES (?, ?, ?)",
                    (product["product_id"], product["name"], json.dumps(product)),
                )
                for item_id in product["variants"]:
                    conn.execute("INSERT INTO items VALUES (?, ?)", (item_id, product["product_id"]))
        return {kind: len(data[kind]) for kind in KINDS}

    def export(self) -> dict[str, Any]:
        """The whole store in the retail JSON format."""
        return {
            "users": {uid: json.loads(d) for uid, d in self.query("SELECT user_id, data FROM users")},
            "orders": {oid: json.loads(d) for oid, d in self.query("SELECT order_id, data FROM orders")},
            "products": {
                pid: json.loads(d) for pid, d in self.query("SELECT product_id, data FROM products")
            },
        }

    def copy_to(self, path: Path | str) -> RetailDatabase:
        """A consistent copy of the whole store in another file (SQLite backup; safe under WAL)."""
        target = RetailDatabase(path)
        with self._lock:
            self._conn.backup(target._conn)
        return target

    def counts(self) -> dict[str, int]:
        """How many users, orders and products the store holds."""
        return {kind: int(self.query(f"SELECT count(*) FROM {kind}")[0][0]) for kind in KINDS}

    # --- records -----------------------------------------------------------------------------------

    def get_user(self, user_id: str) -> dict[str, Any]:
        """A user's record, or NotFound."""
        rows = self.query("SELECT data FROM users WHERE user_id = ?", (user_id,))
        if not rows:
            raise NotFound(f"User {user_id} not found.")
        return dict(json.loads(rows[0][0]))

    def get_order(self, order_id: str) -> dict[str, Any]:
        """An order's record, or NotFound."""
        rows = self.query("SELECT data FROM orders WHERE order_id = ?", (order_id,))
        if not rows:
            raise NotFound(f"Order {order_id} not found.")
        return dict(json.loads(rows[0][0]))

    def get_product(self, product_id: str) -> dict[str, Any]:
        """A product with its variants, or NotFound."""
        rows = self.query("SELECT data FROM products WHERE product_id = ?", (product_id,))
        if not rows:
            raise NotFound(f"Product {product_id} not found.")
        return dict(json.loads(rows[0][0]))

    def product_of_item(self, item_id: str) -> dict[str, Any]:
        """The product that has variant `item_id`, or NotFound."""
        rows = self.query("SELECT product_id FROM items WHERE item_id = ?", (item_id,))
        if not rows:
            raise NotFound(f"Item {item_id} not found.")
        return self.get_product(rows[0][0])

    def find_user_ids(
        self, *, email: str | None = None, name_zip: tuple[str, str, str] | None = None
    ) -> list[str]:
        """User ids matching an email, or a first name + last name + zip."""
        if email is not None:
            rows = self.query("SELECT user_id FROM users WHERE lower(email) = lower(?)", (email.strip(),))
        elif name_zip is not None:
            first, last, zip_code = (v.strip() for v in name_zip)
            rows = self.query(
                "SELECT user_id FROM users WHERE lower(first_name) = lower(?) AND lower(last_name) = lower(?)"
                " AND zip = ?",
                (first, last, zip_code),
            )
        else:
            raise InvalidInput("Give an email or a name and zip.")
        return [r[0] for r in rows]

    def product_list(self) -> dict[str, str]:
        """Product name -> product id."""
        return {name: pid for pid, name in self.query("SELECT product_id, name FROM products ORDER BY name")}

    def put_user(self, conn: sqlite3.Connection, user_id: str, user: dict[str, Any]) -> None:
        """Write a user inside a transaction."""
        self._put_user(conn, user_id, user)

    def put_order(self, conn: sqlite3.Connection, order: dict[str, Any]) -> None:
        """Write an order inside a transaction."""
        self._put_order(conn, order)

    @staticmethod
    def _put_user(conn: sqlite3.Connection, user_id: str, user: dict[str, Any]) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?, ?, ?)",
            (
                user_id,
                user["email"],
                user["name"]["first_name"],
                user["name"]["last_name"],
                str(user["address"]["zip"]),
                json.dumps(user),
            ),
        )

    @staticmethod
    def _put_order(conn: sqlite3.Connection, order: dict[str, Any]) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?)",
            (order["order_id"], order["user_id"], order["status"], json.dumps(order)),
        )

    # --- idempotent actions ----------------------------------------------------------------------

    def recorded_action(self, key: str) -> Any | None:
        """The stored result of an action already done under this idempotency key, else None."""
        rows = self.query("SELECT result FROM actions WHERE idempotency_key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    @staticmethod
    def record_action(
        conn: sqlite3.Connection, *, key: str, tool: str, arguments: dict[str, Any], result: Any
    ) -> None:
        """Store an action's result under its idempotency key, inside the write's own transaction."""
        conn.execute(
            "INSERT INTO actions VALUES (?, ?, ?, ?, ?)",
            (key, tool, json.dumps(arguments, sort_keys=True), json.dumps(result), time.time()),
        )

    def action_count(self, tool: str | None = None) -> int:
        """How many writes were done (optionally of one tool)."""
        if tool is None:
            return int(self.query("SELECT count(*) FROM actions")[0][0])
        return int(self.query("SELECT count(*) FROM actions WHERE tool = ?", (tool,))[0][0])


def validate_data(data: Any) -> None:
    """Refuse data that is not in the retail JSON format, saying what is wrong."""
    if not isinstance(data, dict) or any(not isinstance(data.get(k), dict) for k in KINDS):
        raise InvalidInput("Store data must be an object with 'users', 'orders' and 'products' objects.")
    required = {
        "users": ("name", "address", "email", "payment_methods", "orders"),
        "orders": ("order_id", "user_id", "address", "items", "fulfillments", "status", "payment_history"),
        "products": ("name", "product_id", "variants"),
    }
    for kind, fields in required.items():
        for key, record in data[kind].items():
            missing = [f for f in fields if not isinstance(record, dict) or f not in record]
            if missing:
                raise InvalidInput(f"{kind} record {key!r} lacks {', '.join(missing)}.")
    for order_id, order in data["orders"].items():
        if order["user_id"] not in data["users"]:
            raise InvalidInput(f"Order {order_id} belongs to unknown user {order['user_id']}.")


def load_json_dir(directory: Path | str) -> dict[str, Any]:
    """Read users/orders/products from a folder of `<kind>.json` or `<kind>.json.gz` files."""
    folder = Path(directory)
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder.")
    data: dict[str, Any] = {}
    for kind in KINDS:
        plain, packed = folder / f"{kind}.json", folder / f"{kind}.json.gz"
        try:
            if packed.exists():
                with gzip.open(packed, "rt", encoding="utf-8") as fh:
                    data[kind] = json.load(fh)
            elif plain.exists():
                data[kind] = json.loads(plain.read_text(encoding="utf-8"))
            else:
                raise InvalidInput(f"{folder} has no {kind}.json or {kind}.json.gz.")
        except (OSError, json.JSONDecodeError, EOFError) as exc:
            raise InvalidInput(f"Cannot read {kind} from {folder}: {exc}") from exc
    validate_data(data)
    return data


def write_json_dir(data: dict[str, Any], directory: Path | str, *, compress: bool = False) -> None:
    """Write data in the retail folder format."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        text = json.dumps(data[kind], indent=1)
        if compress:
            with gzip.open(folder / f"{kind}.json.gz", "wt", encoding="utf-8") as fh:
                fh.write(text)
        else:
            (folder / f"{kind}.json").write_text(text, encoding="utf-8")


class AgentRecords:
    """The agent's own records in the store file: hand-off tickets and refund approvals."""

    def __init__(self, db: RetailDatabase) -> None:
        self.db = db

    def create_ticket(
        self, *, ticket_id: str, conversation_id: str, user_id: str | None, summary: str
    ) -> None:
        """Open a hand-off ticket (once per id)."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO tickets VALUES (?, ?, ?, ?, 'open', ?)",
                (ticket_id, conversation_id, user_id, summary, time.time()),
            )

    def tickets(self) -> list[dict[str, Any]]:
        """Every ticket, oldest first."""
        rows = self.db.query(
            "SELECT ticket_id, conversation_id, user_id, summary, status, created_at"
            " FROM tickets ORDER BY created_at"
        )
        keys = ("ticket_id", "conversation_id", "user_id", "summary", "status", "created_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def create_approval(
        self, *, approval_id: str, conversation_id: str, tool: str, arguments: dict[str, Any], amount: float
    ) -> None:
        """Ask for a human decision on a refund (once per id)."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO approvals VALUES (?, ?, ?, ?, ?, 'pending', NULL, ?, NULL)",
                (approval_id, conversation_id, tool, json.dumps(arguments), amount, time.time()),
            )

    def approvals(self, status: str | None = None) -> list[dict[str, Any]]:
        """Approvals (optionally only those with one status), oldest first."""
        sql = (
            "SELECT approval_id, conversation_id, tool, arguments, amount, status, reviewer,"
            " created_at, decided_at FROM approvals"
        )
        rows = self.db.query(
            sql + (" WHERE status = ?" if status else "") + " ORDER BY created_at",
            (status,) if status else (),
        )
        keys = (
            "approval_id",
            "conversation_id",
            "tool",
            "arguments",
            "amount",
            "status",
            "reviewer",
            "created_at",
            "decided_at",
        )
        out = [dict(zip(keys, row, strict=True)) for row in rows]
        for record in out:
            record["arguments"] = json.loads(record["arguments"])
        return out

    def approval(self, approval_id: str) -> dict[str, Any]:
        """One approval, or NotFound."""
        for record in self.approvals():
            if record["approval_id"] == approval_id:
                return record
        raise NotFound(f"Approval {approval_id} not found.")

    def decide_approval(self, approval_id: str, *, approved: bool, reviewer: str) -> None:
        """Record a reviewer's decision on a pending approval."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE approvals SET status = ?, reviewer = ?, decided_at = ? WHERE approval_id = ?"
                " AND status = 'pending'",
                ("approved" if approved else "rejected", reviewer, time.time(), approval_id),
            )

"""API keys carrying a role (customer bound to one customer id, content_owner, engineer), stored hashed."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

from serve.state import StateDB
from specialist.errors import InvalidInput, NotFound, Unauthorized

KEY_PREFIX = "spk_"
_CACHE_TTL_S = 30.0


class Role(StrEnum):
    """Who a key belongs to; each route names the roles it admits."""

    customer = "customer"
    content_owner = "content_owner"
    engineer = "engineer"


@dataclass(frozen=True)
class Principal:
    """The caller behind a verified key."""

    key_id: str
    role: Role
    customer_id: str | None = None
    name: str = ""


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key: the secret is shown once and never stored."""

    secret: str
    principal: Principal


def hash_key(secret: str) -> str:
    """SHA-256 of a key (keys are 256-bit random, so a fast hash is enough; no salt needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """Creates, verifies and revokes API keys; only hashes reach the database."""

    def __init__(self, db: StateDB) -> None:
        self._db = db
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def create(self, *, role: Role | str, customer_id: str | None = None, name: str = "") -> IssuedKey:
        """Issue a key; a customer key must name its customer id, other roles must not."""
        try:
            role = Role(role)
        except ValueError as exc:
            raise InvalidInput(
                f"unknown role {role!r}; use one of {', '.join(r.value for r in Role)}"
            ) from exc
        if role is Role.customer and not customer_id:
            raise InvalidInput("a customer key needs --customer-id (the customer it is bound to)")
        if role is not Role.customer and customer_id:
            raise InvalidInput("only customer keys are bound to a customer id")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        principal = Principal(key_id=uuid.uuid4().hex[:12], role=role, customer_id=customer_id, name=name)
        with self._db.connect() as conn:
            conn.execute(
                "INSERT INTO api_keys (id, key_hash, role, customer_id, name, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (principal.key_id, hash_key(secret), role.value, customer_id, name, time.time()),
            )
        return IssuedKey(secret=secret, principal=principal)

    def verify(self, secret: str) -> Principal:
        """The principal of a valid, unrevoked key; Unauthorized otherwise."""
        if not secret.startswith(KEY_PREFIX):
            raise Unauthorized("the API key is not valid; send 'Authorization: Bearer spk_...'")
        digest = hash_key(secret)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[1] < _CACHE_TTL_S:
            return hit[0]
        with self._db.connect() as conn:
            row = conn.execute(
                "SELECT id, role, customer_id, name FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
                (digest,),
            ).fetchone()
        if row is None:
            raise Unauthorized("the API key is not valid or was revoked")
        principal = Principal(
            key_id=row["id"], role=Role(row["role"]), customer_id=row["customer_id"], name=row["name"]
        )
        with self._lock:
            self._cache[digest] = (principal, now)
        return principal

    def revoke(self, key_id: str) -> None:
        """Revoke a key by id (effective at once in this process, within 30 s in others)."""
        with self._db.connect() as conn:
            cur = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
        if cur.rowcount == 0:
            raise NotFound(f"no active key with id {key_id!r}")
        with self._lock:
            self._cache = {h: v for h, v in self._cache.items() if v[0].key_id != key_id}

    def list(self) -> list[dict[str, object]]:
        """Every key's metadata (never the secret)."""
        with self._db.connect() as conn:
            rows = conn.execute(
                "SELECT id, role, customer_id, name, created_at, revoked_at FROM api_keys ORDER BY created_at"
            ).fetchall()
        return [dict(r) for r in rows]

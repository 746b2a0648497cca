"""Route guards: who is calling (API key) and whether their role may use the route."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serve.auth import Principal, Role
from serve.services import Services
from specialist.errors import Forbidden, Unauthorized

_bearer = HTTPBearer(auto_error=False, description="An API key from `specialist keys create`")


def services(request: Request) -> Services:
    """The process's services, built by the app's lifespan."""
    svc: Services = request.app.state.services
    return svc


def principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    svc: Services = Depends(services),
) -> Principal:
    """The verified caller; 401 without a valid key, 429 over the key's rate limit."""
    secret = credentials.credentials if credentials is not None else request.headers.get("x-api-key")
    if not secret:
        raise Unauthorized("missing API key: send 'Authorization: Bearer spk_...'")
    who = svc.keys.verify(secret.strip())
    svc.rate_limiter.check(who.key_id)
    request.state.principal = who
    return who


def require(*roles: Role) -> Callable[..., Principal]:
    """A dependency admitting only the given roles."""
    names = ", ".join(r.value for r in roles)

    def guard(who: Principal = Depends(principal)) -> Principal:
        if who.role not in roles:
            raise Forbidden(f"this route is for {names}; your key's role is {who.role.value}")
        return who

    return guard


customer_only = require(Role.customer)
content_owner_only = require(Role.content_owner)
content_owner_or_engineer = require(Role.content_owner, Role.engineer)
engineer_only = require(Role.engineer)
customer_or_engineer = require(Role.customer, Role.engineer)
any_role = require(Role.customer, Role.content_owner, Role.engineer)

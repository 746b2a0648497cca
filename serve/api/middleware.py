"""Pure ASGI middleware: request ids, the body size limit, latency metrics, one JSON log line a request."""

from __future__ import annotations

import json
import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.api.errors import error_body
from serve.logs import conversation_id_var, request_id_var
from serve.metrics import Metrics

log = logging.getLogger("specialist.serve.access")


class _TooLarge(Exception):
    pass


class RequestContext:
    """Gives every request an id (X-Request-ID in and out), caps its body, times it and logs it."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isascii() else uuid.uuid4().hex[:16]
        rid_token = request_id_var.set(request_id)
        cid_token = conversation_id_var.set(None)
        start = time.perf_counter()
        status = 500
        limit = self.max_body_bytes

        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._reject(send, request_id, 413, f"request body over the limit of {limit} bytes")
            self._finish(scope, 413, start, request_id)
            request_id_var.reset(rid_token)
            return

        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                self.metrics.request_seconds.labels(scope["method"], _route_of(scope), str(status)).observe(
                    time.perf_counter() - start
                )
            await send(message)

        try:
            await self.app(scope, capped_receive, send_with_id)
        except _TooLarge:
            if not started:
                await self._reject(send, request_id, 413, f"request body over the limit of {limit} bytes")
            status = 413
            self.metrics.request_seconds.labels(scope["method"], _route_of(scope), "413").observe(
                time.perf_counter() - start
            )
        except Exception:
            # Here, inside the request's context, so the 500 carries its request id (no trace leaves).
            log.exception("unhandled error")
            status = 500
            if not started:
                await self._reject(
                    send, request_id, 500, "internal error; quote the request id when reporting it"
                )
        finally:
            self._finish(scope, status, start, request_id)
            request_id_var.reset(rid_token)
            conversation_id_var.reset(cid_token)

    async def _reject(self, send: Send, request_id: str, status: int, message: str) -> None:
        body = json.dumps(error_body(status, message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _finish(self, scope: Scope, status: int, start: float, request_id: str) -> None:
        if status >= 500:
            self.metrics.errors.labels(f"http_{status}").inc()
        log.info(
            "request",
            extra={
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "ms": round((time.perf_counter() - start) * 1000, 2),
            },
        )


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"

"""A real HTTP server (uvicorn in a thread) around the app, for the browser tests and schemathesis."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from serve.app import create_app
from serve.settings import Settings


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(settings: Settings, **app_kwargs: Any) -> Iterator[tuple[str, Any]]:
    """Serve the app on loopback; yields (base URL, the app's services)."""
    port = free_port()
    app = create_app(settings, **app_kwargs)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200 and server.started:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    try:
        yield base, app.state.services
    finally:
        server.should_exit = True
        thread.join(timeout=30)

"""A stand-in for vLLM's OpenAI-compatible server (a third-party service), answering with serve's DemoPolicy.

It records the model name of every chat request and every runtime LoRA load, so tests can see which
model the service used, and it can be started late (to test recovery) on a port chosen up front.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.chat_model import ChatMessage
from serve.demo_policy import DemoPolicy


class VllmStub:
    """`/v1/models`, `/v1/chat/completions` (non-streaming), `/v1/load_lora_adapter`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.chat_models: list[str] = []
        self.loaded: list[dict[str, Any]] = []
        self.refuse_loads = False
        self._policy = DemoPolicy()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The OpenAI base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> VllmStub:
        """Serve in a background thread."""
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": "base"}]})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/v1/load_lora_adapter":
                    if stub.refuse_loads:
                        self._json(404, {"error": f"adapter not found at {body['lora_path']}"})
                        return
                    stub.loaded.append(body)
                    self._json(200, {"status": "loaded"})
                elif self.path == "/v1/chat/completions":
                    stub.chat_models.append(body["model"])
                    messages = [ChatMessage.from_openai(m) for m in body["messages"]]
                    reply = stub._policy(messages, body.get("tools", []))
                    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
                    if reply.tool_calls:
                        message["tool_calls"] = [c.to_openai() for c in reply.tool_calls]
                    usage = {"prompt_tokens": 100, "completion_tokens": 10}
                    self._json(
                        200, {"choices": [{"message": message, "finish_reason": "stop"}], "usage": usage}
                    )
                else:
                    self._json(404, {"error": "not found"})

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop serving (the port refuses connections again)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

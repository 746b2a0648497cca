"""The FastAPI application; its lifespan builds every client from Settings (serve is the composition root)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from agent.chat_model import ChatModel
from serve.api.errors import install_error_handlers
from serve.api.middleware import RequestContext
from serve.api.routes import conversations, documents, health, models, operations, pages, review
from serve.discovery import Discovery
from serve.logs import configure_logging
from serve.services import Services
from serve.settings import Settings

log = logging.getLogger("specialist.serve")

DESCRIPTION = """An open support agent. Authenticate with `Authorization: Bearer <key>` from
`specialist keys create --role customer|content_owner|engineer`. Customers chat, content owners keep the
knowledge base current, engineers promote models and decide paused refunds."""


def create_app(
    settings: Settings | None = None, *, model: ChatModel | None = None, advertise: bool = False
) -> FastAPI:
    """Build the app; `model` replaces the configured backend, `advertise` writes the discovery file."""
    settings = settings or Settings()
    services = Services(settings, model=model)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        restore_logging = configure_logging(
            level=settings.serve.log_level, json_lines=settings.serve.log_json
        )
        discovery = Discovery(settings.serve.discovery_path) if advertise else None
        try:
            services.warm_up()
            if discovery is not None:
                discovery.publish(settings=settings, keys=services.keys)
            log.info("service ready", extra={"host": settings.serve.host, "port": settings.serve.port})
            yield
        finally:
            if discovery is not None:
                discovery.withdraw()
            services.close()
            restore_logging()

    app = FastAPI(
        title="specialist",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.services = services
    install_error_handlers(app)
    for module in (health, conversations, documents, models, operations, review, pages):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=pages.WEB_DIR), name="static")
    app.add_middleware(RequestContext, metrics=services.metrics, max_body_bytes=settings.serve.max_body_bytes)
    return app


def _version() -> str:
    from specialist import __version__

    return __version__

"""The web pages (static HTML + JS, no build step): chat, knowledge base, models, review queue."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

router = APIRouter(include_in_schema=False)

WEB_DIR = Path(str(resources.files("serve") / "web"))
_PAGES = {"chat": "chat.html", "kb": "kb.html", "models": "models.html", "review": "review.html"}


@router.get("/")
def index() -> RedirectResponse:
    """The chat page is the front door."""
    return RedirectResponse("/chat")


@router.get("/chat")
def chat_page() -> FileResponse:
    """Customers' chat page."""
    return FileResponse(WEB_DIR / _PAGES["chat"])


@router.get("/kb")
def kb_page() -> FileResponse:
    """Content owners' knowledge-base page."""
    return FileResponse(WEB_DIR / _PAGES["kb"])


@router.get("/models")
def models_page() -> FileResponse:
    """Engineers' models page."""
    return FileResponse(WEB_DIR / _PAGES["models"])


@router.get("/review")
def review_page() -> FileResponse:
    """Engineers' review queue of flagged conversations."""
    return FileResponse(WEB_DIR / _PAGES["review"])

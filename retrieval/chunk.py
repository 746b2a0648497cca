"""A chunk as ingest hands it to the knowledge base for indexing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from retrieval.store import NO_END_TS, NO_START_TS


@dataclass(frozen=True)
class Chunk:
    """One passage of one version of a document, with everything its citation needs."""

    chunk_id: str
    doc_id: str
    title: str
    section: str
    text: str
    version: int
    content_hash: str
    source: str
    index: int = 0
    effective_from: datetime | None = None
    effective_to: datetime | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def indexed_text(self) -> str:
        """What gets embedded: the title and section path give a chunk its context."""
        heading = f"{self.title} — {self.section}" if self.section else self.title
        return f"{heading}\n{self.text}"

    def payload(self, state: str) -> dict[str, Any]:
        """Payload stored with the point."""
        return {
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "title": self.title,
            "section": self.section,
            "text": self.text,
            "version": self.version,
            "content_hash": self.content_hash,
            "source": self.source,
            "index": self.index,
            "effective_from": self.effective_from.isoformat() if self.effective_from else None,
            "effective_to": self.effective_to.isoformat() if self.effective_to else None,
            "eff_from_ts": self.effective_from.timestamp() if self.effective_from else NO_START_TS,
            "eff_to_ts": self.effective_to.timestamp() if self.effective_to else NO_END_TS,
            "tags": list(self.tags),
            "state": state,
        }

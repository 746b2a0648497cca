"""What a search returns: passages with citations, and the filters a search takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

SearchMode = Literal["hybrid", "dense", "bm25"]


@dataclass(frozen=True)
class Citation:
    """Where a passage comes from: document id, title, section path and document version."""

    doc_id: str
    title: str
    section: str
    version: int

    @property
    def label(self) -> str:
        """Short display form, e.g. `returns v2 § Return window`."""
        where = f" § {self.section}" if self.section else ""
        return f"{self.doc_id} v{self.version}{where}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"doc_id": self.doc_id, "title": self.title, "section": self.section, "version": self.version}


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk: its text, fused score and citation."""

    text: str
    score: float
    citation: Citation
    chunk_id: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "text": self.text,
            "score": self.score,
            "citation": self.citation.to_dict(),
            "label": self.citation.label,
            "chunk_id": self.chunk_id,
            "source": self.source,
        }


@dataclass(frozen=True)
class SearchFilters:
    """Restrict a search: any of `tags`, policies in force at `effective_at` (default: now)."""

    tags: tuple[str, ...] = field(default_factory=tuple)
    effective_at: datetime | None = None
    # False searches every version window (e.g. to audit an expired policy).
    only_in_force: bool = True

    @classmethod
    def parse(cls, expressions: list[str]) -> SearchFilters:
        """Build filters from CLI-style `tag=returns`, `at=2025-01-01`, `in_force=false` strings."""
        from specialist.errors import InvalidInput

        tags: list[str] = []
        at: datetime | None = None
        in_force = True
        for expr in expressions:
            key, sep, value = expr.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not sep or not value:
                raise InvalidInput(f"filter {expr!r} is not KEY=VALUE (keys: tag, at, in_force)")
            if key in ("tag", "tags"):
                tags.extend(t.strip() for t in value.split(",") if t.strip())
            elif key in ("at", "effective_at"):
                at = parse_datetime(value)
            elif key == "in_force":
                in_force = value.lower() not in ("0", "false", "no", "all")
            else:
                raise InvalidInput(f"unknown filter key {key!r} (keys: tag, at, in_force)")
        return cls(tags=tuple(tags), effective_at=at, only_in_force=in_force)


def parse_datetime(value: str) -> datetime:
    """Parse an ISO date or datetime; naive values are taken as UTC."""
    from datetime import UTC

    from specialist.errors import InvalidInput

    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"{value!r} is not an ISO date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

"""The knowledge base: hybrid dense + BM25 search over Qdrant (embedded edge engine or server)."""

from __future__ import annotations

from retrieval.knowledge_base import KbStatus, KnowledgeBase, open_knowledge_base
from retrieval.passage import Citation, Passage, SearchFilters, SearchMode
from retrieval.settings import RetrievalSettings

__all__ = [
    "Citation",
    "KbStatus",
    "KnowledgeBase",
    "Passage",
    "RetrievalSettings",
    "SearchFilters",
    "SearchMode",
    "open_knowledge_base",
]

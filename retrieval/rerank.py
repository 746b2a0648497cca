"""The pluggable rerank stage (no neural cross-encoder ships offline in a PyPI package: none by default)."""

from __future__ import annotations

from typing import Protocol

from retrieval.passage import Passage


class Reranker(Protocol):
    """Reorders the fused candidates for a query (e.g. a cross-encoder when one is available offline)."""

    def rerank(self, query: str, passages: list[Passage]) -> list[Passage]:
        """Return the passages best first (may drop some)."""
        ...

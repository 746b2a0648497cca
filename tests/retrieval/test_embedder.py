"""The offline embedder: normalised vectors, chunk-sized token counts, long queries in windows."""

from __future__ import annotations

import math

from retrieval.embedder import DenseEmbedder, SparseEncoder


def test_vectors_are_normalised_and_similar_texts_are_close(embedder: DenseEmbedder) -> None:
    a, b, c = embedder.embed_documents(
        ["refund to my credit card", "card refund", "gift card balance expiry"]
    )
    assert len(a) == embedder.dim == 384
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-4)
    dot = lambda u, v: sum(x * y for x, y in zip(u, v, strict=True))  # noqa: E731
    assert dot(a, b) > dot(a, c)


def test_long_queries_can_be_read_in_windows(embedder: DenseEmbedder) -> None:
    head = "I want to check the balance of my savings account. " * 30
    tail = "Please also close my credit card because of the annual fee. " * 30
    single = embedder.embed_query(head + tail)
    assert single == embedder.embed_query(head)  # the model stops reading at 256 tokens
    embedder.query_windows = 3
    try:
        windowed = embedder.embed_query(head + tail + " ")
    finally:
        embedder.query_windows = 1
    assert windowed != single
    assert math.isclose(sum(x * x for x in windowed), 1.0, rel_tol=1e-4)


def test_bm25_query_terms_are_stemmed_and_shared_with_documents() -> None:
    sparse = SparseEncoder()
    doc = sparse.embed_document("Refunds are returned to the original payment method.")
    query = sparse.embed_query("refund payment")
    assert set(query.indices) <= set(doc.indices)
    assert not set(sparse.embed_query("the").indices)  # stopwords carry no weight

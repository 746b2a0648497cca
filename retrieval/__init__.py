"""The knowledge base: hybrid dense + BM25 search over Qdrant (embedded edge engine or server)."""

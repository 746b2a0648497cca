"""240 random edits, deletes and re-ingests checked against an in-memory model of what must be found."""

from __future__ import annotations

import random
from pathlib import Path

from ingest import Ingestor, IngestSettings
from retrieval.knowledge_base import KnowledgeBase

WORDS = [
    "alpha",
    "bravo",
    "delta",
    "gamma",
    "kappa",
    "omega",
    "sigma",
    "theta",
    "zulu",
    "lima",
    "echo",
    "tango",
]


def _marker(rng: random.Random) -> str:
    # a made-up token that occurs in exactly one document version, so BM25 finds it only there
    return "q" + "".join(rng.choice("bcdfghjklmnpstvwxz") for _ in range(9))


def test_random_operations_match_the_model(kb: KnowledgeBase, tmp_path: Path) -> None:
    rng = random.Random(20240601)
    folder = tmp_path / "docs"
    folder.mkdir()
    ingestor = Ingestor(kb, IngestSettings())
    expected: dict[str, str] = {}  # doc id -> the marker of its current text
    retired: set[str] = set()
    file_ids = [f"file{i}" for i in range(8)]
    api_ids = [f"api{i}" for i in range(6)]

    def text_for(marker: str) -> str:
        return f"Policy note {marker}: {' '.join(rng.sample(WORDS, 4))}."

    for step in range(240):
        op = rng.random()
        if op < 0.45:  # write or edit a file, then re-ingest the folder
            doc_id = rng.choice(file_ids)
            marker = _marker(rng)
            (folder / f"{doc_id}.txt").write_text(text_for(marker))
            report = ingestor.ingest_path(folder)
            assert (doc_id in report.added) or (doc_id in report.updated), (step, report)
            if doc_id in expected:
                retired.add(expected[doc_id])
            expected[doc_id] = marker
        elif op < 0.6:  # delete a file, then re-ingest
            present = [d for d in file_ids if (folder / f"{d}.txt").exists()]
            if not present:
                continue
            doc_id = rng.choice(present)
            (folder / f"{doc_id}.txt").unlink()
            assert ingestor.ingest_path(folder).deleted == [doc_id]
            retired.add(expected.pop(doc_id))
        elif op < 0.8:  # create or replace through the API
            doc_id = rng.choice(api_ids)
            marker = _marker(rng)
            ingestor.upsert_documents([{"id": doc_id, "title": doc_id, "content": text_for(marker)}])
            if doc_id in expected:
                retired.add(expected[doc_id])
            expected[doc_id] = marker
        elif op < 0.9:  # delete through the API
            present = [d for d in api_ids if d in expected]
            if not present:
                continue
            doc_id = rng.choice(present)
            ingestor.delete(doc_id)
            retired.add(expected.pop(doc_id))
        else:  # re-ingest with nothing changed
            report = ingestor.ingest_path(folder)
            assert not report.changed and not report.failed

        # what the model says is current is found, under the right id; retired text never comes back
        if expected:
            doc_id = rng.choice(sorted(expected))
            hits = kb.search(expected[doc_id], k=3, mode="bm25")
            assert hits and hits[0].citation.doc_id == doc_id, (step, doc_id)
            assert expected[doc_id] in hits[0].text
            hybrid = kb.search(f"policy note {expected[doc_id]}", k=20)
            assert doc_id in {p.citation.doc_id for p in hybrid}
        if retired:
            gone = rng.choice(sorted(retired))
            assert kb.search(gone, k=5, mode="bm25") == [], (step, gone)

    assert kb.status().points == len(expected)  # one chunk per short doc: no leftovers anywhere
    assert sorted(r.doc_id for r in ingestor.documents()) == sorted(expected)
    for marker in retired:
        assert kb.search(marker, k=5, mode="bm25") == []

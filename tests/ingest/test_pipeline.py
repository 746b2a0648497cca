"""Incremental ingest: edits, deletes, re-ingest, bad input, crashes, rebuild and rollback, watch."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from ingest import Ingestor, IngestSettings, RunReport, demo_policy_dir
from ingest.watcher import watch
from retrieval.knowledge_base import KnowledgeBase
from specialist.errors import NotFound


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _texts(kb: KnowledgeBase, query: str, k: int = 10) -> list[str]:
    return [p.text for p in kb.search(query, k=k)]


def _all_text(kb: KnowledgeBase, query: str) -> str:
    return " ".join(_texts(kb, query, k=50) + [p.text for p in kb.search(query, k=50, mode="bm25")])


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    _write(folder, "returns.md", "# Returns\n\n## Window\n\nItems can be returned within 30 days.\n")
    _write(folder, "refunds.md", "# Refunds\n\n## Timing\n\nCard refunds take 5 to 7 business days.\n")
    _write(folder, "shipping.txt", "Standard shipping takes 3 to 7 business days.\n")
    return folder


def test_reingest_only_changes_what_changed(kb: KnowledgeBase, docs: Path) -> None:
    ingestor = Ingestor(kb, IngestSettings())
    first = ingestor.ingest_path(docs)
    assert sorted(first.added) == ["refunds", "returns", "shipping"] and not first.failed
    again = ingestor.ingest_path(docs)
    assert sorted(again.unchanged) == ["refunds", "returns", "shipping"] and again.chunks_written == 0

    _write(docs, "returns.md", "# Returns\n\n## Window\n\nItems can be returned within 45 days.\n")
    edited = ingestor.ingest_path(docs)
    assert edited.updated == ["returns"] and sorted(edited.unchanged) == ["refunds", "shipping"]
    found = kb.search("how many days to return items", k=3)
    assert found[0].citation.doc_id == "returns" and found[0].citation.version == 2
    assert found[0].citation.section == "Window"
    assert "30 days" not in _all_text(kb, "returned within 30 days")

    (docs / "shipping.txt").unlink()
    removed = ingestor.ingest_path(docs)
    assert removed.deleted == ["shipping"]
    assert "shipping" not in {p.citation.doc_id for p in kb.search("standard shipping business days", k=10)}
    assert kb.status().points == 2


def test_shortened_document_leaves_no_leftover_chunks(kb: KnowledgeBase, tmp_path: Path) -> None:
    ingestor = Ingestor(kb, IngestSettings(chunk_tokens=40, chunk_overlap=0))
    long = "# Policy\n\n" + "\n\n".join(
        f"## Part {i}\n\nRule {i}: marker{i} applies to orders." for i in range(6)
    )
    _write(tmp_path / "d", "policy.md", long)
    assert ingestor.ingest_path(tmp_path / "d").chunks_written == 6
    _write(tmp_path / "d", "policy.md", "# Policy\n\n## Part 0\n\nRule 0: marker0 applies to orders.\n")
    assert ingestor.ingest_path(tmp_path / "d").updated == ["policy"]
    assert kb.status().points == 1
    assert "marker5" not in _all_text(kb, "marker5 applies to orders")


def test_formats_keep_title_and_section(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = tmp_path / "formats"
    _write(
        folder,
        "gifts.html",
        "<html><head><title>Gift cards</title></head><body><h1>Gift cards</h1><h2>Expiry</h2>"
        "<p>Gift card balances never expire.</p><script>var x = 1;</script></body></html>",
    )
    _write(folder, "faq.pdf", "")
    (folder / "faq.pdf").write_bytes(_pdf("Orders ship from our Denver warehouse."))
    rows = [
        {
            "id": "fees",
            "title": "Fees",
            "content": "## Restocking\n\nA restocking fee of 10 percent applies.",
            "tags": ["fees"],
        },
        {
            "id": "old",
            "title": "Old rule",
            "content": "Returns within 14 days.",
            "effective_to": "2020-01-01",
        },
    ]
    _write(folder, "bulk.jsonl", "\n".join(json.dumps(r) for r in rows))
    report = Ingestor(kb, IngestSettings()).ingest_path(folder)
    assert sorted(report.added) == ["faq", "fees", "gifts", "old"], report.failed
    gift = kb.search("do gift card balances expire", k=1)[0]
    assert (gift.citation.title, gift.citation.section) == ("Gift cards", "Expiry")
    assert "var x" not in gift.text
    pdf = kb.search("which warehouse ships orders", k=1)[0]
    assert pdf.citation.doc_id == "faq" and pdf.citation.section == "Page 1"
    fee = kb.search("restocking fee", k=1)[0]
    assert (fee.citation.doc_id, fee.citation.section) == ("fees", "Restocking")
    assert "old" not in {p.citation.doc_id for p in kb.search("returns within 14 days", k=10)}


def test_bad_documents_fail_alone_and_lose_nothing(kb: KnowledgeBase, docs: Path) -> None:
    ingestor = Ingestor(kb, IngestSettings(max_document_bytes=2000))
    ingestor.ingest_path(docs)
    (docs / "empty.md").write_text("   \n")
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    (docs / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (docs / "huge.md").write_text("# Huge\n\n" + "word " * 1000)
    (docs / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    (docs / "bad.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    lines = [
        json.dumps({"id": "dup", "title": "One", "content": "First copy."}),
        json.dumps({"id": "dup", "title": "Two", "content": "Second copy."}),
        "{not json",
        json.dumps({"id": "nodate", "title": "T", "content": "x", "effective_from": "tomorrow"}),
        json.dumps({"id": "notitle", "content": "x"}),
    ]
    _write(docs, "bulk.jsonl", "\n".join(lines))
    # a document that was indexed and is now broken keeps its indexed version
    (docs / "refunds.md").write_bytes(b"\xff\xfe\x00\x00garbage")
    report = ingestor.ingest_path(docs)
    reasons = {f.ref.split("/")[-1]: f.reason for f in report.failed}
    assert "empty" in reasons["empty.md"]
    assert "binary" in reasons["binary.txt"]
    assert "UTF-8" in reasons["latin1.txt"]
    assert "over the limit" in reasons["huge.md"]
    assert "unsupported format" in reasons["sheet.xlsx"]
    assert "PDF" in reasons["bad.pdf"]
    assert "duplicate id" in reasons["dup"]
    assert "invalid JSON" in reasons["bulk.jsonl:3"]
    assert "effective_from" in reasons["nodate (bulk.jsonl:4)"]
    assert "title" in reasons["notitle (bulk.jsonl:5)"]
    assert "binary" in reasons["refunds.md"]
    assert report.added == ["dup"] and report.deleted == []
    assert kb.search("card refund business days", k=1)[0].citation.doc_id == "refunds"
    assert "Second copy" not in _all_text(kb, "second copy")
    assert json.loads(report.to_json())["failed"][0].keys() == {"ref", "reason"}


def test_api_upsert_and_delete(kb: KnowledgeBase) -> None:
    ingestor = Ingestor(kb, IngestSettings())
    report = ingestor.upsert_documents(
        [
            {"id": "pets", "title": "Pets", "content": "Dogs are welcome in our stores."},
            {"id": "x", "title": "X"},
        ]
    )
    assert report.added == ["pets"] and report.failed[0].ref == "x"
    assert kb.search("can I bring my dog", k=1)[0].citation.doc_id == "pets"
    replaced = ingestor.upsert_documents(
        [{"id": "pets", "title": "Pets", "content": "Only service animals may enter."}]
    )
    assert replaced.updated == ["pets"]
    assert "Dogs are welcome" not in _all_text(kb, "dogs welcome stores")
    assert ingestor.delete("pets").deleted == ["pets"]
    assert kb.search("service animals", k=5, mode="bm25") == []
    with pytest.raises(NotFound):
        ingestor.delete("pets")
    again = ingestor.upsert_documents([{"id": "pets", "title": "Pets", "content": "Cats too."}])
    assert again.added == ["pets"] and kb.search("cats", k=1)[0].citation.version == 3


def test_crash_before_publish_keeps_old_version_and_next_run_repairs(
    kb: KnowledgeBase, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Ingestor(kb, IngestSettings()).ingest_path(docs)
    _write(docs, "returns.md", "# Returns\n\n## Window\n\nItems can be returned within 60 days.\n")

    def crash(**_: object) -> None:
        raise SystemExit("simulated crash between writing new chunks and publishing them")

    monkeypatch.setattr(kb, "commit", crash)
    with pytest.raises(SystemExit):
        Ingestor(kb, IngestSettings()).ingest_path(docs)
    monkeypatch.undo()
    assert "30 days" in _all_text(kb, "returned within days")
    assert "60 days" not in _all_text(kb, "returned within 60 days")

    ingestor = Ingestor(kb, IngestSettings())  # a new run repairs first
    assert ingestor.registry.pending(kb.version) == []
    assert kb.status().points == 3
    assert ingestor.ingest_path(docs).updated == ["returns"]
    text = _all_text(kb, "returned within days")
    assert "60 days" in text and "30 days" not in text


def test_crash_after_publish_is_repaired_by_the_next_run(
    kb: KnowledgeBase, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Ingestor(kb, IngestSettings()).ingest_path(docs)
    _write(docs, "returns.md", "# Returns\n\n## Window\n\nItems can be returned within 90 days.\n")
    store = kb._store

    def crash(_ids: object) -> None:
        raise SystemExit("simulated crash after publishing, before retiring the old chunks")

    monkeypatch.setattr(store, "delete", crash)
    with pytest.raises(SystemExit):
        Ingestor(kb, IngestSettings()).ingest_path(docs)
    monkeypatch.undo()
    # both versions are live for a moment; search shows only the newest version of the document
    passages = [p for p in kb.search("how many days to return items", k=10) if p.citation.doc_id == "returns"]
    assert {p.citation.version for p in passages} == {2}
    # the next run's repair leaves exactly one version per document (no leftovers), then re-applies the edit
    ingestor = Ingestor(kb, IngestSettings())
    assert kb.status().points == 3 and ingestor.registry.pending(kb.version) == []
    assert ingestor.ingest_path(docs).updated == ["returns"]
    text = _all_text(kb, "returned within days")
    assert "90 days" in text and "30 days" not in text
    assert kb.status().points == 3


def test_rebuild_then_rollback(kb: KnowledgeBase, docs: Path) -> None:
    ingestor = Ingestor(kb, IngestSettings())
    ingestor.ingest_path(docs)
    first = kb.version
    rebuilt = Ingestor(kb, IngestSettings(chunk_tokens=64)).rebuild()
    assert sorted(rebuilt.updated) == ["refunds", "returns", "shipping"]
    assert kb.version != first and kb.status().previous_version == first
    assert kb.search("card refunds", k=1)[0].citation.doc_id == "refunds"
    ingestor.upsert_documents([{"id": "late", "title": "Late", "content": "Added after the rebuild."}])
    assert ingestor.rollback() == first
    assert kb.version == first
    assert "late" not in {p.citation.doc_id for p in kb.search("added after the rebuild", k=10)}
    assert sorted(r.doc_id for r in ingestor.documents()) == ["refunds", "returns", "shipping"]
    assert ingestor.ingest_path(docs).unchanged == ["refunds", "returns", "shipping"]


def test_watch_reindexes_changed_files(kb: KnowledgeBase, docs: Path) -> None:
    ingestor = Ingestor(kb, IngestSettings(watch_debounce_ms=50))
    reports: list[RunReport] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=watch, args=(ingestor, docs), kwargs={"on_report": reports.append, "stop": stop}
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not reports and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        changed = written = time.monotonic()
        new_text = "# Refunds\n\n## Timing\n\nCard refunds take 10 business days.\n"
        _write(docs, "refunds.md", new_text)
        while time.monotonic() - changed < 20:
            if time.monotonic() - written > 3:  # under heavy load the watcher may start after the first write
                _write(docs, "refunds.md", new_text)
                written = time.monotonic()
            text = " ".join(p.text for p in kb.search("card refunds business days", k=3))
            if "10 business days" in text and "5 to 7" not in text:
                break
            time.sleep(0.05)
        assert "10 business days" in text and "5 to 7" not in text
    finally:
        stop.set()
        thread.join(timeout=10)


def test_demo_policies_are_searchable_with_facts(kb: KnowledgeBase) -> None:
    report = Ingestor(kb, IngestSettings()).ingest_path(demo_policy_dir())
    assert len(report.added) == 8 and not report.failed
    window = kb.search("how long do I have to return an item", k=3)
    assert any("30 days of the delivery date" in p.text and p.citation.doc_id == "returns" for p in window)
    timing = kb.search("when will my credit card refund arrive", k=5)
    assert any("5 to 7 business days" in p.text for p in timing)


def _pdf(text: str) -> bytes:
    """A one-page PDF with `text` in Helvetica (written by hand: no PDF writer ships with the project)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)

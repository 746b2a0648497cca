"""Content owners: create, replace and delete policy documents; rebuild, roll back, status, search."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, File, Query, UploadFile

from serve.api.protocol import DocumentBatchIn, DocumentIn, DocumentList, KbStatusOut, RunReportOut
from serve.api.security import any_role, content_owner_only, content_owner_or_engineer, services
from serve.auth import Principal
from serve.services import Services, jsonable
from specialist.errors import InvalidDocument, InvalidInput

router = APIRouter(prefix="/api", tags=["content owners"])

_UPLOAD_SUFFIXES = {".md", ".markdown", ".html", ".htm", ".txt", ".text", ".pdf", ".jsonl"}


def _run(svc: Services, action: str, fn: Any) -> dict[str, Any]:
    """Run one knowledge-base write (one at a time) and remember its report as the last run's."""
    with svc.write_lock:
        report = jsonable(fn())
    if not isinstance(report, dict):
        report = {"result": report}
    report.setdefault("action", action)
    report["finished_at"] = time.time()
    svc.db.put_meta("last_report", report)
    return report


def _row_summary(row: Any) -> dict[str, Any]:
    record = row.record or {}
    return {
        "id": row.doc_id,
        "title": record.get("title", ""),
        "tags": record.get("tags", []),
        "version": row.version,
        "chunks": len(row.point_ids),
        "source": row.source,
    }


def _merge(reports: list[Any]) -> dict[str, Any]:
    """One report for several files."""
    merged: dict[str, Any] = {"added": [], "updated": [], "unchanged": [], "deleted": [], "failed": []}
    merged["chunks_written"] = 0
    for report in reports:
        data = jsonable(report)
        for key in ("added", "updated", "unchanged", "deleted", "failed"):
            merged[key].extend(data.get(key, []))
        merged["chunks_written"] += data.get("chunks_written", 0)
        merged["version"] = data.get("version", "")
    return merged


def _record(doc_id: str, body: DocumentIn) -> dict[str, Any]:
    record = body.model_dump(exclude_none=True)
    record["id"] = doc_id
    return record


@router.get("/documents", response_model=DocumentList, summary="List documents")
def list_documents(
    who: Principal = Depends(content_owner_or_engineer), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Every document in the knowledge base with its version and chunk count."""
    return {"documents": [_row_summary(row) for row in svc.ingestor().documents()]}


@router.get("/documents/{doc_id}", summary="One document's content")
def get_document(
    doc_id: str, who: Principal = Depends(content_owner_or_engineer), svc: Services = Depends(services)
) -> dict[str, Any]:
    """The document as last ingested (title, content, tags, dates), with its version and chunk count."""
    row = svc.ingestor().document(doc_id)
    return {**jsonable(row.record), **_row_summary(row)}


@router.get("/policies/{doc_id}", summary="Read a policy (what a citation points to)")
def read_policy(
    doc_id: str, who: Principal = Depends(any_role), svc: Services = Depends(services)
) -> dict[str, Any]:
    """The cited policy's title and text, for any signed-in user (policies are public to customers)."""
    row = svc.ingestor().document(doc_id)
    record = row.record or {}
    return {
        "id": row.doc_id,
        "title": record.get("title", ""),
        "content": record.get("content", ""),
        "version": row.version,
    }


@router.put("/documents/{doc_id}", response_model=RunReportOut, summary="Create or replace a document")
def put_document(
    doc_id: str,
    body: DocumentIn,
    who: Principal = Depends(content_owner_only),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Index the document; it is searchable when this call returns."""
    record = _record(doc_id, body)
    report = _run(
        svc, "upsert", lambda: svc.ingestor().upsert_documents([record], source=f"api:{who.key_id}")
    )
    if report.get("failed"):
        raise InvalidDocument("; ".join(f"{f['ref']}: {f['reason']}" for f in report["failed"]))
    return report


@router.post("/documents", response_model=RunReportOut, summary="Create or replace several documents")
def post_documents(
    body: DocumentBatchIn, who: Principal = Depends(content_owner_only), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Index a batch of JSON documents (bad ones are reported, the rest indexed); searchable on return."""
    ids = [d.id for d in body.documents]
    if len(set(ids)) != len(ids):
        raise InvalidInput("duplicate document ids in the batch")
    records = [_record(d.id, d) for d in body.documents]
    return _run(svc, "upsert", lambda: svc.ingestor().upsert_documents(records, source=f"api:{who.key_id}"))


@router.post("/documents/upload", response_model=RunReportOut, summary="Upload document files")
def upload_documents(
    files: list[UploadFile] = File(..., description="Markdown, HTML, text, PDF or JSONL files"),
    who: Principal = Depends(content_owner_only),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Index uploaded files (a file's name without its suffix is its id, JSONL lines carry theirs)."""
    with tempfile.TemporaryDirectory(prefix="specialist-upload-") as tmp:
        paths = []
        for upload in files:
            name = Path(upload.filename or "").name
            if not name or Path(name).suffix.lower() not in _UPLOAD_SUFFIXES:
                raise InvalidDocument(
                    f"{name or 'a file'}: unsupported type; upload {', '.join(sorted(_UPLOAD_SUFFIXES))}"
                )
            path = Path(tmp) / name
            path.write_bytes(upload.file.read())
            paths.append(path)
        return _run(svc, "upload", lambda: _merge([svc.ingestor().upsert_file(p) for p in paths]))


@router.delete("/documents/{doc_id}", response_model=RunReportOut, summary="Delete a document")
def delete_document(
    doc_id: str, who: Principal = Depends(content_owner_only), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Remove every chunk of the document; it is gone from search when this call returns."""
    return _run(svc, "delete", lambda: svc.ingestor().delete(doc_id))


@router.post("/kb/rebuild", response_model=RunReportOut, summary="Rebuild the knowledge base")
def rebuild(
    who: Principal = Depends(content_owner_only), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Re-chunk and re-embed everything into a new version, then switch to it atomically."""
    return _run(svc, "rebuild", lambda: svc.ingestor().rebuild())


@router.post("/kb/rollback", response_model=RunReportOut, summary="Roll back the last rebuild")
def rollback(
    who: Principal = Depends(content_owner_only), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Make the previous knowledge-base version current again."""
    return _run(svc, "rollback", lambda: {"version": svc.ingestor().rollback()})


@router.get("/kb/status", response_model=KbStatusOut, summary="Knowledge-base status")
def status(
    who: Principal = Depends(content_owner_or_engineer), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Documents, chunks, version, last change and the last run's report."""
    out: dict[str, Any] = jsonable(svc.kb().status())
    out["documents"] = len(svc.ingestor().documents())
    report = svc.db.get_meta("last_report")
    out["last_change"] = report.get("finished_at") if isinstance(report, dict) else None
    out["last_report"] = report
    return out


@router.get("/kb/search", summary="Search the knowledge base")
def search(
    q: str = Query(..., min_length=1, max_length=2000),
    k: int = Query(5, ge=1, le=50),
    who: Principal = Depends(content_owner_or_engineer),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """What the agent would find for a query (passages with citations)."""
    return {"passages": [p.to_dict() for p in svc.kb().search(q, k=k)]}

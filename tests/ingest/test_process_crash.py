"""A process killed between the steps of an update (os._exit: no cleanup, no flush) loses nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from ingest import Ingestor, IngestSettings
from retrieval.embedder import DenseEmbedder
from retrieval.knowledge_base import open_knowledge_base
from retrieval.settings import RetrievalSettings

_CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from ingest import Ingestor, IngestSettings
    from retrieval.knowledge_base import KnowledgeBase, open_knowledge_base
    from retrieval.settings import RetrievalSettings

    def die(self, **_):
        os._exit(9)  # the process dies after the new chunks are written, before they are published

    kb = open_knowledge_base(RetrievalSettings(data_dir=Path(sys.argv[1])))
    KnowledgeBase.commit = die
    Ingestor(kb, IngestSettings()).ingest_path(Path(sys.argv[2]))
    """
)


def test_killed_process_leaves_previous_version_and_next_run_repairs(
    tmp_path: Path, embedder: DenseEmbedder
) -> None:
    data, docs = tmp_path / "kb", tmp_path / "docs"
    docs.mkdir()
    (docs / "returns.md").write_text("# Returns\n\nItems can be returned within 30 days.\n")
    settings = RetrievalSettings(data_dir=data)
    with open_knowledge_base(settings, embedder=embedder) as kb:
        Ingestor(kb, IngestSettings()).ingest_path(docs)

    (docs / "returns.md").write_text("# Returns\n\nItems can be returned within 75 days.\n")
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data), str(docs)], capture_output=True, text=True
    )
    assert child.returncode == 9, child.stderr[-2000:]

    with open_knowledge_base(settings, embedder=embedder) as kb:
        text = " ".join(p.text for p in kb.search("how many days to return items", k=5))
        assert "30 days" in text and "75 days" not in text  # before any repair: the previous version only
        ingestor = Ingestor(kb, IngestSettings())  # opening repairs: the half-written version is removed
        assert ingestor.registry.pending(kb.version) == [] and kb.status().points == 1
        assert ingestor.ingest_path(docs).updated == ["returns"]
        text = " ".join(p.text for p in kb.search("how many days to return items", k=5))
        assert "75 days" in text and "30 days" not in text
        assert kb.status().points == 1

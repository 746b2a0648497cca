"""The console script answers fast and lists its command groups."""

from __future__ import annotations

import subprocess
import sys
import time


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    code = (
        "import sys, serve.cli; "
        "heavy = [m for m in ('torch', 'transformers', 'qdrant_edge', 'langgraph') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported at CLI import time: {out.stdout}"
    assert time.monotonic() - start < 5

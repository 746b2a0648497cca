"""bench/load.py runs end to end (short) and ends with its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_load_bench_smoke() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), "--concurrency", "4", "--seconds", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert {"requests", "errors", "rps", "p50_ms", "p95_ms", "p99_ms", "concurrency"} <= set(result)
    assert result["concurrency"] == 4 and result["requests"] > 0 and result["errors"] == 0
    assert result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert any(line.startswith("vs baseline:") for line in lines)
